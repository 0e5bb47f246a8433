// Package resourcepolicy is the kube-scheduler framework plugin that applies
// ResourcePolicies (pkg/resourcepolicy) while scheduling.
//
//   - PreFilter matches the pod to a policy (Skip when none: no cost for other
//     pods) and computes its Plan from per-unit counts kept incrementally
//     (pod informer events, Reserve/Unreserve; see counts), so its cost does
//     not grow with the pods of the cluster. It rejects the pod with the
//     plan's explanation when no unit and no other node is allowed, on a
//     policy conflict or when a matchLabelKeys label is missing (with a
//     Warning event, once per pod).
//   - PreFilter also narrows the scheduler's search to the nodes of the
//     allowed units (a PreFilterResult, cached per policy version and
//     allowed set); node units come from a per-policy index keyed by node
//     object (units.go).
//   - Filter rejects, as UnschedulableAndUnresolvable, the nodes of units the
//     plan does not allow now (and nodes outside every unit under required)
//     that reach it: nodes newer than the index, or every node when none is
//     allowed.
//   - Score ranks nodes by the order of their unit in the plan; give the
//     plugin a large weight so unit order dominates the other scores.
//   - PostFilter (after DefaultPreemption): under preemptPolicy
//     BeforeNextUnit lets the pod move on to the next unit once preemption
//     failed in the current one; when the plan waits at a unit until a
//     deadline (TimeoutOrExceedMax), re-activates the pod at that deadline.
//   - Reserve/Unreserve count the assumed pod.
//   - PreBind writes the unit's podLabels on the pod (and is skipped when
//     there are none, sparing the scheduler's nominatedNodeName write).
//   - Bind binds a pod whose unit has podAnnotations with a Binding that
//     carries them (the API server copies them onto the pod in the
//     binding's own write); other pods go on to DefaultBinder.
//   - PostBind records a "ResourcePolicySpillOver" event on the policy when
//     a pod is placed past its first unit, saying why the earlier units were
//     passed over; the event library aggregates these into one series per
//     policy. There is no per-pod placement event or mark beyond the unit's
//     own podLabels/podAnnotations (the policy's opt-in for that): each is
//     API work per pod, which the scheduler's throughput pays for.
//   - SignPod signs pods by policy and group, so the scheduler's
//     opportunistic batching stays on.
//
// Preemption is the upstream DefaultPreemption: it considers only nodes the
// plan allows, since the others are UnschedulableAndUnresolvable.
// AfterAllUnits: the plan allows every unit the pod may use now, so
// preemption runs after the pod failed on all of them, with candidates from
// all of them. BeforeNextUnit: the plan is narrowed to the units up to the
// first one the pod has not failed in yet, so preemption runs there first;
// see docs/scheduling.md.
package resourcepolicy

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	schedutil "k8s.io/kubernetes/pkg/scheduler/util"
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
	counts   *counts
	// synced tells whether the policy informer has synced (nil: always).
	synced func() bool

	mu     sync.Mutex
	timers map[types.UID]clock.Timer
	// tried is, per pod under preemptPolicy BeforeNextUnit, the highest unit
	// index where the pod failed (preemption included); -1 in the map: none.
	tried map[types.UID]int
	// reported is, per pod, the last once-per-pod event sent (key), so a
	// pod retried every few seconds does not repeat its event.
	reported map[types.UID]string

	units unitIndexes
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
	_ fwk.ReservePlugin    = (*Plugin)(nil)
	_ fwk.SignPlugin       = (*Plugin)(nil)
	_ fwk.PreBindPlugin    = (*Plugin)(nil)
	_ fwk.BindPlugin       = (*Plugin)(nil)
	_ fwk.PostBindPlugin   = (*Plugin)(nil)
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
	podInf := h.SharedInformerFactory().Core().V1().Pods()
	nodeInf := h.SharedInformerFactory().Core().V1().Nodes()
	p := NewWithLister(h, &informerLister{indexer: inf.GetIndexer()}, clock.RealClock{},
		listerPods{podInf.Lister()}, listerNodes{nodeInf.Lister()})
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		if rp, ok := unwrap[*schedulingv1alpha1.ResourcePolicy](obj); ok {
			p.counts.onPolicyDelete(rp.Namespace, rp.Name)
			p.units.forget(rp.UID)
		}
	}}); err != nil {
		return nil, err
	}
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { p.onPod(obj) },
		UpdateFunc: func(_, obj any) { p.onPod(obj) },
		DeleteFunc: func(obj any) { p.onPodDelete(obj) },
	}); err != nil {
		return nil, err
	}
	if _, err := nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { p.counts.onNode() },
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*corev1.Node)
			n, ok2 := newObj.(*corev1.Node)
			if !ok1 || !ok2 || !maps.Equal(o.Labels, n.Labels) {
				p.counts.onNode()
			}
		},
		DeleteFunc: func(any) { p.counts.onNode() },
	}); err != nil {
		return nil, err
	}
	// Not waited for here: the scheduler syncs its own (much larger) pod and
	// node caches before the first cycle, and PreFilter waits for this one
	// if it ever comes first.
	factory.Start(ctx.Done())
	p.synced = inf.HasSynced
	return p, nil
}

// NewWithLister builds the plugin on any policy, pod and node source and
// clock (the pod source lists the pods the counts are built from; pod
// events must then be fed to onPod/onPodDelete).
func NewWithLister(h fwk.Handle, l policyLister, c clock.WithTicker, pods podSource, nodes nodeSource) *Plugin {
	return &Plugin{handle: h, policies: l, clock: c, counts: newCounts(pods, nodes),
		timers: map[types.UID]clock.Timer{}, tried: map[types.UID]int{}, reported: map[types.UID]string{}}
}

// unwrap returns obj as T, looking inside a DeletedFinalStateUnknown.
func unwrap[T any](obj any) (T, bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	t, ok := obj.(T)
	return t, ok
}

type listerPods struct{ l corelisters.PodLister }

func (l listerPods) List(ns string, sel labels.Selector) ([]*corev1.Pod, error) {
	return l.l.Pods(ns).List(sel)
}

type listerNodes struct{ l corelisters.NodeLister }

func (l listerNodes) Get(name string) *corev1.Node {
	n, err := l.l.Get(name)
	if err != nil {
		return nil
	}
	return n
}

func (p *Plugin) onPod(obj any) {
	if pod, ok := unwrap[*corev1.Pod](obj); ok {
		p.counts.onPod(pod)
	}
}

func (p *Plugin) onPodDelete(obj any) {
	pod, ok := unwrap[*corev1.Pod](obj)
	if !ok {
		return
	}
	p.counts.onPodDelete(pod)
	p.mu.Lock()
	delete(p.tried, pod.UID)
	delete(p.reported, pod.UID)
	p.mu.Unlock()
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
	// plan is what the pod may use in this cycle: the engine's plan, narrowed
	// under preemptPolicy BeforeNextUnit.
	plan resourcepolicy.Plan
	// full is the engine's plan.
	full resourcepolicy.Plan
	// frontier is the unit the plan was narrowed to (BeforeNextUnit), -1
	// when it was not narrowed.
	frontier int
	// unit is the unit of the node chosen, set by Reserve (in the
	// scheduling cycle, where the snapshot may be read).
	unit int
	// sel are the units' nodeSelectors as label pairs, and rules the score
	// and reject reason ("" when allowed) of unit i at i+1 (0: outside every
	// unit), computed once per cycle so that Filter and Score, called for
	// hundreds of nodes per pod, only match labels and index.
	sel   [][]labelPair
	rules []nodeRule
	// units is the unit of each node of the snapshot (nil: match labels).
	units *unitIndex
}

type labelPair struct{ key, value string }

type nodeRule struct {
	score  int64
	reject string
}

// compile fills sel and rules from the plan.
func (s *state) compile() {
	rp := s.plan.Policy
	s.sel = make([][]labelPair, len(rp.Spec.Units))
	for i := range rp.Spec.Units {
		for k, v := range rp.Spec.Units[i].NodeSelector {
			s.sel[i] = append(s.sel[i], labelPair{k, v})
		}
	}
	s.rules = make([]nodeRule, len(rp.Spec.Units)+1)
	for unit := -1; unit < len(rp.Spec.Units); unit++ {
		r := &s.rules[unit+1]
		r.score = score(&s.plan, unit)
		switch {
		case s.plan.Allows(unit):
		case s.frontier >= 0 && s.full.Allows(unit):
			r.reject = held(&s.plan, unit, s.frontier)
		default:
			r.reject = reject(&s.plan, unit)
		}
	}
}

// unitOf is resourcepolicy.UnitOf on the compiled selectors, through the
// policy's unit index.
func (s *state) unitOf(node *corev1.Node) int {
	if node == nil {
		return -1
	}
	if s.units != nil {
		return s.units.unitOf(node, s.match)
	}
	return s.match(node)
}

// match matches node's labels against the compiled selectors.
func (s *state) match(node *corev1.Node) int {
next:
	for i, sel := range s.sel {
		for _, l := range sel {
			if v, ok := node.Labels[l.key]; !ok || v != l.value {
				continue next
			}
		}
		return i
	}
	return -1
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

// PreFilter computes the pod's plan from the policy and the incremental
// counts (O(units), whatever the number of pods), checks the unit index
// against the snapshot's nodes (a pointer lookup per node) and returns the
// allowed units' nodes.
func (p *Plugin) PreFilter(ctx context.Context, cs fwk.CycleState, pod *corev1.Pod, nodes []fwk.NodeInfo) (*fwk.PreFilterResult, *fwk.Status) {
	if p.synced != nil && !p.synced() {
		if err := wait.PollUntilContextCancel(ctx, 10*time.Millisecond, true, func(context.Context) (bool, error) {
			return p.synced(), nil
		}); err != nil {
			return nil, fwk.AsStatus(fmt.Errorf("waiting for the ResourcePolicy informer: %w", err))
		}
	}
	pols := p.policies.List(pod.Namespace)
	if len(pols) == 0 {
		return nil, fwk.NewStatus(fwk.Skip)
	}
	snap := resourcepolicy.NewSnapshot(pols, nil, nil)
	rp, err := snap.Match(pod)
	if err != nil {
		p.eventOnce(pod, nil, corev1.EventTypeWarning, "ResourcePolicyConflict", err.Error())
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, err.Error())
	}
	if rp == nil {
		return nil, fwk.NewStatus(fwk.Skip)
	}
	group, err := resourcepolicy.Group(rp, pod)
	if err != nil {
		p.eventOnce(pod, rp, corev1.EventTypeWarning, "ResourcePolicyMissingLabel", err.Error())
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, err.Error())
	}
	if needsCounts(rp) {
		u, err := p.counts.usage(rp, group)
		if err != nil {
			return nil, fwk.AsStatus(fmt.Errorf("counting the pods of ResourcePolicy %s: %w", resourcepolicy.Key(rp), err))
		}
		snap.SetGroupUsage(rp, group, u)
	}
	plan, err := snap.PlanFor(rp, pod, p.clock.Now())
	if err != nil {
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, err.Error())
	}
	if len(plan.Units) == 0 && !plan.Others {
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, plan.Explain())
	}
	st := &state{plan: plan, full: plan, frontier: -1, unit: -1}
	if rp.Spec.PreemptPolicy == schedulingv1alpha1.PreemptBeforeNextUnit && mayPreempt(pod) {
		p.mu.Lock()
		tried, ok := p.tried[pod.UID]
		p.mu.Unlock()
		if !ok {
			tried = -1
		}
		st.plan, st.frontier = narrow(plan, tried)
	}
	st.compile()
	st.units = p.units.get(rp.UID, rp.Generation, nodes, st.match)
	cs.Write(stateKey, st)
	klog.FromContext(ctx).V(4).Info("ResourcePolicy plan", "pod", klog.KObj(pod), "policy", klog.KObj(rp),
		"units", len(st.plan.Units), "others", st.plan.Others, "waiting", plan.Wait != nil, "frontier", st.frontier)
	if st.plan.Others && len(st.plan.Skipped) == 0 {
		// Every node is allowed (prefer, no unit at max, no wait): Filter
		// has nothing to reject, skip it; Score still ranks the units.
		return nil, fwk.NewStatus(fwk.Skip)
	}
	return p.allowedNodes(st), nil
}

// allowedNodes narrows the scheduler's search to the nodes of the units
// the plan allows (a PreFilterResult): it then neither walks the other
// nodes nor runs any filter on them, which with a unit at max would be
// half of a cluster's nodes per pod. Those nodes are counted as "didn't
// satisfy plugin(s) [SpillwayResourcePolicy]" and the plan's own sentence
// (PostFilter) says why. Nil (every node goes through Filter, which gives
// per-node reasons) when no node is allowed or there are too many units to
// cache the sets by mask.
func (p *Plugin) allowedNodes(st *state) *fwk.PreFilterResult {
	if st.units == nil || len(st.rules) > 64 {
		return nil
	}
	var mask uint64
	for i, r := range st.rules {
		if r.reject == "" {
			mask |= 1 << uint(i)
		}
	}
	names := p.units.allowedNodes(st.units, mask)
	if len(names) == 0 {
		return nil
	}
	return &fwk.PreFilterResult{NodeNames: names}
}

// signKey is the plugin's fragment of a pod signature.
const signKey = "spillway.io/ResourcePolicy.Match()"

// SignPod lets the scheduler's opportunistic batching (KEP-5598) reuse one
// pod's filtering and scoring for the next pod of the same signature; a
// plugin without it turns batching off for every pod of the profile. The
// fragment is the matched policy and matchLabelKeys group ("" without a
// policy): pods sharing it get the same plan but for their own creation
// time (TimeoutOrExceedMax) and preemption progress (BeforeNextUnit), which
// only ever narrow or widen the same ordered list of units. The scheduler
// still runs PreFilter and Filter on the hinted node, so a unit at max, a
// unit the pod may not use yet, or a policy created after the pod was
// signed are still enforced; only the choice among allowed nodes reuses the
// previous pod's scores. A conflict or a missing group label is not signed.
func (p *Plugin) SignPod(_ context.Context, pod *corev1.Pod) ([]fwk.SignFragment, *fwk.Status) {
	if p.synced != nil && !p.synced() {
		return nil, fwk.NewStatus(fwk.Unschedulable, "ResourcePolicies not synced yet")
	}
	value := ""
	if pols := p.policies.List(pod.Namespace); len(pols) > 0 {
		rp, err := resourcepolicy.NewSnapshot(pols, nil, nil).Match(pod)
		if err != nil {
			return nil, fwk.NewStatus(fwk.Unschedulable, err.Error())
		}
		if rp != nil {
			group, err := resourcepolicy.Group(rp, pod)
			if err != nil {
				return nil, fwk.NewStatus(fwk.Unschedulable, err.Error())
			}
			value = resourcepolicy.Key(rp) + "\x00" + group
		}
	}
	return []fwk.SignFragment{{Key: signKey, Value: value}}, nil
}

// mayPreempt tells whether the pod may preempt others at all.
func mayPreempt(pod *corev1.Pod) bool {
	return pod.Spec.PreemptionPolicy == nil || *pod.Spec.PreemptionPolicy != corev1.PreemptNever
}

// narrow is preemptPolicy BeforeNextUnit: the plan is cut after the first
// listed unit above tried (the highest unit where the pod already failed,
// preemption included; -1 for none), so that preemption, which only looks
// at the nodes a plan allows, runs in that unit before the pod may use the
// next one. frontier is that unit, or -1 when nothing was cut (the unit is
// the plan's last and no other node follows it).
func narrow(plan resourcepolicy.Plan, tried int) (_ resourcepolicy.Plan, frontier int) {
	for i, u := range plan.Units {
		if u.Index <= tried {
			continue
		}
		if i == len(plan.Units)-1 && !plan.Others {
			return plan, -1
		}
		out := plan
		out.Units = plan.Units[:i+1]
		out.Others = false
		return out, u.Index
	}
	return plan, -1
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

// PreFilterExtensions is nil: a plan does not depend on the pods of a node
// (counts are per unit, kept by pod events and Reserve).
func (p *Plugin) PreFilterExtensions() fwk.PreFilterExtensions { return nil }

// Filter rejects nodes the plan does not allow.
func (p *Plugin) Filter(_ context.Context, cs fwk.CycleState, pod *corev1.Pod, ni fwk.NodeInfo) *fwk.Status {
	s, ok := readState(cs)
	if !ok {
		return nil
	}
	if r := s.rules[s.unitOf(ni.Node())+1]; r.reject != "" {
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, r.reject)
	}
	return nil
}

// held is the reason for a node the plan allows but BeforeNextUnit holds
// back until the pod failed in the frontier unit, preemption included.
func held(plan *resourcepolicy.Plan, unit, frontier int) string {
	where := fmt.Sprintf("in unit %d", unit)
	if unit < 0 {
		where = "outside the units"
	}
	return fmt.Sprintf("node(s) %s of ResourcePolicy %s, not tried before preemption in unit %d (preemptPolicy BeforeNextUnit)",
		where, resourcepolicy.Key(plan.Policy), frontier)
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

// PreScore skips scoring for pods without a policy, and when every
// feasible node gets the same score (e.g. all in one unit): the scores
// would not change the choice, and each score plugin costs a call per node.
func (p *Plugin) PreScore(_ context.Context, cs fwk.CycleState, _ *corev1.Pod, nodes []fwk.NodeInfo) *fwk.Status {
	s, ok := readState(cs)
	if !ok {
		return fwk.NewStatus(fwk.Skip)
	}
	if len(nodes) == 0 {
		return fwk.NewStatus(fwk.Skip)
	}
	first := s.rules[s.unitOf(nodes[0].Node())+1].score
	for _, ni := range nodes[1:] {
		if s.rules[s.unitOf(ni.Node())+1].score != first {
			return nil
		}
	}
	return fwk.NewStatus(fwk.Skip)
}

// Score ranks nodes by unit order.
func (p *Plugin) Score(_ context.Context, cs fwk.CycleState, _ *corev1.Pod, ni fwk.NodeInfo) (int64, *fwk.Status) {
	s, ok := readState(cs)
	if !ok {
		return 0, nil
	}
	return s.rules[s.unitOf(ni.Node())+1].score, nil
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

// PostFilter runs after DefaultPreemption found no victims (PostFilter
// plugins run in order until one succeeds; the example configuration lists
// this one after the defaults). Under BeforeNextUnit it lets the pod move
// on to the next unit and re-activates it at once; when the plan waits at a
// unit until a deadline (TimeoutOrExceedMax) it re-activates the pod at that
// deadline. It records the waiting and moving-on events.
func (p *Plugin) PostFilter(ctx context.Context, cs fwk.CycleState, pod *corev1.Pod, _ fwk.NodeToStatusReader) (*fwk.PostFilterResult, *fwk.Status) {
	s, ok := readState(cs)
	if !ok {
		return nil, fwk.NewStatus(fwk.Unschedulable)
	}
	rp := s.plan.Policy
	logger := klog.FromContext(ctx)
	if s.frontier >= 0 {
		unit := fmt.Sprintf("unit %d (%s)", s.frontier, rp.Spec.Units[s.frontier].Resource)
		if node, ok := p.preempting(pod, s); ok {
			return nil, fwk.NewStatus(fwk.Unschedulable, fmt.Sprintf(
				"ResourcePolicy %s: waiting for the preemption on node %s in %s (preemptPolicy BeforeNextUnit)",
				resourcepolicy.Key(rp), node, unit))
		}
		p.mu.Lock()
		p.tried[pod.UID] = s.frontier
		p.mu.Unlock()
		msg := fmt.Sprintf("ResourcePolicy %s: no node of %s fits and preemption found no victims there; "+
			"preemptPolicy BeforeNextUnit: moving on to the next unit", resourcepolicy.Key(rp), unit)
		p.eventOnce(pod, rp, corev1.EventTypeNormal, "ResourcePolicyNextUnit", msg)
		p.handle.Activate(logger, map[string]*corev1.Pod{pod.Namespace + "/" + pod.Name: pod})
		return nil, fwk.NewStatus(fwk.Unschedulable, msg)
	}
	w := s.plan.Wait
	if w == nil {
		return nil, fwk.NewStatus(fwk.Unschedulable, s.plan.Explain())
	}
	note := fmt.Sprintf("ResourcePolicy %s: waiting at unit %d (%s): %s", resourcepolicy.Key(rp), w.Index,
		rp.Spec.Units[w.Index].Resource, w.Reason)
	p.eventOnce(pod, rp, corev1.EventTypeNormal, "ResourcePolicyWaiting", note)
	if w.Until.IsZero() {
		return nil, fwk.NewStatus(fwk.Unschedulable, s.plan.Explain())
	}
	wait := w.Until.Sub(p.clock.Now()) + 100*time.Millisecond
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

// preempting tells whether a preemption for pod is in progress on a node
// of the units it may use now: the pod is nominated there and a pod on the
// node is terminating (DefaultPreemption then does not preempt again, and
// the pod must wait for its victims rather than move on).
func (p *Plugin) preempting(pod *corev1.Pod, s *state) (string, bool) {
	name := pod.Status.NominatedNodeName
	if name == "" {
		return "", false
	}
	ni, err := p.handle.SnapshotSharedLister().NodeInfos().Get(name)
	if err != nil || !s.plan.Allows(resourcepolicy.UnitOf(s.plan.Policy, ni.Node())) {
		return "", false
	}
	for _, pi := range ni.GetPods() {
		if pi.GetPod().DeletionTimestamp != nil {
			return name, true
		}
	}
	return "", false
}

// Reserve counts the pod on its node until the informer shows it bound,
// and notes the node's unit for the binding cycle.
func (p *Plugin) Reserve(_ context.Context, cs fwk.CycleState, pod *corev1.Pod, nodeName string) *fwk.Status {
	if s, ok := readState(cs); ok {
		s.unit = -1
		if ni, err := p.handle.SnapshotSharedLister().NodeInfos().Get(nodeName); err == nil {
			s.unit = s.unitOf(ni.Node())
		}
	}
	p.counts.assume(pod, nodeName)
	p.mu.Lock()
	delete(p.tried, pod.UID)
	p.mu.Unlock()
	return nil
}

// Unreserve takes the assumption back.
func (p *Plugin) Unreserve(_ context.Context, _ fwk.CycleState, pod *corev1.Pod, _ string) {
	p.counts.forget(pod)
}

// eventOnce records an event on pod unless the same one was the last
// recorded for it (pods are retried every few seconds while pending).
func (p *Plugin) eventOnce(pod *corev1.Pod, rp *schedulingv1alpha1.ResourcePolicy, kind, reason, note string) {
	rec := p.handle.EventRecorder()
	if rec == nil {
		return
	}
	key := reason + "\x00" + note
	p.mu.Lock()
	dup := p.reported[pod.UID] == key
	p.reported[pod.UID] = key
	p.mu.Unlock()
	if dup {
		return
	}
	var related runtime.Object
	if rp != nil {
		related = rp
	}
	rec.Eventf(pod, related, kind, reason, "Scheduling", "%s", note)
}

// markers returns the unit chosen (noted by Reserve) and the unit, nil
// when it has no podLabels for PreBind to write (podAnnotations go with the
// Binding).
func markers(s *state) (unit int, u *schedulingv1alpha1.Unit) {
	unit = s.unit
	if unit < 0 {
		return unit, nil
	}
	u = &s.plan.Policy.Spec.Units[unit]
	if len(u.PodLabels) == 0 {
		return unit, nil
	}
	return unit, u
}

// PreBindPreFlight skips PreBind unless the unit has podLabels to write:
// when a PreBind runs, the scheduler first writes the pod's
// nominatedNodeName (one more API call per pod).
func (p *Plugin) PreBindPreFlight(_ context.Context, cs fwk.CycleState, _ *corev1.Pod, _ string) (*fwk.PreBindPreFlightResult, *fwk.Status) {
	s, ok := readState(cs)
	if !ok {
		return nil, fwk.NewStatus(fwk.Skip)
	}
	if _, u := markers(s); u == nil {
		return nil, fwk.NewStatus(fwk.Skip)
	}
	return &fwk.PreBindPreFlightResult{AllowParallel: true}, nil
}

// PreBind writes the unit's podLabels on the pod. (A Binding's labels reach
// the pod only while the API server's PodTopologyLabelsAdmission feature is
// on; a patch works everywhere.)
func (p *Plugin) PreBind(ctx context.Context, cs fwk.CycleState, pod *corev1.Pod, nodeName string) *fwk.Status {
	s, ok := readState(cs)
	if !ok {
		return nil
	}
	unit, u := markers(s)
	if u == nil {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": u.PodLabels}})
	if err != nil {
		return fwk.AsStatus(err)
	}
	if _, err := p.handle.ClientSet().CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name,
		types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fwk.AsStatus(fmt.Errorf("writing podLabels of unit %d of ResourcePolicy %s: %w",
			unit, resourcepolicy.Key(s.plan.Policy), err))
	}
	return nil
}

// Bind binds a pod placed in a unit with podAnnotations, like
// DefaultBinder, with a Binding carrying them: the API server merges a
// Binding's annotations into the pod as it sets its node, so they cost no
// call of their own. Other pods are left to the next bind plugin (the
// shipped configuration lists this plugin under bind so that it comes
// before DefaultBinder).
func (p *Plugin) Bind(ctx context.Context, cs fwk.CycleState, pod *corev1.Pod, nodeName string) *fwk.Status {
	s, ok := readState(cs)
	if !ok || s.unit < 0 || len(s.plan.Policy.Spec.Units[s.unit].PodAnnotations) == 0 {
		return fwk.NewStatus(fwk.Skip)
	}
	binding := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID,
			Annotations: maps.Clone(s.plan.Policy.Spec.Units[s.unit].PodAnnotations)},
		Target: corev1.ObjectReference{Kind: "Node", Name: nodeName},
	}
	if c := p.handle.APICacher(); c != nil {
		onFinish, err := c.BindPod(binding)
		if err == nil {
			err = c.WaitOnFinish(ctx, onFinish)
		}
		if err != nil {
			return fwk.AsStatus(err)
		}
		return nil
	}
	if err := schedutil.BindPod(ctx, p.handle.ClientSet(), binding); err != nil {
		return fwk.AsStatus(err)
	}
	return nil
}

// PostBind records the "ResourcePolicySpillOver" event on the policy when
// the pod was placed past the policy's first unit. The event has no
// per-pod field, so the event library folds repeated ones into a series
// (one Event object with a count).
func (p *Plugin) PostBind(_ context.Context, cs fwk.CycleState, _ *corev1.Pod, _ string) {
	s, ok := readState(cs)
	rec := p.handle.EventRecorder()
	if !ok || rec == nil || s.unit == 0 {
		return
	}
	rp := s.plan.Policy
	where := "to nodes outside its units (strategy prefer)"
	if s.unit > 0 {
		where = fmt.Sprintf("to unit %d (%s)", s.unit, rp.Spec.Units[s.unit].Resource)
	}
	// The event library folds events with the same object reference; the
	// policy's resourceVersion changes with every status write (the
	// manager counts its pods), so the reference is built without it.
	regarding := &schedulingv1alpha1.ResourcePolicy{TypeMeta: rp.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{Namespace: rp.Namespace, Name: rp.Name, UID: rp.UID}}
	rec.Eventf(regarding, nil, corev1.EventTypeNormal, "ResourcePolicySpillOver", "Scheduling",
		"pods spill over %s: %s", where, passedOver(s))
}

// passedOver says why the units before the pod's were not used: skipped by
// the plan (with the plan's reason), or allowed but without a node that fit
// (unit order dominates the score, so an allowed earlier unit lost only by
// having no feasible node).
func passedOver(s *state) string {
	rp := s.plan.Policy
	last := s.unit
	if last < 0 {
		last = len(rp.Spec.Units)
	}
	parts := make([]string, 0, last)
	for i := range last {
		why := "was not allowed"
		if s.plan.Allows(i) {
			why = "had no node that fits"
		} else if k := slices.IndexFunc(s.plan.Skipped, func(k resourcepolicy.Skip) bool { return k.Index == i }); k >= 0 {
			why = s.plan.Skipped[k].Reason
		}
		parts = append(parts, fmt.Sprintf("unit %d (%s) %s", i, rp.Spec.Units[i].Resource, why))
	}
	return strings.Join(parts, "; ")
}
