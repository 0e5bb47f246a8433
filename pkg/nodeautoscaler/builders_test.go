package nodeautoscaler

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	schedulingv1alpha1 "github.com/spillway-io/spillway/apis/scheduling/v1alpha1"
	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/pkg/cloudprovider"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

type poolBuilder struct{ p spillwayv1alpha1.NodePool }

func makePool(name string, typ spillwayv1alpha1.NodePoolType) *poolBuilder {
	b := &poolBuilder{p: spillwayv1alpha1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: spillwayv1alpha1.NodePoolSpec{Type: typ, Role: spillwayv1alpha1.RoleElastic,
			Labels: map[string]string{spillwayv1alpha1.LabelACKNodePoolID: "id-" + name},
			Template: spillwayv1alpha1.NodeTemplate{CPU: ptr.To(resource.MustParse("8")),
				Memory: ptr.To(resource.MustParse("32Gi")), GPUs: 1, GPUModel: "V100"}}}}
	if typ == spillwayv1alpha1.NodePoolStatic {
		b.p.Spec.Role = spillwayv1alpha1.RoleIDC
	}
	return b
}
func (b *poolBuilder) Size(min, max int32) *poolBuilder {
	b.p.Spec.MinSize, b.p.Spec.MaxSize = ptr.To(min), ptr.To(max)
	return b
}
func (b *poolBuilder) GPUs(n int32) *poolBuilder   { b.p.Spec.Template.GPUs = n; return b }
func (b *poolBuilder) Weight(w int32) *poolBuilder { b.p.Spec.Weight = w; return b }
func (b *poolBuilder) Taint(key string) *poolBuilder {
	b.p.Spec.Taints = append(b.p.Spec.Taints, corev1.Taint{Key: key, Value: "true", Effect: corev1.TaintEffectNoSchedule})
	return b
}
func (b *poolBuilder) ScaleDown(unneeded, delay time.Duration) *poolBuilder {
	b.p.Spec.ScaleDown = &spillwayv1alpha1.ScaleDown{UnneededTime: &metav1.Duration{Duration: unneeded},
		DelayAfterScaleUp: &metav1.Duration{Duration: delay}}
	return b
}
func (b *poolBuilder) Obj() *spillwayv1alpha1.NodePool { return b.p.DeepCopy() }

// nodeOf is a usable node of pool.
func nodeOf(pool *spillwayv1alpha1.NodePool, name string) *corev1.Node {
	return cloudprovider.TemplateNode(pool, name, "fake://"+pool.Name+"/"+name)
}

// comingNodeOf is a registered node of pool that does not advertise its GPUs yet.
func comingNodeOf(pool *spillwayv1alpha1.NodePool, name string) *corev1.Node {
	n := nodeOf(pool, name)
	delete(n.Status.Allocatable, spillwayv1alpha1.ResourceGPU)
	return n
}

type podBuilder struct{ p corev1.Pod }

func makePod(name string) *podBuilder {
	return &podBuilder{p: corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default",
		Labels:            map[string]string{"app": "isvc.qwen-predictor"},
		CreationTimestamp: metav1.NewTime(t0),
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs",
			UID: "u", Controller: ptr.To(true)}}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}}}}}}
}
func (b *podBuilder) GPU(n int64) *podBuilder {
	q := *resource.NewQuantity(n, resource.DecimalSI)
	b.p.Spec.Containers[0].Resources.Requests[spillwayv1alpha1.ResourceGPU] = q
	b.p.Spec.Containers[0].Resources.Limits[spillwayv1alpha1.ResourceGPU] = q
	return b
}
func (b *podBuilder) CPU(s string) *podBuilder {
	b.p.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU] = resource.MustParse(s)
	return b
}
func (b *podBuilder) On(node string) *podBuilder    { b.p.Spec.NodeName = node; return b }
func (b *podBuilder) Label(k, v string) *podBuilder { b.p.Labels[k] = v; return b }
func (b *podBuilder) Selector(k, v string) *podBuilder {
	if b.p.Spec.NodeSelector == nil {
		b.p.Spec.NodeSelector = map[string]string{}
	}
	b.p.Spec.NodeSelector[k] = v
	return b
}
func (b *podBuilder) Tolerate(key string) *podBuilder {
	b.p.Spec.Tolerations = append(b.p.Spec.Tolerations, corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists})
	return b
}
func (b *podBuilder) Bare() *podBuilder { b.p.OwnerReferences = nil; return b }
func (b *podBuilder) Obj() *corev1.Pod  { return b.p.DeepCopy() }

func policy(units ...schedulingv1alpha1.Unit) *schedulingv1alpha1.ResourcePolicy {
	return &schedulingv1alpha1.ResourcePolicy{ObjectMeta: metav1.ObjectMeta{Name: "qwen-chat", Namespace: "default"},
		Spec: schedulingv1alpha1.ResourcePolicySpec{Selector: map[string]string{"app": "isvc.qwen-predictor"},
			Strategy: schedulingv1alpha1.StrategyPrefer, Units: units}}
}

func unitOf(kind schedulingv1alpha1.ResourceKind, pool string, max *int32) schedulingv1alpha1.Unit {
	return schedulingv1alpha1.Unit{Resource: kind, NodeSelector: map[string]string{spillwayv1alpha1.LabelACKNodePoolID: "id-" + pool}, Max: max}
}

func instances(pool string, names ...string) []cloudprovider.Instance {
	var out []cloudprovider.Instance
	for _, n := range names {
		out = append(out, cloudprovider.Instance{Name: n, Pool: pool, ProviderID: "fake://" + pool + "/" + n, CreatedAt: t0})
	}
	return out
}
