package resourcepolicy

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	schedulingv1alpha1 "github.com/spillway-io/spillway/apis/scheduling/v1alpha1"
	"github.com/spillway-io/spillway/pkg/resourcepolicy"
)

type memPods map[types.UID]*corev1.Pod

func (m memPods) List(ns string, sel labels.Selector) ([]*corev1.Pod, error) {
	var out []*corev1.Pod
	for _, p := range m {
		if p.Namespace == ns && sel.Matches(labels.Set(p.Labels)) {
			out = append(out, p)
		}
	}
	return out, nil
}

type memNodes map[string]*corev1.Node

func (m memNodes) Get(name string) *corev1.Node { return m[name] }

var quantities = cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 })

// TestCountsFollowEvents: after any sequence of pod events (create, reserve,
// unreserve, markers written, bind, terminate, delete), node relabels and
// policy updates, the incremental counts equal a full recount by the engine
// of the pods (assumed pods counted on their node with their unit's markers).
func TestCountsFollowEvents(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	rp := &schedulingv1alpha1.ResourcePolicy{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "rp", Generation: 1},
		Spec: schedulingv1alpha1.ResourcePolicySpec{Selector: map[string]string{"app": "a"}, MatchLabelKeys: []string{"rev"},
			IgnoreTerminatingPod: ptr.To(false),
			Units: []schedulingv1alpha1.Unit{
				{Resource: schedulingv1alpha1.ResourceECS, NodeSelector: map[string]string{"pool": "idc"}, Max: ptr.To[int32](50)},
				{Resource: schedulingv1alpha1.ResourceElastic, NodeSelector: map[string]string{"pool": "el"},
					PodLabels: map[string]string{"unit": "el"}, Max: ptr.To[int32](50)},
			}}}
	pods := memPods{}
	nodes := memNodes{}
	for i, pool := range []string{"idc", "idc", "el", "el", "other"} {
		name := fmt.Sprintf("n%d", i)
		nodes[name] = &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"pool": pool}}}
	}
	nodeNames := []string{"n0", "n1", "n2", "n3", "n4", "missing"}
	c := newCounts(pods, nodes)
	assumed := map[types.UID]string{}

	expect := func(group string) []resourcepolicy.UnitUsage {
		var all []*corev1.Pod
		for uid, p := range pods {
			if n, ok := assumed[uid]; ok && p.Spec.NodeName == "" {
				cp := withMarkers(rp, p, nodes[n]).DeepCopy()
				cp.Spec.NodeName = n
				p = cp
			}
			all = append(all, p)
		}
		var nl []*corev1.Node
		for _, n := range nodes {
			nl = append(nl, n)
		}
		u, err := resourcepolicy.NewSnapshot([]*schedulingv1alpha1.ResourcePolicy{rp}, nl, all).Usage(rp,
			&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Labels: map[string]string{"rev": group}}})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	update := func(p *corev1.Pod, mut func(*corev1.Pod)) {
		cp := p.DeepCopy()
		mut(cp)
		pods[cp.UID] = cp
		c.onPod(cp)
	}
	pick := func() *corev1.Pod {
		for _, p := range pods { // map order is random enough
			return p
		}
		return nil
	}
	seen := map[string]bool{}
	for step := range 1500 {
		op := rng.IntN(10)
		p := pick()
		switch {
		case op <= 2 || p == nil:
			uid := types.UID(fmt.Sprint("pod-", step))
			np := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: string(uid), Namespace: "ns", UID: uid,
				Labels: map[string]string{"app": "a", "rev": fmt.Sprint(rng.IntN(2))}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{"gpu": *resource.NewQuantity(int64(1+rng.IntN(2)), resource.DecimalSI)}}}}}}
			if rng.IntN(10) == 0 {
				np.Namespace = "other"
			}
			pods[uid] = np
			c.onPod(np)
			seen["create"] = true
		case op == 3 && p.Spec.NodeName == "":
			n := nodeNames[rng.IntN(len(nodeNames))]
			assumed[p.UID] = n
			c.assume(p, n)
			seen["reserve"] = true
		case op == 4 && p.Spec.NodeName == "" && assumed[p.UID] != "":
			if rng.IntN(3) == 0 {
				delete(assumed, p.UID)
				c.forget(p)
				seen["unreserve"] = true
				break
			}
			n := assumed[p.UID]
			update(p, func(q *corev1.Pod) { *q = *withMarkers(rp, q, nodes[n]) }) // PreBind writes the markers
			if rng.IntN(2) == 0 {
				delete(assumed, p.UID)
				update(pods[p.UID], func(q *corev1.Pod) { q.Spec.NodeName = n })
				seen["bind"] = true
			}
		case op == 5:
			update(p, func(q *corev1.Pod) { q.DeletionTimestamp = ptr.To(metav1.Now()) })
			seen["terminate"] = true
		case op == 6:
			delete(pods, p.UID)
			delete(assumed, p.UID)
			c.onPodDelete(p)
			seen["delete"] = true
		case op == 7 && rng.IntN(10) == 0:
			n := nodeNames[rng.IntN(len(nodeNames)-1)]
			cp := nodes[n].DeepCopy()
			cp.Labels["pool"] = []string{"idc", "el", "other"}[rng.IntN(3)]
			nodes[n] = cp
			c.onNode()
			seen["relabel"] = true
		case op == 8 && rng.IntN(20) == 0:
			rp = rp.DeepCopy()
			rp.Generation++
			rp.Spec.IgnoreTerminatingPod = ptr.To(!*rp.Spec.IgnoreTerminatingPod)
			seen["policy"] = true
		}
		for _, g := range []string{"0", "1"} {
			got, err := c.usage(rp, g)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(expect(g), got.Units, quantities); diff != "" {
				t.Fatalf("step %d, group %s (-recount,+incremental):\n%s", step, g, diff)
			}
		}
	}
	if len(seen) != 8 {
		t.Fatalf("not every event was exercised: %v", seen)
	}
}

func TestNarrow(t *testing.T) {
	plan := resourcepolicy.Plan{Policy: &schedulingv1alpha1.ResourcePolicy{},
		Units: []resourcepolicy.UnitChoice{{Index: 0}, {Index: 2}}, Others: true}
	units := func(p resourcepolicy.Plan) []int {
		var out []int
		for _, u := range p.Units {
			out = append(out, u.Index)
		}
		return out
	}
	cases := []struct {
		tried, frontier int
		units           []int
		others          bool
	}{
		{tried: -1, frontier: 0, units: []int{0}},
		{tried: 0, frontier: 2, units: []int{0, 2}},
		{tried: 1, frontier: 2, units: []int{0, 2}},
		{tried: 2, frontier: -1, units: []int{0, 2}, others: true},
	}
	for _, tc := range cases {
		got, frontier := narrow(plan, tc.tried)
		if frontier != tc.frontier || !cmp.Equal(units(got), tc.units) || got.Others != tc.others {
			t.Errorf("tried %d: frontier %d units %v others %v, want %d %v %v", tc.tried, frontier, units(got), got.Others,
				tc.frontier, tc.units, tc.others)
		}
	}
	// Under required the last unit has nothing after it: nothing is held back.
	plan.Others = false
	if got, frontier := narrow(plan, 0); frontier != -1 || len(got.Units) != 2 {
		t.Errorf("required, tried 0: frontier %d units %v", frontier, units(got))
	}
}
