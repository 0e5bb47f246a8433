// Package apis gathers Spillway's API groups into one runtime scheme.
package apis

import (
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	schedulingv1alpha1 "github.com/spillway-io/spillway/apis/scheduling/v1alpha1"
	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
)

// AddToScheme adds Spillway's API groups (not the built-in ones) to s.
func AddToScheme(s *runtime.Scheme) error {
	b := runtime.NewSchemeBuilder(schedulingv1alpha1.AddToScheme, spillwayv1alpha1.AddToScheme)
	return b.AddToScheme(s)
}

// NewScheme returns a scheme with the built-in Kubernetes types and Spillway's.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(AddToScheme(s))
	return s
}
