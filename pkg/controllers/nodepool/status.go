package nodepool

import (
	"context"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/pkg/cloudprovider"
	"github.com/spillway-io/spillway/pkg/nodeautoscaler"
)

// Condition types of a NodePool.
const (
	ConditionReady         = "Ready"
	ConditionScalingUp     = "ScalingUp"
	ConditionScalingDown   = "ScalingDown"
	ConditionProviderError = "ProviderError"
)

// writeStatus patches each pool's status when it changed and sets the gauges.
func (r *Reconciler) writeStatus(ctx context.Context, now time.Time, in *input, pools []*poolState) {
	logger := log.FromContext(ctx)
	for _, ps := range pools {
		np := ps.np
		want := np.Status.DeepCopy()
		want.ObservedGeneration = np.Generation
		size, ready, draining := 0, 0, 0
		for _, n := range in.nodes {
			member := nodeautoscaler.PoolOfNode(n) == np.Name
			if np.Spec.Type == spillwayv1alpha1.NodePoolStatic {
				member = MemberOf(np, n)
			}
			if !member {
				continue
			}
			size++
			if cloudprovider.Usable(n, np.Spec.Template.GPUs) && !n.Spec.Unschedulable {
				ready++
			}
			if _, ok := n.Annotations[AnnotationScaleDown]; ok {
				draining++
			}
		}
		flying := 0
		desired := size
		if np.Spec.Type == spillwayv1alpha1.NodePoolElastic {
			flying = inFlight(ps, in.nodes)
			if ps.listed {
				desired = len(ps.instances) - draining
			}
		}
		want.Size, want.Ready, want.InFlight, want.Desired = int32(size), int32(ready), int32(flying), int32(max(desired, 0))
		if t, ok := r.st.lastScaleUp[np.Name]; ok && !t.IsZero() {
			want.LastScaleUpTime = &metav1.Time{Time: t}
		}
		if t, ok := r.st.lastScaleDown[np.Name]; ok && !t.IsZero() {
			want.LastScaleDownTime = &metav1.Time{Time: t}
		}
		why := r.st.lastWhy[np.Name]
		setCond(want, now, np.Generation, ConditionReady, ready > 0 || (size == 0 && desired == 0), "Nodes",
			plural(ready, "node is usable", "nodes are usable"))
		setCond(want, now, np.Generation, ConditionScalingUp, flying > 0, "InFlight", orDefault(why, "no scale-up"))
		setCond(want, now, np.Generation, ConditionScalingDown, draining > 0, "Draining", orDefault(why, "no scale-down"))
		if err := r.st.providerErr[np.Name]; err != nil {
			setCond(want, now, np.Generation, ConditionProviderError, true, cloudprovider.Reason(err), err.Error())
		} else {
			setCond(want, now, np.Generation, ConditionProviderError, false, "OK", "the provider's last call succeeded")
		}

		r.metrics.nodes.WithLabelValues(np.Name, "size").Set(float64(want.Size))
		r.metrics.nodes.WithLabelValues(np.Name, "ready").Set(float64(want.Ready))
		r.metrics.nodes.WithLabelValues(np.Name, "in_flight").Set(float64(want.InFlight))
		r.metrics.nodes.WithLabelValues(np.Name, "desired").Set(float64(want.Desired))

		if equality.Semantic.DeepEqual(&np.Status, want) {
			continue
		}
		patched := np.DeepCopy()
		patched.Status = *want
		if err := r.client.Status().Patch(ctx, patched, client.MergeFrom(np)); client.IgnoreNotFound(err) != nil {
			logger.Error(err, "writing node pool status", "nodepool", klog.KObj(np))
		}
	}
}

// setCond sets a condition, keeping its transition time when the status is unchanged.
func setCond(st *spillwayv1alpha1.NodePoolStatus, now time.Time, gen int64, typ string, status bool, reason, msg string) {
	s := metav1.ConditionFalse
	if status {
		s = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: typ, Status: s, Reason: reason, Message: msg,
		ObservedGeneration: gen, LastTransitionTime: metav1.NewTime(now)})
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return itoa(n) + " " + many
}

func itoa(n int) string { return strconv.Itoa(n) }

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
