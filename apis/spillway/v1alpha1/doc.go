// Package v1alpha1 holds Spillway's own APIs, group spillway.io: NodePool (a
// static IDC pool or an elastic cloud pool of GPU nodes) and InferenceService
// (an LLM server shaped like KServe's predictor).
//
// +kubebuilder:object:generate=true
// +groupName=spillway.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of the objects in this package.
	GroupVersion = schema.GroupVersion{Group: "spillway.io", Version: "v1alpha1"}

	// SchemeBuilder adds the types of this package to a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this package to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&NodePool{}, &NodePoolList{},
		&InferenceService{}, &InferenceServiceList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}

// Well-known labels and annotations.
const (
	// LabelNodePool names the NodePool a node belongs to.
	LabelNodePool = "spillway.io/nodepool"
	// LabelACKNodePoolID is ACK's node-pool label; Spillway sets it too so ACK
	// ResourcePolicy manifests select pools unchanged.
	LabelACKNodePoolID = "alibabacloud.com/nodepool-id"
	// LabelGPUModel is the GPU model of a node (e.g. V100).
	LabelGPUModel = "spillway.io/gpu-model"
	// LabelPoolRole is the role of the node's pool (control, idc, elastic).
	LabelPoolRole = "spillway.io/pool-role"
	// ResourceGPU is the extended resource of NVIDIA GPUs.
	ResourceGPU = "nvidia.com/gpu"
)
