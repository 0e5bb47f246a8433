package inferenceservice

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
)

type podB struct{ p corev1.Pod }

func pod(name string) *podB          { return &podB{corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}}} }
func (b *podB) on(node string) *podB { b.p.Spec.NodeName = node; return b }
func (b *podB) ready() *podB {
	b.p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	return b
}
func (b *podB) terminating() *podB { b.p.DeletionTimestamp = &metav1.Time{}; return b }
func (b *podB) obj() corev1.Pod    { return b.p }

func TestComputeStatus(t *testing.T) {
	now := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	isvc := func(class spillwayv1alpha1.AutoscalerClass, minR int32) *spillwayv1alpha1.InferenceService {
		i := &spillwayv1alpha1.InferenceService{ObjectMeta: metav1.ObjectMeta{Name: "qwen-chat", Namespace: "default", Generation: 3}}
		i.Spec.Predictor = spillwayv1alpha1.PredictorSpec{AutoscalerClass: class, MinReplicas: ptr.To(minR), MaxReplicas: 3,
			Containers: []corev1.Container{{Image: "x"}}}
		return i
	}
	dep := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](3)}}
	hpaActive := &autoscalingv2.HorizontalPodAutoscaler{Status: autoscalingv2.HorizontalPodAutoscalerStatus{
		DesiredReplicas: 3,
		Conditions:      []autoscalingv2.HorizontalPodAutoscalerCondition{{Type: autoscalingv2.ScalingActive, Status: corev1.ConditionTrue, Reason: "ValidMetricFound"}},
	}}
	hpaNoMetric := &autoscalingv2.HorizontalPodAutoscaler{Status: autoscalingv2.HorizontalPodAutoscalerStatus{
		Conditions: []autoscalingv2.HorizontalPodAutoscalerCondition{{Type: autoscalingv2.ScalingActive, Status: corev1.ConditionFalse, Reason: "FailedGetPodsMetric", Message: "no metrics"}},
	}}
	type conds map[string]string // type -> status/reason
	cases := []struct {
		name      string
		isvc      *spillwayv1alpha1.InferenceService
		obs       Observed
		wantConds conds
		wantPools []spillwayv1alpha1.PoolReplicas
		wantReady int32
		wantRepl  int32
		wantDes   int32
	}{
		{
			name: "seed spilled to the cloud",
			isvc: isvc("hpa", 1),
			obs: Observed{Deployment: dep, HPA: hpaActive, Pods: []corev1.Pod{
				pod("a").on("idc-0").ready().obj(), pod("b").on("cloud-0").ready().obj(), pod("c").on("cloud-1").obj(),
				pod("d").obj(), pod("old").on("cloud-2").ready().terminating().obj(),
			}, NodePools: map[string]string{"idc-0": "GPU-V100-Edge", "cloud-0": "GPU-V100-Elastic", "cloud-1": "GPU-V100-Elastic"}},
			wantConds: conds{"Ready": "True/Serving", "PredictorReady": "True/ReplicasReady", "AutoscalerReady": "True/HPAValidMetricFound"},
			wantPools: []spillwayv1alpha1.PoolReplicas{{Pool: "GPU-V100-Edge", Replicas: 1, Ready: 1}, {Pool: "GPU-V100-Elastic", Replicas: 2, Ready: 1}},
			wantReady: 2, wantRepl: 4, wantDes: 3,
		},
		{
			name:      "no deployment yet",
			isvc:      isvc("hpa", 1),
			obs:       Observed{},
			wantConds: conds{"Ready": "False/PredictorNotReady", "PredictorReady": "False/DeploymentMissing", "AutoscalerReady": "False/HPAMissing"},
		},
		{
			name:      "hpa without metrics still serves",
			isvc:      isvc("hpa", 1),
			obs:       Observed{Deployment: dep, HPA: hpaNoMetric, Pods: []corev1.Pod{pod("a").on("n").ready().obj()}},
			wantConds: conds{"Ready": "True/Serving", "PredictorReady": "True/ReplicasReady", "AutoscalerReady": "False/HPAFailedGetPodsMetric"},
			wantPools: []spillwayv1alpha1.PoolReplicas{{Pool: "", Replicas: 1, Ready: 1}},
			wantReady: 1, wantRepl: 1, wantDes: 3,
		},
		{
			name:      "llm scaled to zero",
			isvc:      isvc("llm", 0),
			obs:       Observed{Deployment: &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](0)}}},
			wantConds: conds{"Ready": "True/Serving", "PredictorReady": "True/ScaledToZero", "AutoscalerReady": "True/LLMAutoscaler"},
		},
		{
			name:      "llm with bad annotations",
			isvc:      isvc("llm", 1),
			obs:       Observed{Deployment: dep, AutoscalerErr: errors.New("bad"), Pods: []corev1.Pod{pod("a").obj()}},
			wantConds: conds{"Ready": "False/PredictorNotReady", "PredictorReady": "False/NoReadyReplica", "AutoscalerReady": "False/InvalidAutoscalingAnnotations"},
			wantRepl:  1, wantDes: 3,
		},
		{
			name:      "invalid spec",
			isvc:      isvc("none", 1),
			obs:       Observed{SpecErr: errors.New("no container")},
			wantConds: conds{"Ready": "False/PredictorNotReady", "PredictorReady": "False/InvalidSpec", "AutoscalerReady": "False/InvalidSpec"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := ComputeStatus(tc.isvc, tc.obs, "", now)
			got := conds{}
			for _, c := range st.Conditions {
				got[c.Type] = string(c.Status) + "/" + c.Reason
				if c.ObservedGeneration != 3 {
					t.Errorf("condition %s observedGeneration %d", c.Type, c.ObservedGeneration)
				}
			}
			if d := cmp.Diff(tc.wantConds, got); d != "" {
				t.Errorf("conditions (-want,+got):\n%s", d)
			}
			if d := cmp.Diff(tc.wantPools, st.Pools); d != "" {
				t.Errorf("pools (-want,+got):\n%s", d)
			}
			if st.ReadyReplicas != tc.wantReady || st.Replicas != tc.wantRepl || st.DesiredReplicas != tc.wantDes {
				t.Errorf("replicas %d ready %d desired %d, want %d %d %d", st.Replicas, st.ReadyReplicas, st.DesiredReplicas, tc.wantRepl, tc.wantReady, tc.wantDes)
			}
			if st.URL != "http://qwen-chat-default.example.com" {
				t.Errorf("url %q", st.URL)
			}
		})
	}
}

// A second computation with the same observations keeps the conditions'
// transition times, so the controller does not write an unchanged status.
func TestComputeStatusIsStable(t *testing.T) {
	i := &spillwayv1alpha1.InferenceService{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "n"}}
	i.Spec.Predictor.AutoscalerClass = "none"
	obs := Observed{Deployment: &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1)}}}
	t1 := metav1.NewTime(time.Unix(100, 0))
	i.Status = ComputeStatus(i, obs, "x.io", t1)
	again := ComputeStatus(i, obs, "x.io", metav1.NewTime(time.Unix(200, 0)))
	if d := cmp.Diff(i.Status, again); d != "" {
		t.Errorf("status changed (-want,+got):\n%s", d)
	}
	if c := meta.FindStatusCondition(again.Conditions, ConditionReady); !c.LastTransitionTime.Equal(&t1) {
		t.Errorf("transition time moved to %v", c.LastTransitionTime)
	}
}
