package nodeautoscaler

import (
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
)

// Removal is a node the plan removes.
type Removal struct {
	Node string
	Pool string
	// Empty: no pods to move; empty nodes go in bulk, others one at a time.
	Empty bool
	// Reason says why, for events.
	Reason string
}

// ScaleDownPlan is the decision of one scale-down pass.
type ScaleDownPlan struct {
	// UnneededSince is, for every node unneeded now, since when; the caller
	// keeps it and gives it back to the next pass.
	UnneededSince map[string]time.Time
	// Remove are the nodes to cordon, drain and delete now, sorted by node.
	Remove []Removal
}

// ScaleDownState is what the caller remembers between scale-down passes.
type ScaleDownState struct {
	// UnneededSince from the previous pass.
	UnneededSince map[string]time.Time
	// Draining are the nodes being drained now (cordoned by an earlier pass).
	Draining []string
}

// PlanScaleDown finds the usable nodes of elastic pools whose pods could all
// go elsewhere (or that have none) and whose utilisation is below the pool's
// threshold, and removes those unneeded for the pool's unneeded time: never
// below the pool's min, never within the pool's delay after a scale-up, never
// a static pool's, empty nodes all at once, others one at a time and only
// when no other non-empty node is draining. Pods without a controller (bare
// pods) pin their node.
func PlanScaleDown(s Snapshot, st ScaleDownState) ScaleDownPlan {
	plan := ScaleDownPlan{UnneededSince: map[string]time.Time{}}
	pools := map[string]*Pool{}
	for i := range s.Pools {
		pools[s.Pools[i].NodePool.Name] = &s.Pools[i]
	}
	draining := map[string]bool{}
	for _, n := range st.Draining {
		draining[n] = true
	}
	podsOn := map[string][]*corev1.Pod{}
	for _, p := range s.Pods {
		if p.Spec.NodeName != "" && !terminal(p) && !daemon(p) {
			podsOn[p.Spec.NodeName] = append(podsOn[p.Spec.NodeName], p)
		}
	}
	c := buildCluster(&s)
	// Pods are never expected to move onto draining nodes, nor onto empty
	// nodes of elastic pools (which scale-down removes themselves).
	excluded := map[string]bool{}
	for n := range draining {
		excluded[n] = true
	}
	for _, n := range s.Nodes {
		if p := pools[PoolOfNode(n)]; p != nil && ScaleDownOf(p.NodePool).Enabled && len(podsOn[n.Name]) == 0 {
			excluded[n.Name] = true
		}
	}
	nonEmptyDraining := false
	for _, n := range st.Draining {
		if len(podsOn[n]) > 0 {
			nonEmptyDraining = true
		}
	}

	type candidate struct {
		node  *corev1.Node
		pool  *Pool
		empty bool
		since time.Time
	}
	var cands []candidate
	nodes := append([]*corev1.Node(nil), s.Nodes...)
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	for _, n := range nodes {
		pool := pools[PoolOfNode(n)]
		if pool == nil || draining[n.Name] || n.Spec.Unschedulable || n.DeletionTimestamp != nil {
			continue
		}
		sd := ScaleDownOf(pool.NodePool)
		if !sd.Enabled {
			continue
		}
		sn := c.byName[n.Name]
		if sn == nil || sn.kind != kindUsable {
			continue // coming nodes are the provision timeout's business
		}
		pods := podsOn[n.Name]
		if len(pods) > 0 {
			if utilization(n, pods) >= float64(sd.UtilizationThreshold) || !c.canMove(pods, n.Name, excluded, s.Now) {
				continue
			}
		}
		since, ok := st.UnneededSince[n.Name]
		if !ok {
			since = s.Now
		}
		plan.UnneededSince[n.Name] = since
		cands = append(cands, candidate{node: n, pool: pool, empty: len(pods) == 0, since: since})
	}

	sort.SliceStable(cands, func(i, j int) bool {
		if cands[i].empty != cands[j].empty {
			return cands[i].empty
		}
		return cands[i].since.Before(cands[j].since)
	})
	removing := map[string]int{}
	for _, n := range st.Draining {
		if sn := c.byName[n]; sn != nil {
			removing[sn.pool]++
		} else {
			for _, node := range s.Nodes {
				if node.Name == n {
					removing[PoolOfNode(node)]++
				}
			}
		}
	}
	oneNonEmpty := nonEmptyDraining
	for _, cd := range cands {
		np := cd.pool.NodePool
		sd := ScaleDownOf(np)
		if s.Now.Sub(cd.since) < sd.UnneededTime {
			continue
		}
		if !cd.pool.LastScaleUp.IsZero() && s.Now.Sub(cd.pool.LastScaleUp) < sd.DelayAfterScaleUp {
			continue
		}
		if c.poolSize[np.Name]-removing[np.Name] <= MinSize(np) {
			continue
		}
		if !cd.empty {
			if oneNonEmpty {
				continue
			}
			oneNonEmpty = true
		}
		removing[np.Name]++
		reason := fmt.Sprintf("empty for %s", s.Now.Sub(cd.since).Round(time.Second))
		if !cd.empty {
			reason = fmt.Sprintf("pods can move elsewhere; unneeded for %s", s.Now.Sub(cd.since).Round(time.Second))
		}
		plan.Remove = append(plan.Remove, Removal{Node: cd.node.Name, Pool: np.Name, Empty: cd.empty, Reason: reason})
	}
	sort.Slice(plan.Remove, func(i, j int) bool { return plan.Remove[i].Node < plan.Remove[j].Node })
	return plan
}

// canMove reports whether every pod could be placed on other usable nodes
// (not the node itself, not excluded ones) that its ResourcePolicy allows
// now: a unit its plan lists, nodes outside the units under prefer, or the
// unit the pod is in already (moving inside a unit changes none of its
// counts). It reserves the room it uses, so the pods of several candidates
// do not count on the same free space.
func (c *cluster) canMove(pods []*corev1.Pod, from string, excluded map[string]bool, now time.Time) bool {
	type res struct {
		n   *simNode
		req corev1.ResourceList
	}
	var done []res
	undo := func() {
		for _, r := range done {
			r.n.remove(r.req)
		}
	}
	for _, p := range pods {
		if !controlled(p) {
			undo()
			return false
		}
		plan, err := c.rp.Plan(p, now)
		if err != nil {
			undo()
			return false // the scheduler would not place its replacement
		}
		here := -1
		if plan.Policy != nil {
			here = c.rp.UnitOfNode(plan.Policy, from)
		}
		req := podRequests(p)
		var target *simNode
		for _, n := range c.nodes {
			if n.kind != kindUsable || n.name == from || excluded[n.name] {
				continue
			}
			if plan.Policy != nil {
				if u := c.unitOf(plan.Policy, n.node); !plan.Allows(u) && u != here {
					continue
				}
			}
			if ok, _ := n.fits(p, req); ok {
				target = n
				break
			}
		}
		if target == nil {
			undo()
			return false
		}
		target.add(req)
		done = append(done, res{target, req})
	}
	return true
}

// utilization is the percentage of the node's GPUs (or CPU when it has
// none) its pods request.
func utilization(n *corev1.Node, pods []*corev1.Pod) float64 {
	name := corev1.ResourceName(spillwayv1alpha1.ResourceGPU)
	alloc := quantity(n.Status.Allocatable, name)
	if alloc.IsZero() {
		name = corev1.ResourceCPU
		alloc = quantity(n.Status.Allocatable, name)
	}
	if alloc.IsZero() {
		return 0
	}
	var used int64
	for _, p := range pods {
		q := quantity(podRequests(p), name)
		used += q.MilliValue()
	}
	return 100 * float64(used) / float64(alloc.MilliValue())
}

func daemon(p *corev1.Pod) bool {
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

func controlled(p *corev1.Pod) bool {
	for _, o := range p.OwnerReferences {
		if o.Controller != nil && *o.Controller {
			return true
		}
	}
	return false
}
