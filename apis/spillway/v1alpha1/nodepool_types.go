package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NodePoolType says who decides the pool's size.
// +kubebuilder:validation:Enum=Static;Elastic
type NodePoolType string

const (
	// NodePoolStatic pools hold the nodes that are there (IDC); never scaled.
	NodePoolStatic NodePoolType = "Static"
	// NodePoolElastic pools grow and shrink through a cloud provider.
	NodePoolElastic NodePoolType = "Elastic"
)

// NodePoolRole says what the pool is for.
// +kubebuilder:validation:Enum=control;idc;elastic
type NodePoolRole string

const (
	// RoleControl pools run the control components (scheduler, controllers, gateway).
	RoleControl NodePoolRole = "control"
	// RoleIDC pools are the company's own GPUs in its data centre.
	RoleIDC NodePoolRole = "idc"
	// RoleElastic pools are cloud GPUs bought by the hour at a peak.
	RoleElastic NodePoolRole = "elastic"
)

// NodeTemplate is the shape of every node of the pool.
type NodeTemplate struct {
	// CPU is the node's allocatable CPU.
	// +optional
	CPU *resource.Quantity `json:"cpu,omitempty"`
	// Memory is the node's allocatable memory.
	// +optional
	Memory *resource.Quantity `json:"memory,omitempty"`
	// GPUs is the node's number of nvidia.com/gpu.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=64
	// +optional
	GPUs int32 `json:"gpus,omitempty"`
	// GPUModel is the GPU model (V100, A10, A100, H100, ...).
	// +kubebuilder:validation:MaxLength=63
	// +optional
	GPUModel string `json:"gpuModel,omitempty"`
	// Pods is the node's pod capacity (default 110).
	// +kubebuilder:validation:Minimum=1
	// +optional
	Pods *int32 `json:"pods,omitempty"`
}

// ProviderSpec names the cloud provider behind an elastic pool.
type ProviderSpec struct {
	// Name of the provider (e.g. sim, fake).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
	// Parameters are given to the provider as they are (instance type, zone, ...).
	// +optional
	Parameters map[string]string `json:"parameters,omitempty"`
}

// ScaleDown says when the pool's unneeded nodes are removed.
type ScaleDown struct {
	// Enabled turns scale-down on (default true).
	// +kubebuilder:default=true
	// +optional
	Enabled *bool `json:"enabled,omitempty"`
	// UnneededTime is how long a node must be unneeded before removal (default 10m).
	// +optional
	UnneededTime *metav1.Duration `json:"unneededTime,omitempty"`
	// UtilizationThreshold: a node whose requested/allocatable GPU (or CPU
	// when it has no GPU) is below this percentage is a candidate (default 50).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	UtilizationThreshold *int32 `json:"utilizationThreshold,omitempty"`
	// DelayAfterScaleUp: no scale-down this long after a scale-up (default 10m).
	// +optional
	DelayAfterScaleUp *metav1.Duration `json:"delayAfterScaleUp,omitempty"`
}

// NodePoolSpec is the desired shape and size of a pool.
// +kubebuilder:validation:XValidation:rule="!has(self.minSize) || !has(self.maxSize) || self.minSize <= self.maxSize",message="minSize must not be greater than maxSize"
// +kubebuilder:validation:XValidation:rule="self.type != 'Elastic' || has(self.provider)",message="an Elastic pool needs a provider"
// +kubebuilder:validation:XValidation:rule="self.type != 'Elastic' || has(self.maxSize)",message="an Elastic pool needs maxSize"
type NodePoolSpec struct {
	// Type is Static (nodes are what they are) or Elastic (sized by Spillway).
	Type NodePoolType `json:"type"`
	// Role is what the pool is for: control, idc or elastic.
	Role NodePoolRole `json:"role"`
	// Labels are put on every node of the pool.
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// Taints are put on every node of the pool.
	// +listType=atomic
	// +optional
	Taints []corev1.Taint `json:"taints,omitempty"`
	// Template is the shape of the pool's nodes; the node autoscaler
	// simulates pending pods against it.
	// +optional
	Template NodeTemplate `json:"template,omitempty"`
	// MinSize is the fewest nodes an elastic pool keeps.
	// +kubebuilder:validation:Minimum=0
	// +optional
	MinSize *int32 `json:"minSize,omitempty"`
	// MaxSize is the most nodes an elastic pool may have.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10000
	// +optional
	MaxSize *int32 `json:"maxSize,omitempty"`
	// PricePerHour is the price of one node for one hour (any currency).
	// +optional
	PricePerHour *resource.Quantity `json:"pricePerHour,omitempty"`
	// Provider is the cloud provider that creates and deletes the pool's nodes.
	// +optional
	Provider *ProviderSpec `json:"provider,omitempty"`
	// ScaleDown says when unneeded nodes are removed.
	// +optional
	ScaleDown *ScaleDown `json:"scaleDown,omitempty"`
	// MaxProvisionTime: a node not usable this long after it was asked for is
	// deleted and asked again, or another pool is used (default 15m).
	// +optional
	MaxProvisionTime *metav1.Duration `json:"maxProvisionTime,omitempty"`
	// Weight orders elastic pools behind the same unit: higher first.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	Weight int32 `json:"weight,omitempty"`
}

// NodePoolStatus reports the pool's size and its last decisions.
type NodePoolStatus struct {
	// ObservedGeneration is the spec generation the status reflects.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Size is the number of the pool's nodes registered in the cluster.
	// +optional
	Size int32 `json:"size"`
	// Ready is the number of those nodes that are Ready and advertise their GPUs.
	// +optional
	Ready int32 `json:"ready"`
	// Desired is the size the autoscaler wants.
	// +optional
	Desired int32 `json:"desired"`
	// InFlight is the number of nodes asked for but not usable yet.
	// +optional
	InFlight int32 `json:"inFlight"`
	// LastScaleUpTime is when the pool last grew.
	// +optional
	LastScaleUpTime *metav1.Time `json:"lastScaleUpTime,omitempty"`
	// LastScaleDownTime is when the pool last shrank.
	// +optional
	LastScaleDownTime *metav1.Time `json:"lastScaleDownTime,omitempty"`
	// Conditions: Ready, ScalingUp, ScalingDown, ProviderError.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// NodePool is a group of nodes of one shape: a static IDC pool or an elastic
// cloud pool created on demand.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=np,categories=spillway
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.type`
// +kubebuilder:printcolumn:name="Role",type=string,JSONPath=`.spec.role`
// +kubebuilder:printcolumn:name="GPU",type=string,JSONPath=`.spec.template.gpuModel`
// +kubebuilder:printcolumn:name="Min",type=integer,JSONPath=`.spec.minSize`
// +kubebuilder:printcolumn:name="Max",type=integer,JSONPath=`.spec.maxSize`
// +kubebuilder:printcolumn:name="Size",type=integer,JSONPath=`.status.size`
// +kubebuilder:printcolumn:name="Desired",type=integer,JSONPath=`.status.desired`
// +kubebuilder:printcolumn:name="In-Flight",type=integer,JSONPath=`.status.inFlight`
// +kubebuilder:printcolumn:name="Price/h",type=string,JSONPath=`.spec.pricePerHour`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type NodePool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   NodePoolSpec   `json:"spec"`
	Status NodePoolStatus `json:"status,omitempty"`
}

// NodePoolList is a list of NodePool.
//
// +kubebuilder:object:root=true
type NodePoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NodePool `json:"items"`
}
