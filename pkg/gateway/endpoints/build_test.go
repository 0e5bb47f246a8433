package endpoints

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/pkg/gateway/balancer"
	"github.com/spillway-io/spillway/pkg/gateway/routing"
)

type isvcBuilder struct {
	spillwayv1alpha1.InferenceService
}

func makeISVC(ns, name string) *isvcBuilder {
	b := &isvcBuilder{}
	b.Namespace, b.Name = ns, name
	b.Spec.Predictor.Containers = []corev1.Container{{Name: "kserve-container"}}
	return b
}
func (b *isvcBuilder) Command(c ...string) *isvcBuilder {
	b.Spec.Predictor.Containers[0].Command = c
	return b
}
func (b *isvcBuilder) Annotation(k, v string) *isvcBuilder {
	if b.Annotations == nil {
		b.Annotations = map[string]string{}
	}
	b.Annotations[k] = v
	return b
}
func (b *isvcBuilder) Class(c spillwayv1alpha1.AutoscalerClass) *isvcBuilder {
	b.Spec.Predictor.AutoscalerClass = c
	return b
}
func (b *isvcBuilder) Timeout(s int64) *isvcBuilder {
	b.Spec.Predictor.TimeoutSeconds = &s
	return b
}
func (b *isvcBuilder) Obj() spillwayv1alpha1.InferenceService { return b.InferenceService }

type sliceEndpoint struct {
	ip, node string
	ready    *bool
}

func makeSlice(ns, name, service string, port int32, eps ...sliceEndpoint) discoveryv1.EndpointSlice {
	s := discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{LabelServiceName: service}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for _, e := range eps {
		ep := discoveryv1.Endpoint{Addresses: []string{e.ip}, Conditions: discoveryv1.EndpointConditions{Ready: e.ready}}
		if e.node != "" {
			ep.NodeName = ptr.To(e.node)
		}
		s.Endpoints = append(s.Endpoints, ep)
	}
	return s
}

func pool(name string, role spillwayv1alpha1.NodePoolRole, price string) spillwayv1alpha1.NodePool {
	p := spillwayv1alpha1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: name}}
	p.Spec.Role = role
	if price != "" {
		q := resource.MustParse(price)
		p.Spec.PricePerHour = &q
	}
	return p
}

func TestBuild(t *testing.T) {
	state := State{
		Services: []spillwayv1alpha1.InferenceService{
			makeISVC("default", "qwen-chat").Command("sh", "-c",
				"python3 -m vllm.entrypoints.openai.api_server --port 8080 --served-model-name qwen --model /mnt/models/Qwen").
				Timeout(30).Obj(),
			makeISVC("team", "llama").Command("vllm", "serve", "--served-model-name=llama-3").
				Annotation(AnnotationBalancer, "p2c").Annotation(AnnotationSaturation, "3").
				Annotation(AnnotationPrefixAffinity, "true").Annotation(AnnotationPoolPreference, "false").Obj(),
			makeISVC("default", "cold").Obj(),
			makeISVC("default", "elastic").Class(spillwayv1alpha1.AutoscalerLLM).Obj(),
		},
		Slices: []discoveryv1.EndpointSlice{
			makeSlice("default", "qwen-chat-predictor-abc", "qwen-chat-predictor", 8080,
				sliceEndpoint{ip: "10.0.0.2", node: "cloud-1"},
				sliceEndpoint{ip: "10.0.0.1", node: "idc-1", ready: ptr.To(true)},
				sliceEndpoint{ip: "10.0.0.3", node: "idc-1", ready: ptr.To(false)},
				sliceEndpoint{ip: "10.0.0.4", node: "stranger"}),
			// Same service name in another namespace: not ours.
			makeSlice("other", "qwen-chat-predictor-x", "qwen-chat-predictor", 8080, sliceEndpoint{ip: "10.9.9.9"}),
			makeSlice("team", "llama-predictor-1", "llama-predictor", 9000, sliceEndpoint{ip: "10.1.0.1", node: "idc-1"}),
		},
		NodePools: map[string]string{"idc-1": "GPU-V100-Edge", "cloud-1": "GPU-V100-Elastic"},
		Pools: []spillwayv1alpha1.NodePool{
			pool("GPU-V100-Elastic", spillwayv1alpha1.RoleElastic, "2.5"),
			pool("GPU-V100-Edge", spillwayv1alpha1.RoleIDC, "9"),
			pool("default-nodepool", spillwayv1alpha1.RoleControl, ""),
		},
	}
	got, err := Build(state)
	if err != nil {
		t.Fatal(err)
	}
	want := []routing.Service{
		{
			Namespace: "default", Name: "qwen-chat", Model: "qwen", Timeout: 30 * time.Second,
			Policy: balancer.Policy{Algorithm: balancer.LeastRequest},
			Endpoints: []routing.Endpoint{
				{Address: "10.0.0.1:8080", Pool: "GPU-V100-Edge", PoolRank: 0},
				{Address: "10.0.0.2:8080", Pool: "GPU-V100-Elastic", PoolRank: 1},
				{Address: "10.0.0.4:8080", PoolRank: UnknownPoolRank},
			},
		},
		{
			Namespace: "team", Name: "llama", Model: "llama-3",
			Policy:    balancer.Policy{Algorithm: balancer.PowerOfTwo, Saturation: 3, PrefixAffinity: true},
			Endpoints: []routing.Endpoint{{Address: "10.1.0.1:9000", Pool: "GPU-V100-Edge"}},
		},
		{Namespace: "default", Name: "cold", Model: "cold", Policy: balancer.Policy{Algorithm: balancer.LeastRequest}},
		// Pool preference by default only under the llm autoscaler.
		{Namespace: "default", Name: "elastic", Model: "elastic", Policy: balancer.Policy{Algorithm: balancer.LeastRequest, PoolPreference: true}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Build (-want,+got):\n%s", d)
	}
}

func TestBuildFromPods(t *testing.T) {
	pod := func(name, ip, node string, ready bool, app string) corev1.Pod {
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Labels: map[string]string{"app": app}}}
		p.Spec.NodeName = node
		p.Status.PodIP = ip
		st := corev1.ConditionFalse
		if ready {
			st = corev1.ConditionTrue
		}
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}
		return p
	}
	got, err := Build(State{
		FromPods: true,
		Services: []spillwayv1alpha1.InferenceService{makeISVC("default", "qwen-chat").Command("sh", "-c", "vllm serve --port 9000 --served-model-name qwen").Obj()},
		Pods: []corev1.Pod{
			pod("a", "127.0.1.2", "cloud-1", true, "isvc.qwen-chat-predictor"),
			pod("b", "127.0.1.1", "idc-1", true, "isvc.qwen-chat-predictor"),
			pod("starting", "127.0.1.3", "idc-1", false, "isvc.qwen-chat-predictor"),
			pod("other", "127.0.1.4", "idc-1", true, "isvc.other-predictor"),
		},
		// Slices are ignored in this mode.
		Slices:    []discoveryv1.EndpointSlice{makeSlice("default", "s", "qwen-chat-predictor", 1, sliceEndpoint{ip: "10.0.0.1"})},
		NodePools: map[string]string{"idc-1": "idc", "cloud-1": "elastic"},
		Pools:     []spillwayv1alpha1.NodePool{pool("idc", spillwayv1alpha1.RoleIDC, ""), pool("elastic", spillwayv1alpha1.RoleElastic, "1")},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []routing.Endpoint{{Address: "127.0.1.1:9000", Pool: "idc"}, {Address: "127.0.1.2:9000", Pool: "elastic", PoolRank: 1}}
	if d := cmp.Diff(want, got[0].Endpoints); d != "" {
		t.Errorf("endpoints from pods (-want,+got):\n%s", d)
	}
}

func TestServerPort(t *testing.T) {
	cases := []struct {
		isvc spillwayv1alpha1.InferenceService
		want int32
	}{
		{makeISVC("n", "a").Command("sh", "-c", "python3 -m vllm.entrypoints.openai.api_server --port 8081").Obj(), 8081},
		{makeISVC("n", "a").Command("vllm", "serve", "--port=7000").Obj(), 7000},
		{makeISVC("n", "a").Command("vllm", "serve", "--port", "--model", "x").Obj(), 8080},
		{makeISVC("n", "a").Obj(), 8080},
	}
	for i, tc := range cases {
		if got := ServerPort(&tc.isvc); got != tc.want {
			t.Errorf("case %d: ServerPort = %d, want %d", i, got, tc.want)
		}
	}
}

func TestBadAnnotations(t *testing.T) {
	_, err := Build(State{Services: []spillwayv1alpha1.InferenceService{
		makeISVC("ns", "a").Annotation(AnnotationBalancer, "random").Annotation(AnnotationSaturation, "-1").Obj(),
	}})
	if err == nil || !strings.Contains(err.Error(), "ns/a") || !strings.Contains(err.Error(), AnnotationSaturation) ||
		!strings.Contains(err.Error(), AnnotationBalancer) {
		t.Errorf("err = %v", err)
	}
}

func TestPoolRanks(t *testing.T) {
	got := PoolRanks([]spillwayv1alpha1.NodePool{
		pool("spot", spillwayv1alpha1.RoleElastic, "1"),
		pool("ondemand", spillwayv1alpha1.RoleElastic, "3"),
		pool("ondemand-b", spillwayv1alpha1.RoleElastic, "3000m"),
		pool("idc", spillwayv1alpha1.RoleIDC, "50"),
		pool("noprice", spillwayv1alpha1.RoleElastic, ""),
	})
	want := map[string]int{"idc": 0, "spot": 1, "ondemand": 2, "ondemand-b": 2, "noprice": 3}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("PoolRanks (-want,+got):\n%s", d)
	}
}

func TestServedModelName(t *testing.T) {
	cases := map[string][]string{
		"qwen":   {"sh", "-c", "python3 -m vllm.entrypoints.openai.api_server --served-model-name qwen --port 8080"},
		"a":      {"vllm", "serve", "--served-model-name=a"},
		"quoted": {"sh", "-c", `vllm serve --served-model-name "quoted"`},
		"":       {"vllm", "serve", "--served-model-name"},
	}
	for want, argv := range cases {
		if got := ServedModelName(argv); got != want {
			t.Errorf("ServedModelName(%q) = %q, want %q", argv, got, want)
		}
	}
}

func FuzzServedModelName(f *testing.F) {
	f.Add("sh -c 'vllm --served-model-name x'")
	f.Fuzz(func(t *testing.T, cmd string) {
		m := ServedModelName([]string{cmd})
		if strings.ContainsAny(m, " \t\n") {
			t.Fatalf("model name %q has spaces", m)
		}
	})
}
