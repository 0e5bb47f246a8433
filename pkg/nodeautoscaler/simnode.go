package nodeautoscaler

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	resourcehelper "k8s.io/component-helpers/resource"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"
)

// nodeKind says where a simulated node stands.
type nodeKind int

const (
	kindUsable nodeKind = iota // Ready and advertising its GPUs
	kindComing                 // asked for, not usable yet
	kindNew                    // opened by this plan
)

// simNode is a node in the simulation: its shape and what is already on it.
type simNode struct {
	name  string
	pool  string // "" when the node belongs to no known pool
	kind  nodeKind
	node  *corev1.Node // labels, taints and allocatable
	used  corev1.ResourceList
	pods  int64
	hosts []string // pending pods the plan put here
}

func newSimNode(node *corev1.Node, pool string, kind nodeKind) *simNode {
	return &simNode{name: node.Name, pool: pool, kind: kind, node: node, used: corev1.ResourceList{}}
}

// podRequests is what a pod asks of a node.
func podRequests(pod *corev1.Pod) corev1.ResourceList {
	return resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})
}

// fits reports whether pod can go on n now, and why not. Free capacity is
// checked first: it is cheap and rules out most nodes of a busy cluster.
func (n *simNode) fits(pod *corev1.Pod, req corev1.ResourceList) (bool, string) {
	alloc := n.node.Status.Allocatable
	if maxPods, ok := alloc[corev1.ResourcePods]; ok && n.pods+1 > maxPods.Value() {
		return false, "too many pods"
	}
	for name, q := range req {
		if q.IsZero() || name == corev1.ResourcePods {
			continue
		}
		free := alloc[name].DeepCopy()
		free.Sub(n.used[name])
		if free.Cmp(q) < 0 {
			return false, "insufficient " + string(name)
		}
	}
	return shapeFits(pod, n.node)
}

// shapeFits checks what does not depend on free capacity: node selector,
// required node affinity and taints.
func shapeFits(pod *corev1.Pod, node *corev1.Node) (bool, string) {
	if ok, err := nodeaffinity.GetRequiredNodeAffinity(pod).Match(node); err != nil || !ok {
		return false, "node selector or affinity does not match"
	}
	_, untolerated := corev1helpers.FindMatchingUntoleratedTaint(klog.Background(), node.Spec.Taints, pod.Spec.Tolerations,
		func(t *corev1.Taint) bool {
			return t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute
		}, false)
	if untolerated {
		return false, "untolerated taint"
	}
	return true, ""
}

// capacityFits reports whether req can ever fit a node of this allocatable.
func capacityFits(alloc, req corev1.ResourceList) bool {
	for name, q := range req {
		if q.IsZero() || name == corev1.ResourcePods {
			continue
		}
		a := alloc[name]
		if a.Cmp(q) < 0 {
			return false
		}
	}
	return true
}

func (n *simNode) add(req corev1.ResourceList) {
	for name, q := range req {
		cur := n.used[name].DeepCopy()
		cur.Add(q)
		n.used[name] = cur
	}
	n.pods++
}

func (n *simNode) remove(req corev1.ResourceList) {
	for name, q := range req {
		cur := n.used[name].DeepCopy()
		cur.Sub(q)
		n.used[name] = cur
	}
	n.pods--
}

// quantity returns rl[name] or zero.
func quantity(rl corev1.ResourceList, name corev1.ResourceName) resource.Quantity {
	if q, ok := rl[name]; ok {
		return q
	}
	return resource.Quantity{}
}
