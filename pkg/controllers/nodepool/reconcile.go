package nodepool

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	schedulingv1alpha1 "github.com/spillway-io/spillway/apis/scheduling/v1alpha1"
	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/pkg/cloudprovider"
	"github.com/spillway-io/spillway/pkg/nodeautoscaler"
)

// +kubebuilder:rbac:groups=spillway.io,resources=nodepools,verbs=get;list;watch
// +kubebuilder:rbac:groups=spillway.io,resources=nodepools/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=scheduling.alibabacloud.com,resources=resourcepolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=nodes/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods/eviction,verbs=create
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile runs one pass: static pools labelled, elastic pools listed,
// stuck nodes replaced, min sizes kept, pending pods given nodes, unneeded
// nodes drained and removed, status and metrics written.
func (r *Reconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	now := r.opts.Clock.Now()

	in, err := r.read(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.restoreFromStatus(in.pools)

	for _, np := range in.pools {
		if np.Spec.Type == spillwayv1alpha1.NodePoolStatic {
			if err := r.labelStaticNodes(ctx, np, in.nodes); err != nil {
				logger.Error(err, "labelling the nodes of a static pool", "nodepool", klog.KObj(np))
			}
		}
	}

	pools := r.listInstances(ctx, now, in)
	r.replaceStuck(ctx, now, in, pools)
	r.keepMinSize(ctx, now, pools)
	plan := r.scaleUp(ctx, now, in, pools)
	r.scaleDown(ctx, now, in, pools, plan)
	r.writeStatus(ctx, now, in, pools)

	requeue := r.opts.ScanInterval
	for _, p := range pools {
		if inFlight(p, in.nodes) > 0 && requeue > time.Second {
			requeue = time.Second
		}
	}
	return ctrl.Result{RequeueAfter: requeue}, nil
}

// input is what one pass reads from the cache.
type input struct {
	pools    []*spillwayv1alpha1.NodePool
	nodes    []*corev1.Node
	pods     []*corev1.Pod // bound, not finished
	pending  []*corev1.Pod // unschedulable
	policies []*schedulingv1alpha1.ResourcePolicy
}

func (r *Reconciler) read(ctx context.Context) (*input, error) {
	var (
		pools    spillwayv1alpha1.NodePoolList
		nodes    corev1.NodeList
		pods     corev1.PodList
		policies schedulingv1alpha1.ResourcePolicyList
	)
	for _, l := range []client.ObjectList{&pools, &nodes, &pods, &policies} {
		if err := r.client.List(ctx, l); err != nil {
			return nil, fmt.Errorf("listing %T: %w", l, err)
		}
	}
	in := &input{}
	for i := range pools.Items {
		in.pools = append(in.pools, &pools.Items[i])
	}
	sort.Slice(in.pools, func(i, j int) bool { return in.pools[i].Name < in.pools[j].Name })
	for i := range nodes.Items {
		in.nodes = append(in.nodes, &nodes.Items[i])
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		switch {
		case Unschedulable(p):
			in.pending = append(in.pending, p)
		case p.Spec.NodeName != "" && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed:
			in.pods = append(in.pods, p)
		}
	}
	for i := range policies.Items {
		in.policies = append(in.policies, &policies.Items[i])
	}
	return in, nil
}

// restoreFromStatus seeds the remembered scale times from the pools' status,
// so a restarted manager keeps honouring the delay after a scale-up.
func (r *Reconciler) restoreFromStatus(pools []*spillwayv1alpha1.NodePool) {
	for _, np := range pools {
		if t := np.Status.LastScaleUpTime; t != nil && r.st.lastScaleUp[np.Name].Before(t.Time) {
			r.st.lastScaleUp[np.Name] = t.Time
		}
		if t := np.Status.LastScaleDownTime; t != nil && r.st.lastScaleDown[np.Name].Before(t.Time) {
			r.st.lastScaleDown[np.Name] = t.Time
		}
	}
}

// poolState is an elastic pool with its provider and instances this pass.
type poolState struct {
	np        *spillwayv1alpha1.NodePool
	provider  cloudprovider.Provider
	instances []cloudprovider.Instance
	listed    bool // the provider answered List
}

func (r *Reconciler) listInstances(ctx context.Context, now time.Time, in *input) []*poolState {
	var out []*poolState
	for _, np := range in.pools {
		ps := &poolState{np: np}
		out = append(out, ps)
		if np.Spec.Type != spillwayv1alpha1.NodePoolElastic {
			continue
		}
		p, err := r.opts.Providers.For(np)
		if err != nil {
			r.providerFailed(now, np, "list", err)
			continue
		}
		ps.provider = p
		ins, err := p.List(ctx, np)
		if err != nil {
			r.providerFailed(now, np, "list", err)
			continue
		}
		ps.instances, ps.listed = ins, true
	}
	return out
}

// snapshot builds the planner's view of the cluster.
func (r *Reconciler) snapshot(now time.Time, in *input, pools []*poolState) nodeautoscaler.Snapshot {
	s := nodeautoscaler.Snapshot{Now: now, Nodes: in.nodes, Pods: in.pods, Policies: in.policies}
	for _, ps := range pools {
		s.Pools = append(s.Pools, nodeautoscaler.Pool{NodePool: ps.np, Instances: ps.instances,
			BackoffUntil: r.st.backoffUntil[ps.np.Name], LastScaleUp: r.st.lastScaleUp[ps.np.Name]})
	}
	return s
}

// nodeByName finds a node of the pass.
func nodeByName(nodes []*corev1.Node, name string) *corev1.Node {
	for _, n := range nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// inFlight counts the pool's instances that are not usable yet.
func inFlight(ps *poolState, nodes []*corev1.Node) int {
	n := 0
	for _, in := range ps.instances {
		node := nodeByName(nodes, in.Name)
		if node == nil || !cloudprovider.Usable(node, ps.np.Spec.Template.GPUs) {
			n++
		}
	}
	return n
}

// replaceStuck deletes the instances not usable within the pool's max
// provision time; the pool backs off, so the pending pods try another pool
// first and come back to this one afterwards.
func (r *Reconciler) replaceStuck(ctx context.Context, now time.Time, in *input, pools []*poolState) {
	logger := log.FromContext(ctx)
	for _, ps := range pools {
		if !ps.listed {
			continue
		}
		limit := nodeautoscaler.MaxProvisionTime(ps.np)
		var keep, stuck []cloudprovider.Instance
		for _, inst := range ps.instances {
			node := nodeByName(in.nodes, inst.Name)
			usable := node != nil && cloudprovider.Usable(node, ps.np.Spec.Template.GPUs)
			if !usable && now.Sub(inst.CreatedAt) >= limit {
				stuck = append(stuck, inst)
				continue
			}
			keep = append(keep, inst)
		}
		if len(stuck) == 0 {
			continue
		}
		names := instanceNames(stuck)
		if err := ps.provider.Delete(ctx, ps.np, names...); err != nil {
			r.providerFailed(now, ps.np, "delete", err)
			continue
		}
		for _, n := range names {
			if err := r.client.Delete(ctx, &corev1.Node{ObjectMeta: objMeta(n)}); client.IgnoreNotFound(err) != nil {
				logger.Error(err, "deleting the node of a stuck instance", "node", n)
			}
		}
		ps.instances = keep
		r.st.backoffUntil[ps.np.Name] = now.Add(r.opts.Backoff)
		r.metrics.scaleDowns.WithLabelValues(ps.np.Name, "provision-timeout").Add(float64(len(stuck)))
		why := fmt.Sprintf("nodes %s not usable within %s; deleted, pool backs off for %s", strings.Join(names, ", "), limit, r.opts.Backoff)
		r.st.lastWhy[ps.np.Name] = why
		r.events.Eventf(ps.np, nil, corev1.EventTypeWarning, "ProvisionTimeout", "ScaleDown", why)
		logger.Info("replacing nodes not usable in time", "nodepool", klog.KObj(ps.np), "nodes", names, "maxProvisionTime", limit)
	}
}

// keepMinSize asks for the nodes an elastic pool lacks to reach its min.
func (r *Reconciler) keepMinSize(ctx context.Context, now time.Time, pools []*poolState) {
	for _, ps := range pools {
		if !ps.listed {
			continue
		}
		lack := nodeautoscaler.MinSize(ps.np) - len(ps.instances)
		if lack <= 0 || now.Before(r.st.backoffUntil[ps.np.Name]) {
			continue
		}
		r.create(ctx, now, ps, lack, "min-size", fmt.Sprintf("pool below its min size %d", nodeautoscaler.MinSize(ps.np)), nil)
	}
}

// create asks ps's provider for count nodes and records the outcome.
func (r *Reconciler) create(ctx context.Context, now time.Time, ps *poolState, count int, reason, why string, pods []*corev1.Pod) error {
	logger := log.FromContext(ctx)
	created, err := ps.provider.Create(ctx, ps.np, count)
	callTime := r.opts.Clock.Now()
	ps.instances = append(ps.instances, created...)
	if len(created) > 0 {
		r.st.lastScaleUp[ps.np.Name] = now
		r.st.lastWhy[ps.np.Name] = fmt.Sprintf("asked for %d node(s): %s", len(created), why)
		r.metrics.scaleUps.WithLabelValues(ps.np.Name, reason).Add(float64(len(created)))
		r.metrics.lastScaleUp.WithLabelValues(ps.np.Name).Set(float64(now.Unix()))
		r.events.Eventf(ps.np, nil, corev1.EventTypeNormal, "ScaledUp", "ScaleUp", "asked for %d node(s) (%s): %s",
			len(created), strings.Join(instanceNames(created), ", "), why)
		logger.Info("scaled up", "nodepool", klog.KObj(ps.np), "nodes", instanceNames(created), "reason", reason)
		for _, p := range pods {
			if t, ok := r.st.firstSeen[p.UID]; ok {
				r.metrics.reaction.Observe(callTime.Sub(t).Seconds())
				delete(r.st.firstSeen, p.UID)
			}
			r.events.Eventf(p, ps.np, corev1.EventTypeNormal, "TriggeredScaleUp", "ScaleUp", "pool %s asked for a node for this pod", ps.np.Name)
		}
	}
	if err != nil {
		r.providerFailed(now, ps.np, "create", err)
		return err
	}
	delete(r.st.providerErr, ps.np.Name)
	return nil
}

// providerFailed backs the pool off and reports the failure.
func (r *Reconciler) providerFailed(now time.Time, np *spillwayv1alpha1.NodePool, op string, err error) {
	reason := cloudprovider.Reason(err)
	r.st.providerErr[np.Name] = err
	r.metrics.providerErrors.WithLabelValues(np.Name, op, reason).Inc()
	if op == "create" {
		r.st.backoffUntil[np.Name] = now.Add(r.opts.Backoff)
		r.events.Eventf(np, nil, corev1.EventTypeWarning, "ScaleUpFailed", "ScaleUp",
			"provider refused to create nodes (%s): %v; backing off for %s and trying the next eligible pool", reason, err, r.opts.Backoff)
		return
	}
	r.events.Eventf(np, nil, corev1.EventTypeWarning, "ProviderError", op, "%s failed (%s): %v", op, reason, err)
}

// scaleUp plans nodes for the pending pods and asks for them; a pool whose
// provider fails backs off and the plan is made again without it, so the
// pods go to the next eligible pool in the same pass.
func (r *Reconciler) scaleUp(ctx context.Context, now time.Time, in *input, pools []*poolState) nodeautoscaler.ScaleUpPlan {
	logger := log.FromContext(ctx)
	byName := map[string]*poolState{}
	for _, ps := range pools {
		byName[ps.np.Name] = ps
	}
	podByKey := map[string]*corev1.Pod{}
	for _, p := range in.pending {
		podByKey[p.Namespace+"/"+p.Name] = p
	}
	var plan nodeautoscaler.ScaleUpPlan
	for range len(pools) + 1 {
		plan = nodeautoscaler.PlanScaleUp(r.snapshot(now, in, pools), in.pending)
		failed := false
		for _, su := range plan.ScaleUps {
			ps := byName[su.Pool]
			if ps == nil || !ps.listed {
				continue
			}
			var pods []*corev1.Pod
			for _, k := range su.Pods {
				if p := podByKey[k]; p != nil {
					pods = append(pods, p)
				}
			}
			why := fmt.Sprintf("%d unschedulable pod(s): %s", len(su.Pods), strings.Join(su.Pods, ", "))
			if err := r.create(ctx, now, ps, su.Count, "pending-pods", why, pods); err != nil {
				logger.Info("provider failed; trying the next eligible pool", "nodepool", su.Pool, "err", err.Error())
				failed = true
				break
			}
		}
		if !failed {
			break
		}
	}
	r.metrics.unhelped.Set(float64(len(plan.Unhelped)))
	if len(plan.Unhelped) > 0 && logger.V(1).Enabled() {
		logger.V(1).Info("pods no new node would help", "pods", plan.Unhelped)
	}
	for _, u := range plan.Unhelped {
		p := podByKey[u.Pod]
		if p == nil || r.st.notHelped[p.UID] == u.Reason {
			continue
		}
		r.st.notHelped[p.UID] = u.Reason
		r.events.Eventf(p, nil, corev1.EventTypeNormal, "NotTriggerScaleUp", "ScaleUp", "no node pool can help: %s", u.Reason)
	}
	// Forget pods that are no longer pending.
	for uid := range r.st.notHelped {
		if !pendingUID(in.pending, uid) {
			delete(r.st.notHelped, uid)
		}
	}
	for uid := range r.st.firstSeen {
		if !pendingUID(in.pending, uid) {
			delete(r.st.firstSeen, uid)
		}
	}
	return plan
}

func pendingUID(pods []*corev1.Pod, uid types.UID) bool {
	for _, p := range pods {
		if p.UID == uid {
			return true
		}
	}
	return false
}

func instanceNames(ins []cloudprovider.Instance) []string {
	out := make([]string, 0, len(ins))
	for _, in := range ins {
		out = append(out, in.Name)
	}
	return out
}
