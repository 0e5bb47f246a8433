package llm

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
)

func isvcWith(metric string, target *int32, cc int64, ann map[string]string) *spillwayv1alpha1.InferenceService {
	i := &spillwayv1alpha1.InferenceService{}
	i.Name, i.Namespace, i.Annotations = "s", "ns", ann
	i.Spec.Predictor = spillwayv1alpha1.PredictorSpec{
		Containers: []corev1.Container{{Image: "x"}}, AutoscalerClass: spillwayv1alpha1.AutoscalerLLM,
		MinReplicas: ptr.To[int32](0), MaxReplicas: 4, ScaleMetric: metric, ScaleTarget: target, ContainerConcurrency: cc,
	}
	return i
}

func TestSpecFor(t *testing.T) {
	def := DefaultSpec()
	def.MinReplicas, def.MaxReplicas = 0, 4
	with := func(f func(*Spec)) Spec { s := def; f(&s); return s }
	cases := []struct {
		name    string
		isvc    *spillwayv1alpha1.InferenceService
		want    Spec
		wantErr string
	}{
		{name: "defaults", isvc: isvcWith("", nil, 0, nil), want: def},
		{name: "concurrency target", isvc: isvcWith("concurrency", ptr.To[int32](12), 0, nil), want: with(func(s *Spec) { s.TargetInFlight = 12 })},
		{name: "container concurrency", isvc: isvcWith("", nil, 10, nil), want: with(func(s *Spec) { s.TargetInFlight = 7 })},
		{name: "queue target", isvc: isvcWith("vllm:num_requests_waiting", ptr.To[int32](3), 0, nil), want: with(func(s *Spec) { s.TargetWaiting = 3 })},
		{name: "kv target in percent", isvc: isvcWith("vllm:kv_cache_usage_perc", ptr.To[int32](70), 0, nil), want: with(func(s *Spec) { s.TargetKVCache = 0.7 })},
		{name: "annotations win", isvc: isvcWith("concurrency", ptr.To[int32](12), 0, map[string]string{
			AnnotationTargetInFlight: "4", AnnotationScaleDownDelay: "30s", AnnotationStableWindow: "20s",
			AnnotationPanicWindow: "4s", AnnotationPanicThreshold: "3", AnnotationTargetKVCache: "0", "other.io/x": "y",
		}), want: with(func(s *Spec) {
			s.TargetInFlight, s.ScaleDownDelay, s.StableWindow, s.PanicWindow, s.PanicThreshold, s.TargetKVCache = 4, 30*time.Second, 20*time.Second, 4*time.Second, 3, 0
		})},
		{name: "bad values all reported", isvc: isvcWith("", nil, 0, map[string]string{
			AnnotationTargetInFlight: "lots", AnnotationScaleDownDelay: "-1s", AnnotationPrefix + "typo": "1",
		}), wantErr: "annotation autoscaling.spillway.io/scale-down-delay=\"-1s\": want a duration in [0s, 1h0m0s] such as 60s\n" +
			"annotation autoscaling.spillway.io/target-in-flight=\"lots\": want a number in [0.01, 1e+06]\n" +
			"annotation autoscaling.spillway.io/typo=\"1\": unknown autoscaling annotation"},
		{name: "panic window longer than stable", isvc: isvcWith("", nil, 0, map[string]string{AnnotationPanicWindow: "90s"}),
			wantErr: "the panic window 1m30s is longer than the stable window 1m0s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SpecFor(tc.isvc)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("spec (-want,+got):\n%s", d)
			}
		})
	}
}

func FuzzSpecFor(f *testing.F) {
	f.Add("target-in-flight", "8")
	f.Add("scale-down-delay", "1m")
	f.Add("panic-threshold", "NaN")
	f.Fuzz(func(t *testing.T, key, value string) {
		s, err := SpecFor(isvcWith("", nil, 0, map[string]string{AnnotationPrefix + key: value}))
		if err != nil {
			return
		}
		if !(s.TargetInFlight > 0) || s.StableWindow <= 0 || s.PanicWindow > s.StableWindow || s.ScaleDownDelay < 0 ||
			!(s.PanicThreshold > 1) || s.TargetKVCache < 0 || s.TargetKVCache > 1 || !(s.TargetWaiting >= 0) {
			t.Fatalf("accepted %s=%q into a bad spec %+v", key, value, s)
		}
	})
}
