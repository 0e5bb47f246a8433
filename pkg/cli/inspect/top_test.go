package inspect

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func gpuNode(name, pool string, gpus int64) corev1.Node {
	return corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{spillwayv1alpha1.LabelNodePool: pool}},
		Status: corev1.NodeStatus{
			Allocatable: corev1.ResourceList{spillwayv1alpha1.ResourceGPU: *resource.NewQuantity(gpus, resource.DecimalSI)},
			Conditions:  []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	}
}

func replica(ns, svc, name, node string, ready bool) corev1.Pod {
	p := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": PodApp(svc)}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "kserve-container",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{spillwayv1alpha1.ResourceGPU: resource.MustParse("1")}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodPending},
	}
	if node != "" {
		p.Status.Phase = corev1.PodRunning
	}
	if ready {
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	}
	return p
}

func service(ns, name string, ready, replicas, desired int32) spillwayv1alpha1.InferenceService {
	s := spillwayv1alpha1.InferenceService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	s.Status.ReadyReplicas, s.Status.Replicas, s.Status.DesiredReplicas = ready, replicas, desired
	return s
}

// topFixture: qwen-chat with replicas on the IDC pool (2) and the elastic
// pool (1) and one pending; embed with one replica whose HPA scales on
// GPU utilisation; the elastic pool has a price.
func topFixture() *Snapshot {
	s := &Snapshot{
		Now:      time.Date(2026, 11, 29, 3, 0, 0, 0, time.UTC),
		Services: []spillwayv1alpha1.InferenceService{service("default", "qwen-chat", 3, 4, 4), service("team-b", "embed", 1, 1, 1)},
		Pools: []spillwayv1alpha1.NodePool{
			{ObjectMeta: metav1.ObjectMeta{Name: "gpu-v100-edge"}, Spec: spillwayv1alpha1.NodePoolSpec{Role: spillwayv1alpha1.RoleIDC}},
			{ObjectMeta: metav1.ObjectMeta{Name: "gpu-v100-elastic"}, Spec: spillwayv1alpha1.NodePoolSpec{Role: spillwayv1alpha1.RoleElastic,
				PricePerHour: ptr.To(resource.MustParse("2.5"))}},
		},
		Nodes: []corev1.Node{gpuNode("idc-1", "gpu-v100-edge", 1), gpuNode("idc-2", "gpu-v100-edge", 2),
			gpuNode("cloud-1", "gpu-v100-elastic", 1), gpuNode("cloud-2", "gpu-v100-elastic", 1)},
		Pods: []corev1.Pod{
			replica("default", "qwen-chat", "qwen-a", "idc-1", true),
			replica("default", "qwen-chat", "qwen-b", "idc-2", true),
			replica("default", "qwen-chat", "qwen-c", "cloud-1", true),
			replica("default", "qwen-chat", "qwen-d", "", false),
			replica("team-b", "embed", "embed-a", "idc-2", true),
		},
		HPAs: map[string]autoscalingv2.HorizontalPodAutoscaler{
			"team-b/embed-hpa": {Status: autoscalingv2.HorizontalPodAutoscalerStatus{CurrentReplicas: 1, CurrentMetrics: []autoscalingv2.MetricStatus{{
				Type: autoscalingv2.PodsMetricSourceType,
				Pods: &autoscalingv2.PodsMetricStatus{Metric: autoscalingv2.MetricIdentifier{Name: MetricGPUUtil},
					Current: autoscalingv2.MetricValueStatus{AverageValue: ptr.To(resource.MustParse("41"))}},
			}}}},
		},
	}
	return s
}

func topFigures() Figures {
	return Figures{
		// embed has no value in the API: its HPA's is shown.
		PodGPUUtil:      map[string]float64{"default/qwen-a": 80, "default/qwen-b": 60, "default/qwen-c": 95},
		PodQueue:        map[string]float64{"default/qwen-a": 3, "default/qwen-b": 1, "default/qwen-c": 0, "team-b/embed-a": 2},
		ServiceInFlight: map[string]float64{"default/qwen-chat": 17},
		PoolInFlight: map[string]float64{"default/qwen-chat/gpu-v100-edge": 12, "default/qwen-chat/gpu-v100-elastic": 5,
			"team-b/embed/gpu-v100-edge": 0},
		Notes: []string{"example note"},
	}
}

func TestCombine(t *testing.T) {
	s := topFixture()
	services, pools := Combine(s, topFigures())
	f := func(v float64) *float64 { return &v }
	wantServices := map[string]ServiceMetrics{
		"default/qwen-chat": {GPUUtil: f(235.0 / 3), Queue: f(4), InFlight: f(17)},
		"team-b/embed":      {GPUUtil: f(41), Queue: f(2), InFlight: f(0)},
	}
	if diff := cmp.Diff(wantServices, services); diff != "" {
		t.Errorf("services (-want,+got):\n%s", diff)
	}
	wantPools := map[string]PoolLive{
		"gpu-v100-edge":    {Replicas: 3, GPUUtil: f(70), Queue: f(6), InFlight: f(12)},
		"gpu-v100-elastic": {Replicas: 1, GPUUtil: f(95), Queue: f(0), InFlight: f(5)},
	}
	if diff := cmp.Diff(wantPools, pools); diff != "" {
		t.Errorf("pools (-want,+got):\n%s", diff)
	}
	// No sources at all: only the HPA's figure remains.
	services, pools = Combine(s, Figures{})
	wantServices = map[string]ServiceMetrics{"default/qwen-chat": {}, "team-b/embed": {GPUUtil: f(41)}}
	if diff := cmp.Diff(wantServices, services); diff != "" {
		t.Errorf("without sources, services (-want,+got):\n%s", diff)
	}
	if got := pools["gpu-v100-edge"]; got.Replicas != 3 || got.GPUUtil != nil || got.Queue != nil || got.InFlight != nil {
		t.Errorf("without sources, edge pool %+v: want 3 replicas and no figures", got)
	}
}

// TestWriteTopGolden renders a screen; -update rewrites testdata/top.golden.
func TestWriteTopGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		fig  Figures
	}{
		{"top", topFigures()},
		{"top-no-sources", Figures{Notes: []string{
			"GPU UTIL, QUEUE: custom.metrics.k8s.io: the server could not find the requested resource",
			"IN-FLIGHT: gateway metrics http://127.0.0.1:18081/metrics: connection refused"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := topFixture()
			var pods []corev1.Pod
			pods = append(pods, s.Pods...)
			pods = append(pods, replica("kube-system", "other", "dcgm-exporter", "cloud-2", true))
			services, poolLive := Combine(s, tc.fig)
			var out bytes.Buffer
			if err := WriteTop(&out, s, WithLive(s.PoolUsage(pods), poolLive), services, tc.fig.Notes); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), out.String()); diff != "" {
				t.Errorf("screen (-want,+got):\n%s", diff)
			}
		})
	}
}
