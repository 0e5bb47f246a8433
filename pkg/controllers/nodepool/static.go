package nodepool

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/pkg/cloudprovider"
)

// MemberOf reports whether node belongs to the static pool np: it carries
// spillway.io/nodepool=<pool>, or every one of the pool's spec.labels.
func MemberOf(np *spillwayv1alpha1.NodePool, node *corev1.Node) bool {
	if v, ok := node.Labels[spillwayv1alpha1.LabelNodePool]; ok {
		return v == np.Name
	}
	if len(np.Spec.Labels) == 0 {
		return false
	}
	for k, v := range np.Spec.Labels {
		if node.Labels[k] != v {
			return false
		}
	}
	return true
}

// StaticNodePatch returns node with the pool's labels and taints added, and
// whether anything changed.
func StaticNodePatch(np *spillwayv1alpha1.NodePool, node *corev1.Node) (*corev1.Node, bool) {
	out := node.DeepCopy()
	changed := false
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	for k, v := range cloudprovider.NodeLabels(np) {
		if out.Labels[k] != v {
			out.Labels[k] = v
			changed = true
		}
	}
	for _, t := range np.Spec.Taints {
		found := false
		for _, have := range out.Spec.Taints {
			if have.Key == t.Key && have.Effect == t.Effect {
				found = have.Value == t.Value
				break
			}
		}
		if !found {
			out.Spec.Taints = setTaint(out.Spec.Taints, t)
			changed = true
		}
	}
	return out, changed
}

func setTaint(ts []corev1.Taint, t corev1.Taint) []corev1.Taint {
	for i := range ts {
		if ts[i].Key == t.Key && ts[i].Effect == t.Effect {
			ts[i] = t
			return ts
		}
	}
	return append(ts, t)
}

// labelStaticNodes puts the static pool's labels and taints on its nodes.
func (r *Reconciler) labelStaticNodes(ctx context.Context, np *spillwayv1alpha1.NodePool, nodes []*corev1.Node) error {
	for _, n := range nodes {
		if !MemberOf(np, n) {
			continue
		}
		want, changed := StaticNodePatch(np, n)
		if !changed {
			continue
		}
		if err := r.client.Patch(ctx, want, client.MergeFrom(n)); err != nil {
			return fmt.Errorf("labelling node %q for pool %q: %w", n.Name, np.Name, err)
		}
		*n = *want
	}
	return nil
}

func objMeta(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name} }
