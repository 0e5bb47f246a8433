package nodeautoscaler

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	schedulingv1alpha1 "github.com/spillway-io/spillway/apis/scheduling/v1alpha1"
	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/pkg/cloudprovider"
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

// step is one group of nodes a pod may use, in order.
type step struct {
	unit  int // -1: no unit
	key   any // identifies the node group for the membership memo
	holds func(nodeLabels map[string]string) bool
}

// anyNode is the memo key of the step that takes every node.
type anyNode struct{}

// outside is the memo key of the step of nodes outside a policy's units.
type outside struct {
	rp *schedulingv1alpha1.ResourcePolicy
}

// member reports, memoised per step group and node, whether the step holds n.
func (c *cluster) member(st step, i int) bool {
	m := c.memo[st.key]
	for len(m) <= i {
		m = append(m, 0)
	}
	if m[i] == 0 {
		m[i] = 2
		if st.holds(c.nodes[i].node.Labels) {
			m[i] = 1
		}
	}
	c.memo[st.key] = m
	return m[i] == 1
}

func stepsFor(rp *schedulingv1alpha1.ResourcePolicy) []step {
	if rp == nil {
		return []step{{unit: -1, key: anyNode{}, holds: func(map[string]string) bool { return true }}}
	}
	var out []step
	for i := range rp.Spec.Units {
		u := &rp.Spec.Units[i]
		out = append(out, step{unit: i, key: u, holds: func(l map[string]string) bool { return unitHolds(u, l) }})
	}
	if strategyPrefer(rp) {
		out = append(out, step{unit: -1, key: outside{rp}, holds: func(l map[string]string) bool { return !inAnyUnit(rp, l) }})
	}
	return out
}

func (c *cluster) placeOne(s *Snapshot, pod *corev1.Pod, req corev1.ResourceList, opened map[string][]*simNode) (*Placement, string) {
	rp, err := c.policies.match(pod)
	if err != nil {
		return nil, err.Error()
	}
	var reasons []string
	for _, st := range stepsFor(rp) {
		where := "outside the policy's units"
		if rp == nil {
			where = "any node"
		}
		if st.unit >= 0 {
			where = fmt.Sprintf("unit %d", st.unit)
			if c.policies.atMax(rp, pod, st.unit, req) {
				reasons = append(reasons, where+": at max")
				continue
			}
		}
		if pl := c.onExisting(pod, req, st); pl != nil {
			return c.placed(rp, pod, st, pl, req), ""
		}
		if pl, why := c.onNew(s, pod, req, st, opened); pl != nil {
			return c.placed(rp, pod, st, pl, req), ""
		} else {
			reasons = append(reasons, where+": "+why)
		}
		if rp != nil && st.unit >= 0 && c.policies.waitsForUnit(rp, pod, st.unit, s.Now) {
			reasons = append(reasons, fmt.Sprintf("policy waits for unit %d (%s)", st.unit, rp.Spec.WhenTryNextUnits.Policy))
			break
		}
	}
	if len(reasons) == 0 {
		reasons = append(reasons, "no unit allows it")
	}
	return nil, strings.Join(reasons, "; ")
}

func (c *cluster) placed(rp *schedulingv1alpha1.ResourcePolicy, pod *corev1.Pod, st step, pl *Placement, req corev1.ResourceList) *Placement {
	pl.Unit = st.unit
	if rp != nil && st.unit >= 0 {
		c.policies.place(rp, pod, st.unit, req)
	}
	return pl
}

// onExisting puts pod on a usable node, else a coming one, else one this
// plan already opened.
func (c *cluster) onExisting(pod *corev1.Pod, req corev1.ResourceList, st step) *Placement {
	for _, kind := range []nodeKind{kindUsable, kindComing, kindNew} {
		for i, n := range c.nodes {
			if n.kind != kind || !c.member(st, i) {
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
	}
	return nil
}

// onNew opens a node in the first elastic pool of the step that can take pod.
func (c *cluster) onNew(s *Snapshot, pod *corev1.Pod, req corev1.ResourceList, st step, opened map[string][]*simNode) (*Placement, string) {
	var why []string
	for _, p := range c.pools {
		np := p.NodePool
		if !elastic(np) {
			continue
		}
		tmpl := cloudprovider.TemplateNode(np, "", "")
		if !st.holds(tmpl.Labels) {
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
		n := newSimNode(tmpl, np.Name, kindNew)
		n.add(req)
		n.hosts = append(n.hosts, podKey(pod))
		opened[np.Name] = append(opened[np.Name], n)
		c.nodes = append(c.nodes, n)
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
