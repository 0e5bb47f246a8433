// Package resourcepolicy is the kube-scheduler framework plugin that applies
// ResourcePolicies (pkg/resourcepolicy) while scheduling.
//
//   - PreFilter matches the pod to a policy (Skip when none: no cost for other
//     pods), computes its Plan on the scheduler's own snapshot (which holds
//     the assumed pods) and rejects the pod with the plan's explanation when
//     no unit and no other node is allowed, on a policy conflict or when a
//     matchLabelKeys label is missing.
//   - Filter rejects, as UnschedulableAndUnresolvable, the nodes of units the
//     plan does not allow now (and nodes outside every unit under required).
//   - Score ranks nodes by the order of their unit in the plan; give the
//     plugin a large weight so unit order dominates the other scores.
//   - PostFilter, when the plan waits at a unit until a deadline
//     (TimeoutOrExceedMax), re-activates the pod at that deadline.
//   - PreBind writes the unit's podLabels/podAnnotations on the pod and
//     records a "ResourcePolicyUnit" event naming the chosen unit.
//
// Preemption is the upstream DefaultPreemption: it considers only nodes the
// plan allows, since the others are UnschedulableAndUnresolvable. That is
// preemptPolicy AfterAllUnits: preemption runs after the pod failed on every
// unit it may use in the cycle. BeforeNextUnit is not distinguished yet (it
// behaves as AfterAllUnits); see docs/scheduling.md.
package resourcepolicy

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/utils/clock"

	schedulingv1alpha1 "github.com/spillway-io/spillway/apis/scheduling/v1alpha1"
	"github.com/spillway-io/spillway/pkg/resourcepolicy"
)

// Name is the plugin's name in a KubeSchedulerConfiguration.
const Name = "SpillwayResourcePolicy"

const stateKey fwk.StateKey = Name

// Plugin applies ResourcePolicies.
type Plugin struct {
	handle   fwk.Handle
	policies policyLister
	clock    clock.WithTicker

	mu     sync.Mutex
	timers map[types.UID]clock.Timer
}

// policyLister lists the policies of a namespace.
type policyLister interface {
	List(namespace string) []*schedulingv1alpha1.ResourcePolicy
}

var (
	_ fwk.PreFilterPlugin  = (*Plugin)(nil)
	_ fwk.FilterPlugin     = (*Plugin)(nil)
	_ fwk.PreScorePlugin   = (*Plugin)(nil)
	_ fwk.ScorePlugin      = (*Plugin)(nil)
	_ fwk.PostFilterPlugin = (*Plugin)(nil)
	_ fwk.PreBindPlugin    = (*Plugin)(nil)
)

// New is the plugin factory for app.WithPlugin(Name, New). It starts an
// informer on ResourcePolicies built from the handle's kubeconfig.
func New(ctx context.Context, _ runtime.Object, h fwk.Handle) (fwk.Plugin, error) {
	dyn, err := dynamic.NewForConfig(h.KubeConfig())
	if err != nil {
		return nil, fmt.Errorf("building the ResourcePolicy client: %w", err)
	}
	gvr := schedulingv1alpha1.GroupVersion.WithResource("resourcepolicies")
	factory := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	inf := factory.ForResource(gvr).Informer()
	if err := inf.SetTransform(toPolicy); err != nil {
		return nil, err
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return nil, fmt.Errorf("ResourcePolicy informer did not sync")
	}
	return NewWithLister(h, &informerLister{indexer: inf.GetIndexer()}, clock.RealClock{}), nil
}

// NewWithLister builds the plugin on any policy source and clock.
func NewWithLister(h fwk.Handle, l policyLister, c clock.WithTicker) *Plugin {
	return &Plugin{handle: h, policies: l, clock: c, timers: map[types.UID]clock.Timer{}}
}

func toPolicy(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	rp := &schedulingv1alpha1.ResourcePolicy{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, rp); err != nil {
		return nil, fmt.Errorf("decoding ResourcePolicy %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	return rp, nil
}

type informerLister struct{ indexer cache.Indexer }

func (l *informerLister) List(ns string) []*schedulingv1alpha1.ResourcePolicy {
	objs, err := l.indexer.ByIndex(cache.NamespaceIndex, ns)
	if err != nil {
		return nil
	}
	out := make([]*schedulingv1alpha1.ResourcePolicy, 0, len(objs))
	for _, o := range objs {
		if rp, ok := o.(*schedulingv1alpha1.ResourcePolicy); ok {
			out = append(out, rp)
		}
	}
	return out
}

// Name returns the plugin name.
func (p *Plugin) Name() string { return Name }

type state struct {
	plan resourcepolicy.Plan
}

func (s *state) Clone() fwk.StateData { return s }

func readState(cs fwk.CycleState) (*state, bool) {
	d, err := cs.Read(stateKey)
	if err != nil {
		return nil, false
	}
	s, ok := d.(*state)
	return s, ok
}

// PreFilter computes the pod's plan.
func (p *Plugin) PreFilter(ctx context.Context, cs fwk.CycleState, pod *corev1.Pod, nodes []fwk.NodeInfo) (*fwk.PreFilterResult, *fwk.Status) {
	pols := p.policies.List(pod.Namespace)
	if len(pols) == 0 {
		return nil, fwk.NewStatus(fwk.Skip)
	}
	rp, err := resourcepolicy.NewSnapshot(pols, nil, nil).Match(pod)
	if err != nil {
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, err.Error())
	}
	if rp == nil {
		return nil, fwk.NewStatus(fwk.Skip)
	}
	sel := labels.SelectorFromSet(rp.Spec.Selector)
	var nodeObjs []*corev1.Node
	var pods []*corev1.Pod
	if !needsCounts(rp) {
		nodes = nil // the plan does not depend on what the units hold
	}
	for _, ni := range nodes {
		n := ni.Node()
		if n == nil {
			continue
		}
		nodeObjs = append(nodeObjs, n)
		for _, pi := range ni.GetPods() {
			q := pi.GetPod()
			if q.Namespace == pod.Namespace && q.UID != pod.UID && sel.Matches(labels.Set(q.Labels)) {
				pods = append(pods, q)
			}
		}
	}
	snap := resourcepolicy.NewSnapshot([]*schedulingv1alpha1.ResourcePolicy{rp}, nodeObjs, pods)
	plan, err := snap.PlanFor(rp, pod, p.clock.Now())
	if err != nil {
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, err.Error())
	}
	cs.Write(stateKey, &state{plan: plan})
	if len(plan.Units) == 0 && !plan.Others {
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, plan.Explain())
	}
	klog.FromContext(ctx).V(4).Info("ResourcePolicy plan", "pod", klog.KObj(pod), "policy", klog.KObj(rp),
		"units", len(plan.Units), "others", plan.Others, "waiting", plan.Wait != nil)
	return nil, nil
}

// needsCounts tells whether rp's plans depend on the pods its units hold:
// only max, maxResources and LackResourceAndNoTerminating look at them.
func needsCounts(rp *schedulingv1alpha1.ResourcePolicy) bool {
	if resourcepolicy.TryNext(rp) == schedulingv1alpha1.LackResourceAndNoTerminating {
		return true
	}
	for i := range rp.Spec.Units {
		if rp.Spec.Units[i].Max != nil || len(rp.Spec.Units[i].MaxResources) > 0 {
			return true
		}
	}
	return false
}

// PreFilterExtensions is nil: counts come from the cycle's snapshot.
func (p *Plugin) PreFilterExtensions() fwk.PreFilterExtensions { return nil }

// Filter rejects nodes the plan does not allow.
func (p *Plugin) Filter(_ context.Context, cs fwk.CycleState, pod *corev1.Pod, ni fwk.NodeInfo) *fwk.Status {
	s, ok := readState(cs)
	if !ok {
		return nil
	}
	unit := resourcepolicy.UnitOf(s.plan.Policy, ni.Node())
	if s.plan.Allows(unit) {
		return nil
	}
	return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, reject(&s.plan, unit))
}

// reject is the per-node reason; the scheduler sums identical reasons.
func reject(plan *resourcepolicy.Plan, unit int) string {
	key := resourcepolicy.Key(plan.Policy)
	if unit < 0 {
		return fmt.Sprintf("node(s) outside the units of ResourcePolicy %s (strategy required)", key)
	}
	for _, s := range plan.Skipped {
		if s.Index == unit {
			return fmt.Sprintf("node(s) in unit %d of ResourcePolicy %s, which %s", unit, key, s.Reason)
		}
	}
	if plan.Wait != nil {
		return fmt.Sprintf("node(s) in unit %d of ResourcePolicy %s, not allowed while the pod waits at unit %d: %s",
			unit, key, plan.Wait.Index, plan.Wait.Reason)
	}
	return fmt.Sprintf("node(s) in unit %d of ResourcePolicy %s, not allowed now", unit, key)
}

// PreScore skips scoring for pods without a policy.
func (p *Plugin) PreScore(_ context.Context, cs fwk.CycleState, _ *corev1.Pod, _ []fwk.NodeInfo) *fwk.Status {
	if _, ok := readState(cs); !ok {
		return fwk.NewStatus(fwk.Skip)
	}
	return nil
}

// Score ranks nodes by unit order.
func (p *Plugin) Score(_ context.Context, cs fwk.CycleState, _ *corev1.Pod, ni fwk.NodeInfo) (int64, *fwk.Status) {
	s, ok := readState(cs)
	if !ok {
		return 0, nil
	}
	return score(&s.plan, resourcepolicy.UnitOf(s.plan.Policy, ni.Node())), nil
}

func score(plan *resourcepolicy.Plan, unit int) int64 {
	rank := plan.Rank(unit)
	if rank < 0 {
		return 0
	}
	steps := int64(len(plan.Units) + 1)
	return fwk.MaxNodeScore * (steps - int64(rank)) / steps
}

// ScoreExtensions is nil: scores are already in range.
func (p *Plugin) ScoreExtensions() fwk.ScoreExtensions { return nil }

// PostFilter re-activates a pod waiting at a unit when its deadline passes.
func (p *Plugin) PostFilter(ctx context.Context, cs fwk.CycleState, pod *corev1.Pod, _ fwk.NodeToStatusReader) (*fwk.PostFilterResult, *fwk.Status) {
	s, ok := readState(cs)
	if !ok || s.plan.Wait == nil || s.plan.Wait.Until.IsZero() {
		return nil, fwk.NewStatus(fwk.Unschedulable)
	}
	wait := s.plan.Wait.Until.Sub(p.clock.Now()) + 100*time.Millisecond
	logger := klog.FromContext(ctx)
	p.mu.Lock()
	if t, ok := p.timers[pod.UID]; ok {
		t.Stop()
	}
	key := pod.Namespace + "/" + pod.Name
	uid := pod.UID
	t := p.clock.NewTimer(wait)
	p.timers[uid] = t
	p.mu.Unlock()
	go func() {
		<-t.C()
		p.mu.Lock()
		if p.timers[uid] == t {
			delete(p.timers, uid)
		}
		p.mu.Unlock()
		p.handle.Activate(logger, map[string]*corev1.Pod{key: pod})
	}()
	return nil, fwk.NewStatus(fwk.Unschedulable, s.plan.Explain())
}

// PreBindPreFlight skips PreBind for pods without a policy.
func (p *Plugin) PreBindPreFlight(_ context.Context, cs fwk.CycleState, _ *corev1.Pod, _ string) (*fwk.PreBindPreFlightResult, *fwk.Status) {
	if _, ok := readState(cs); !ok {
		return nil, fwk.NewStatus(fwk.Skip)
	}
	return &fwk.PreBindPreFlightResult{AllowParallel: true}, nil
}

// PreBind writes the unit's markers and records the chosen unit.
func (p *Plugin) PreBind(ctx context.Context, cs fwk.CycleState, pod *corev1.Pod, nodeName string) *fwk.Status {
	s, ok := readState(cs)
	if !ok {
		return nil
	}
	rp := s.plan.Policy
	unit := -1
	if ni, err := p.handle.SnapshotSharedLister().NodeInfos().Get(nodeName); err == nil {
		unit = resourcepolicy.UnitOf(rp, ni.Node())
	}
	if unit >= 0 {
		u := &rp.Spec.Units[unit]
		if len(u.PodLabels) > 0 || len(u.PodAnnotations) > 0 {
			patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
				"labels": u.PodLabels, "annotations": u.PodAnnotations}})
			if err != nil {
				return fwk.AsStatus(err)
			}
			if _, err := p.handle.ClientSet().CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name,
				types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
				return fwk.AsStatus(fmt.Errorf("writing podLabels/podAnnotations of unit %d of ResourcePolicy %s: %w",
					unit, resourcepolicy.Key(rp), err))
			}
		}
	}
	if rec := p.handle.EventRecorder(); rec != nil {
		where := "outside its units (strategy prefer)"
		if unit >= 0 {
			where = fmt.Sprintf("unit %d (%s)", unit, rp.Spec.Units[unit].Resource)
		}
		rec.Eventf(pod, rp, corev1.EventTypeNormal, "ResourcePolicyUnit", "Scheduling",
			"ResourcePolicy %s placed the pod on node %s in %s", resourcepolicy.Key(rp), nodeName, where)
	}
	return nil
}
