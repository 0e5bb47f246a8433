// Package hpa is the Kubernetes HorizontalPodAutoscaler's (autoscaling/v2)
// decision for one HPA with a single Pods metric and an averageValue target,
// as kube-controller-manager v1.37 takes it, written as a pure function: the
// caller passes the time, the pods with their metric values, the spec and the
// state the controller keeps between syncs (its recommendations and scale
// events), and gets back the decision and the new state. It reads no clock
// and starts no goroutine, so a simulation can run it on simulated time.
//
// What it follows (pkg/controller/podautoscaler of Kubernetes):
//   - the replica calculator for plain (Pods) metrics: pods being deleted or
//     failed are ignored; Pending pods are "unready" and count as 0 on a
//     scale-up; running pods without a metric are "missing" and count as 0 on a
//     scale-up and as the target on a scale-down; desired = ceil(ratio × pods
//     counted), ratio = (sum of milli-values / pods, integer division) /
//     target; no change within the tolerance (10 %) or when the unready or
//     missing pods would flip the direction;
//   - current replicas above max or below min are set to the bound without
//     reading metrics; zero current replicas disable scaling;
//   - without spec.behavior (what Spillway's HPA carries): the downscale
//     stabilisation (the highest recommendation of the last 300 s,
//     --horizontal-pod-autoscaler-downscale-stabilization) and a scale-up
//     limit of max(2 × current, 4);
//   - with spec.behavior: per-direction stabilisation windows and rate
//     policies (Pods/Percent per period, selectPolicy Max/Min/Disabled) over
//     the scale events of the period, as the defaults of autoscaling/v2 set
//     them (up: no window, max(100 %, 4 pods) per 15 s; down: 300 s, 100 %
//     per 15 s).
//
// The sync period (15 s) and the metric pipeline are the caller's: call
// Reconcile once per sync with the values the metrics API serves then.
package hpa

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// Phase is what the replica calculator reads of a pod's state.
type Phase int

// Phases.
const (
	// PodRunning pods are counted (with their metric, or as missing).
	PodRunning Phase = iota
	// PodPending pods (not scheduled, or containers not started) are unready.
	PodPending
	// PodDeleting pods (deletionTimestamp set) and failed pods are ignored.
	PodDeleting
)

// Pod is one pod of the scale target with the metric the API serves for it.
type Pod struct {
	Name  string
	Phase Phase
	// HasMetric is true when the metrics API returned a value for the pod.
	HasMetric bool
	// MilliValue is the metric in thousandths (Quantity.MilliValue()).
	MilliValue int64
}

// Tolerance is the ratio band around 1 within which nothing changes.
type Tolerance struct {
	Down, Up float64
}

// DefaultTolerance is kube-controller-manager's
// --horizontal-pod-autoscaler-tolerance.
var DefaultTolerance = Tolerance{Down: 0.1, Up: 0.1}

func (t Tolerance) within(ratio float64) bool {
	return 1-t.Down <= ratio && ratio <= 1+t.Up
}

// ErrNoMetrics is returned when no counted pod has a metric (the HPA then
// keeps the replica count and reports FailedGetPodsMetric).
var ErrNoMetrics = errors.New("did not receive metrics for targeted pods (pods might be unready)")

// PlainMetricReplicas is the replica calculator for a Pods metric with an
// averageValue target (milli-units): the proposed replica count and the
// current average (milli). pods are all the pods the HPA's selector matches.
func PlainMetricReplicas(pods []Pod, currentReplicas int32, targetMilli int64, tol Tolerance) (int32, int64, error) {
	if len(pods) == 0 {
		return 0, 0, errors.New("no pods returned by selector while calculating replica count")
	}
	if targetMilli <= 0 {
		return 0, 0, fmt.Errorf("target average value %dm must be positive", targetMilli)
	}
	var (
		values          []int64 // counted pods' values
		ready           int
		unready, missed int
	)
	for _, p := range pods {
		switch {
		case p.Phase == PodDeleting:
		case p.Phase == PodPending:
			unready++
		case !p.HasMetric:
			missed++
		default:
			ready++
			values = append(values, p.MilliValue)
		}
	}
	if len(values) == 0 {
		return 0, 0, ErrNoMetrics
	}
	ratio, usage := usageRatio(values, targetMilli)
	scaleUpWithUnready := unready > 0 && ratio > 1
	if !scaleUpWithUnready && missed == 0 {
		if tol.within(ratio) {
			return currentReplicas, usage, nil
		}
		return int32(math.Ceil(ratio * float64(ready))), usage, nil
	}
	if missed > 0 {
		fill := int64(-1)
		switch {
		case ratio < 1:
			fill = targetMilli // scale-down: missing pods use the target
		case ratio > 1:
			fill = 0 // scale-up: missing pods use nothing
		}
		if fill >= 0 {
			for range missed {
				values = append(values, fill)
			}
		}
	}
	if scaleUpWithUnready {
		for range unready {
			values = append(values, 0)
		}
	}
	newRatio, _ := usageRatio(values, targetMilli)
	if tol.within(newRatio) || (ratio < 1 && newRatio > 1) || (ratio > 1 && newRatio < 1) {
		return currentReplicas, usage, nil
	}
	n := int32(math.Ceil(newRatio * float64(len(values))))
	if (newRatio < 1 && n > currentReplicas) || (newRatio > 1 && n < currentReplicas) {
		return currentReplicas, usage, nil
	}
	return n, usage, nil
}

// usageRatio is the metrics client's: integer mean of the milli-values over
// the target.
func usageRatio(values []int64, target int64) (float64, int64) {
	var total int64
	for _, v := range values {
		total += v
	}
	usage := total / int64(len(values))
	return float64(usage) / float64(target), usage
}

// PolicyType is a scaling policy's unit.
type PolicyType string

// Policy types.
const (
	PodsPolicy    PolicyType = "Pods"
	PercentPolicy PolicyType = "Percent"
)

// Policy limits the change over a period.
type Policy struct {
	Type   PolicyType
	Value  int32
	Period time.Duration
}

// Select picks among policies.
type Select string

// Select values.
const (
	SelectMax      Select = "Max"
	SelectMin      Select = "Min"
	SelectDisabled Select = "Disabled"
)

// Rules are one direction's behavior.
type Rules struct {
	StabilizationWindow time.Duration
	Select              Select
	Policies            []Policy
}

// Behavior is spec.behavior.
type Behavior struct {
	ScaleUp, ScaleDown Rules
}

// DefaultBehavior is what the apiserver fills in when spec.behavior is set
// without rules.
func DefaultBehavior() *Behavior {
	return &Behavior{
		ScaleUp: Rules{Select: SelectMax, Policies: []Policy{
			{Type: PercentPolicy, Value: 100, Period: 15 * time.Second},
			{Type: PodsPolicy, Value: 4, Period: 15 * time.Second},
		}},
		ScaleDown: Rules{StabilizationWindow: DefaultDownscaleStabilization, Select: SelectMax, Policies: []Policy{
			{Type: PercentPolicy, Value: 100, Period: 15 * time.Second},
		}},
	}
}

// Defaults of kube-controller-manager.
const (
	DefaultDownscaleStabilization = 300 * time.Second
	DefaultSyncPeriod             = 15 * time.Second
	scaleUpLimitFactor            = 2.0
	scaleUpLimitMinimum           = 4.0
)

// Spec is the HPA: bounds, the Pods metric's averageValue target, and the
// controller's settings.
type Spec struct {
	MinReplicas, MaxReplicas int32
	// TargetMilli is the averageValue target in milli-units (50 → 50000).
	TargetMilli int64
	Tolerance   Tolerance
	// DownscaleStabilization is the controller flag used without Behavior.
	DownscaleStabilization time.Duration
	// Behavior is spec.behavior; nil takes the legacy path (Spillway's HPA).
	Behavior *Behavior
}

// Validate reports a spec the HPA API would refuse.
func (s Spec) Validate() error {
	var errs []error
	if s.MinReplicas < 1 {
		errs = append(errs, fmt.Errorf("minReplicas %d: must be at least 1", s.MinReplicas))
	}
	if s.MaxReplicas < s.MinReplicas {
		errs = append(errs, fmt.Errorf("maxReplicas %d: must be at least minReplicas %d", s.MaxReplicas, s.MinReplicas))
	}
	if s.TargetMilli <= 0 {
		errs = append(errs, fmt.Errorf("target averageValue %dm: must be positive", s.TargetMilli))
	}
	if s.Tolerance.Down < 0 || s.Tolerance.Up < 0 {
		errs = append(errs, fmt.Errorf("tolerance %+v: must not be negative", s.Tolerance))
	}
	return errors.Join(errs...)
}

type recommendation struct {
	replicas int32
	at       time.Time
}

type scaleEvent struct {
	change   int32
	at       time.Time
	outdated bool
}

// State is what the controller keeps per HPA between syncs. The zero value is
// a controller that has not seen the HPA yet.
type State struct {
	recs       []recommendation
	ups, downs []scaleEvent
}

func (s State) clone() State {
	return State{recs: slices.Clone(s.recs), ups: slices.Clone(s.ups), downs: slices.Clone(s.downs)}
}

// Result is one sync's outcome.
type Result struct {
	// Desired is the replica count after the sync; Rescale says whether it
	// was written (Desired != current).
	Desired int32
	Rescale bool
	// Proposed is the replica calculator's proposal (before stabilisation
	// and limits); -1 when metrics were not read or failed.
	Proposed int32
	// UsageMilli is the current average of the metric.
	UsageMilli int64
	// Err is the metric error that stopped the sync (replicas unchanged).
	Err error
}

// Reconcile is one sync of the HPA at now with the target's current replica
// count (the scale's spec.replicas) and its pods. st is not changed.
func Reconcile(now time.Time, current int32, pods []Pod, spec Spec, st State) (Result, State) {
	st = st.clone()
	if st.recs == nil {
		st.recs = []recommendation{{current, now}}
	}
	res := Result{Proposed: -1}
	switch {
	case current == 0:
		// Scaling is disabled while the target is at zero.
		res.Desired = 0
		return res, st
	case current > spec.MaxReplicas:
		res.Desired = spec.MaxReplicas
	case current < spec.MinReplicas:
		res.Desired = spec.MinReplicas
	default:
		proposed, usage, err := PlainMetricReplicas(pods, current, spec.TargetMilli, spec.Tolerance)
		if err != nil {
			res.Desired, res.Err = current, err
			return res, st
		}
		res.Proposed, res.UsageMilli = proposed, usage
		if spec.Behavior == nil {
			res.Desired = st.normalize(now, current, proposed, spec)
		} else {
			res.Desired = st.normalizeWithBehavior(now, current, proposed, spec)
		}
	}
	res.Rescale = res.Desired != current
	if res.Rescale {
		st.storeScaleEvent(now, spec.Behavior, current, res.Desired)
	}
	return res, st
}

// normalize is the path without spec.behavior.
func (st *State) normalize(now time.Time, current, proposed int32, spec Spec) int32 {
	window := spec.DownscaleStabilization
	cutoff := now.Add(-window)
	stabilized := proposed
	old := -1
	for i, r := range st.recs {
		if r.at.Before(cutoff) {
			old = i
		} else if r.replicas > stabilized {
			stabilized = r.replicas
		}
	}
	if old >= 0 {
		st.recs[old] = recommendation{proposed, now}
	} else {
		st.recs = append(st.recs, recommendation{proposed, now})
	}
	upLimit := int32(math.Max(scaleUpLimitFactor*float64(current), scaleUpLimitMinimum))
	maxAllowed := min(spec.MaxReplicas, upLimit)
	switch {
	case stabilized < spec.MinReplicas:
		return spec.MinReplicas
	case stabilized > maxAllowed:
		return maxAllowed
	}
	return stabilized
}

// normalizeWithBehavior is the path with spec.behavior: stabilisation
// windows, then the rate policies, then the bounds.
func (st *State) normalizeWithBehavior(now time.Time, current, proposed int32, spec Spec) int32 {
	b := spec.Behavior
	up, down := proposed, proposed
	upCutoff := now.Add(-b.ScaleUp.StabilizationWindow)
	downCutoff := now.Add(-b.ScaleDown.StabilizationWindow)
	old := -1
	for i, r := range st.recs {
		if r.at.After(upCutoff) {
			up = min(up, r.replicas)
		}
		if r.at.After(downCutoff) {
			down = max(down, r.replicas)
		}
		if r.at.Before(upCutoff) && r.at.Before(downCutoff) {
			old = i
		}
	}
	rec := current
	if rec < up {
		rec = up
	}
	if rec > down {
		rec = down
	}
	if old >= 0 {
		st.recs[old] = recommendation{proposed, now}
	} else {
		st.recs = append(st.recs, recommendation{proposed, now})
	}

	switch {
	case rec > current:
		limit := max(scaleUpLimit(now, current, st.ups, st.downs, b.ScaleUp), current)
		if m := min(spec.MaxReplicas, limit); rec > m {
			return m
		}
	case rec < current:
		limit := min(scaleDownLimit(now, current, st.ups, st.downs, b.ScaleDown), current)
		if m := max(spec.MinReplicas, limit); rec < m {
			return m
		}
	}
	return rec
}

func changeInPeriod(now time.Time, period time.Duration, events []scaleEvent) int32 {
	cutoff := now.Add(-period)
	var n int32
	for _, e := range events {
		if e.at.After(cutoff) {
			n += e.change
		}
	}
	return n
}

func scaleUpLimit(now time.Time, current int32, ups, downs []scaleEvent, r Rules) int32 {
	if r.Select == SelectDisabled {
		return current
	}
	result := int32(math.MinInt32)
	pick := func(a, b int32) int32 { return max(a, b) }
	if r.Select == SelectMin {
		result, pick = math.MaxInt32, func(a, b int32) int32 { return min(a, b) }
	}
	for _, p := range r.Policies {
		start := current - changeInPeriod(now, p.Period, ups) + changeInPeriod(now, p.Period, downs)
		var proposed int32
		switch p.Type {
		case PodsPolicy:
			proposed = start + p.Value
		case PercentPolicy:
			proposed = int32(math.Ceil(float64(start) * (1 + float64(p.Value)/100)))
		}
		result = pick(result, proposed)
	}
	return result
}

func scaleDownLimit(now time.Time, current int32, ups, downs []scaleEvent, r Rules) int32 {
	if r.Select == SelectDisabled {
		return current
	}
	result := int32(math.MaxInt32)
	pick := func(a, b int32) int32 { return min(a, b) }
	if r.Select == SelectMin {
		result, pick = math.MinInt32, func(a, b int32) int32 { return max(a, b) }
	}
	for _, p := range r.Policies {
		start := current - changeInPeriod(now, p.Period, ups) + changeInPeriod(now, p.Period, downs)
		var proposed int32
		switch p.Type {
		case PodsPolicy:
			proposed = start - p.Value
		case PercentPolicy:
			proposed = int32(float64(start) * (1 - float64(p.Value)/100))
		}
		result = pick(result, proposed)
	}
	return result
}

// storeScaleEvent records a rescale for the rate policies (only with a
// behavior), reusing an event older than the longest period.
func (st *State) storeScaleEvent(now time.Time, b *Behavior, prev, next int32) {
	if b == nil {
		return
	}
	events, rules, change := &st.ups, b.ScaleUp, next-prev
	if next < prev {
		events, rules, change = &st.downs, b.ScaleDown, prev-next
	}
	var longest time.Duration
	for _, p := range rules.Policies {
		longest = max(longest, p.Period)
	}
	cutoff := now.Add(-longest)
	old := -1
	for i := range *events {
		if (*events)[i].at.Before(cutoff) {
			(*events)[i].outdated = true
		}
		if (*events)[i].outdated {
			old = i
		}
	}
	e := scaleEvent{change: change, at: now}
	if old >= 0 {
		(*events)[old] = e
	} else {
		*events = append(*events, e)
	}
}
