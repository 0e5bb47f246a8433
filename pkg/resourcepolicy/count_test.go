package resourcepolicy

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	schedulingv1alpha1 "github.com/spillway-io/spillway/apis/scheduling/v1alpha1"
)

// cmpUsage compares usages by value (quantities by Cmp, absent = zero).
var cmpUsage = cmp.Comparer(func(a, b corev1.ResourceList) bool {
	for _, l := range []struct{ x, y corev1.ResourceList }{{a, b}, {b, a}} {
		for r, q := range l.x {
			if q.Cmp(l.y[r]) != 0 {
				return false
			}
		}
	}
	return true
})

// TestIncrementalCountMatchesSnapshot: adding the PodCount of every pod,
// then removing some, gives the usage the snapshot counts from the pods left,
// for every counting field (markers, previous and terminating pods,
// finished pods, groups, maxResources requests).
func TestIncrementalCountMatchesSnapshot(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	rp := policy("p", withMax(0, 100), func(s *schedulingv1alpha1.ResourcePolicySpec) {
		s.MatchLabelKeys = []string{"rev"}
		s.IgnorePreviousPod = true
		s.IgnoreTerminatingPod = new(bool)
		*s.IgnoreTerminatingPod = rng.IntN(2) == 0
		s.Units[1].PodLabels = map[string]string{"spillway.io/unit": "elastic"}
		s.Units[0].MaxResources = corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("50")}
	})
	nodeNames := []string{"", "idc-1", "el-1", "other-1", "gone"}
	var pods []*corev1.Pod
	for i := range 300 {
		b := makePod(fmt.Sprintf("p%d", i)).on(nodeNames[rng.IntN(len(nodeNames))]).gpu(int64(rng.IntN(3)))
		if rng.IntN(5) > 0 {
			b.label("rev", fmt.Sprint(rng.IntN(2)))
		}
		if rng.IntN(2) == 0 {
			b.label("spillway.io/unit", "elastic")
		}
		if rng.IntN(4) == 0 {
			b.terminating()
		}
		if rng.IntN(6) == 0 {
			b.created(t0.Add(-time.Hour))
		}
		if rng.IntN(8) == 0 {
			b.phase(corev1.PodSucceeded)
		}
		if rng.IntN(10) == 0 {
			b.ns("elsewhere")
		}
		pods = append(pods, b.obj())
	}
	groups := map[string]*GroupUsage{"0": NewGroupUsage(2), "1": NewGroupUsage(2)}
	counts := map[*corev1.Pod]PodCount{}
	byName := map[string]*corev1.Node{}
	for _, n := range nodes {
		byName[n.Name] = n
	}
	for _, p := range pods {
		if c, ok := CountPod(rp, p, byName[p.Spec.NodeName]); ok {
			groups[c.Group].Add(c)
			counts[p] = c
		}
	}
	check := func(left []*corev1.Pod) {
		t.Helper()
		snap := NewSnapshot([]*schedulingv1alpha1.ResourcePolicy{rp}, nodes, left)
		for _, g := range []string{"0", "1"} {
			want, err := snap.Usage(rp, makePod("x").label("rev", g).obj())
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, groups[g].Units, cmpUsage); diff != "" {
				t.Errorf("group %s (-snapshot,+incremental):\n%s", g, diff)
			}
		}
		// The snapshot fed with the incremental usage plans like the one counting pods.
		fed := NewSnapshot([]*schedulingv1alpha1.ResourcePolicy{rp}, nodes, nil)
		fed.SetGroupUsage(rp, "1", groups["1"])
		pod := makePod("new").label("rev", "1").gpu(1).obj()
		want, err1 := snap.PlanFor(rp, pod, t0)
		got, err2 := fed.PlanFor(rp, pod, t0)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if diff := cmp.Diff(want, got, cmpUsage); diff != "" {
			t.Errorf("plan (-counted,+fed):\n%s", diff)
		}
	}
	for g, u := range groups {
		if u.Units[0].Pods == 0 || u.Units[1].Pods == 0 || u.Terminating[0] == 0 || u.Outside == 0 || u.Pending == 0 {
			t.Fatalf("group %s: the random pods do not exercise every count: %+v", g, u)
		}
	}
	check(pods)
	var left []*corev1.Pod
	for _, p := range pods {
		if c, ok := counts[p]; ok && rng.IntN(2) == 0 {
			groups[c.Group].Remove(c)
			continue
		}
		left = append(left, p)
	}
	check(left)
}

// TestSetGroupUsageIsCopied: Assume on a fed snapshot does not change the
// caller's usage, and a short usage is padded.
func TestSetGroupUsageIsCopied(t *testing.T) {
	rp := policy("p", withMax(0, 1))
	u := NewGroupUsage(1)
	snap := NewSnapshot([]*schedulingv1alpha1.ResourcePolicy{rp}, nodes, nil)
	snap.SetGroupUsage(rp, "", u)
	if err := snap.Assume(rp, makePod("a").gpu(1).obj(), "idc-1"); err != nil {
		t.Fatal(err)
	}
	if u.Units[0].Pods != 0 || len(u.Units[0].Requested) != 0 {
		t.Fatalf("caller's usage changed: %+v", u)
	}
	plan, err := snap.PlanFor(rp, makePod("b").obj(), t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Skipped) != 1 || plan.Skipped[0].Index != 0 || len(plan.Units) != 1 || plan.Units[0].Index != 1 {
		t.Fatalf("plan after Assume: %+v", plan)
	}
}
