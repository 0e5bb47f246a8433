package nodepool

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/spillway-io/spillway/pkg/nodeautoscaler"
)

// scaleDown drains the nodes cordoned earlier, deletes those drained, and
// cordons the nodes the planner finds unneeded long enough.
func (r *Reconciler) scaleDown(ctx context.Context, now time.Time, in *input, pools []*poolState, up nodeautoscaler.ScaleUpPlan) {
	logger := log.FromContext(ctx)
	byName := map[string]*poolState{}
	for _, ps := range pools {
		byName[ps.np.Name] = ps
	}
	var draining []string
	for _, n := range in.nodes {
		if _, ok := n.Annotations[AnnotationScaleDown]; ok && byName[nodeautoscaler.PoolOfNode(n)] != nil {
			draining = append(draining, n.Name)
		}
	}
	// Nodes the pending pods are expected on are needed, whatever their load.
	needed := map[string]bool{}
	for _, p := range up.Placements {
		needed[p.Node] = true
	}
	st := nodeautoscaler.ScaleDownState{UnneededSince: r.st.unneededSince, Draining: draining}
	plan := nodeautoscaler.PlanScaleDown(r.snapshot(now, in, pools), st)
	r.st.unneededSince = map[string]time.Time{}
	for n, t := range plan.UnneededSince {
		if !needed[n] {
			r.st.unneededSince[n] = t
		}
	}
	for _, rm := range plan.Remove {
		if needed[rm.Node] {
			continue
		}
		node := nodeByName(in.nodes, rm.Node)
		if node == nil {
			continue
		}
		cordoned := node.DeepCopy()
		cordoned.Spec.Unschedulable = true
		if cordoned.Annotations == nil {
			cordoned.Annotations = map[string]string{}
		}
		cordoned.Annotations[AnnotationScaleDown] = rm.Reason
		if err := r.client.Patch(ctx, cordoned, client.MergeFrom(node)); err != nil {
			logger.Error(err, "cordoning an unneeded node", "node", klog.KObj(node))
			continue
		}
		*node = *cordoned
		delete(r.st.unneededSince, rm.Node)
		draining = append(draining, rm.Node)
		logger.Info("cordoned an unneeded node", "node", klog.KObj(node), "nodepool", rm.Pool, "reason", rm.Reason)
		r.events.Eventf(node, byName[rm.Pool].np, corev1.EventTypeNormal, "ScaleDown", "Cordon", "node is unneeded (%s); draining it", rm.Reason)
	}
	for _, name := range draining {
		node := nodeByName(in.nodes, name)
		if node == nil {
			continue
		}
		ps := byName[nodeautoscaler.PoolOfNode(node)]
		if ps == nil || !ps.listed {
			continue
		}
		if err := r.drain(ctx, now, node, ps, in.pods); err != nil {
			logger.Error(err, "draining a node", "node", klog.KObj(node))
		}
	}
}

// drain evicts the node's pods (honouring PodDisruptionBudgets and graceful
// termination) and, once none is left, deletes the node through the provider.
func (r *Reconciler) drain(ctx context.Context, now time.Time, node *corev1.Node, ps *poolState, pods []*corev1.Pod) error {
	logger := log.FromContext(ctx)
	left := 0
	for _, p := range pods {
		if p.Spec.NodeName != node.Name || daemonPod(p) {
			continue
		}
		left++
		if p.DeletionTimestamp != nil {
			continue // terminating gracefully
		}
		ev := &policyv1.Eviction{ObjectMeta: objMeta(p.Name)}
		ev.Namespace = p.Namespace
		err := r.client.SubResource("eviction").Create(ctx, p, ev)
		switch {
		case err == nil:
			r.events.Eventf(p, node, corev1.EventTypeNormal, "Evicted", "ScaleDown", "evicted to remove unneeded node %s", node.Name)
		case apierrors.IsTooManyRequests(err):
			logger.V(1).Info("eviction blocked by a PodDisruptionBudget; retrying later", "pod", klog.KObj(p))
		case apierrors.IsNotFound(err):
			left--
		default:
			return fmt.Errorf("evicting pod %s/%s: %w", p.Namespace, p.Name, err)
		}
	}
	if left > 0 {
		return nil
	}
	if err := ps.provider.Delete(ctx, ps.np, node.Name); err != nil {
		r.providerFailed(now, ps.np, "delete", err)
		return fmt.Errorf("deleting node %q through the provider: %w", node.Name, err)
	}
	if err := r.client.Delete(ctx, node); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting node object %q: %w", node.Name, err)
	}
	kept := ps.instances[:0]
	for _, in := range ps.instances {
		if in.Name != node.Name {
			kept = append(kept, in)
		}
	}
	ps.instances = kept
	why := fmt.Sprintf("removed node %s (%s)", node.Name, node.Annotations[AnnotationScaleDown])
	r.st.lastScaleDown[ps.np.Name] = now
	r.st.lastWhy[ps.np.Name] = why
	r.metrics.scaleDowns.WithLabelValues(ps.np.Name, "unneeded").Inc()
	r.metrics.lastScaleDown.WithLabelValues(ps.np.Name).Set(float64(now.Unix()))
	r.events.Eventf(ps.np, node, corev1.EventTypeNormal, "ScaledDown", "ScaleDown", why)
	logger.Info("scaled down", "nodepool", klog.KObj(ps.np), "node", node.Name)
	return nil
}

func daemonPod(p *corev1.Pod) bool {
	if _, mirror := p.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
		return true
	}
	for _, o := range p.OwnerReferences {
		if o.Kind == "DaemonSet" && o.Controller != nil && *o.Controller {
			return true
		}
	}
	return false
}
