package nodeautoscaler

import (
	"fmt"
	"maps"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	schedulingv1alpha1 "github.com/spillway-io/spillway/apis/scheduling/v1alpha1"
	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/pkg/cloudprovider"
	"github.com/spillway-io/spillway/pkg/resourcepolicy"
)

// Where says what kind of node a pending pod is expected on.
type Where string

const (
	// OnUsable: a usable node has room; the scheduler will place the pod.
	OnUsable Where = "usable"
	// OnComing: a node already asked for has room once it is usable.
	OnComing Where = "coming"
	// OnNew: the pod needs a node this plan asks for.
	OnNew Where = "new"
)

// Placement is where the plan expects one pending pod to land.
type Placement struct {
	Pod   string // namespace/name
	Node  string // node name; "<pool>#<n>" for a new node
	Pool  string
	Where Where
	Unit  int // index of the policy unit, -1 when no unit
}

// ScaleUp asks one pool for Count new nodes for Pods.
type ScaleUp struct {
	Pool  string
	Count int
	Pods  []string
}

// Unhelped is a pending pod no new node would help, and why.
type Unhelped struct {
	Pod    string
	Reason string
}

// ScaleUpPlan is the decision of one scale-up pass.
type ScaleUpPlan struct {
	// ScaleUps in the order of the pools (weight, then name).
	ScaleUps []ScaleUp
	// Placements of every pod that has, or will have, a node.
	Placements []Placement
	// Unhelped pods, sorted by pod.
	Unhelped []Unhelped
}

// NewNodes is the total number of nodes the plan asks for.
func (p ScaleUpPlan) NewNodes() int {
	n := 0
	for _, s := range p.ScaleUps {
		n += s.Count
	}
	return n
}

// PlanScaleUp decides which elastic pools must grow, and by how much, for
// the pending pods to fit. Pods are packed largest first onto, in turn,
// usable nodes with room, nodes still coming, and nodes this plan opens,
// walking their ResourcePolicy's units in order: a unit at its max is
// skipped, an ExceedMax policy waits for its unit, a prefer policy may use
// nodes outside its units last. A pool is never grown past its max, nor when
// it is in back-off.
func PlanScaleUp(s Snapshot, pending []*corev1.Pod) ScaleUpPlan {
	c := buildCluster(&s)
	pods := append([]*corev1.Pod(nil), pending...)
	reqs := make(map[*corev1.Pod]corev1.ResourceList, len(pods))
	for _, p := range pods {
		reqs[p] = podRequests(p)
	}
	sort.SliceStable(pods, func(i, j int) bool { return biggerFirst(pods[i], pods[j], reqs) })

	var plan ScaleUpPlan
	opened := map[string][]*simNode{}
	for _, pod := range pods {
		pl, reason := c.placeOne(&s, pod, reqs[pod], opened)
		if pl == nil {
			plan.Unhelped = append(plan.Unhelped, Unhelped{Pod: podKey(pod), Reason: reason})
			continue
		}
		plan.Placements = append(plan.Placements, *pl)
	}
	for _, p := range c.pools {
		nodes := opened[p.NodePool.Name]
		if len(nodes) == 0 {
			continue
		}
		su := ScaleUp{Pool: p.NodePool.Name, Count: len(nodes)}
		for _, n := range nodes {
			su.Pods = append(su.Pods, n.hosts...)
		}
		sort.Strings(su.Pods)
		plan.ScaleUps = append(plan.ScaleUps, su)
	}
	sort.Slice(plan.Placements, func(i, j int) bool { return plan.Placements[i].Pod < plan.Placements[j].Pod })
	sort.Slice(plan.Unhelped, func(i, j int) bool { return plan.Unhelped[i].Pod < plan.Unhelped[j].Pod })
	return plan
}

// step is one group of nodes a pod's plan allows, in the plan's order: a
// unit of its policy, the nodes outside every unit (strategy prefer), or
// every node (no policy).
type step struct {
	unit int // -1: outside every unit, or any node without a policy
}

// steps lists the groups of nodes plan allows, most preferred first.
func steps(plan *resourcepolicy.Plan) []step {
	if plan.Policy == nil {
		return []step{{unit: -1}}
	}
	out := make([]step, 0, len(plan.Units)+1)
	for _, u := range plan.Units {
		out = append(out, step{unit: u.Index})
	}
	if plan.Others {
		out = append(out, step{unit: -1})
	}
	return out
}

// holds reports whether node n is in step st of plan.
func (c *cluster) holds(plan *resourcepolicy.Plan, st step, n *corev1.Node) bool {
	if plan.Policy == nil {
		return true
	}
	return c.unitOf(plan.Policy, n) == st.unit
}

func describeStep(plan *resourcepolicy.Plan, st step) string {
	switch {
	case plan.Policy == nil:
		return "any node"
	case st.unit < 0:
		return "outside the policy's units"
	}
	return fmt.Sprintf("unit %d (%s)", st.unit, plan.Policy.Spec.Units[st.unit].Resource)
}

// placeOne asks the policy engine for the pod's plan (the one the scheduler
// plugin computes) and places the pod: on a usable node with room in any
// step the plan allows, best step first (the scheduler will bind it there);
// else, step by step, on a coming node, a node this plan already opened, or
// a new node of an elastic pool of the step. The placement is assumed into
// the engine's snapshot, so the next pod's plan counts it.
func (c *cluster) placeOne(s *Snapshot, pod *corev1.Pod, req corev1.ResourceList, opened map[string][]*simNode) (*Placement, string) {
	plan, err := c.rp.Plan(pod, s.Now)
	if err != nil {
		return nil, err.Error()
	}
	sts := steps(&plan)
	for _, st := range sts {
		if pl := c.onExisting(&plan, pod, req, st, kindUsable); pl != nil {
			return c.placed(&plan, pod, st, pl)
		}
	}
	var reasons []string
	for _, sk := range plan.Skipped {
		reasons = append(reasons, fmt.Sprintf("unit %d (%s): %s", sk.Index, plan.Policy.Spec.Units[sk.Index].Resource, sk.Reason))
	}
	for _, st := range sts {
		for _, kind := range []nodeKind{kindComing, kindNew} {
			if pl := c.onExisting(&plan, pod, req, st, kind); pl != nil {
				return c.placed(&plan, pod, st, pl)
			}
		}
		pl, why := c.onNew(s, &plan, pod, req, st, opened)
		if pl != nil {
			return c.placed(&plan, pod, st, pl)
		}
		reasons = append(reasons, describeStep(&plan, st)+": "+why)
	}
	switch {
	case plan.Wait != nil:
		reasons = append(reasons, fmt.Sprintf("the pod waits at unit %d: %s", plan.Wait.Index, plan.Wait.Reason))
	case plan.Policy != nil && !plan.Others:
		reasons = append(reasons, "strategy required allows no node outside the units")
	}
	return nil, strings.Join(reasons, "; ")
}

// placed records the placement in the policy engine's snapshot.
func (c *cluster) placed(plan *resourcepolicy.Plan, pod *corev1.Pod, st step, pl *Placement) (*Placement, string) {
	pl.Unit = st.unit
	if plan.Policy != nil {
		// Assume fails only on a missing matchLabelKeys label, which Plan
		// already rejected.
		_ = c.rp.Assume(plan.Policy, withMarkers(plan.Policy, st.unit, pod), pl.Node)
	}
	return pl, ""
}

// withMarkers is pod as the scheduler plugin leaves it once bound in unit:
// carrying the unit's podLabels and podAnnotations (which decide whether it
// counts for the unit). pod itself is not changed.
func withMarkers(rp *schedulingv1alpha1.ResourcePolicy, unit int, pod *corev1.Pod) *corev1.Pod {
	if unit < 0 {
		return pod
	}
	u := &rp.Spec.Units[unit]
	if len(u.PodLabels) == 0 && len(u.PodAnnotations) == 0 {
		return pod
	}
	cp := *pod
	cp.Labels = maps.Clone(pod.Labels)
	cp.Annotations = maps.Clone(pod.Annotations)
	if cp.Labels == nil {
		cp.Labels = map[string]string{}
	}
	if cp.Annotations == nil {
		cp.Annotations = map[string]string{}
	}
	maps.Copy(cp.Labels, u.PodLabels)
	maps.Copy(cp.Annotations, u.PodAnnotations)
	return &cp
}

// onExisting puts pod on the first node of this kind in the step with room.
func (c *cluster) onExisting(plan *resourcepolicy.Plan, pod *corev1.Pod, req corev1.ResourceList, st step, kind nodeKind) *Placement {
	for _, n := range c.nodes {
		if n.kind != kind || !c.holds(plan, st, n.node) {
			continue
		}
		if ok, _ := n.fits(pod, req); !ok {
			continue
		}
		n.add(req)
		n.hosts = append(n.hosts, podKey(pod))
		where := map[nodeKind]Where{kindUsable: OnUsable, kindComing: OnComing, kindNew: OnNew}[kind]
		return &Placement{Pod: podKey(pod), Node: n.name, Pool: n.pool, Where: where}
	}
	return nil
}

// onNew opens a node in the first elastic pool of the step that can take
// pod, and adds it to the policy engine's snapshot.
func (c *cluster) onNew(s *Snapshot, plan *resourcepolicy.Plan, pod *corev1.Pod, req corev1.ResourceList, st step, opened map[string][]*simNode) (*Placement, string) {
	var why []string
	for _, p := range c.pools {
		np := p.NodePool
		if !elastic(np) {
			continue
		}
		tmpl := cloudprovider.TemplateNode(np, "", "")
		if !c.holds(plan, st, tmpl) {
			continue
		}
		if s.Now.Before(p.BackoffUntil) {
			why = append(why, fmt.Sprintf("pool %s backing off after a provider error", np.Name))
			continue
		}
		if ok, reason := shapeFits(pod, tmpl); !ok {
			why = append(why, fmt.Sprintf("pool %s: %s", np.Name, reason))
			continue
		}
		if !capacityFits(tmpl.Status.Allocatable, req) {
			why = append(why, fmt.Sprintf("pool %s: pod is bigger than a node", np.Name))
			continue
		}
		if c.poolSize[np.Name]+len(opened[np.Name]) >= MaxSize(np) {
			why = append(why, fmt.Sprintf("pool %s at max size %d", np.Name, MaxSize(np)))
			continue
		}
		tmpl.Name = fmt.Sprintf("%s#%d", np.Name, len(opened[np.Name])+1)
		tmpl.Labels[corev1.LabelHostname] = tmpl.Name
		n := newSimNode(tmpl, np.Name, kindNew)
		n.add(req)
		n.hosts = append(n.hosts, podKey(pod))
		opened[np.Name] = append(opened[np.Name], n)
		c.nodes = append(c.nodes, n)
		c.byName[n.name] = n
		c.rp.AddNode(tmpl)
		return &Placement{Pod: podKey(pod), Node: n.name, Pool: np.Name, Where: OnNew}, ""
	}
	if len(why) == 0 {
		return nil, "no node has room and no elastic pool matches"
	}
	return nil, strings.Join(why, ", ")
}

// biggerFirst orders pods by GPUs, then CPU, then memory, descending, then
// by creation and name, so packing is first-fit decreasing and deterministic.
func biggerFirst(a, b *corev1.Pod, reqs map[*corev1.Pod]corev1.ResourceList) bool {
	for _, r := range []corev1.ResourceName{spillwayv1alpha1.ResourceGPU, corev1.ResourceCPU, corev1.ResourceMemory} {
		qa, qb := quantity(reqs[a], r), quantity(reqs[b], r)
		if c := qa.Cmp(qb); c != 0 {
			return c > 0
		}
	}
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return podKey(a) < podKey(b)
}

func podKey(p *corev1.Pod) string { return p.Namespace + "/" + p.Name }
