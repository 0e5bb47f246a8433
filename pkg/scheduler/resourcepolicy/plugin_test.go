package resourcepolicy

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	schedulingv1alpha1 "github.com/spillway-io/spillway/apis/scheduling/v1alpha1"
	"github.com/spillway-io/spillway/pkg/resourcepolicy"
)

// threeUnits is a policy with an IDC unit at max 0, a second IDC unit and an
// elastic unit, and a pod created at t0.
func threeUnits() (rp *schedulingv1alpha1.ResourcePolicy, pod *corev1.Pod, t0 time.Time) {
	t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	rp = &schedulingv1alpha1.ResourcePolicy{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"},
		Spec: schedulingv1alpha1.ResourcePolicySpec{Units: []schedulingv1alpha1.Unit{
			{Resource: "ecs", NodeSelector: map[string]string{"pool": "idc"}, Max: ptr.To[int32](0)},
			{Resource: "ecs", NodeSelector: map[string]string{"pool": "idc2"}},
			{Resource: "elastic", NodeSelector: map[string]string{"pool": "el"}},
		}}}
	pod = &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "default", CreationTimestamp: metav1.NewTime(t0)}}
	return rp, pod, t0
}

func TestScoreAndReject(t *testing.T) {
	rp, pod, t0 := threeUnits()
	rp.Spec.WhenTryNextUnits = &schedulingv1alpha1.WhenTryNextUnits{Policy: schedulingv1alpha1.TimeoutOrExceedMax, Timeout: "1m"}
	snap := resourcepolicy.NewSnapshot([]*schedulingv1alpha1.ResourcePolicy{rp}, nil, nil)

	cases := map[string]struct {
		now    time.Time
		scores []int64 // units 0, 1, 2, outside
		reject []string
	}{
		"waiting at unit 1": {now: t0, scores: []int64{0, 100, 0, 0},
			reject: []string{"which holds 0 pods, max 0", "", "not allowed while the pod waits at unit 1", "outside the units"}},
		"after the timeouts": {now: t0.Add(2 * time.Minute), scores: []int64{0, 100, 66, 33},
			reject: []string{"which holds 0 pods, max 0", "", "", ""}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			plan, err := snap.PlanFor(rp, pod, tc.now)
			if err != nil {
				t.Fatal(err)
			}
			var scores []int64
			var rejects []string
			for _, u := range []int{0, 1, 2, -1} {
				scores = append(scores, score(&plan, u))
				r := ""
				if !plan.Allows(u) {
					r = reject(&plan, u)
				}
				rejects = append(rejects, r)
			}
			if diff := cmp.Diff(tc.scores, scores); diff != "" {
				t.Errorf("scores (-want,+got):\n%s", diff)
			}
			for i, want := range tc.reject {
				if (want == "") != (rejects[i] == "") || !strings.Contains(rejects[i], want) {
					t.Errorf("unit %d: reject %q, want it to contain %q", i, rejects[i], want)
				}
			}
		})
	}
}

// BenchmarkFilterScore is the plugin's per-node cost in a scheduling cycle
// (Filter and Score of one node), once the first unit is at max so that
// Filter runs; the scheduler calls both for hundreds of nodes per pod.
func BenchmarkFilterScore(b *testing.B) {
	rp := &schedulingv1alpha1.ResourcePolicy{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"},
		Spec: schedulingv1alpha1.ResourcePolicySpec{Units: []schedulingv1alpha1.Unit{
			{Resource: "ecs", NodeSelector: map[string]string{"pool": "idc"}, Max: ptr.To[int32](0)},
			{Resource: "elastic", NodeSelector: map[string]string{"pool": "el"}},
		}}}
	pols := staticPolicies{rp}
	p := NewWithLister(nil, pols, clock.RealClock{}, memPods{}, memNodes{})
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "default", UID: "x"}}
	cs := framework.NewCycleState()
	var nodes []fwk.NodeInfo
	for i := range 500 {
		ni := framework.NewNodeInfo()
		ni.SetNode(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprint("n", i),
			Labels: map[string]string{"pool": []string{"idc", "el"}[i%2], corev1.LabelHostname: fmt.Sprint("n", i),
				"topology.kubernetes.io/zone": "z1", "kubernetes.io/os": "linux", "node.kubernetes.io/instance-type": "gpu"}}})
		nodes = append(nodes, ni)
	}
	// PreFilter gets the snapshot's nodes, as in the scheduler (the unit index).
	if _, st := p.PreFilter(context.Background(), cs, pod, nodes); !st.IsSuccess() {
		b.Fatal(st)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		ni := nodes[i%len(nodes)]
		if st := p.Filter(context.Background(), cs, pod, ni); st.IsSuccess() {
			if _, st := p.Score(context.Background(), cs, pod, ni); !st.IsSuccess() {
				b.Fatal(st)
			}
		}
	}
}

type staticPolicies []*schedulingv1alpha1.ResourcePolicy

func (s staticPolicies) List(string) []*schedulingv1alpha1.ResourcePolicy { return s }

// TestCompiledRules: the per-cycle rules give the unit, score and reason
// of the plan's own functions for every node.
func TestCompiledRules(t *testing.T) {
	rp := &schedulingv1alpha1.ResourcePolicy{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"},
		Spec: schedulingv1alpha1.ResourcePolicySpec{Strategy: schedulingv1alpha1.StrategyRequired, Units: []schedulingv1alpha1.Unit{
			{Resource: "ecs", NodeSelector: map[string]string{"pool": "idc", "zone": "a"}, Max: ptr.To[int32](0)},
			{Resource: "ecs", NodeSelector: map[string]string{"pool": "idc"}},
			{Resource: "elastic", NodeSelector: map[string]string{}},
		}}}
	plan, err := resourcepolicy.NewSnapshot([]*schedulingv1alpha1.ResourcePolicy{rp}, nil, nil).PlanFor(rp,
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "default"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	narrowed, frontier := narrow(plan, -1)
	s := &state{plan: narrowed, full: plan, frontier: frontier}
	s.compile()
	for _, l := range []map[string]string{{"pool": "idc", "zone": "a"}, {"pool": "idc", "zone": "b"}, {"pool": "idc"}, {"zone": "a"}, nil} {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Labels: l}}
		unit := resourcepolicy.UnitOf(rp, n)
		if got := s.unitOf(n); got != unit {
			t.Errorf("labels %v: unit %d, want %d", l, got, unit)
		}
		want := nodeRule{score: score(&narrowed, unit)}
		if !narrowed.Allows(unit) {
			want.reject = reject(&narrowed, unit)
			if plan.Allows(unit) {
				want.reject = held(&narrowed, unit, frontier)
			}
		}
		if got := s.rules[unit+1]; got != want {
			t.Errorf("labels %v (unit %d): rule %+v, want %+v", l, unit, got, want)
		}
	}
}

// TestPreScoreSkipsEqualScores: scoring is skipped when every feasible node
// is in the same unit, and runs when units differ.
func TestPreScoreSkipsEqualScores(t *testing.T) {
	rp := &schedulingv1alpha1.ResourcePolicy{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"},
		Spec: schedulingv1alpha1.ResourcePolicySpec{Units: []schedulingv1alpha1.Unit{
			{Resource: "ecs", NodeSelector: map[string]string{"pool": "idc"}},
			{Resource: "elastic", NodeSelector: map[string]string{"pool": "el"}},
		}}}
	p := NewWithLister(nil, staticPolicies{rp}, clock.RealClock{}, memPods{}, memNodes{})
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "default", UID: "x"}}
	cs := framework.NewCycleState()
	p.PreFilter(context.Background(), cs, pod, nil)
	node := func(pool string) fwk.NodeInfo {
		ni := framework.NewNodeInfo()
		ni.SetNode(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: pool, Labels: map[string]string{"pool": pool}}})
		return ni
	}
	if st := p.PreScore(context.Background(), cs, pod, []fwk.NodeInfo{node("el"), node("el")}); !st.IsSkip() {
		t.Errorf("one unit: PreScore %v, want Skip", st)
	}
	if st := p.PreScore(context.Background(), cs, pod, []fwk.NodeInfo{node("el"), node("idc")}); !st.IsSuccess() {
		t.Errorf("two units: PreScore %v, want Success", st)
	}
}

// TestPassedOver: the spill-over event's explanation for a pod placed in
// each unit.
func TestPassedOver(t *testing.T) {
	rp, pod, t0 := threeUnits()
	plan, err := resourcepolicy.NewSnapshot([]*schedulingv1alpha1.ResourcePolicy{rp}, nil, nil).PlanFor(rp, pod, t0)
	if err != nil {
		t.Fatal(err)
	}
	for unit, want := range map[int]string{
		0:  "",
		1:  "unit 0 (ecs) holds 0 pods, max 0",
		2:  "unit 0 (ecs) holds 0 pods, max 0; unit 1 (ecs) had no node that fits",
		-1: "unit 0 (ecs) holds 0 pods, max 0; unit 1 (ecs) had no node that fits; unit 2 (elastic) had no node that fits",
	} {
		if got := passedOver(&state{plan: plan, full: plan, frontier: -1, unit: unit}); got != want {
			t.Errorf("unit %d: passed over %q, want %q", unit, got, want)
		}
	}
}
