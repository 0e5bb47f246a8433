package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Strategy says whether a pod may leave the policy's units once all of them failed.
// +kubebuilder:validation:Enum=prefer;required
type Strategy string

const (
	// StrategyPrefer lets a pod use any other node once every unit failed.
	StrategyPrefer Strategy = "prefer"
	// StrategyRequired keeps a pod on the units' nodes; it stays Pending otherwise.
	StrategyRequired Strategy = "required"
)

// ResourceKind labels the kind of capacity behind a unit.
// +kubebuilder:validation:Enum=ecs;eci;elastic;acs
type ResourceKind string

const (
	// ResourceECS is a unit of ordinary (static) nodes, e.g. IDC nodes.
	ResourceECS ResourceKind = "ecs"
	// ResourceECI is a unit of serverless container instances.
	ResourceECI ResourceKind = "eci"
	// ResourceElastic is a unit backed by an autoscaled node pool.
	ResourceElastic ResourceKind = "elastic"
	// ResourceACS is a unit of ACS serverless compute.
	ResourceACS ResourceKind = "acs"
)

// PreemptPolicy says when preemption may run relative to the units.
// +kubebuilder:validation:Enum=AfterAllUnits;BeforeNextUnit
type PreemptPolicy string

const (
	// PreemptAfterAllUnits tries preemption only once every unit failed.
	PreemptAfterAllUnits PreemptPolicy = "AfterAllUnits"
	// PreemptBeforeNextUnit tries preemption inside a unit before moving on.
	PreemptBeforeNextUnit PreemptPolicy = "BeforeNextUnit"
)

// TryNextPolicy says when a pod may move on from one unit to the next.
// +kubebuilder:validation:Enum=LackResourceOrExceedMax;ExceedMax;TimeoutOrExceedMax;LackResourceAndNoTerminating
type TryNextPolicy string

const (
	// LackResourceOrExceedMax moves on when the unit lacks resources or is at max (default).
	LackResourceOrExceedMax TryNextPolicy = "LackResourceOrExceedMax"
	// ExceedMax moves on only when the unit is at max; pods wait for the unit to grow otherwise.
	ExceedMax TryNextPolicy = "ExceedMax"
	// TimeoutOrExceedMax waits up to the timeout for the unit, then moves on; or at max.
	TimeoutOrExceedMax TryNextPolicy = "TimeoutOrExceedMax"
	// LackResourceAndNoTerminating is the default, but holds while a pod of the unit terminates.
	LackResourceAndNoTerminating TryNextPolicy = "LackResourceAndNoTerminating"
)

// DefaultTryNextTimeout is the wait of TimeoutOrExceedMax when no timeout is given.
const DefaultTryNextTimeout = "15m"

// Unit is one group of nodes a matched pod may use, in the order of the units.
type Unit struct {
	// Resource is the kind of capacity behind the unit.
	// +required
	Resource ResourceKind `json:"resource"`

	// NodeSelector selects the unit's nodes by label.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// Max is the most pods of the policy the unit may hold.
	// +kubebuilder:validation:Minimum=0
	// +optional
	Max *int32 `json:"max,omitempty"`

	// MaxResources caps the summed requests of the policy's pods in the unit.
	// +optional
	MaxResources corev1.ResourceList `json:"maxResources,omitempty"`

	// PodLabels are written onto a pod placed in the unit; when set, only pods
	// that carry them count for the unit.
	// +optional
	PodLabels map[string]string `json:"podLabels,omitempty"`

	// PodAnnotations are written onto a pod placed in the unit; when set, only
	// pods that carry them count for the unit.
	// +optional
	PodAnnotations map[string]string `json:"podAnnotations,omitempty"`
}

// WhenTryNextUnits says when a pod may go on to the next unit.
type WhenTryNextUnits struct {
	// Policy is the condition for moving on; LackResourceOrExceedMax by default.
	// +kubebuilder:default=LackResourceOrExceedMax
	// +optional
	Policy TryNextPolicy `json:"policy,omitempty"`

	// Timeout is how long a pod waits for a unit under TimeoutOrExceedMax (Go
	// duration, e.g. "1m"; default 15m).
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="timeout must be a positive duration such as 30s or 15m"
	// +optional
	Timeout string `json:"timeout,omitempty"`
}

// ResourcePolicySpec is the desired placement of the pods it selects.
// +kubebuilder:validation:XValidation:rule="!has(self.matchLabelKeys) || size(self.matchLabelKeys) == 0 || self.units.exists(u, has(u.max) || has(u.maxResources))",message="matchLabelKeys needs max or maxResources on at least one unit"
// +kubebuilder:validation:XValidation:rule="!has(self.ignorePreviousPod) || !self.ignorePreviousPod || self.units.exists(u, has(u.max) || has(u.maxResources))",message="ignorePreviousPod needs max or maxResources on at least one unit"
type ResourcePolicySpec struct {
	// Selector matches pods by label in the policy's namespace; empty matches every pod there.
	// +optional
	Selector map[string]string `json:"selector,omitempty"`

	// Strategy is prefer (other nodes may be used once all units failed) or
	// required (only the units' nodes).
	// +kubebuilder:default=prefer
	// +optional
	Strategy Strategy `json:"strategy,omitempty"`

	// Units are tried in order on scale-out; scale-in goes in reverse order.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	Units []Unit `json:"units"`

	// PreemptPolicy says when preemption may run; AfterAllUnits by default.
	// +kubebuilder:default=AfterAllUnits
	// +optional
	PreemptPolicy PreemptPolicy `json:"preemptPolicy,omitempty"`

	// IgnorePreviousPod: pods created before the policy do not count for units' max.
	// +optional
	IgnorePreviousPod bool `json:"ignorePreviousPod,omitempty"`

	// IgnoreTerminatingPod: terminating pods do not count for units' max (default true).
	// +kubebuilder:default=true
	// +optional
	IgnoreTerminatingPod *bool `json:"ignoreTerminatingPod,omitempty"`

	// MatchLabelKeys groups pods by the values of these labels (e.g.
	// pod-template-hash) and counts each group on its own; a pod missing one
	// of the labels is rejected.
	// +listType=set
	// +kubebuilder:validation:MaxItems=8
	// +optional
	MatchLabelKeys []string `json:"matchLabelKeys,omitempty"`

	// WhenTryNextUnits says when a pod may go on to the next unit.
	// +optional
	WhenTryNextUnits *WhenTryNextUnits `json:"whenTryNextUnits,omitempty"`
}

// UnitStatus counts the pods a unit holds.
type UnitStatus struct {
	// Index is the unit's position in spec.units.
	Index int32 `json:"index"`
	// Resource repeats the unit's kind of capacity.
	Resource ResourceKind `json:"resource"`
	// Pods is the number of matched pods running or bound in the unit.
	Pods int32 `json:"pods"`
	// Max repeats the unit's max, when set.
	// +optional
	Max *int32 `json:"max,omitempty"`
	// Requested is the summed requests of those pods.
	// +optional
	Requested corev1.ResourceList `json:"requested,omitempty"`
}

// ResourcePolicyStatus reports where the selected pods are.
type ResourcePolicyStatus struct {
	// ObservedGeneration is the spec generation the status reflects.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Units counts pods per unit, in the order of spec.units.
	// +listType=atomic
	// +optional
	Units []UnitStatus `json:"units,omitempty"`
	// OutsideUnits counts matched pods placed on nodes of no unit (prefer strategy).
	// +optional
	OutsideUnits int32 `json:"outsideUnits,omitempty"`
	// Pending counts matched pods not yet bound to a node.
	// +optional
	Pending int32 `json:"pending,omitempty"`
	// Conditions: Conflict when a pod is matched by this and another policy.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ResourcePolicy places the pods it selects on units of nodes in order, and
// takes them away in reverse order.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=rp;rps,categories=spillway
// +kubebuilder:printcolumn:name="Strategy",type=string,JSONPath=`.spec.strategy`
// +kubebuilder:printcolumn:name="Pending",type=integer,JSONPath=`.status.pending`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ResourcePolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ResourcePolicySpec   `json:"spec"`
	Status ResourcePolicyStatus `json:"status,omitempty"`
}

// ResourcePolicyList is a list of ResourcePolicy.
//
// +kubebuilder:object:root=true
type ResourcePolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ResourcePolicy `json:"items"`
}
