package cloudprovider

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
)

func TestErrors(t *testing.T) {
	tests := []struct {
		err                     error
		quota, stock, transient bool
		reason                  string
	}{
		{err: NewError(ErrQuota, "create", "p", "8 of 8 used"), quota: true, reason: "QuotaExceeded"},
		{err: fmt.Errorf("wrapped: %w", NewError(ErrOutOfStock, "create", "p", "")), stock: true, reason: "OutOfStock"},
		{err: NewError(ErrTransient, "list", "p", "throttled"), transient: true, reason: "Transient"},
		{err: errors.New("boom"), reason: "ProviderError"},
		{err: nil, reason: ""},
	}
	for _, tc := range tests {
		got := []any{IsQuota(tc.err), IsOutOfStock(tc.err), IsTransient(tc.err), Reason(tc.err)}
		want := []any{tc.quota, tc.stock, tc.transient, tc.reason}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%v (-want,+got):\n%s", tc.err, diff)
		}
	}
	if got, want := NewError(ErrQuota, "create", "gpu", "8 of 8 used").Error(), `create pool "gpu": quota exceeded: 8 of 8 used`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestRegistry(t *testing.T) {
	r := Registry{"sim": nil}
	pool := &spillwayv1alpha1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "p"}}
	if _, err := r.For(pool); err == nil {
		t.Errorf("a pool without provider must be an error")
	}
	pool.Spec.Provider = &spillwayv1alpha1.ProviderSpec{Name: "aws"}
	if _, err := r.For(pool); err == nil || err.Error() != `node pool "p": unknown provider "aws" (known: [sim])` {
		t.Errorf("unknown provider error = %v", err)
	}
}

func TestTemplateNodeAndUsable(t *testing.T) {
	pool := &spillwayv1alpha1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "gpu-v100-elastic"},
		Spec: spillwayv1alpha1.NodePoolSpec{Role: spillwayv1alpha1.RoleElastic,
			Labels:   map[string]string{spillwayv1alpha1.LabelACKNodePoolID: "np1"},
			Taints:   []corev1.Taint{{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule}},
			Template: spillwayv1alpha1.NodeTemplate{CPU: ptr.To(resource.MustParse("8")), GPUs: 2, GPUModel: "V100", Pods: ptr.To[int32](16)}}}
	n := TemplateNode(pool, "gpu-v100-elastic-1", "fake://x")
	wantLabels := map[string]string{spillwayv1alpha1.LabelACKNodePoolID: "np1", spillwayv1alpha1.LabelNodePool: "gpu-v100-elastic",
		spillwayv1alpha1.LabelPoolRole: "elastic", spillwayv1alpha1.LabelGPUModel: "V100", corev1.LabelHostname: "gpu-v100-elastic-1"}
	if diff := cmp.Diff(wantLabels, n.Labels); diff != "" {
		t.Errorf("labels (-want,+got):\n%s", diff)
	}
	gpu := n.Status.Allocatable[spillwayv1alpha1.ResourceGPU]
	pods := n.Status.Allocatable[corev1.ResourcePods]
	if gpu.Value() != 2 || pods.Value() != 16 || len(n.Spec.Taints) != 1 {
		t.Errorf("template node: gpu %v pods %v taints %v", gpu.String(), pods.String(), n.Spec.Taints)
	}
	if !Usable(n, 2) {
		t.Errorf("a Ready template node with its GPUs must be usable")
	}
	noGPU := n.DeepCopy()
	delete(noGPU.Status.Allocatable, spillwayv1alpha1.ResourceGPU)
	notReady := n.DeepCopy()
	notReady.Status.Conditions[0].Status = corev1.ConditionFalse
	tainted := n.DeepCopy()
	tainted.Spec.Taints = append(tainted.Spec.Taints, corev1.Taint{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoSchedule})
	for name, node := range map[string]*corev1.Node{"no GPUs yet": noGPU, "not ready": notReady, "not-ready taint": tainted} {
		if Usable(node, 2) {
			t.Errorf("%s: node must not be usable", name)
		}
	}
	if !Usable(noGPU, 0) {
		t.Errorf("a node of a pool without GPUs is usable without them")
	}
}
