package resourcepolicy

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
)

// TestUnitIndex: node objects of the snapshot are matched once per policy
// version; an object the index lacks (a relabelled node) is matched
// directly, and a snapshot holding it rebuilds the index; so do another
// policy generation or node count. Allowed-node sets follow the index.
func TestUnitIndex(t *testing.T) {
	calls := 0
	match := func(n *corev1.Node) int {
		calls++
		if n.Labels["pool"] == "idc" {
			return 0
		}
		return -1
	}
	node := func(name, pool string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"pool": pool}}}
	}
	snapshot := func(ns ...*corev1.Node) []fwk.NodeInfo {
		var out []fwk.NodeInfo
		for _, n := range ns {
			ni := framework.NewNodeInfo()
			ni.SetNode(n)
			out = append(out, ni)
		}
		return out
	}
	a, b := node("a", "idc"), node("b", "cloud")
	var xs unitIndexes
	x := xs.get("uid", 1, snapshot(a, b), match)
	if calls != 2 {
		t.Fatalf("built with %d matches, want 2", calls)
	}
	for range 3 {
		if x.unitOf(a, match) != 0 || x.unitOf(b, match) != -1 {
			t.Fatal("wrong unit")
		}
	}
	if calls != 2 || xs.get("uid", 1, snapshot(a, b), match) != x {
		t.Errorf("lookups of indexed nodes matched labels (%d matches) or the index was rebuilt", calls)
	}
	// b relabelled: a new object.
	b2 := node("b", "idc")
	if u := x.unitOf(b2, match); u != 0 || calls != 3 {
		t.Errorf("relabelled node: unit %d after %d matches, want 0 after 3", u, calls)
	}
	if got := xs.allowedNodes(x, 1<<1); !got.Equal(sets.New("a")) {
		t.Errorf("nodes of unit 0 before the relabel: %v, want [a]", sets.List(got))
	}
	if got := xs.allowedNodes(x, 1<<0); !got.Equal(sets.New("b")) {
		t.Errorf("nodes outside the units before the relabel: %v, want [b]", sets.List(got))
	}
	x2 := xs.get("uid", 1, snapshot(a, b2), match)
	if x2 == x || x2.unitOf(b2, match) != 0 {
		t.Error("a snapshot with the relabelled node's new object did not rebuild the index")
	}
	if got := xs.allowedNodes(x2, 1<<1); !got.Equal(sets.New("a", "b")) {
		t.Errorf("nodes of unit 0 after the relabel: %v, want [a b]", sets.List(got))
	}
	if xs.get("uid", 2, snapshot(a, b2), match) == x2 {
		t.Error("new policy generation: the old index")
	}
	x3 := xs.get("uid", 2, snapshot(a, b2), match)
	if xs.get("uid", 2, snapshot(a), match) == x3 {
		t.Error("a node fewer: the old index")
	}
	x4 := xs.get("uid", 2, snapshot(a, b2), match)
	if x5 := xs.get("uid", 2, snapshot(b2, a), match); x5 == x4 || x5.unitOf(a, match) != 0 || x5.unitOf(b2, match) != 0 {
		t.Error("the same nodes in another order: the old index, or a wrong one")
	}
	xs.forget("uid")
	if len(xs.m) != 0 {
		t.Errorf("%d indexes after forget", len(xs.m))
	}
}
