package hpa

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func running(vals ...int64) []Pod {
	var out []Pod
	for i, v := range vals {
		out = append(out, Pod{Name: string(rune('a' + i)), Phase: PodRunning, HasMetric: true, MilliValue: v * 1000})
	}
	return out
}

func with(pods []Pod, extra ...Pod) []Pod { return append(append([]Pod(nil), pods...), extra...) }

var (
	pending  = Pod{Name: "pending", Phase: PodPending}
	missing  = Pod{Name: "missing", Phase: PodRunning}
	deleting = Pod{Name: "deleting", Phase: PodDeleting, HasMetric: true}
)

// Hand-computed cases of the replica calculator at target 50 (SM util %).
func TestPlainMetricReplicas(t *testing.T) {
	cases := []struct {
		name    string
		pods    []Pod
		current int32
		want    int32
		usage   int64
	}{
		{"2 pods at 80: ceil(1.6 x 2)", running(80, 80), 2, 4, 80000},
		{"within tolerance (1.04)", running(52, 52), 2, 2, 52000},
		{"tolerance edge 1.1 is within", running(55), 1, 1, 55000},
		{"just above tolerance 1.12", running(56), 1, 2, 56000},
		{"scale down: ceil(0.4 x 3)", running(20, 20, 20), 3, 2, 20000},
		{"within tolerance below (0.92)", running(46, 46), 2, 2, 46000},
		{"deleting pods ignored", with(running(80, 80), deleting), 3, 4, 80000},
		// Unready (Pending) pods count as 0 on a scale-up: [90, 0] -> 45,
		// ratio 0.9 flips the direction: keep.
		{"pending flips direction", with(running(90), pending), 2, 2, 90000},
		// [100, 0] -> 50: within tolerance.
		{"pending brings ratio to 1", with(running(100), pending), 2, 2, 100000},
		// [100, 100, 0] -> 66666m, ratio 1.33332, ceil(3.99996) = 4.
		{"pending counted as zero", with(running(100, 100), pending), 3, 4, 100000},
		// Pending pods are not counted on a scale-down: ceil(0.2 x 2) = 1.
		{"pending ignored on scale-down", with(running(10, 10), pending), 3, 1, 10000},
		// Missing pods count as the target on a scale-down: [10, 10, 50] ->
		// 23333m, ratio 0.46666, ceil(1.39998) = 2.
		{"missing as target on scale-down", with(running(10, 10), missing), 3, 2, 10000},
		// Missing pods count as 0 on a scale-up: [80, 80, 0] -> 53333m,
		// ratio 1.06666: within tolerance.
		{"missing as zero on scale-up (tolerance)", with(running(80, 80), missing), 3, 3, 80000},
		{"missing as zero on scale-up", with(running(100, 100), missing), 3, 4, 100000},
		// [90, 0] -> 0.9 after 1.8: direction flips, keep.
		{"missing flips direction", with(running(90), missing), 2, 2, 90000},
		// [20, 50] -> 35, 0.7 -> ceil(1.4) = 2: not a scale-down, keep.
		{"missing: new count not lower", with(running(20), missing), 2, 2, 20000},
		// Integer mean in milli: (50001+50000+50000)/3 = 50000.
		{"integer mean", []Pod{{Phase: PodRunning, HasMetric: true, MilliValue: 50001}, {Phase: PodRunning, HasMetric: true, MilliValue: 50000}, {Phase: PodRunning, HasMetric: true, MilliValue: 50000}}, 3, 3, 50000},
	}
	for _, c := range cases {
		got, usage, err := PlainMetricReplicas(c.pods, c.current, 50000, DefaultTolerance)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got != c.want || usage != c.usage {
			t.Errorf("%s: got %d replicas (usage %dm), want %d (usage %dm)", c.name, got, usage, c.want, c.usage)
		}
	}
}

func TestPlainMetricReplicasErrors(t *testing.T) {
	if _, _, err := PlainMetricReplicas(nil, 1, 50000, DefaultTolerance); err == nil {
		t.Error("no pods: want an error")
	}
	if _, _, err := PlainMetricReplicas([]Pod{pending, deleting}, 2, 50000, DefaultTolerance); !errors.Is(err, ErrNoMetrics) {
		t.Errorf("no metrics: got %v, want ErrNoMetrics", err)
	}
	if _, _, err := PlainMetricReplicas(running(50), 1, 0, DefaultTolerance); err == nil {
		t.Error("zero target: want an error")
	}
}

func legacySpec() Spec {
	return Spec{MinReplicas: 1, MaxReplicas: 10, TargetMilli: 50000, Tolerance: DefaultTolerance, DownscaleStabilization: 300 * time.Second}
}

// Without behavior a low load scales down only once every recommendation of
// the last 300 s is low; the first sync's recommendation is the current
// count.
func TestLegacyDownscaleStabilization(t *testing.T) {
	var st State
	var firstDown time.Duration
	current := int32(3)
	for s := time.Duration(0); s <= 400*time.Second; s += 15 * time.Second {
		var r Result
		r, st = Reconcile(t0.Add(s), current, running(10, 10, 10), legacySpec(), st)
		if r.Proposed != 1 {
			t.Fatalf("at %s proposed %d, want 1 (ceil(0.2 x 3))", s, r.Proposed)
		}
		if r.Rescale {
			firstDown = s
			if r.Desired != 1 {
				t.Fatalf("scaled to %d, want 1", r.Desired)
			}
			break
		}
	}
	// At 300 s the initial recommendation (t0) is exactly at the cutoff and
	// still counts; at 315 s it is older.
	if firstDown != 315*time.Second {
		t.Errorf("first scale-down at %s, want 5m15s", firstDown)
	}
}

// A higher recommendation inside the window holds the count.
func TestLegacyStabilizationHoldsPeak(t *testing.T) {
	var st State
	spec := legacySpec()
	r, st := Reconcile(t0, 2, running(100, 100), spec, st) // ceil(2 x 2) = 4
	if r.Desired != 4 || !r.Rescale {
		t.Fatalf("scale-up: %+v, want 4", r)
	}
	r, st = Reconcile(t0.Add(100*time.Second), 4, running(10, 10, 10, 10), spec, st)
	if r.Desired != 4 || r.Proposed != 1 {
		t.Fatalf("within the window: %+v, want 4 held (proposed 1)", r)
	}
	r, _ = Reconcile(t0.Add(301*time.Second), 4, running(10, 10, 10, 10), spec, st)
	if r.Desired != 1 {
		t.Fatalf("after the window: %+v, want 1", r)
	}
}

func TestLegacyLimitsAndBounds(t *testing.T) {
	spec := legacySpec()
	// ratio 10 asks for 10; the scale-up limit is max(2 x 1, 4) = 4.
	if r, _ := Reconcile(t0, 1, running(500), spec, State{}); r.Desired != 4 || r.Proposed != 10 {
		t.Errorf("scale-up limit: %+v, want 4 (proposed 10)", r)
	}
	// From 3: limit 6.
	if r, _ := Reconcile(t0, 3, running(500, 500, 500), spec, State{}); r.Desired != 6 {
		t.Errorf("scale-up limit from 3: %+v, want 6", r)
	}
	spec.MaxReplicas = 3
	if r, _ := Reconcile(t0, 1, running(500), spec, State{}); r.Desired != 3 {
		t.Errorf("max: %+v, want 3", r)
	}
	if r, _ := Reconcile(t0, 5, running(10), spec, State{}); r.Desired != 3 || r.Proposed != -1 || !r.Rescale {
		t.Errorf("above max: %+v, want 3 without metrics", r)
	}
	spec.MinReplicas = 2
	if r, _ := Reconcile(t0, 1, running(10), spec, State{}); r.Desired != 2 || !r.Rescale {
		t.Errorf("below min: %+v, want 2", r)
	}
	if r, _ := Reconcile(t0, 0, nil, spec, State{}); r.Desired != 0 || r.Rescale {
		t.Errorf("at zero: %+v, want scaling disabled", r)
	}
	r, _ := Reconcile(t0, 2, []Pod{pending, pending}, spec, State{})
	if r.Desired != 2 || r.Rescale || !errors.Is(r.Err, ErrNoMetrics) {
		t.Errorf("no metrics: %+v, want unchanged with ErrNoMetrics", r)
	}
}

// With the default behavior, scale-up is max(100 %, 4 pods) per 15 s over
// the events of the period.
func TestBehaviorScaleUpPolicies(t *testing.T) {
	spec := legacySpec()
	spec.MaxReplicas = 20
	spec.Behavior = DefaultBehavior()
	high := func(n int) []Pod {
		var v []int64
		for range n {
			v = append(v, 500)
		}
		return running(v...)
	}
	r, st := Reconcile(t0, 1, high(1), spec, State{})
	if r.Desired != 5 { // max(ceil(1 x 2), 1 + 4)
		t.Fatalf("first: %+v, want 5", r)
	}
	// 10 s later the period still holds the +4: start 1, limit 5.
	r, st = Reconcile(t0.Add(10*time.Second), 5, high(5), spec, st)
	if r.Desired != 5 || r.Rescale {
		t.Fatalf("within the period: %+v, want 5", r)
	}
	// 15 s after the event it is out of the period: start 5, limit
	// max(10, 9) = 10.
	r, _ = Reconcile(t0.Add(15*time.Second), 5, high(5), spec, st)
	if r.Desired != 10 {
		t.Fatalf("after the period: %+v, want 10", r)
	}

	spec.Behavior.ScaleUp.Select = SelectDisabled
	if r, _ := Reconcile(t0, 1, high(1), spec, State{}); r.Desired != 1 || r.Rescale {
		t.Errorf("disabled: %+v, want 1", r)
	}
	spec.Behavior.ScaleUp.Select = SelectMin
	if r, _ := Reconcile(t0, 1, high(1), spec, State{}); r.Desired != 2 { // min(2, 5)
		t.Errorf("min policy: %+v, want 2", r)
	}
}

// A scale-down policy of one pod per minute, no stabilisation window.
func TestBehaviorScaleDownPolicy(t *testing.T) {
	spec := legacySpec()
	spec.Behavior = DefaultBehavior()
	spec.Behavior.ScaleDown = Rules{Select: SelectMax, Policies: []Policy{{Type: PodsPolicy, Value: 1, Period: time.Minute}}}
	low := running(5, 5, 5, 5)
	r, st := Reconcile(t0, 4, low, spec, State{})
	if r.Desired != 3 {
		t.Fatalf("first: %+v, want 3", r)
	}
	r, st = Reconcile(t0.Add(30*time.Second), 3, low[:3], spec, st)
	if r.Desired != 3 || r.Rescale {
		t.Fatalf("within the minute: %+v, want 3", r)
	}
	r, _ = Reconcile(t0.Add(61*time.Second), 3, low[:3], spec, st)
	if r.Desired != 2 {
		t.Fatalf("after the minute: %+v, want 2", r)
	}
	// The default down rules: 300 s window; a 100 % policy does not limit.
	spec.Behavior = DefaultBehavior()
	var s State
	r, s = Reconcile(t0, 4, low, spec, s)
	if r.Desired != 4 {
		t.Fatalf("stabilised: %+v, want 4", r)
	}
	r, _ = Reconcile(t0.Add(301*time.Second), 4, low, spec, s)
	if r.Desired != 1 {
		t.Fatalf("after the window: %+v, want 1", r)
	}
}

// Reconcile does not change the state it is given.
func TestReconcileIsPure(t *testing.T) {
	spec := legacySpec()
	_, st := Reconcile(t0, 2, running(100, 100), spec, State{})
	before := st.clone()
	a, _ := Reconcile(t0.Add(15*time.Second), 4, running(10, 10, 10, 10), spec, st)
	b, _ := Reconcile(t0.Add(15*time.Second), 4, running(10, 10, 10, 10), spec, st)
	if a != b {
		t.Errorf("same input, different results: %+v vs %+v", a, b)
	}
	if len(st.recs) != len(before.recs) || st.recs[0] != before.recs[0] {
		t.Errorf("state changed: %+v -> %+v", before, st)
	}
}

func TestSpecValidate(t *testing.T) {
	if err := legacySpec().Validate(); err != nil {
		t.Errorf("valid spec: %v", err)
	}
	bad := Spec{MinReplicas: 0, MaxReplicas: -1, TargetMilli: 0}
	err := bad.Validate()
	if err == nil {
		t.Fatal("want errors")
	}
	for _, w := range []string{"minReplicas 0", "maxReplicas -1", "target averageValue 0m"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}
