package resourcepolicy

import (
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	fwk "k8s.io/kube-scheduler/framework"
)

// unitIndex is the unit of every node object of a snapshot for one version
// of a policy (UID and generation). Filter, PreScore and Score ask for the
// unit of hundreds of nodes per pod; matching the unit selectors against
// each node's label map every time was the plugin's largest CPU cost (one
// cache miss after another through label maps scattered over the heap),
// where this small map keyed by pointer stays in the CPU cache.
//
// An index is immutable once published, so the parallel Filter calls read
// it without locks. A node's labels only change with a new object from the
// informer, so PreFilter checks that its snapshot holds the node objects
// the index was built from (a pointer comparison per node) and rebuilds it
// otherwise; a node object missing from the index is matched directly.
type unitIndex struct {
	generation int64
	units      map[*corev1.Node]int8
	// order is the snapshot's node objects in the order the index was
	// built from, so that holds compares pointers in sequence.
	order []*corev1.Node
	// allowed caches, per set of allowed rules (bit i: rules[i] allows),
	// the names of the nodes in allowed units; guarded by unitIndexes.mu.
	allowed map[uint64]sets.Set[string]
}

// unitOf returns the unit of node, or match(node) for an object the index
// does not hold.
func (x *unitIndex) unitOf(node *corev1.Node, match func(*corev1.Node) int) int {
	if u, ok := x.units[node]; ok {
		return int(u)
	}
	return match(node)
}

// unitIndexes holds the index of each policy in use.
type unitIndexes struct {
	mu sync.Mutex
	m  map[types.UID]*unitIndex
}

// get returns the index of this version of the policy for the snapshot's
// nodes, rebuilding it when it is of another version or does not hold
// exactly the snapshot's node objects. Called by PreFilter (once per pod,
// before the parallel Filter calls).
func (xs *unitIndexes) get(uid types.UID, generation int64, nodes []fwk.NodeInfo, match func(*corev1.Node) int) *unitIndex {
	xs.mu.Lock()
	defer xs.mu.Unlock()
	if x := xs.m[uid]; x != nil && x.generation == generation && x.holds(nodes) {
		return x
	}
	x := &unitIndex{generation: generation, units: make(map[*corev1.Node]int8, len(nodes)),
		order: make([]*corev1.Node, len(nodes))}
	for i, ni := range nodes {
		n := ni.Node()
		x.order[i] = n
		if n != nil {
			x.units[n] = int8(match(n))
		}
	}
	if xs.m == nil {
		xs.m = map[types.UID]*unitIndex{}
	}
	xs.m[uid] = x
	return x
}

// holds tells whether the index was built from exactly these node objects
// in this order (the scheduler keeps its snapshot's node list in a stable
// order; a list in another order only costs a rebuild). A pointer
// comparison per node: ~15 µs for 5,000 nodes.
func (x *unitIndex) holds(nodes []fwk.NodeInfo) bool {
	if len(x.order) != len(nodes) {
		return false
	}
	for i, ni := range nodes {
		if ni.Node() != x.order[i] {
			return false
		}
	}
	return true
}

// allowedNodes returns the names of the nodes whose unit u (-1: outside
// every unit) has allow(u), for the allowed set given as mask (bit u+1);
// the set is cached per mask and must not be modified.
func (xs *unitIndexes) allowedNodes(x *unitIndex, mask uint64) sets.Set[string] {
	xs.mu.Lock()
	defer xs.mu.Unlock()
	if s, ok := x.allowed[mask]; ok {
		return s
	}
	s := sets.New[string]()
	for n, u := range x.units {
		if mask&(1<<uint(int(u)+1)) != 0 {
			s.Insert(n.Name)
		}
	}
	if x.allowed == nil {
		x.allowed = map[uint64]sets.Set[string]{}
	}
	x.allowed[mask] = s
	return s
}

// forget drops the index of a deleted policy.
func (xs *unitIndexes) forget(uid types.UID) {
	xs.mu.Lock()
	defer xs.mu.Unlock()
	delete(xs.m, uid)
}
