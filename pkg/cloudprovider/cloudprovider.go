// Package cloudprovider is the small interface through which Spillway buys and
// releases the nodes of elastic NodePools, with typed errors for the ways a
// cloud says no. Implementations live in sub-packages: fake (scriptable, for
// tests) and sim (the local cluster's simulated cloud).
package cloudprovider

import (
	"context"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
)

// Instance is one machine a provider runs (or is starting) for a pool. Its
// Name is the name the machine's Node object has or will have.
type Instance struct {
	// Name is the Node name of the instance.
	Name string
	// ProviderID is the provider's id, also set as the Node's spec.providerID.
	ProviderID string
	// Pool is the NodePool the instance was bought for.
	Pool string
	// CreatedAt is when the instance was asked for.
	CreatedAt time.Time
}

// Provider creates, deletes and lists the instances of elastic pools. A
// provider is the source of truth for instances that were asked for but have
// no Node yet, so a restarted controller never buys them twice.
type Provider interface {
	// Create asks for count new instances of pool. It may return the
	// instances it did create along with an error when it created fewer.
	Create(ctx context.Context, pool *spillwayv1alpha1.NodePool, count int) ([]Instance, error)
	// Delete releases instances of pool by name. Unknown names are not an error.
	Delete(ctx context.Context, pool *spillwayv1alpha1.NodePool, names ...string) error
	// List returns the instances of pool, sorted by name.
	List(ctx context.Context, pool *spillwayv1alpha1.NodePool) ([]Instance, error)
}

// Registry maps a provider name (NodePool spec.provider.name) to its implementation.
type Registry map[string]Provider

// For returns the provider of pool.
func (r Registry) For(pool *spillwayv1alpha1.NodePool) (Provider, error) {
	if pool.Spec.Provider == nil {
		return nil, fmt.Errorf("node pool %q has no provider", pool.Name)
	}
	p, ok := r[pool.Spec.Provider.Name]
	if !ok {
		return nil, fmt.Errorf("node pool %q: unknown provider %q (known: %v)", pool.Name, pool.Spec.Provider.Name, r.names())
	}
	return p, nil
}

func (r Registry) names() []string {
	out := make([]string, 0, len(r))
	for n := range r {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// DefaultPodCapacity is a node's pod capacity when the template does not say.
const DefaultPodCapacity = 110

// NodeLabels are the labels every node of pool carries: the pool's
// spec.labels, spillway.io/nodepool, spillway.io/pool-role and, when the
// template names one, spillway.io/gpu-model.
func NodeLabels(pool *spillwayv1alpha1.NodePool) map[string]string {
	l := make(map[string]string, len(pool.Spec.Labels)+3)
	for k, v := range pool.Spec.Labels {
		l[k] = v
	}
	l[spillwayv1alpha1.LabelNodePool] = pool.Name
	if pool.Spec.Role != "" {
		l[spillwayv1alpha1.LabelPoolRole] = string(pool.Spec.Role)
	}
	if pool.Spec.Template.GPUModel != "" {
		l[spillwayv1alpha1.LabelGPUModel] = pool.Spec.Template.GPUModel
	}
	return l
}

// TemplateCapacity is the capacity of one node of pool as its template says.
func TemplateCapacity(pool *spillwayv1alpha1.NodePool) corev1.ResourceList {
	t := pool.Spec.Template
	rl := corev1.ResourceList{}
	if t.CPU != nil {
		rl[corev1.ResourceCPU] = t.CPU.DeepCopy()
	}
	if t.Memory != nil {
		rl[corev1.ResourceMemory] = t.Memory.DeepCopy()
	}
	if t.GPUs > 0 {
		rl[spillwayv1alpha1.ResourceGPU] = *resource.NewQuantity(int64(t.GPUs), resource.DecimalSI)
	}
	pods := int64(DefaultPodCapacity)
	if t.Pods != nil {
		pods = int64(*t.Pods)
	}
	rl[corev1.ResourcePods] = *resource.NewQuantity(pods, resource.DecimalSI)
	return rl
}

// TemplateNode builds the Node an instance of pool becomes once usable: the
// pool's labels and taints, the template's capacity, Ready. Providers create
// it (stripping what is not there yet); the node autoscaler simulates pods
// against it.
func TemplateNode(pool *spillwayv1alpha1.NodePool, name, providerID string) *corev1.Node {
	capacity := TemplateCapacity(pool)
	labels := NodeLabels(pool)
	labels[corev1.LabelHostname] = name
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.NodeSpec{
			ProviderID: providerID,
			Taints:     append([]corev1.Taint(nil), pool.Spec.Taints...),
		},
		Status: corev1.NodeStatus{
			Capacity:    capacity,
			Allocatable: capacity.DeepCopy(),
			Conditions: []corev1.NodeCondition{{
				Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
				Message: "simulated node is ready",
			}},
		},
	}
}

// StartupTaints are the taints a node carries only until the node lifecycle
// controller (or cloud controller) sees it Ready and initialised.
var StartupTaints = []string{
	corev1.TaintNodeNotReady,
	corev1.TaintNodeUnreachable,
	"node.cloudprovider.kubernetes.io/uninitialized",
}

// IsStartupTaint reports whether t is one of StartupTaints.
func IsStartupTaint(t corev1.Taint) bool {
	for _, k := range StartupTaints {
		if t.Key == k {
			return true
		}
	}
	return false
}

// Usable reports whether node can take GPU pods now: Ready, without startup
// taints, and — when its pool's template has GPUs — advertising them. A node
// of an elastic pool that is not usable is still "coming".
func Usable(node *corev1.Node, wantGPUs int32) bool {
	for _, t := range node.Spec.Taints {
		if IsStartupTaint(t) {
			return false
		}
	}
	ready := false
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			ready = c.Status == corev1.ConditionTrue
		}
	}
	if !ready {
		return false
	}
	if wantGPUs > 0 {
		q, ok := node.Status.Allocatable[spillwayv1alpha1.ResourceGPU]
		if !ok || q.Value() <= 0 {
			return false
		}
	}
	return true
}
