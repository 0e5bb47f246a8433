// Package inferenceservice builds the Kubernetes children of an
// InferenceService: the predictor Deployment, its Service and, for autoscaler
// class hpa, the autoscaling/v2 HorizontalPodAutoscaler. The builders are
// pure (object and config in, object out) so every mapping is covered by
// golden tests without a cluster; the controller in
// pkg/controllers/inferenceservice only compares and applies what they
// return.
//
// Names and labels follow KServe's raw-deployment mode, so manifests written
// for KServe/Arena (such as an ACK ResourcePolicy selecting
// `app: isvc.<name>-predictor`) keep matching:
//
//	Deployment  <name>-predictor   pods labelled app=isvc.<name>-predictor
//	Service     <name>-predictor   port 80 -> the model server's port
//	HPA         <name>-hpa         (class hpa only)
package inferenceservice

import (
	"fmt"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
)

// Labels the builders put on the children and their pods.
const (
	// LabelApp is KServe's pod label; its value is AppLabelValue.
	LabelApp = "app"
	// LabelInferenceService names the InferenceService a child or pod
	// belongs to (KServe's label, so KServe tooling finds the pods too).
	LabelInferenceService = "serving.kserve.io/inferenceservice"
	// LabelComponent is KServe's component label; always "predictor".
	LabelComponent = "component"
)

// ContainerName is the model server's container name when the spec leaves it
// empty (KServe's name).
const ContainerName = "kserve-container"

// DefaultPort is the model server's port when neither the command line
// (--port) nor the container declares one.
const DefaultPort int32 = 8080

// ServicePort is the port of the predictor Service.
const ServicePort int32 = 80

// DefaultTerminationGracePeriodSeconds lets streams in flight finish when a
// replica is removed.
const DefaultTerminationGracePeriodSeconds int64 = 300

// DefaultDomain is the domain of service URLs when none is configured.
const DefaultDomain = "example.com"

// PredictorName is the name of the Deployment and Service of isvc.
func PredictorName(isvcName string) string { return isvcName + "-predictor" }

// HPAName is the name of the HorizontalPodAutoscaler of isvc.
func HPAName(isvcName string) string { return isvcName + "-hpa" }

// AppLabelValue is the value of the `app` label of the service's pods.
func AppLabelValue(isvcName string) string { return "isvc." + PredictorName(isvcName) }

// SelectorLabels select the pods of an InferenceService.
func SelectorLabels(isvcName string) map[string]string {
	return map[string]string{LabelApp: AppLabelValue(isvcName)}
}

// Host is the host name the gateway serves isvc under.
func Host(isvc *spillwayv1alpha1.InferenceService, domain string) string {
	if domain == "" {
		domain = DefaultDomain
	}
	return fmt.Sprintf("%s-%s.%s", isvc.Name, isvc.Namespace, domain)
}

// URL is the status URL of isvc: http://<name>-<namespace>.<domain>.
func URL(isvc *spillwayv1alpha1.InferenceService, domain string) string {
	return "http://" + Host(isvc, domain)
}
