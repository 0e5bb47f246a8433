package nodeautoscaler

import (
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"

	schedulingv1alpha1 "github.com/spillway-io/spillway/apis/scheduling/v1alpha1"
)

// policies answers the questions the simulation asks of ResourcePolicies:
// which policy matches a pod, which nodes a unit holds, and how many of a
// policy's pods each unit holds. It follows the ACK semantics described in
// docs/node-autoscaling.md; the scheduler plugin applies the same rules.
type policies struct {
	list []*schedulingv1alpha1.ResourcePolicy // sorted by namespace/name
	// count[group][unit] = matched pods counted in the unit, per group (see group).
	count map[string][]int32
	// used[group][unit] = summed requests of those pods (for maxResources).
	used map[string][]corev1.ResourceList
	// terminating[policy key][unit]: a matched pod of the unit is terminating.
	terminating map[string]map[int]bool
}

func newPolicies(list []*schedulingv1alpha1.ResourcePolicy) *policies {
	l := append([]*schedulingv1alpha1.ResourcePolicy(nil), list...)
	sort.Slice(l, func(i, j int) bool { return policyKey(l[i]) < policyKey(l[j]) })
	return &policies{list: l, count: map[string][]int32{}, used: map[string][]corev1.ResourceList{},
		terminating: map[string]map[int]bool{}}
}

// group is the key pods of rp are counted under: the policy, plus the
// values of its matchLabelKeys. ok is false when pod lacks one of them.
func group(rp *schedulingv1alpha1.ResourcePolicy, pod *corev1.Pod) (key string, ok bool) {
	key = policyKey(rp)
	for _, k := range rp.Spec.MatchLabelKeys {
		v, has := pod.Labels[k]
		if !has {
			return "", false
		}
		key += "\x00" + k + "=" + v
	}
	return key, true
}

// counters returns the per-unit counters of a group, creating them.
func (p *policies) counters(rp *schedulingv1alpha1.ResourcePolicy, key string) ([]int32, []corev1.ResourceList) {
	if _, ok := p.count[key]; !ok {
		p.count[key] = make([]int32, len(rp.Spec.Units))
		used := make([]corev1.ResourceList, len(rp.Spec.Units))
		for i := range used {
			used[i] = corev1.ResourceList{}
		}
		p.used[key] = used
	}
	return p.count[key], p.used[key]
}

func policyKey(rp *schedulingv1alpha1.ResourcePolicy) string { return rp.Namespace + "/" + rp.Name }

// match returns the policy selecting pod, nil when none does, and an error
// when more than one does (the scheduler rejects such a pod).
func (p *policies) match(pod *corev1.Pod) (*schedulingv1alpha1.ResourcePolicy, error) {
	var found []*schedulingv1alpha1.ResourcePolicy
	for _, rp := range p.list {
		if rp.Namespace != pod.Namespace {
			continue
		}
		if subset(rp.Spec.Selector, pod.Labels) {
			found = append(found, rp)
		}
	}
	switch len(found) {
	case 0:
		return nil, nil
	case 1:
		if _, ok := group(found[0], pod); !ok {
			return nil, fmt.Errorf("pod %s/%s lacks a label of ResourcePolicy %s's matchLabelKeys %v", pod.Namespace, pod.Name, policyKey(found[0]), found[0].Spec.MatchLabelKeys)
		}
		return found[0], nil
	default:
		return nil, fmt.Errorf("pod %s/%s is matched by ResourcePolicies %s and %s", pod.Namespace, pod.Name, policyKey(found[0]), policyKey(found[1]))
	}
}

// unitHolds reports whether a node with these labels belongs to the unit.
func unitHolds(u *schedulingv1alpha1.Unit, nodeLabels map[string]string) bool {
	return subset(u.NodeSelector, nodeLabels)
}

// subset reports whether every key of want has its value in have.
func subset(want, have map[string]string) bool {
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			return false
		}
	}
	return true
}

// inAnyUnit reports whether a node with these labels belongs to some unit of rp.
func inAnyUnit(rp *schedulingv1alpha1.ResourcePolicy, nodeLabels map[string]string) bool {
	for i := range rp.Spec.Units {
		if unitHolds(&rp.Spec.Units[i], nodeLabels) {
			return true
		}
	}
	return false
}

// counts reports whether a pod placed in unit u counts for it.
func counts(rp *schedulingv1alpha1.ResourcePolicy, u *schedulingv1alpha1.Unit, pod *corev1.Pod) bool {
	if pod.DeletionTimestamp != nil && (rp.Spec.IgnoreTerminatingPod == nil || *rp.Spec.IgnoreTerminatingPod) {
		return false
	}
	if rp.Spec.IgnorePreviousPod && pod.CreationTimestamp.Before(&rp.CreationTimestamp) {
		return false
	}
	for k, v := range u.PodLabels {
		if pod.Labels[k] != v {
			return false
		}
	}
	for k, v := range u.PodAnnotations {
		if pod.Annotations[k] != v {
			return false
		}
	}
	return true
}

// observe counts a bound pod on a node with nodeLabels.
func (p *policies) observe(pod *corev1.Pod, nodeLabels map[string]string) {
	rp, err := p.match(pod)
	if rp == nil || err != nil {
		return
	}
	key, _ := group(rp, pod)
	c, used := p.counters(rp, key)
	for i := range rp.Spec.Units {
		u := &rp.Spec.Units[i]
		if pod.DeletionTimestamp != nil && unitHolds(u, nodeLabels) {
			if p.terminating[policyKey(rp)] == nil {
				p.terminating[policyKey(rp)] = map[int]bool{}
			}
			p.terminating[policyKey(rp)][i] = true
		}
		if unitHolds(u, nodeLabels) && counts(rp, u, pod) {
			c[i]++
			addTo(used[i], podRequests(pod))
			return // a node counts for the first unit that holds it
		}
	}
}

// atMax reports whether unit i of rp cannot take one more pod asking req:
// it holds its max of pods, or req would pass its maxResources.
func (p *policies) atMax(rp *schedulingv1alpha1.ResourcePolicy, pod *corev1.Pod, i int, req corev1.ResourceList) bool {
	key, _ := group(rp, pod)
	count, used := p.counters(rp, key)
	u := &rp.Spec.Units[i]
	if u.Max != nil && count[i] >= *u.Max {
		return true
	}
	for name, limit := range u.MaxResources {
		sum := used[i][name].DeepCopy()
		sum.Add(req[name])
		if sum.Cmp(limit) > 0 {
			return true
		}
	}
	return false
}

// place counts a planned pod asking req in unit i of rp.
func (p *policies) place(rp *schedulingv1alpha1.ResourcePolicy, pod *corev1.Pod, i int, req corev1.ResourceList) {
	key, _ := group(rp, pod)
	count, used := p.counters(rp, key)
	count[i]++
	addTo(used[i], req)
}

func addTo(sum, req corev1.ResourceList) {
	for name, q := range req {
		cur := sum[name].DeepCopy()
		cur.Add(q)
		sum[name] = cur
	}
}

// waitsForUnit reports whether a pod of rp that found no room in unit i
// (below its max) must wait for it instead of going on: always under
// ExceedMax; under TimeoutOrExceedMax until the pod has waited the timeout;
// under LackResourceAndNoTerminating while a pod of the unit terminates.
func (p *policies) waitsForUnit(rp *schedulingv1alpha1.ResourcePolicy, pod *corev1.Pod, i int, now time.Time) bool {
	w := rp.Spec.WhenTryNextUnits
	if w == nil {
		return false
	}
	switch w.Policy {
	case schedulingv1alpha1.ExceedMax:
		return true
	case schedulingv1alpha1.TimeoutOrExceedMax:
		timeout, err := time.ParseDuration(w.Timeout)
		if err != nil || timeout <= 0 {
			timeout, _ = time.ParseDuration(schedulingv1alpha1.DefaultTryNextTimeout)
		}
		return now.Sub(pod.CreationTimestamp.Time) < timeout
	case schedulingv1alpha1.LackResourceAndNoTerminating:
		return p.terminating[policyKey(rp)][i]
	}
	return false
}

// strategyPrefer reports whether the pod may use nodes outside the units.
func strategyPrefer(rp *schedulingv1alpha1.ResourcePolicy) bool {
	return rp.Spec.Strategy != schedulingv1alpha1.StrategyRequired
}
