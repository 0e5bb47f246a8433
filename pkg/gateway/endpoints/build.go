// Package endpoints turns the cluster's state into the gateway's routing
// table: each InferenceService becomes a routed service whose model name is
// the --served-model-name of its server (else its name), whose endpoints are
// the ready addresses of the EndpointSlices of its Service NAME-predictor,
// each tagged with the node pool of its node (label spillway.io/nodepool) and
// that pool's cost rank (IDC pools first, then by spec.pricePerHour).
// Build is pure; Watcher feeds it from informers.
package endpoints

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/pkg/gateway/balancer"
	"github.com/spillway-io/spillway/pkg/gateway/routing"
)

// Annotations on an InferenceService that tune the gateway for it.
const (
	// AnnotationBalancer: least-request (default), p2c or round-robin.
	AnnotationBalancer = "gateway.spillway.io/balancer"
	// AnnotationPoolPreference: "true" or "false" (default: on for the llm
	// autoscaler class only; see PolicyOf).
	AnnotationPoolPreference = "gateway.spillway.io/pool-preference"
	// AnnotationSaturation: load per replica above which traffic spills to the next pool.
	AnnotationSaturation = "gateway.spillway.io/saturation"
	// AnnotationPrefixAffinity: "true" turns prefix affinity on.
	AnnotationPrefixAffinity = "gateway.spillway.io/prefix-affinity"
)

// LabelServiceName is the EndpointSlice label naming its Service.
const LabelServiceName = discoveryv1.LabelServiceName

// PredictorService is the Service name of an InferenceService.
func PredictorService(isvc string) string { return isvc + "-predictor" }

// UnknownPoolRank is the rank of replicas whose node is in no known pool.
const UnknownPoolRank = 1000

// State is what Build reads.
type State struct {
	Services []spillwayv1alpha1.InferenceService
	Slices   []discoveryv1.EndpointSlice
	// Pods, when FromPods, replace the slices: the ready pods labelled
	// app=isvc.NAME-predictor, at status.podIP and the server's --port. For
	// local clusters whose pods run on loopback addresses, which the
	// apiserver refuses in EndpointSlices.
	Pods     []corev1.Pod
	FromPods bool
	// NodePools maps node name -> pool name (from the node's label).
	NodePools map[string]string
	Pools     []spillwayv1alpha1.NodePool
}

// Build returns the routed services and, joined, the problems found in
// annotations (the service is still routed, with defaults).
func Build(s State) ([]routing.Service, error) {
	ranks := PoolRanks(s.Pools)
	slices := map[string][]*discoveryv1.EndpointSlice{}
	for i := range s.Slices {
		sl := &s.Slices[i]
		key := sl.Namespace + "/" + sl.Labels[LabelServiceName]
		slices[key] = append(slices[key], sl)
	}
	var errs []error
	out := make([]routing.Service, 0, len(s.Services))
	for i := range s.Services {
		isvc := &s.Services[i]
		if isvc.DeletionTimestamp != nil {
			continue
		}
		policy, err := PolicyOf(isvc.Annotations, isvc.Spec.Predictor.AutoscalerClass)
		if err != nil {
			errs = append(errs, fmt.Errorf("InferenceService %s/%s: %w", isvc.Namespace, isvc.Name, err))
		}
		svc := routing.Service{
			Namespace: isvc.Namespace,
			Name:      isvc.Name,
			Model:     ModelName(isvc),
			Policy:    policy,
			Created:   isvc.CreationTimestamp.Time,
		}
		if t := isvc.Spec.Predictor.TimeoutSeconds; t != nil && *t > 0 {
			svc.Timeout = time.Duration(*t) * time.Second
		}
		seen := map[string]bool{}
		if s.FromPods {
			svc.Endpoints = podEndpoints(isvc, s.Pods, s.NodePools, ranks)
		}
		for _, sl := range slices[isvc.Namespace+"/"+PredictorService(isvc.Name)] {
			if s.FromPods {
				break
			}
			port, ok := slicePort(sl)
			if !ok {
				continue
			}
			for _, ep := range sl.Endpoints {
				if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
					continue
				}
				if len(ep.Addresses) == 0 {
					continue
				}
				addr := net.JoinHostPort(ep.Addresses[0], strconv.Itoa(int(port)))
				if seen[addr] {
					continue
				}
				seen[addr] = true
				e := routing.Endpoint{Address: addr, PoolRank: UnknownPoolRank}
				if ep.NodeName != nil {
					e.Pool = s.NodePools[*ep.NodeName]
					if r, ok := ranks[e.Pool]; ok {
						e.PoolRank = r
					}
				}
				svc.Endpoints = append(svc.Endpoints, e)
			}
		}
		sort.Slice(svc.Endpoints, func(a, b int) bool { return svc.Endpoints[a].Address < svc.Endpoints[b].Address })
		out = append(out, svc)
	}
	return out, errors.Join(errs...)
}

// PodLabel is the label of an InferenceService's pods (KServe's convention).
func PodLabel(isvc string) (key, value string) { return "app", "isvc." + isvc + "-predictor" }

func podEndpoints(isvc *spillwayv1alpha1.InferenceService, pods []corev1.Pod, nodePools map[string]string, ranks map[string]int) []routing.Endpoint {
	k, v := PodLabel(isvc.Name)
	port := ServerPort(isvc)
	var out []routing.Endpoint
	seen := map[string]bool{}
	for i := range pods {
		p := &pods[i]
		if p.Namespace != isvc.Namespace || p.Labels[k] != v || p.DeletionTimestamp != nil || p.Status.PodIP == "" || !podReady(p) {
			continue
		}
		addr := net.JoinHostPort(p.Status.PodIP, strconv.Itoa(int(port)))
		if seen[addr] {
			continue
		}
		seen[addr] = true
		e := routing.Endpoint{Address: addr, PoolRank: UnknownPoolRank, Pool: nodePools[p.Spec.NodeName]}
		if r, ok := ranks[e.Pool]; ok && e.Pool != "" {
			e.PoolRank = r
		}
		out = append(out, e)
	}
	return out
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// ServerPort is the model server's port: --port of its command line, else
// its first container port, else 8080 (Spillway's default).
func ServerPort(isvc *spillwayv1alpha1.InferenceService) int32 {
	cs := isvc.Spec.Predictor.Containers
	if len(cs) == 0 {
		return 8080
	}
	if v := flagValue(append(append([]string(nil), cs[0].Command...), cs[0].Args...), "--port"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 && n < 65536 {
			return int32(n)
		}
	}
	if len(cs[0].Ports) > 0 {
		return cs[0].Ports[0].ContainerPort
	}
	return 8080
}

// slicePort is the TCP port of a slice: the one named "http", else the first.
func slicePort(sl *discoveryv1.EndpointSlice) (int32, bool) {
	var first *int32
	for _, p := range sl.Ports {
		if p.Port == nil || (p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP) {
			continue
		}
		if p.Name != nil && *p.Name == "http" {
			return *p.Port, true
		}
		if first == nil {
			first = p.Port
		}
	}
	if first == nil {
		return 0, false
	}
	return *first, true
}

// PoolRanks orders pools by cost: IDC pools are 0; the others follow by
// ascending pricePerHour (pools without a price last), equal prices share a rank.
func PoolRanks(pools []spillwayv1alpha1.NodePool) map[string]int {
	ranks := map[string]int{}
	type priced struct {
		name  string
		price float64
		has   bool
	}
	var rest []priced
	for _, p := range pools {
		if p.Spec.Role == spillwayv1alpha1.RoleIDC {
			ranks[p.Name] = 0
			continue
		}
		pr := priced{name: p.Name}
		if p.Spec.PricePerHour != nil {
			pr.price, pr.has = p.Spec.PricePerHour.AsApproximateFloat64(), true
		}
		rest = append(rest, pr)
	}
	sort.SliceStable(rest, func(i, j int) bool {
		if rest[i].has != rest[j].has {
			return rest[i].has
		}
		return rest[i].price < rest[j].price
	})
	rank := 0
	for i, p := range rest {
		if i == 0 || p.has != rest[i-1].has || p.price != rest[i-1].price {
			rank++
		}
		ranks[p.name] = rank
	}
	return ranks
}

// PolicyOf reads the balancing annotations; bad values are reported and
// replaced by defaults.
//
// Pool preference is on by default only for the llm autoscaler class, whose
// signals (in-flight requests and queue per replica, summed over the
// service) do not depend on where requests go. Under an HPA on a per-replica
// average such as SM utilisation (the seed's), keeping an unsaturated IDC
// replica busy and the cloud replicas idle pulls the average under target:
// the HPA scales in, the IDC replica saturates, the HPA scales out — it
// flaps. There, requests are spread over all ready replicas, as an ingress
// does, unless the annotation asks for pool preference.
func PolicyOf(ann map[string]string, class spillwayv1alpha1.AutoscalerClass) (balancer.Policy, error) {
	p := balancer.Policy{PoolPreference: class == spillwayv1alpha1.AutoscalerLLM}
	var errs []error
	if v, ok := ann[AnnotationBalancer]; ok {
		a, err := balancer.ParseAlgorithm(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("annotation %s: %w", AnnotationBalancer, err))
		}
		p.Algorithm = a
	}
	if p.Algorithm == "" {
		p.Algorithm = balancer.LeastRequest
	}
	if v, ok := ann[AnnotationPoolPreference]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("annotation %s: %q is not a boolean", AnnotationPoolPreference, v))
		} else {
			p.PoolPreference = b
		}
	}
	if v, ok := ann[AnnotationSaturation]; ok {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 || f != f {
			errs = append(errs, fmt.Errorf("annotation %s: %q is not a positive number", AnnotationSaturation, v))
		} else {
			p.Saturation = f
		}
	}
	if v, ok := ann[AnnotationPrefixAffinity]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("annotation %s: %q is not a boolean", AnnotationPrefixAffinity, v))
		} else {
			p.PrefixAffinity = b
		}
	}
	return p, errors.Join(errs...)
}

// ModelName is the --served-model-name of the service's server, else its name.
func ModelName(isvc *spillwayv1alpha1.InferenceService) string {
	if cs := isvc.Spec.Predictor.Containers; len(cs) > 0 {
		if m := ServedModelName(append(append([]string(nil), cs[0].Command...), cs[0].Args...)); m != "" {
			return m
		}
	}
	return isvc.Name
}

// ServedModelName finds --served-model-name in a command line, whose
// elements may themselves be shell command lines (sh -c "...").
func ServedModelName(argv []string) string { return flagValue(argv, "--served-model-name") }

// flagValue finds "--flag value" or "--flag=value" in a command line.
func flagValue(argv []string, flag string) string {
	var words []string
	for _, a := range argv {
		words = append(words, strings.Fields(a)...)
	}
	for i, w := range words {
		w = strings.Trim(w, `"'`)
		if v, ok := strings.CutPrefix(w, flag+"="); ok {
			return strings.Trim(v, `"'`)
		}
		if w == flag && i+1 < len(words) && !strings.HasPrefix(words[i+1], "--") {
			return strings.Trim(words[i+1], `"'`)
		}
	}
	return ""
}
