package resourcepolicy

import (
	corev1 "k8s.io/api/core/v1"

	schedulingv1alpha1 "github.com/spillway-io/spillway/apis/scheduling/v1alpha1"
)

// DeletionCostAnnotation is the annotation a ReplicaSet reads on scale-down.
const DeletionCostAnnotation = "controller.kubernetes.io/pod-deletion-cost"

// CostStep is the deletion-cost distance between two consecutive units.
const CostStep = 100

// DeletionCost is the pod-deletion-cost matching pod's unit so that scale-in
// goes in reverse unit order: unit i of n costs (n-i)*CostStep, a pod outside
// every unit costs 0. ok is false for a pod with no policy, no node, or an
// error (conflict, missing group label): such a pod is left alone.
func (s *Snapshot) DeletionCost(pod *corev1.Pod) (cost int32, ok bool) {
	if pod.Spec.NodeName == "" {
		return 0, false
	}
	rp, err := s.Match(pod)
	if err != nil || rp == nil {
		return 0, false
	}
	if _, err := Group(rp, pod); err != nil {
		return 0, false
	}
	return CostOfUnit(rp, s.UnitOfNode(rp, pod.Spec.NodeName)), true
}

// CostOfUnit is the deletion cost of a pod on unit (-1: outside every unit).
func CostOfUnit(rp *schedulingv1alpha1.ResourcePolicy, unit int) int32 {
	if unit < 0 {
		return 0
	}
	return int32(len(rp.Spec.Units)-unit) * CostStep
}

// Status is rp's status computed from the snapshot (all groups summed):
// pods and requests per unit, pods outside units and pending pods.
// ObservedGeneration and Conditions are left to the caller.
func (s *Snapshot) Status(rp *schedulingv1alpha1.ResourcePolicy) schedulingv1alpha1.ResourcePolicyStatus {
	s.groupUsage(rp, "") // computes the policy's usage
	st := schedulingv1alpha1.ResourcePolicyStatus{Units: make([]schedulingv1alpha1.UnitStatus, len(rp.Spec.Units))}
	for i := range rp.Spec.Units {
		st.Units[i] = schedulingv1alpha1.UnitStatus{Index: int32(i), Resource: rp.Spec.Units[i].Resource, Max: rp.Spec.Units[i].Max}
	}
	for _, g := range s.usage[Key(rp)] {
		for i := range g.Units {
			st.Units[i].Pods += g.Units[i].Pods
			if len(g.Units[i].Requested) > 0 {
				if st.Units[i].Requested == nil {
					st.Units[i].Requested = corev1.ResourceList{}
				}
				addTo(st.Units[i].Requested, g.Units[i].Requested)
			}
		}
		st.OutsideUnits += g.Outside
		st.Pending += g.Pending
	}
	return st
}
