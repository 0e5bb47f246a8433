package resourcepolicy

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	schedulingv1alpha1 "github.com/spillway-io/spillway/apis/scheduling/v1alpha1"
)

// Plan is where a pod may go now under its policy.
type Plan struct {
	// Policy is the matching policy; nil when none matches (then every node
	// is allowed and the rest of the plan is empty).
	Policy *schedulingv1alpha1.ResourcePolicy
	// Units the pod may use now, most preferred first.
	Units []UnitChoice
	// Skipped lists the units passed over before the plan stopped, and why.
	Skipped []Skip
	// Others is true when nodes outside every unit are allowed after the
	// units (strategy prefer, and the plan did not stop at a unit).
	Others bool
	// Wait is set when the plan stops at a unit its whenTryNextUnits policy
	// does not let the pod leave yet.
	Wait *Wait
}

// UnitChoice is one unit the pod may use.
type UnitChoice struct {
	Index int
	Usage UnitUsage
}

// Skip is a unit the pod may not use, with a sentence saying why.
type Skip struct {
	Index  int
	Reason string
}

// Wait says the pod is held at a unit.
type Wait struct {
	Index int
	// Until is when the pod may move on (TimeoutOrExceedMax); zero when only
	// a change of the cluster can release it.
	Until  time.Time
	Reason string
}

// Allows tells whether the plan lets the pod use a node in unit (-1: a node
// outside every unit).
func (p *Plan) Allows(unit int) bool {
	if p.Policy == nil {
		return true
	}
	if unit < 0 {
		return p.Others
	}
	for _, u := range p.Units {
		if u.Index == unit {
			return true
		}
	}
	return false
}

// Rank is the preference of unit in the plan: 0 for the first listed unit,
// len(Units) for nodes outside every unit, -1 if not allowed.
func (p *Plan) Rank(unit int) int {
	if p.Policy == nil {
		return 0
	}
	for i, u := range p.Units {
		if u.Index == unit {
			return i
		}
	}
	if unit < 0 && p.Others {
		return len(p.Units)
	}
	return -1
}

// Explain is a sentence for a person on why a pod found no node in the plan.
func (p *Plan) Explain() string {
	if p.Policy == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "ResourcePolicy %s (%s):", Key(p.Policy), strategy(p.Policy))
	for _, s := range p.Skipped {
		fmt.Fprintf(&b, " unit %d (%s) skipped: %s;", s.Index, p.Policy.Spec.Units[s.Index].Resource, s.Reason)
	}
	if len(p.Units) > 0 {
		idx := make([]string, len(p.Units))
		for i, u := range p.Units {
			idx[i] = fmt.Sprintf("%d (%s)", u.Index, p.Policy.Spec.Units[u.Index].Resource)
		}
		fmt.Fprintf(&b, " allowed units %s have no node that fits;", strings.Join(idx, ", "))
	}
	switch {
	case p.Wait != nil:
		fmt.Fprintf(&b, " waiting at unit %d: %s", p.Wait.Index, p.Wait.Reason)
	case p.Others:
		b.WriteString(" no other node fits either")
	default:
		b.WriteString(" strategy required allows no node outside the units")
	}
	return strings.TrimSuffix(b.String(), ";")
}

func strategy(rp *schedulingv1alpha1.ResourcePolicy) string {
	if Required(rp) {
		return "required"
	}
	return "prefer"
}

// Plan computes where pod may go at now. A pod matched by no policy gets an
// empty Plan (Policy nil) and no error. Errors: *ConflictError,
// *MissingLabelKeyError, or an invalid timeout.
func (s *Snapshot) Plan(pod *corev1.Pod, now time.Time) (Plan, error) {
	rp, err := s.Match(pod)
	if err != nil || rp == nil {
		return Plan{}, err
	}
	return s.PlanFor(rp, pod, now)
}

// PlanFor is Plan with the policy already matched.
func (s *Snapshot) PlanFor(rp *schedulingv1alpha1.ResourcePolicy, pod *corev1.Pod, now time.Time) (Plan, error) {
	group, err := Group(rp, pod)
	if err != nil {
		return Plan{}, err
	}
	g := s.groupUsage(rp, group)
	req := PodRequests(pod)
	policy := TryNext(rp)
	var timeout time.Duration
	if policy == schedulingv1alpha1.TimeoutOrExceedMax {
		if timeout, err = Timeout(rp); err != nil {
			return Plan{}, err
		}
	}
	plan := Plan{Policy: rp}
	waited := 0
	for i := range rp.Spec.Units {
		u := &rp.Spec.Units[i]
		use := g.Units[i]
		if full, why := atMax(u, use, req); full {
			plan.Skipped = append(plan.Skipped, Skip{Index: i, Reason: why})
			continue
		}
		plan.Units = append(plan.Units, UnitChoice{Index: i, Usage: use})
		last := i == len(rp.Spec.Units)-1
		switch policy {
		case schedulingv1alpha1.ExceedMax:
			if !last || !Required(rp) {
				plan.Wait = &Wait{Index: i, Reason: "whenTryNextUnits ExceedMax: the pod waits for room in this unit until it reaches max"}
			}
		case schedulingv1alpha1.TimeoutOrExceedMax:
			waited++
			until := pod.CreationTimestamp.Add(time.Duration(waited) * timeout)
			if now.Before(until) && (!last || !Required(rp)) {
				plan.Wait = &Wait{Index: i, Until: until,
					Reason: fmt.Sprintf("whenTryNextUnits TimeoutOrExceedMax: the pod may move on at %s (%s after creation)",
						until.UTC().Format(time.RFC3339), time.Duration(waited)*timeout)}
			}
		case schedulingv1alpha1.LackResourceAndNoTerminating:
			if n := g.Terminating[i]; n > 0 && (!last || !Required(rp)) {
				plan.Wait = &Wait{Index: i, Reason: fmt.Sprintf("whenTryNextUnits LackResourceAndNoTerminating: %d pod(s) of the unit are terminating", n)}
			}
		}
		if plan.Wait != nil {
			return plan, nil
		}
	}
	plan.Others = !Required(rp)
	return plan, nil
}
