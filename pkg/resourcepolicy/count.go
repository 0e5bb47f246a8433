package resourcepolicy

import (
	corev1 "k8s.io/api/core/v1"

	schedulingv1alpha1 "github.com/spillway-io/spillway/apis/scheduling/v1alpha1"
)

// PodCount is what one pod adds to the usage of a policy. It is the unit of
// the counting rules (see the package documentation), so that a caller can
// keep usage incrementally (add a pod's PodCount when it is placed, remove
// it when it goes) instead of recounting every pod for each question.
type PodCount struct {
	// Group is the pod's matchLabelKeys group ("" without keys).
	Group string
	// Placed is false for a pod not bound or assumed to a node (pending).
	Placed bool
	// Unit is the index of the unit of the pod's node, -1 outside every
	// unit (or not placed).
	Unit int
	// Counts tells whether the pod counts for Unit's max and maxResources.
	Counts bool
	// Terminating is set for a terminating pod of Unit (whatever
	// ignoreTerminatingPod says; LackResourceAndNoTerminating looks at it).
	Terminating bool
	// Requests are the pod's requests when Counts is set.
	Requests corev1.ResourceList
}

// CountPod tells what pod adds to rp's usage when it is on node: node is the
// pod's node (nil when it is pending or its node is unknown), or the node a
// pod is assumed to (scheduler Reserve, autoscaler simulation). ok is false
// for a pod rp does not count at all: another namespace, not selected,
// finished, or lacking a matchLabelKeys label.
func CountPod(rp *schedulingv1alpha1.ResourcePolicy, pod *corev1.Pod, node *corev1.Node) (c PodCount, ok bool) {
	if pod.Namespace != rp.Namespace || finished(pod) || !subset(rp.Spec.Selector, pod.Labels) {
		return PodCount{}, false
	}
	group, err := Group(rp, pod)
	if err != nil {
		return PodCount{}, false // such a pod was never placed by the policy; it counts nowhere
	}
	return countOn(rp, pod, group, UnitOf(rp, node), node != nil || pod.Spec.NodeName != ""), true
}

func countOn(rp *schedulingv1alpha1.ResourcePolicy, pod *corev1.Pod, group string, unit int, placed bool) PodCount {
	c := PodCount{Group: group, Placed: placed, Unit: -1}
	if !placed {
		return c
	}
	c.Unit = unit
	if unit < 0 {
		return c
	}
	c.Counts, c.Terminating = counted(rp, &rp.Spec.Units[unit], pod)
	if c.Counts {
		c.Requests = PodRequests(pod)
	}
	return c
}

// GroupUsage is what the units of one policy hold for one matchLabelKeys
// group.
type GroupUsage struct {
	// Units is indexed like the policy's units.
	Units []UnitUsage
	// Terminating counts the terminating pods per unit.
	Terminating []int32
	// Outside counts placed pods outside every unit, Pending pods not placed.
	Outside, Pending int32
}

// NewGroupUsage is an empty usage for a policy of n units.
func NewGroupUsage(n int) *GroupUsage {
	g := &GroupUsage{Units: make([]UnitUsage, n), Terminating: make([]int32, n)}
	for i := range g.Units {
		g.Units[i].Requested = corev1.ResourceList{}
	}
	return g
}

// Add counts c (from CountPod with the same policy and group) in g.
func (g *GroupUsage) Add(c PodCount) { g.apply(c, 1) }

// Remove takes back a PodCount added before.
func (g *GroupUsage) Remove(c PodCount) { g.apply(c, -1) }

func (g *GroupUsage) apply(c PodCount, sign int32) {
	switch {
	case !c.Placed:
		g.Pending += sign
		return
	case c.Unit < 0 || c.Unit >= len(g.Units):
		g.Outside += sign
		return
	}
	if c.Terminating {
		g.Terminating[c.Unit] += sign
	}
	if !c.Counts {
		return
	}
	u := &g.Units[c.Unit]
	u.Pods += sign
	if u.Requested == nil {
		u.Requested = corev1.ResourceList{}
	}
	if sign > 0 {
		addTo(u.Requested, c.Requests)
		return
	}
	for r, q := range c.Requests {
		v := u.Requested[r]
		v.Sub(q)
		if v.IsZero() {
			delete(u.Requested, r)
		} else {
			u.Requested[r] = v
		}
	}
}

// DeepCopy returns a copy sharing nothing with g.
func (g *GroupUsage) DeepCopy() *GroupUsage {
	out := &GroupUsage{Units: make([]UnitUsage, len(g.Units)), Terminating: append([]int32(nil), g.Terminating...),
		Outside: g.Outside, Pending: g.Pending}
	for i, u := range g.Units {
		out.Units[i] = UnitUsage{Pods: u.Pods, Requested: u.Requested.DeepCopy()}
		if out.Units[i].Requested == nil {
			out.Units[i].Requested = corev1.ResourceList{}
		}
	}
	return out
}

// SetGroupUsage makes the snapshot use u for rp's group instead of counting
// its pods: the scheduler plugin keeps usage incrementally from pod events
// and feeds it here, so a plan costs O(units) instead of O(pods). Other
// groups of rp are still counted from the snapshot's pods. The snapshot
// keeps a copy of u (Assume changes the copy only). A u with fewer units
// than rp is padded with empty units.
func (s *Snapshot) SetGroupUsage(rp *schedulingv1alpha1.ResourcePolicy, group string, u *GroupUsage) {
	n := len(rp.Spec.Units)
	g := NewGroupUsage(n)
	if u != nil {
		c := u.DeepCopy()
		copy(g.Units, c.Units)
		copy(g.Terminating, c.Terminating)
		g.Outside, g.Pending = c.Outside, c.Pending
	}
	s.groupUsage(rp, group) // counts rp's other groups from the snapshot's pods
	s.usage[Key(rp)][group] = g
}
