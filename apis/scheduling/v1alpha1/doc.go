// Package v1alpha1 holds ResourcePolicy, group scheduling.alibabacloud.com,
// with the same schema as ACK's priority-based resource scheduling, so an ACK
// manifest applies to a Spillway cluster unchanged.
//
// +kubebuilder:object:generate=true
// +groupName=scheduling.alibabacloud.com
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of the objects in this package.
	GroupVersion = schema.GroupVersion{Group: "scheduling.alibabacloud.com", Version: "v1alpha1"}

	// SchemeBuilder adds the types of this package to a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this package to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &ResourcePolicy{}, &ResourcePolicyList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
