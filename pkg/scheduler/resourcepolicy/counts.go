package resourcepolicy

import (
	"maps"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	schedulingv1alpha1 "github.com/spillway-io/spillway/apis/scheduling/v1alpha1"
	"github.com/spillway-io/spillway/pkg/resourcepolicy"
)

// podSource lists the pods of a namespace (the scheduler's pod informer).
type podSource interface {
	List(namespace string, sel labels.Selector) ([]*corev1.Pod, error)
}

// nodeSource gets a node by name; nil when unknown.
type nodeSource interface {
	Get(name string) *corev1.Node
}

// counts keeps, per policy and matchLabelKeys group, what each unit holds,
// so that PreFilter costs O(units) instead of a walk over every pod.
//
// It is fed by the scheduler's pod informer (add, update, delete) and by
// Reserve/Unreserve (assumed pods, which the informer shows bound only after
// the binding). Each pod's contribution is kept by UID and replaced on every
// event, so events are idempotent and their order against a rebuild does not
// matter. A policy's counts are built from the pod lister on first use and
// rebuilt when its generation changes; node label changes (rare) drop every
// policy's counts, which are rebuilt on next use.
type counts struct {
	pods  podSource
	nodes nodeSource

	mu sync.Mutex
	// assumed pods (Reserve until the informer shows them bound), with
	// their node.
	assumed map[types.UID]assumedPod
	// byNS holds the built policies of each namespace by name.
	byNS map[string]map[string]*policyCounts
}

type assumedPod struct {
	pod  *corev1.Pod
	node string
}

type policyCounts struct {
	uid        types.UID
	generation int64
	rp         *schedulingv1alpha1.ResourcePolicy
	pods       map[types.UID]resourcepolicy.PodCount
	groups     map[string]*resourcepolicy.GroupUsage
}

func newCounts(pods podSource, nodes nodeSource) *counts {
	return &counts{pods: pods, nodes: nodes, assumed: map[types.UID]assumedPod{},
		byNS: map[string]map[string]*policyCounts{}}
}

// usage returns a copy of what rp's units hold for group.
func (c *counts) usage(rp *schedulingv1alpha1.ResourcePolicy, group string) (*resourcepolicy.GroupUsage, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pc, err := c.policy(rp)
	if err != nil {
		return nil, err
	}
	if g, ok := pc.groups[group]; ok {
		return g.DeepCopy(), nil
	}
	return resourcepolicy.NewGroupUsage(len(rp.Spec.Units)), nil
}

// policy returns rp's counts, building them when missing or stale. c.mu held.
func (c *counts) policy(rp *schedulingv1alpha1.ResourcePolicy) (*policyCounts, error) {
	byName := c.byNS[rp.Namespace]
	if pc, ok := byName[rp.Name]; ok && pc.uid == rp.UID && pc.generation == rp.Generation {
		return pc, nil
	}
	pods, err := c.pods.List(rp.Namespace, labels.SelectorFromSet(rp.Spec.Selector))
	if err != nil {
		return nil, err
	}
	pc := &policyCounts{uid: rp.UID, generation: rp.Generation, rp: rp,
		pods: map[types.UID]resourcepolicy.PodCount{}, groups: map[string]*resourcepolicy.GroupUsage{}}
	for _, p := range pods {
		c.recount(pc, p)
	}
	if byName == nil {
		byName = map[string]*policyCounts{}
		c.byNS[rp.Namespace] = byName
	}
	byName[rp.Name] = pc
	return pc, nil
}

// recount replaces pod's contribution to pc. c.mu held.
func (c *counts) recount(pc *policyCounts, pod *corev1.Pod) {
	if old, ok := pc.pods[pod.UID]; ok {
		pc.groups[old.Group].Remove(old)
		delete(pc.pods, pod.UID)
	}
	var node *corev1.Node
	switch a, ok := c.assumed[pod.UID]; {
	case pod.Spec.NodeName != "":
		node = c.nodes.Get(pod.Spec.NodeName)
	case ok:
		node = c.nodes.Get(a.node)
		pod = withMarkers(pc.rp, a.pod, node)
	default:
		return // pending: only placed pods matter to a plan
	}
	count, ok := resourcepolicy.CountPod(pc.rp, pod, node)
	if !ok {
		return
	}
	if node == nil {
		// Bound to a node the informer does not show yet: outside every unit
		// until the node arrives (a node event drops the counts).
		count.Placed, count.Unit = true, -1
	}
	g, ok := pc.groups[count.Group]
	if !ok {
		g = resourcepolicy.NewGroupUsage(len(pc.rp.Spec.Units))
		pc.groups[count.Group] = g
	}
	g.Add(count)
	pc.pods[pod.UID] = count
}

// withMarkers is pod as PreBind will write it on node: carrying the
// podLabels/podAnnotations of its unit.
func withMarkers(rp *schedulingv1alpha1.ResourcePolicy, pod *corev1.Pod, node *corev1.Node) *corev1.Pod {
	i := resourcepolicy.UnitOf(rp, node)
	if i < 0 || (len(rp.Spec.Units[i].PodLabels) == 0 && len(rp.Spec.Units[i].PodAnnotations) == 0) {
		return pod
	}
	cp := *pod
	cp.Labels = maps.Clone(pod.Labels)
	if cp.Labels == nil {
		cp.Labels = map[string]string{}
	}
	maps.Copy(cp.Labels, rp.Spec.Units[i].PodLabels)
	cp.Annotations = maps.Clone(pod.Annotations)
	if cp.Annotations == nil {
		cp.Annotations = map[string]string{}
	}
	maps.Copy(cp.Annotations, rp.Spec.Units[i].PodAnnotations)
	return &cp
}

func (c *counts) recountAll(pod *corev1.Pod) {
	for _, pc := range c.byNS[pod.Namespace] {
		c.recount(pc, pod)
	}
}

// onPod handles a pod added or updated by the informer.
func (c *counts) onPod(pod *corev1.Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if a, ok := c.assumed[pod.UID]; ok {
		if pod.Spec.NodeName != "" {
			delete(c.assumed, pod.UID) // bound: the informer has it now
		} else {
			c.assumed[pod.UID] = assumedPod{pod: pod, node: a.node}
		}
	}
	c.recountAll(pod)
}

// onPodDelete handles a pod deleted (or finished: the scheduler's informer
// drops Succeeded and Failed pods).
func (c *counts) onPodDelete(pod *corev1.Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.assumed, pod.UID)
	for _, pc := range c.byNS[pod.Namespace] {
		if old, ok := pc.pods[pod.UID]; ok {
			pc.groups[old.Group].Remove(old)
			delete(pc.pods, pod.UID)
		}
	}
}

// assume counts pod on node (Reserve).
func (c *counts) assume(pod *corev1.Pod, node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.assumed[pod.UID] = assumedPod{pod: pod, node: node}
	c.recountAll(pod)
}

// forget takes back an assumption (Unreserve); the pod is not bound.
func (c *counts) forget(pod *corev1.Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.assumed[pod.UID]; !ok {
		return
	}
	delete(c.assumed, pod.UID)
	unbound := *pod
	unbound.Spec.NodeName = ""
	c.recountAll(&unbound)
}

// onNode handles a node added, deleted, or updated with other labels: the
// units of the pods on it may change, so every policy is recounted on next
// use. Updates that keep the labels (status heartbeats) are ignored by the
// caller.
func (c *counts) onNode() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.byNS)
}

// onPolicyDelete forgets a deleted policy.
func (c *counts) onPolicyDelete(ns, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.byNS[ns], name)
}
