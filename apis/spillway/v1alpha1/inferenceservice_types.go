package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AutoscalerClass names the pod autoscaler of a service.
// +kubebuilder:validation:Enum=hpa;llm;none
type AutoscalerClass string

const (
	// AutoscalerHPA is a Kubernetes autoscaling/v2 HPA on the scale metric.
	AutoscalerHPA AutoscalerClass = "hpa"
	// AutoscalerLLM is Spillway's LLM-aware autoscaler (queue, in-flight, KV use).
	AutoscalerLLM AutoscalerClass = "llm"
	// AutoscalerNone keeps minReplicas.
	AutoscalerNone AutoscalerClass = "none"
)

// DataVolume mounts a PersistentVolumeClaim into the model server, as
// arena's --data name:/path does.
type DataVolume struct {
	// ClaimName is the PersistentVolumeClaim to mount.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	ClaimName string `json:"claimName"`
	// MountPath is where it is mounted in the container.
	// +kubebuilder:validation:Pattern=`^/`
	MountPath string `json:"mountPath"`
	// ReadOnly mounts it read-only.
	// +optional
	ReadOnly bool `json:"readOnly,omitempty"`
}

// PredictorSpec is the model server of an InferenceService, shaped like
// KServe's predictor component.
// +kubebuilder:validation:XValidation:rule="!has(self.minReplicas) || !has(self.maxReplicas) || self.maxReplicas == 0 || self.minReplicas <= self.maxReplicas",message="minReplicas must not be greater than maxReplicas"
// +kubebuilder:validation:XValidation:rule="!has(self.autoscalerClass) || self.autoscalerClass != 'hpa' || !has(self.minReplicas) || self.minReplicas > 0",message="autoscalerClass hpa cannot scale to zero; use llm for minReplicas 0"
type PredictorSpec struct {
	// Containers: the first is the model server (named kserve-container when unnamed).
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=4
	// +listType=atomic
	Containers []corev1.Container `json:"containers"`

	// MinReplicas is the fewest replicas (default 1; 0 allows scale to zero with class llm).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=1
	// +optional
	MinReplicas *int32 `json:"minReplicas,omitempty"`
	// MaxReplicas is the most replicas (0: same as minReplicas).
	// +kubebuilder:validation:Minimum=0
	// +optional
	MaxReplicas int32 `json:"maxReplicas,omitempty"`
	// ScaleMetric is the metric the autoscaler follows: cpu, memory,
	// concurrency, rps, or any per-pod custom metric such as
	// DCGM_CUSTOM_PROCESS_SM_UTIL or vllm:num_requests_waiting.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	ScaleMetric string `json:"scaleMetric,omitempty"`
	// ScaleTarget is the per-replica target value of the scale metric.
	// +kubebuilder:validation:Minimum=1
	// +optional
	ScaleTarget *int32 `json:"scaleTarget,omitempty"`
	// AutoscalerClass is hpa (default), llm or none.
	// +kubebuilder:default=hpa
	// +optional
	AutoscalerClass AutoscalerClass `json:"autoscalerClass,omitempty"`
	// ContainerConcurrency is the most requests one replica serves at once (0: no limit).
	// +kubebuilder:validation:Minimum=0
	// +optional
	ContainerConcurrency int64 `json:"containerConcurrency,omitempty"`
	// TimeoutSeconds is the longest a request may take end to end.
	// +kubebuilder:validation:Minimum=1
	// +optional
	TimeoutSeconds *int64 `json:"timeoutSeconds,omitempty"`
	// Data mounts PVCs into the model server (arena --data).
	// +listType=atomic
	// +optional
	Data []DataVolume `json:"data,omitempty"`
	// ShareMemory is the size of /dev/shm (arena --share-memory).
	// +optional
	ShareMemory *resource.Quantity `json:"shareMemory,omitempty"`
	// NodeSelector constrains the replicas to nodes with these labels.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// Tolerations let the replicas use tainted nodes.
	// +listType=atomic
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`
	// ImagePullSecrets for the model server's image.
	// +listType=atomic
	// +optional
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`
	// TerminationGracePeriodSeconds lets streams in flight finish (default 300).
	// +kubebuilder:validation:Minimum=0
	// +optional
	TerminationGracePeriodSeconds *int64 `json:"terminationGracePeriodSeconds,omitempty"`
	// SchedulerName is the scheduler of the replicas' pods (as in a PodSpec).
	// Empty: the manager's --scheduler-name, else the cluster's default scheduler.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	SchedulerName string `json:"schedulerName,omitempty"`
	// Labels are added to the replicas' pods.
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// Annotations are added to the replicas' pods.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// InferenceServiceSpec is the desired LLM service.
type InferenceServiceSpec struct {
	// Predictor is the model server.
	Predictor PredictorSpec `json:"predictor"`
}

// PoolReplicas counts a service's replicas on one node pool.
type PoolReplicas struct {
	// Pool is the node pool's name ("" for nodes of no pool).
	Pool string `json:"pool"`
	// Replicas is the number of pods on the pool's nodes.
	Replicas int32 `json:"replicas"`
	// Ready is the number of those that are ready.
	Ready int32 `json:"ready"`
}

// InferenceServiceStatus reports where the service runs and how to reach it.
type InferenceServiceStatus struct {
	// ObservedGeneration is the spec generation the status reflects.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// URL is where the gateway serves the service: http://{name}-{namespace}.{domain}.
	// +optional
	URL string `json:"url,omitempty"`
	// Replicas is the number of the service's pods.
	// +optional
	Replicas int32 `json:"replicas"`
	// ReadyReplicas is the number of those that are ready.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas"`
	// DesiredReplicas is what the autoscaler asks for.
	// +optional
	DesiredReplicas int32 `json:"desiredReplicas"`
	// Pools counts replicas per node pool.
	// +listType=map
	// +listMapKey=pool
	// +optional
	Pools []PoolReplicas `json:"pools,omitempty"`
	// Conditions: Ready, PredictorReady, AutoscalerReady.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// InferenceService is an LLM served behind an OpenAI-compatible API,
// autoscaled across IDC and cloud node pools.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=isvc,categories=spillway
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.status.url`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=`.status.replicas`
// +kubebuilder:printcolumn:name="Desired",type=integer,JSONPath=`.status.desiredReplicas`
// +kubebuilder:printcolumn:name="Class",type=string,JSONPath=`.spec.predictor.autoscalerClass`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type InferenceService struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   InferenceServiceSpec   `json:"spec"`
	Status InferenceServiceStatus `json:"status,omitempty"`
}

// InferenceServiceList is a list of InferenceService.
//
// +kubebuilder:object:root=true
type InferenceServiceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []InferenceService `json:"items"`
}
