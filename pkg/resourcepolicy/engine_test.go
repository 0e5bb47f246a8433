package resourcepolicy

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	schedulingv1alpha1 "github.com/spillway-io/spillway/apis/scheduling/v1alpha1"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

const poolKey = "alibabacloud.com/nodepool-id"

type podB struct{ p *corev1.Pod }

func makePod(name string) *podB {
	return &podB{p: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default",
		Labels: map[string]string{"app": "isvc.qwen-predictor"}, CreationTimestamp: metav1.NewTime(t0)},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c"}}}}}
}
func (b *podB) label(k, v string) *podB { b.p.Labels[k] = v; return b }
func (b *podB) ann(k, v string) *podB {
	if b.p.Annotations == nil {
		b.p.Annotations = map[string]string{}
	}
	b.p.Annotations[k] = v
	return b
}
func (b *podB) ns(ns string) *podB        { b.p.Namespace = ns; return b }
func (b *podB) on(node string) *podB      { b.p.Spec.NodeName = node; return b }
func (b *podB) created(t time.Time) *podB { b.p.CreationTimestamp = metav1.NewTime(t); return b }
func (b *podB) terminating() *podB        { d := metav1.NewTime(t0); b.p.DeletionTimestamp = &d; return b }
func (b *podB) phase(ph corev1.PodPhase) *podB {
	b.p.Status.Phase = ph
	return b
}
func (b *podB) gpu(n int64) *podB {
	b.p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{"nvidia.com/gpu": *resource.NewQuantity(n, resource.DecimalSI)}
	return b
}
func (b *podB) obj() *corev1.Pod { return b.p }

func node(name, pool string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{poolKey: pool}}}
}

func unit(pool string) schedulingv1alpha1.Unit {
	return schedulingv1alpha1.Unit{Resource: schedulingv1alpha1.ResourceECS, NodeSelector: map[string]string{poolKey: pool}}
}

func policy(name string, mut ...func(*schedulingv1alpha1.ResourcePolicySpec)) *schedulingv1alpha1.ResourcePolicy {
	rp := &schedulingv1alpha1.ResourcePolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", CreationTimestamp: metav1.NewTime(t0)},
		Spec: schedulingv1alpha1.ResourcePolicySpec{
			Selector: map[string]string{"app": "isvc.qwen-predictor"},
			Strategy: schedulingv1alpha1.StrategyPrefer,
			Units:    []schedulingv1alpha1.Unit{unit("idc"), unit("elastic")},
		},
	}
	rp.Spec.Units[1].Resource = schedulingv1alpha1.ResourceElastic
	for _, m := range mut {
		m(&rp.Spec)
	}
	return rp
}

func withMax(i int, n int32) func(*schedulingv1alpha1.ResourcePolicySpec) {
	return func(s *schedulingv1alpha1.ResourcePolicySpec) { s.Units[i].Max = ptr.To(n) }
}
func withTryNext(p schedulingv1alpha1.TryNextPolicy, timeout string) func(*schedulingv1alpha1.ResourcePolicySpec) {
	return func(s *schedulingv1alpha1.ResourcePolicySpec) {
		s.WhenTryNextUnits = &schedulingv1alpha1.WhenTryNextUnits{Policy: p, Timeout: timeout}
	}
}
func required(s *schedulingv1alpha1.ResourcePolicySpec) {
	s.Strategy = schedulingv1alpha1.StrategyRequired
}

var nodes = []*corev1.Node{node("idc-1", "idc"), node("el-1", "elastic"), node("other-1", "default")}

// summary is the part of a Plan the tests compare.
type summary struct {
	Units   []int
	Skipped []int
	Others  bool
	Wait    int // -1: none
	Until   time.Time
}

func summarize(p Plan) summary {
	s := summary{Others: p.Others, Wait: -1}
	for _, u := range p.Units {
		s.Units = append(s.Units, u.Index)
	}
	for _, k := range p.Skipped {
		s.Skipped = append(s.Skipped, k.Index)
	}
	if p.Wait != nil {
		s.Wait, s.Until = p.Wait.Index, p.Wait.Until
	}
	return s
}

func TestPlan(t *testing.T) {
	gpuMax := func(i int, n int64) func(*schedulingv1alpha1.ResourcePolicySpec) {
		return func(s *schedulingv1alpha1.ResourcePolicySpec) {
			s.Units[i].MaxResources = corev1.ResourceList{"nvidia.com/gpu": *resource.NewQuantity(n, resource.DecimalSI)}
		}
	}
	markers := func(s *schedulingv1alpha1.ResourcePolicySpec) {
		s.Units[0].PodLabels = map[string]string{"unit": "idc"}
		s.Units[0].PodAnnotations = map[string]string{"spillway.io/unit": "idc"}
	}
	cases := map[string]struct {
		rp   *schedulingv1alpha1.ResourcePolicy
		pods []*corev1.Pod
		pod  *corev1.Pod
		now  time.Time
		want summary
	}{
		"default policy, prefer: both units then others": {
			rp: policy("p"), pod: makePod("new").obj(),
			want: summary{Units: []int{0, 1}, Others: true, Wait: -1},
		},
		"required: no others": {
			rp: policy("p", required), pod: makePod("new").obj(),
			want: summary{Units: []int{0, 1}, Wait: -1},
		},
		"max reached skips the unit": {
			rp: policy("p", withMax(0, 1)), pods: []*corev1.Pod{makePod("a").on("idc-1").obj()}, pod: makePod("new").obj(),
			want: summary{Units: []int{1}, Skipped: []int{0}, Others: true, Wait: -1},
		},
		"max not reached": {
			rp: policy("p", withMax(0, 2)), pods: []*corev1.Pod{makePod("a").on("idc-1").obj()}, pod: makePod("new").obj(),
			want: summary{Units: []int{0, 1}, Others: true, Wait: -1},
		},
		"every unit at max, required: nothing": {
			rp:   policy("p", withMax(0, 1), withMax(1, 0), required),
			pods: []*corev1.Pod{makePod("a").on("idc-1").obj()}, pod: makePod("new").obj(),
			want: summary{Skipped: []int{0, 1}, Wait: -1},
		},
		"finished pods do not count": {
			rp: policy("p", withMax(0, 1)), pods: []*corev1.Pod{makePod("a").on("idc-1").phase(corev1.PodSucceeded).obj()}, pod: makePod("new").obj(),
			want: summary{Units: []int{0, 1}, Others: true, Wait: -1},
		},
		"pods of another app do not count": {
			rp:   policy("p", withMax(0, 1)),
			pods: []*corev1.Pod{makePod("a").label("app", "other").on("idc-1").obj(), makePod("b").ns("x").on("idc-1").obj()},
			pod:  makePod("new").obj(),
			want: summary{Units: []int{0, 1}, Others: true, Wait: -1},
		},
		"maxResources: pod would exceed": {
			rp: policy("p", gpuMax(0, 2)), pods: []*corev1.Pod{makePod("a").gpu(1).on("idc-1").obj()}, pod: makePod("new").gpu(2).obj(),
			want: summary{Units: []int{1}, Skipped: []int{0}, Others: true, Wait: -1},
		},
		"maxResources: pod fits exactly": {
			rp: policy("p", gpuMax(0, 2)), pods: []*corev1.Pod{makePod("a").gpu(1).on("idc-1").obj()}, pod: makePod("new").gpu(1).obj(),
			want: summary{Units: []int{0, 1}, Others: true, Wait: -1},
		},
		"podLabels/podAnnotations: unmarked pods do not count": {
			rp: policy("p", withMax(0, 1), markers), pods: []*corev1.Pod{makePod("a").on("idc-1").obj()}, pod: makePod("new").obj(),
			want: summary{Units: []int{0, 1}, Others: true, Wait: -1},
		},
		"podLabels/podAnnotations: marked pods count": {
			rp:   policy("p", withMax(0, 1), markers),
			pods: []*corev1.Pod{makePod("a").label("unit", "idc").ann("spillway.io/unit", "idc").on("idc-1").obj()}, pod: makePod("new").obj(),
			want: summary{Units: []int{1}, Skipped: []int{0}, Others: true, Wait: -1},
		},
		"podLabels without the annotation do not count": {
			rp:   policy("p", withMax(0, 1), markers),
			pods: []*corev1.Pod{makePod("a").label("unit", "idc").on("idc-1").obj()}, pod: makePod("new").obj(),
			want: summary{Units: []int{0, 1}, Others: true, Wait: -1},
		},
		"ignorePreviousPod: older pods do not count": {
			rp:   policy("p", withMax(0, 1), func(s *schedulingv1alpha1.ResourcePolicySpec) { s.IgnorePreviousPod = true }),
			pods: []*corev1.Pod{makePod("a").created(t0.Add(-time.Hour)).on("idc-1").obj()}, pod: makePod("new").obj(),
			want: summary{Units: []int{0, 1}, Others: true, Wait: -1},
		},
		"ignorePreviousPod: newer pods count": {
			rp:   policy("p", withMax(0, 1), func(s *schedulingv1alpha1.ResourcePolicySpec) { s.IgnorePreviousPod = true }),
			pods: []*corev1.Pod{makePod("a").created(t0.Add(time.Second)).on("idc-1").obj()}, pod: makePod("new").obj(),
			want: summary{Units: []int{1}, Skipped: []int{0}, Others: true, Wait: -1},
		},
		"ignorePreviousPod off: older pods count": {
			rp: policy("p", withMax(0, 1)), pods: []*corev1.Pod{makePod("a").created(t0.Add(-time.Hour)).on("idc-1").obj()}, pod: makePod("new").obj(),
			want: summary{Units: []int{1}, Skipped: []int{0}, Others: true, Wait: -1},
		},
		"ignoreTerminatingPod default: terminating pods do not count": {
			rp: policy("p", withMax(0, 1)), pods: []*corev1.Pod{makePod("a").terminating().on("idc-1").obj()}, pod: makePod("new").obj(),
			want: summary{Units: []int{0, 1}, Others: true, Wait: -1},
		},
		"ignoreTerminatingPod false: terminating pods count": {
			rp:   policy("p", withMax(0, 1), func(s *schedulingv1alpha1.ResourcePolicySpec) { s.IgnoreTerminatingPod = ptr.To(false) }),
			pods: []*corev1.Pod{makePod("a").terminating().on("idc-1").obj()}, pod: makePod("new").obj(),
			want: summary{Units: []int{1}, Skipped: []int{0}, Others: true, Wait: -1},
		},
		"matchLabelKeys: other groups do not count": {
			rp:   policy("p", withMax(0, 1), func(s *schedulingv1alpha1.ResourcePolicySpec) { s.MatchLabelKeys = []string{"pod-template-hash"} }),
			pods: []*corev1.Pod{makePod("a").label("pod-template-hash", "old").on("idc-1").obj()},
			pod:  makePod("new").label("pod-template-hash", "new").obj(),
			want: summary{Units: []int{0, 1}, Others: true, Wait: -1},
		},
		"matchLabelKeys: same group counts": {
			rp:   policy("p", withMax(0, 1), func(s *schedulingv1alpha1.ResourcePolicySpec) { s.MatchLabelKeys = []string{"pod-template-hash"} }),
			pods: []*corev1.Pod{makePod("a").label("pod-template-hash", "new").on("idc-1").obj()},
			pod:  makePod("new").label("pod-template-hash", "new").obj(),
			want: summary{Units: []int{1}, Skipped: []int{0}, Others: true, Wait: -1},
		},
		"ExceedMax: waits at the first unit not at max": {
			rp: policy("p", withTryNext(schedulingv1alpha1.ExceedMax, "")), pod: makePod("new").obj(),
			want: summary{Units: []int{0}, Wait: 0},
		},
		"ExceedMax: moves on once the unit is at max": {
			rp: policy("p", withMax(0, 1), withTryNext(schedulingv1alpha1.ExceedMax, "")), pods: []*corev1.Pod{makePod("a").on("idc-1").obj()},
			pod:  makePod("new").obj(),
			want: summary{Units: []int{1}, Skipped: []int{0}, Wait: 1},
		},
		"ExceedMax, required: last unit needs no wait": {
			rp: policy("p", withMax(0, 1), withTryNext(schedulingv1alpha1.ExceedMax, ""), required), pods: []*corev1.Pod{makePod("a").on("idc-1").obj()},
			pod:  makePod("new").obj(),
			want: summary{Units: []int{1}, Skipped: []int{0}, Wait: -1},
		},
		"TimeoutOrExceedMax: before the timeout the pod waits": {
			rp: policy("p", withTryNext(schedulingv1alpha1.TimeoutOrExceedMax, "1m")), pod: makePod("new").obj(), now: t0.Add(59 * time.Second),
			want: summary{Units: []int{0}, Wait: 0, Until: t0.Add(time.Minute)},
		},
		"TimeoutOrExceedMax: after one timeout, waits at the second unit": {
			rp: policy("p", withTryNext(schedulingv1alpha1.TimeoutOrExceedMax, "1m")), pod: makePod("new").obj(), now: t0.Add(time.Minute),
			want: summary{Units: []int{0, 1}, Wait: 1, Until: t0.Add(2 * time.Minute)},
		},
		"TimeoutOrExceedMax: after two timeouts, others too": {
			rp: policy("p", withTryNext(schedulingv1alpha1.TimeoutOrExceedMax, "1m")), pod: makePod("new").obj(), now: t0.Add(2 * time.Minute),
			want: summary{Units: []int{0, 1}, Others: true, Wait: -1},
		},
		"TimeoutOrExceedMax: default timeout 15m": {
			rp: policy("p", withTryNext(schedulingv1alpha1.TimeoutOrExceedMax, "")), pod: makePod("new").obj(), now: t0.Add(14 * time.Minute),
			want: summary{Units: []int{0}, Wait: 0, Until: t0.Add(15 * time.Minute)},
		},
		"TimeoutOrExceedMax: unit at max does not consume a timeout": {
			rp:   policy("p", withMax(0, 1), withTryNext(schedulingv1alpha1.TimeoutOrExceedMax, "1m")),
			pods: []*corev1.Pod{makePod("a").on("idc-1").obj()}, pod: makePod("new").obj(), now: t0.Add(30 * time.Second),
			want: summary{Units: []int{1}, Skipped: []int{0}, Wait: 1, Until: t0.Add(time.Minute)},
		},
		"LackResourceAndNoTerminating: held while a unit pod terminates": {
			rp:   policy("p", withTryNext(schedulingv1alpha1.LackResourceAndNoTerminating, "")),
			pods: []*corev1.Pod{makePod("a").terminating().on("idc-1").obj()}, pod: makePod("new").obj(),
			want: summary{Units: []int{0}, Wait: 0},
		},
		"LackResourceAndNoTerminating: free without terminating pods": {
			rp:   policy("p", withTryNext(schedulingv1alpha1.LackResourceAndNoTerminating, "")),
			pods: []*corev1.Pod{makePod("a").on("idc-1").obj()}, pod: makePod("new").obj(),
			want: summary{Units: []int{0, 1}, Others: true, Wait: -1},
		},
		"LackResourceOrExceedMax explicit": {
			rp:   policy("p", withTryNext(schedulingv1alpha1.LackResourceOrExceedMax, "")),
			pods: []*corev1.Pod{makePod("a").terminating().on("idc-1").obj()}, pod: makePod("new").obj(),
			want: summary{Units: []int{0, 1}, Others: true, Wait: -1},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			snap := NewSnapshot([]*schedulingv1alpha1.ResourcePolicy{tc.rp}, nodes, tc.pods)
			now := tc.now
			if now.IsZero() {
				now = t0
			}
			plan, err := snap.Plan(tc.pod, now)
			if err != nil {
				t.Fatalf("Plan: %v", err)
			}
			if diff := cmp.Diff(tc.want, summarize(plan)); diff != "" {
				t.Errorf("plan (-want,+got):\n%s", diff)
			}
			if plan.Explain() == "" {
				t.Errorf("Explain is empty for a matched pod")
			}
		})
	}
}

func TestMatch(t *testing.T) {
	other := policy("other")
	other.Spec.Selector = map[string]string{"tier": "gpu"}
	all := policy("all")
	all.Spec.Selector = nil
	cases := map[string]struct {
		policies []*schedulingv1alpha1.ResourcePolicy
		pod      *corev1.Pod
		want     string
		conflict []string
	}{
		"none":              {policies: []*schedulingv1alpha1.ResourcePolicy{other}, pod: makePod("p").obj()},
		"one":               {policies: []*schedulingv1alpha1.ResourcePolicy{policy("qwen"), other}, pod: makePod("p").obj(), want: "default/qwen"},
		"empty selector":    {policies: []*schedulingv1alpha1.ResourcePolicy{all}, pod: makePod("p").obj(), want: "default/all"},
		"other namespace":   {policies: []*schedulingv1alpha1.ResourcePolicy{policy("qwen")}, pod: makePod("p").ns("x").obj()},
		"conflict, sorted":  {policies: []*schedulingv1alpha1.ResourcePolicy{policy("z"), policy("a")}, pod: makePod("p").obj(), conflict: []string{"default/a", "default/z"}},
		"selector conflict": {policies: []*schedulingv1alpha1.ResourcePolicy{all, other}, pod: makePod("p").label("tier", "gpu").obj(), conflict: []string{"default/all", "default/other"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			rp, err := NewSnapshot(tc.policies, nil, nil).Match(tc.pod)
			var ce *ConflictError
			if tc.conflict != nil {
				if !errors.As(err, &ce) || !errors.Is(err, ErrConflict) {
					t.Fatalf("Match error = %v, want a ConflictError", err)
				}
				if diff := cmp.Diff(tc.conflict, ce.Policies); diff != "" {
					t.Errorf("conflicting policies (-want,+got):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatalf("Match: %v", err)
			}
			got := ""
			if rp != nil {
				got = Key(rp)
			}
			if got != tc.want {
				t.Errorf("Match = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPlanErrors(t *testing.T) {
	keyed := policy("p", withMax(0, 1), func(s *schedulingv1alpha1.ResourcePolicySpec) { s.MatchLabelKeys = []string{"pod-template-hash"} })
	_, err := NewSnapshot([]*schedulingv1alpha1.ResourcePolicy{keyed}, nodes, nil).Plan(makePod("new").obj(), t0)
	if !errors.Is(err, ErrMissingLabelKey) {
		t.Fatalf("Plan error = %v, want ErrMissingLabelKey", err)
	}
	if want := `pod default/new lacks label "pod-template-hash" required by matchLabelKeys of ResourcePolicy default/p`; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	bad := policy("p", withTryNext(schedulingv1alpha1.TimeoutOrExceedMax, "soon"))
	if _, err := NewSnapshot([]*schedulingv1alpha1.ResourcePolicy{bad}, nodes, nil).Plan(makePod("new").obj(), t0); err == nil {
		t.Errorf("Plan accepted timeout %q", "soon")
	}
	plan, err := NewSnapshot(nil, nodes, nil).Plan(makePod("new").obj(), t0)
	if err != nil || plan.Policy != nil || !plan.Allows(-1) || !plan.Allows(3) {
		t.Errorf("unmatched pod: plan %+v, err %v; want an empty plan allowing every node", plan, err)
	}
}

func TestPlanAllowsAndRank(t *testing.T) {
	snap := NewSnapshot([]*schedulingv1alpha1.ResourcePolicy{policy("p", withMax(0, 0))}, nodes, nil)
	plan, err := snap.Plan(makePod("new").obj(), t0)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][2]any{}
	for _, n := range nodes {
		u := snap.UnitOfNode(plan.Policy, n.Name)
		got[n.Name] = [2]any{plan.Allows(u), plan.Rank(u)}
	}
	want := map[string][2]any{"idc-1": {false, -1}, "el-1": {true, 0}, "other-1": {true, 1}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("allows/rank (-want,+got):\n%s", diff)
	}
}

func TestAssumeCountsTowardsMax(t *testing.T) {
	rp := policy("p", withMax(0, 1))
	pending := makePod("a").obj()
	snap := NewSnapshot([]*schedulingv1alpha1.ResourcePolicy{rp}, nodes, []*corev1.Pod{pending})
	if st := snap.Status(rp); st.Pending != 1 {
		t.Fatalf("pending = %d, want 1", st.Pending)
	}
	if err := snap.Assume(rp, pending, "idc-1"); err != nil {
		t.Fatal(err)
	}
	plan, err := snap.Plan(makePod("b").obj(), t0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(summary{Units: []int{1}, Skipped: []int{0}, Others: true, Wait: -1}, summarize(plan)); diff != "" {
		t.Errorf("plan after Assume (-want,+got):\n%s", diff)
	}
	// A simulated node of the elastic pool belongs to unit 1.
	snap.AddNode(node("sim-1", "elastic"))
	if err := snap.Assume(rp, makePod("b").obj(), "sim-1"); err != nil {
		t.Fatal(err)
	}
	st := snap.Status(rp)
	if st.Pending != 0 || st.Units[0].Pods != 1 || st.Units[1].Pods != 1 {
		t.Errorf("status after Assume = %+v", st)
	}
}

func TestDeletionCostAndStatus(t *testing.T) {
	rp := policy("p")
	pods := []*corev1.Pod{
		makePod("idc").gpu(1).on("idc-1").obj(),
		makePod("cloud").gpu(1).on("el-1").obj(),
		makePod("elsewhere").on("other-1").obj(),
		makePod("pending").obj(),
		makePod("nopolicy").label("app", "x").on("idc-1").obj(),
	}
	snap := NewSnapshot([]*schedulingv1alpha1.ResourcePolicy{rp}, nodes, pods)
	type cost struct {
		Cost int32
		OK   bool
	}
	got := map[string]cost{}
	for _, p := range pods {
		c, ok := snap.DeletionCost(p)
		got[p.Name] = cost{c, ok}
	}
	want := map[string]cost{"idc": {200, true}, "cloud": {100, true}, "elsewhere": {0, true}, "pending": {}, "nopolicy": {}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("deletion costs (-want,+got):\n%s", diff)
	}
	gpu := corev1.ResourceList{"nvidia.com/gpu": *resource.NewQuantity(1, resource.DecimalSI)}
	wantStatus := schedulingv1alpha1.ResourcePolicyStatus{
		Units: []schedulingv1alpha1.UnitStatus{
			{Index: 0, Resource: schedulingv1alpha1.ResourceECS, Pods: 1, Requested: gpu},
			{Index: 1, Resource: schedulingv1alpha1.ResourceElastic, Pods: 1, Requested: gpu},
		},
		OutsideUnits: 1, Pending: 1,
	}
	if diff := cmp.Diff(wantStatus, snap.Status(rp), cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 })); diff != "" {
		t.Errorf("status (-want,+got):\n%s", diff)
	}
}

func TestPodRequests(t *testing.T) {
	p := makePod("p").obj()
	p.Spec.Containers = []corev1.Container{
		{Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{"cpu": resource.MustParse("1")}}},
		{Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{"cpu": resource.MustParse("500m"), "nvidia.com/gpu": resource.MustParse("1")}}},
	}
	p.Spec.InitContainers = []corev1.Container{{Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{"cpu": resource.MustParse("2"), "memory": resource.MustParse("1Gi")}}}}
	p.Spec.Overhead = corev1.ResourceList{"cpu": resource.MustParse("100m")}
	got := map[string]string{}
	for r, q := range PodRequests(p) {
		got[string(r)] = q.String()
	}
	want := map[string]string{"cpu": "2100m", "nvidia.com/gpu": "1", "memory": "1Gi"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("requests (-want,+got):\n%s", diff)
	}
}
