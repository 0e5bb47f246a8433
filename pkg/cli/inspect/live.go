package inspect

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	cmclient "k8s.io/metrics/pkg/client/custom_metrics"

	"github.com/spillway-io/spillway/pkg/localcluster"
)

// The live figures of `spillway top` and where they come from.
const (
	// MetricGPUUtil is the per-pod GPU utilisation served by
	// spillway-metrics-adapter on custom.metrics.k8s.io (from DCGM).
	MetricGPUUtil = "DCGM_CUSTOM_PROCESS_SM_UTIL"
	// MetricQueue is vLLM's vllm:num_requests_waiting as the adapter serves it.
	MetricQueue = "vllm_num_requests_waiting"
	// GatewayInFlight and GatewayPoolInFlight are the gateway's in-flight
	// gauges (labels namespace, service, and pool for the latter).
	GatewayInFlight     = "spillway_gateway_in_flight_requests"
	GatewayPoolInFlight = "spillway_gateway_pool_in_flight_requests"
)

// DefaultGatewayMetricsURL is the local cluster's gateway admin endpoint.
func DefaultGatewayMetricsURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d/metrics", localcluster.DefaultPorts().GatewayAdmin)
}

// Figures are the raw live readings of one `top` screen. Maps are nil when
// their source could not be read; Notes say why.
type Figures struct {
	PodGPUUtil map[string]float64 // "namespace/pod" -> percent
	PodQueue   map[string]float64 // "namespace/pod" -> requests waiting
	// ServiceInFlight is "namespace/service" -> requests in flight at the gateway.
	ServiceInFlight map[string]float64
	// PoolInFlight is "namespace/service/pool" -> requests in flight on the pool's replicas.
	PoolInFlight map[string]float64
	Notes        []string
}

// figuresSource reads the live figures of the snapshot's services.
type figuresSource interface {
	Figures(ctx context.Context, s *Snapshot) Figures
}

// podMetricsGetter is the part of the custom metrics client `top` uses.
type podMetricsGetter interface {
	NamespacedMetrics(namespace string) cmclient.MetricsInterface
}

// liveSource reads the custom metrics API and the gateway's /metrics.
type liveSource struct {
	metrics    podMetricsGetter // nil: no client
	metricsErr error            // why there is no client
	gatewayURL string           // "" or "none": not read
	http       *http.Client
}

// newLiveSource builds the custom metrics client from the cluster's config
// (the HPA's client: it discovers the API version the adapter serves).
func newLiveSource(cfg *rest.Config, mapper meta.RESTMapper, gatewayURL string, timeout time.Duration) *liveSource {
	l := &liveSource{gatewayURL: gatewayURL, http: &http.Client{Timeout: timeout}}
	cfg = rest.CopyConfig(cfg)
	cfg.Timeout = timeout
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		l.metricsErr = err
		return l
	}
	l.metrics = cmclient.NewForConfig(cfg, mapper, cmclient.NewAvailableAPIsGetter(dc))
	return l
}

var podGK = schema.GroupKind{Kind: "Pod"}

func (l *liveSource) Figures(ctx context.Context, s *Snapshot) Figures {
	var f Figures
	if l.metrics == nil {
		if l.metricsErr != nil {
			f.Notes = append(f.Notes, fmt.Sprintf("GPU UTIL, QUEUE: custom metrics API not usable: %v", l.metricsErr))
		}
	} else {
		f.PodGPUUtil, f.PodQueue = map[string]float64{}, map[string]float64{}
		var failed []string
		for _, svc := range s.Services {
			sel := labels.SelectorFromSet(labels.Set{"app": PodApp(svc.Name)})
			for _, m := range []struct {
				name string
				into map[string]float64
			}{{MetricGPUUtil, f.PodGPUUtil}, {MetricQueue, f.PodQueue}} {
				list, err := l.metrics.NamespacedMetrics(svc.Namespace).GetForObjects(podGK, sel, m.name, labels.Everything())
				if err != nil {
					failed = append(failed, fmt.Sprintf("%s of %s/%s: %v", m.name, svc.Namespace, svc.Name, firstLine(err.Error())))
					continue
				}
				for _, it := range list.Items {
					m.into[svc.Namespace+"/"+it.DescribedObject.Name] = it.Value.AsApproximateFloat64()
				}
			}
		}
		if len(failed) > 0 {
			if len(failed) == 2*len(s.Services) && len(f.PodGPUUtil) == 0 && len(f.PodQueue) == 0 {
				f.PodGPUUtil, f.PodQueue = nil, nil
			}
			f.Notes = append(f.Notes, "GPU UTIL, QUEUE: custom.metrics.k8s.io: "+failed[0])
		}
	}
	if l.gatewayURL != "" && l.gatewayURL != "none" {
		svc, pool, err := readGateway(ctx, l.http, l.gatewayURL)
		if err != nil {
			f.Notes = append(f.Notes, fmt.Sprintf("IN-FLIGHT: gateway metrics %s: %v", l.gatewayURL, err))
		} else {
			f.ServiceInFlight, f.PoolInFlight = svc, pool
		}
	}
	return f
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	if len(first) > 160 {
		first = first[:160] + "…"
	}
	return first
}

// readGateway reads the gateway's in-flight gauges from its Prometheus text.
func readGateway(ctx context.Context, hc *http.Client, url string) (svc, pool map[string]float64, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing: %w", err)
	}
	svc, pool = map[string]float64{}, map[string]float64{}
	for _, m := range mfs[GatewayInFlight].GetMetric() {
		l := labelMap(m.GetLabel())
		if m.Gauge != nil {
			svc[l["namespace"]+"/"+l["service"]] += m.Gauge.GetValue()
		}
	}
	for _, m := range mfs[GatewayPoolInFlight].GetMetric() {
		l := labelMap(m.GetLabel())
		if m.Gauge != nil {
			pool[l["namespace"]+"/"+l["service"]+"/"+l["pool"]] += m.Gauge.GetValue()
		}
	}
	return svc, pool, nil
}

func labelMap[L interface {
	GetName() string
	GetValue() string
}](ls []L) map[string]string {
	out := make(map[string]string, len(ls))
	for _, l := range ls {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// PoolLive are a pool's live figures over the services' replicas on it.
type PoolLive struct {
	Replicas int
	GPUUtil  *float64 // mean over replicas with a value
	Queue    *float64 // sum
	InFlight *float64 // sum over services
}

// Combine turns raw readings into per-service and per-pool figures. A
// service's GPU utilisation is the mean over its replicas that report one,
// its queue the sum; in-flight is the gateway's (0 when the gateway
// answered without a series for the service). Without the custom metrics
// API the HPA's current metrics are used when the service scales on one of
// these metrics. Pure.
func Combine(s *Snapshot, f Figures) (map[string]ServiceMetrics, map[string]PoolLive) {
	hpa := hpaFigures(s)
	poolOf := map[string]string{}
	for i := range s.Nodes {
		poolOf[s.Nodes[i].Name] = poolOfNode(&s.Nodes[i])
	}
	type acc struct {
		util          float64
		nUtil         int
		queue         float64
		nQueue        int
		replicas      int
		inFlight      float64
		inFlightKnown bool
	}
	add := func(a *acc, key string) {
		if v, ok := f.PodGPUUtil[key]; ok {
			a.util += v
			a.nUtil++
		}
		if v, ok := f.PodQueue[key]; ok {
			a.queue += v
			a.nQueue++
		}
	}
	pools := map[string]*acc{}
	poolAcc := func(name string) *acc {
		if pools[name] == nil {
			pools[name] = &acc{}
		}
		return pools[name]
	}
	services := map[string]ServiceMetrics{}
	for i := range s.Services {
		svc := &s.Services[i]
		key := svc.Namespace + "/" + svc.Name
		var a acc
		for j := range s.Pods {
			p := &s.Pods[j]
			if p.Namespace != svc.Namespace || p.Labels["app"] != PodApp(svc.Name) || !live(p) {
				continue
			}
			pk := p.Namespace + "/" + p.Name
			add(&a, pk)
			if p.Spec.NodeName != "" {
				pa := poolAcc(poolOf[p.Spec.NodeName])
				pa.replicas++
				add(pa, pk)
			}
		}
		m := hpa[key]
		if a.nUtil > 0 {
			v := a.util / float64(a.nUtil)
			m.GPUUtil = &v
		}
		if a.nQueue > 0 {
			v := a.queue
			m.Queue = &v
		}
		if f.ServiceInFlight != nil {
			v := f.ServiceInFlight[key]
			m.InFlight = &v
		}
		services[key] = m
	}
	if f.PoolInFlight != nil {
		for k, v := range f.PoolInFlight {
			parts := strings.SplitN(k, "/", 3)
			if len(parts) != 3 {
				continue
			}
			pa := poolAcc(parts[2])
			pa.inFlight += v
		}
		for _, pa := range pools {
			pa.inFlightKnown = true
		}
	}
	out := map[string]PoolLive{}
	for name, a := range pools {
		pl := PoolLive{Replicas: a.replicas}
		if a.nUtil > 0 {
			v := a.util / float64(a.nUtil)
			pl.GPUUtil = &v
		}
		if a.nQueue > 0 {
			v := a.queue
			pl.Queue = &v
		}
		if a.inFlightKnown {
			v := a.inFlight
			pl.InFlight = &v
		}
		out[name] = pl
	}
	return services, out
}

func live(p *corev1.Pod) bool {
	return p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

// hpaFigures reads GPU utilisation, queue and running requests from the
// HPAs of services that scale on them (the fallback when the custom
// metrics API cannot be read).
func hpaFigures(s *Snapshot) map[string]ServiceMetrics {
	out := map[string]ServiceMetrics{}
	for _, svc := range s.Services {
		h, ok := s.HPAs[svc.Namespace+"/"+svc.Name+"-hpa"]
		if !ok {
			continue
		}
		var m ServiceMetrics
		for _, cm := range h.Status.CurrentMetrics {
			if cm.Pods == nil || cm.Pods.Current.AverageValue == nil {
				continue
			}
			v := cm.Pods.Current.AverageValue.AsApproximateFloat64()
			switch name := cm.Pods.Metric.Name; {
			case strings.HasPrefix(name, "DCGM_") && strings.Contains(name, "UTIL"):
				m.GPUUtil = &v
			case name == MetricQueue || name == "vllm:num_requests_waiting":
				// The HPA's value is an average per replica; the queue is a total.
				total := v * float64(max(h.Status.CurrentReplicas, 1))
				m.Queue = &total
			case name == "vllm_num_requests_running" || name == "vllm:num_requests_running":
				total := v * float64(max(h.Status.CurrentReplicas, 1))
				m.InFlight = &total
			}
		}
		out[svc.Namespace+"/"+svc.Name] = m
	}
	return out
}
