package nodepool

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
)

func TestStaticMembershipAndPatch(t *testing.T) {
	pool := &spillwayv1alpha1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "gpu-v100-edge"},
		Spec: spillwayv1alpha1.NodePoolSpec{Type: spillwayv1alpha1.NodePoolStatic, Role: spillwayv1alpha1.RoleIDC,
			Labels:   map[string]string{spillwayv1alpha1.LabelACKNodePoolID: "np-idc"},
			Taints:   []corev1.Taint{{Key: "idc", Value: "true", Effect: corev1.TaintEffectPreferNoSchedule}},
			Template: spillwayv1alpha1.NodeTemplate{GPUModel: "V100"}}}
	node := func(labels map[string]string, taints ...corev1.Taint) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: labels}, Spec: corev1.NodeSpec{Taints: taints}}
	}
	wantLabels := map[string]string{spillwayv1alpha1.LabelACKNodePoolID: "np-idc", spillwayv1alpha1.LabelNodePool: "gpu-v100-edge",
		spillwayv1alpha1.LabelPoolRole: "idc", spillwayv1alpha1.LabelGPUModel: "V100", "zone": "a"}
	tests := []struct {
		name       string
		node       *corev1.Node
		member     bool
		changed    bool
		wantTaints []corev1.Taint
	}{
		{name: "carries the pool's labels", node: node(map[string]string{spillwayv1alpha1.LabelACKNodePoolID: "np-idc", "zone": "a"}),
			member: true, changed: true, wantTaints: pool.Spec.Taints},
		{name: "named by spillway.io/nodepool", node: node(map[string]string{spillwayv1alpha1.LabelNodePool: "gpu-v100-edge", "zone": "a"}),
			member: true, changed: true, wantTaints: pool.Spec.Taints},
		{name: "another pool's node", node: node(map[string]string{spillwayv1alpha1.LabelNodePool: "other", spillwayv1alpha1.LabelACKNodePoolID: "np-idc"})},
		{name: "unrelated node", node: node(map[string]string{"zone": "a"})},
		{name: "already labelled and tainted", node: node(wantLabels, pool.Spec.Taints...), member: true, wantTaints: pool.Spec.Taints},
		{name: "taint value corrected", node: node(wantLabels, corev1.Taint{Key: "idc", Value: "false", Effect: corev1.TaintEffectPreferNoSchedule}),
			member: true, changed: true, wantTaints: pool.Spec.Taints},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := MemberOf(pool, tc.node); got != tc.member {
				t.Fatalf("MemberOf = %v, want %v", got, tc.member)
			}
			if !tc.member {
				return
			}
			got, changed := StaticNodePatch(pool, tc.node)
			if changed != tc.changed {
				t.Errorf("changed = %v, want %v", changed, tc.changed)
			}
			if diff := cmp.Diff(wantLabels, got.Labels); diff != "" {
				t.Errorf("labels (-want,+got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantTaints, got.Spec.Taints); diff != "" {
				t.Errorf("taints (-want,+got):\n%s", diff)
			}
		})
	}
}

func TestUnschedulable(t *testing.T) {
	pending := &corev1.Pod{Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled,
		Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable}}}}
	gated := pending.DeepCopy()
	gated.Status.Conditions[0].Reason = corev1.PodReasonSchedulingGated
	bound := pending.DeepCopy()
	bound.Spec.NodeName = "n"
	fresh := &corev1.Pod{}
	got := []bool{Unschedulable(pending), Unschedulable(gated), Unschedulable(bound), Unschedulable(fresh)}
	if diff := cmp.Diff([]bool{true, false, false, false}, got); diff != "" {
		t.Errorf("(-want,+got):\n%s", diff)
	}
}
