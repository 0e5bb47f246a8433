package resourcepolicy

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	schedulingv1alpha1 "github.com/spillway-io/spillway/apis/scheduling/v1alpha1"
)

// ErrConflict is wrapped by a ConflictError.
var ErrConflict = errors.New("pod matched by more than one ResourcePolicy")

// ErrMissingLabelKey is wrapped by a MissingLabelKeyError.
var ErrMissingLabelKey = errors.New("pod lacks a matchLabelKeys label")

// ConflictError tells which policies match the same pod.
type ConflictError struct {
	Pod      string
	Policies []string // sorted namespace/name
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("pod %s is matched by %d ResourcePolicies (%s); a pod may be matched by one only",
		e.Pod, len(e.Policies), strings.Join(e.Policies, ", "))
}

func (e *ConflictError) Unwrap() error { return ErrConflict }

// MissingLabelKeyError tells which matchLabelKeys label a pod lacks.
type MissingLabelKeyError struct {
	Pod, Policy, Key string
}

func (e *MissingLabelKeyError) Error() string {
	return fmt.Sprintf("pod %s lacks label %q required by matchLabelKeys of ResourcePolicy %s", e.Pod, e.Key, e.Policy)
}

func (e *MissingLabelKeyError) Unwrap() error { return ErrMissingLabelKey }

// Snapshot is the state the engine decides on.
type Snapshot struct {
	byNS  map[string][]*schedulingv1alpha1.ResourcePolicy
	nodes map[string]*corev1.Node
	pods  []*corev1.Pod
	// usage per policy key and group key, computed on first use.
	usage map[string]map[string]*GroupUsage
}

// UnitUsage is what a unit already holds for one policy and group.
type UnitUsage struct {
	Pods      int32
	Requested corev1.ResourceList
}

// NewSnapshot indexes policies, nodes and pods. The objects are not copied
// and must not be mutated while the snapshot is used.
func NewSnapshot(policies []*schedulingv1alpha1.ResourcePolicy, nodes []*corev1.Node, pods []*corev1.Pod) *Snapshot {
	s := &Snapshot{
		byNS:  map[string][]*schedulingv1alpha1.ResourcePolicy{},
		nodes: make(map[string]*corev1.Node, len(nodes)),
		pods:  pods,
		usage: map[string]map[string]*GroupUsage{},
	}
	for _, rp := range policies {
		s.byNS[rp.Namespace] = append(s.byNS[rp.Namespace], rp)
	}
	for _, n := range nodes {
		s.nodes[n.Name] = n
	}
	return s
}

// AddNode adds (or replaces) a node, e.g. a node the autoscaler simulates.
// Counts already computed are kept: add nodes before placing pods on them.
func (s *Snapshot) AddNode(n *corev1.Node) { s.nodes[n.Name] = n }

// Key is the namespace/name of a policy.
func Key(rp *schedulingv1alpha1.ResourcePolicy) string { return rp.Namespace + "/" + rp.Name }

func podKey(p *corev1.Pod) string { return p.Namespace + "/" + p.Name }

func subset(want, have map[string]string) bool {
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			return false
		}
	}
	return true
}

// Match returns the policy matching pod, nil if none, or a *ConflictError.
func (s *Snapshot) Match(pod *corev1.Pod) (*schedulingv1alpha1.ResourcePolicy, error) {
	var found *schedulingv1alpha1.ResourcePolicy
	var all []string
	for _, rp := range s.byNS[pod.Namespace] {
		if !subset(rp.Spec.Selector, pod.Labels) {
			continue
		}
		if found == nil {
			found = rp
		}
		all = append(all, Key(rp))
	}
	if len(all) > 1 {
		sort.Strings(all)
		return nil, &ConflictError{Pod: podKey(pod), Policies: all}
	}
	return found, nil
}

// Group returns the matchLabelKeys group of pod under rp ("" without keys).
func Group(rp *schedulingv1alpha1.ResourcePolicy, pod *corev1.Pod) (string, error) {
	if len(rp.Spec.MatchLabelKeys) == 0 {
		return "", nil
	}
	var b strings.Builder
	for i, k := range rp.Spec.MatchLabelKeys {
		v, ok := pod.Labels[k]
		if !ok {
			return "", &MissingLabelKeyError{Pod: podKey(pod), Policy: Key(rp), Key: k}
		}
		if i > 0 {
			b.WriteByte(0)
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

// UnitOf returns the index of the first unit of rp whose nodeSelector the
// node's labels match, or -1.
func UnitOf(rp *schedulingv1alpha1.ResourcePolicy, node *corev1.Node) int {
	if node == nil {
		return -1
	}
	for i := range rp.Spec.Units {
		if subset(rp.Spec.Units[i].NodeSelector, node.Labels) {
			return i
		}
	}
	return -1
}

// UnitOfNode is UnitOf by node name; -1 for a node not in the snapshot.
func (s *Snapshot) UnitOfNode(rp *schedulingv1alpha1.ResourcePolicy, nodeName string) int {
	return UnitOf(rp, s.nodes[nodeName])
}

func finished(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

func ignoreTerminating(rp *schedulingv1alpha1.ResourcePolicy) bool {
	return rp.Spec.IgnoreTerminatingPod == nil || *rp.Spec.IgnoreTerminatingPod
}

// carriesMarkers tells whether p carries the unit's podLabels/podAnnotations.
func carriesMarkers(u *schedulingv1alpha1.Unit, p *corev1.Pod) bool {
	return subset(u.PodLabels, p.Labels) && subset(u.PodAnnotations, p.Annotations)
}

// counted reports whether p, on unit u, counts for it (markers, previous and
// terminating pods). Terminating pods are reported separately.
func counted(rp *schedulingv1alpha1.ResourcePolicy, u *schedulingv1alpha1.Unit, p *corev1.Pod) (counts, terminating bool) {
	if !carriesMarkers(u, p) {
		return false, false
	}
	if rp.Spec.IgnorePreviousPod && p.CreationTimestamp.Before(&rp.CreationTimestamp) {
		return false, false
	}
	if p.DeletionTimestamp != nil {
		return !ignoreTerminating(rp), true
	}
	return true, false
}

func (s *Snapshot) groupUsage(rp *schedulingv1alpha1.ResourcePolicy, group string) *GroupUsage {
	key := Key(rp)
	byGroup, ok := s.usage[key]
	if !ok {
		byGroup = s.computeUsage(rp)
		s.usage[key] = byGroup
	}
	g, ok := byGroup[group]
	if !ok {
		g = NewGroupUsage(len(rp.Spec.Units))
		byGroup[group] = g
	}
	return g
}

func (s *Snapshot) computeUsage(rp *schedulingv1alpha1.ResourcePolicy) map[string]*GroupUsage {
	out := map[string]*GroupUsage{}
	for _, p := range s.pods {
		c, ok := CountPod(rp, p, s.nodes[p.Spec.NodeName])
		if !ok {
			continue
		}
		g, ok := out[c.Group]
		if !ok {
			g = NewGroupUsage(len(rp.Spec.Units))
			out[c.Group] = g
		}
		g.Add(c)
	}
	return out
}

func addTo(sum, req corev1.ResourceList) {
	for r, q := range req {
		v := sum[r]
		v.Add(q)
		sum[r] = v
	}
}

// PodRequests sums the requests of a pod's containers (and overhead), taking
// the largest init container request where it is larger.
func PodRequests(p *corev1.Pod) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := range p.Spec.Containers {
		addTo(out, p.Spec.Containers[i].Resources.Requests)
	}
	for i := range p.Spec.InitContainers {
		for r, q := range p.Spec.InitContainers[i].Resources.Requests {
			if cur, ok := out[r]; !ok || q.Cmp(cur) > 0 {
				out[r] = q.DeepCopy()
			}
		}
	}
	addTo(out, p.Spec.Overhead)
	return out
}

// Usage returns what each unit of rp holds for pod's group.
func (s *Snapshot) Usage(rp *schedulingv1alpha1.ResourcePolicy, pod *corev1.Pod) ([]UnitUsage, error) {
	group, err := Group(rp, pod)
	if err != nil {
		return nil, err
	}
	return s.groupUsage(rp, group).Units, nil
}

// Assume counts pod as placed on nodeName (scheduler Reserve, or a pod the
// autoscaler simulates). The pod must be matched by rp and not yet counted
// as placed; a pending pod already in the snapshot stops counting as pending.
func (s *Snapshot) Assume(rp *schedulingv1alpha1.ResourcePolicy, pod *corev1.Pod, nodeName string) error {
	group, err := Group(rp, pod)
	if err != nil {
		return err
	}
	g := s.groupUsage(rp, group)
	if pod.Spec.NodeName == "" && g.Pending > 0 {
		g.Pending--
	}
	g.Add(countOn(rp, pod, group, s.UnitOfNode(rp, nodeName), true))
	return nil
}

// atMax tells whether unit i cannot take pod (req) any more, and why.
func atMax(u *schedulingv1alpha1.Unit, use UnitUsage, req corev1.ResourceList) (bool, string) {
	if u.Max != nil && use.Pods >= *u.Max {
		return true, fmt.Sprintf("holds %d pods, max %d", use.Pods, *u.Max)
	}
	names := make([]string, 0, len(u.MaxResources))
	for r := range u.MaxResources {
		names = append(names, string(r))
	}
	sort.Strings(names)
	for _, n := range names {
		r := corev1.ResourceName(n)
		limit := u.MaxResources[r]
		used := use.Requested[r]
		want := use.Requested[r].DeepCopy()
		if q, ok := req[r]; ok {
			want.Add(q)
		}
		if want.Cmp(limit) > 0 {
			return true, fmt.Sprintf("%s requested %s + pod %s exceeds maxResources %s",
				r, used.String(), quantity(req, r), limit.String())
		}
	}
	return false, ""
}

func quantity(l corev1.ResourceList, r corev1.ResourceName) string {
	q, ok := l[r]
	if !ok {
		return "0"
	}
	return q.String()
}

// Timeout is the whenTryNextUnits timeout of rp (default 15m).
func Timeout(rp *schedulingv1alpha1.ResourcePolicy) (time.Duration, error) {
	s := schedulingv1alpha1.DefaultTryNextTimeout
	if w := rp.Spec.WhenTryNextUnits; w != nil && w.Timeout != "" {
		s = w.Timeout
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("ResourcePolicy %s: whenTryNextUnits.timeout %q: %w", Key(rp), s, err)
	}
	if d <= 0 {
		return 0, fmt.Errorf("ResourcePolicy %s: whenTryNextUnits.timeout %q must be positive", Key(rp), s)
	}
	return d, nil
}

// TryNext is the whenTryNextUnits policy of rp with its default.
func TryNext(rp *schedulingv1alpha1.ResourcePolicy) schedulingv1alpha1.TryNextPolicy {
	if w := rp.Spec.WhenTryNextUnits; w != nil && w.Policy != "" {
		return w.Policy
	}
	return schedulingv1alpha1.LackResourceOrExceedMax
}

// Required tells whether rp's strategy is required.
func Required(rp *schedulingv1alpha1.ResourcePolicy) bool {
	return rp.Spec.Strategy == schedulingv1alpha1.StrategyRequired
}
