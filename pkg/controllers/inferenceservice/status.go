package inferenceservice

import (
	"errors"
	"fmt"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	isvcbuild "github.com/spillway-io/spillway/pkg/inferenceservice"
)

// Condition types of an InferenceService.
const (
	ConditionReady           = "Ready"
	ConditionPredictorReady  = "PredictorReady"
	ConditionAutoscalerReady = "AutoscalerReady"
)

// Condition reasons.
const (
	ReasonInvalidSpec        = "InvalidSpec"
	ReasonChildConflict      = "ChildConflict"
	ReasonApplyFailed        = "ApplyFailed"
	ReasonDeploymentMissing  = "DeploymentMissing"
	ReasonReplicasReady      = "ReplicasReady"
	ReasonNoReadyReplica     = "NoReadyReplica"
	ReasonScaledToZero       = "ScaledToZero"
	ReasonProgressDeadline   = "ProgressDeadlineExceeded"
	ReasonFixedReplicas      = "FixedReplicas"
	ReasonHPAMissing         = "HPAMissing"
	ReasonHPAPending         = "HPAPending"
	ReasonLLMAutoscaler      = "LLMAutoscaler"
	ReasonInvalidAutoscaling = "InvalidAutoscalingAnnotations"
	ReasonPredictorNotReady  = "PredictorNotReady"
	ReasonServing            = "Serving"
)

// Observed is what the controller read about one InferenceService's children.
type Observed struct {
	Deployment *appsv1.Deployment
	HPA        *autoscalingv2.HorizontalPodAutoscaler
	// Pods are the service's pods (terminating ones are skipped).
	Pods []corev1.Pod
	// NodePools maps a node name to its pool (the node's spillway.io/nodepool
	// label; "" when it has none).
	NodePools map[string]string
	// SpecErr is why the children could not be built, if they could not.
	SpecErr error
	// ApplyErr is why the children could not be written, if they could not.
	ApplyErr error
	// AutoscalerErr is why the autoscaler is misconfigured, if it is.
	AutoscalerErr error
}

// ComputeStatus returns the status of isvc from what was observed. It is
// pure: conditions keep their transition time when their status does not
// change.
func ComputeStatus(isvc *spillwayv1alpha1.InferenceService, obs Observed, domain string, now metav1.Time) spillwayv1alpha1.InferenceServiceStatus {
	st := *isvc.Status.DeepCopy()
	gen := isvc.Generation
	st.ObservedGeneration = gen
	st.URL = isvcbuild.URL(isvc, domain)
	set := func(typ string, ok bool, reason, msg string) {
		status := metav1.ConditionFalse
		if ok {
			status = metav1.ConditionTrue
		}
		c := metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen, LastTransitionTime: now}
		meta.SetStatusCondition(&st.Conditions, c)
	}

	// Replicas, per pool.
	st.Replicas, st.ReadyReplicas = 0, 0
	pools := map[string]*spillwayv1alpha1.PoolReplicas{}
	for i := range obs.Pods {
		pod := &obs.Pods[i]
		if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		st.Replicas++
		ready := podReady(pod)
		if ready {
			st.ReadyReplicas++
		}
		if pod.Spec.NodeName == "" {
			continue // not placed yet: counted, but on no pool
		}
		name := obs.NodePools[pod.Spec.NodeName]
		pr := pools[name]
		if pr == nil {
			pr = &spillwayv1alpha1.PoolReplicas{Pool: name}
			pools[name] = pr
		}
		pr.Replicas++
		if ready {
			pr.Ready++
		}
	}
	st.Pools = nil
	for _, pr := range pools {
		st.Pools = append(st.Pools, *pr)
	}
	sort.Slice(st.Pools, func(i, j int) bool { return st.Pools[i].Pool < st.Pools[j].Pool })

	// Desired replicas: what the autoscaler asks for.
	st.DesiredReplicas = 0
	switch {
	case obs.HPA != nil && isvcbuild.Class(isvc) == spillwayv1alpha1.AutoscalerHPA && obs.HPA.Status.DesiredReplicas > 0:
		st.DesiredReplicas = obs.HPA.Status.DesiredReplicas
	case obs.Deployment != nil && obs.Deployment.Spec.Replicas != nil:
		st.DesiredReplicas = *obs.Deployment.Spec.Replicas
	}

	// PredictorReady.
	switch {
	case obs.SpecErr != nil:
		set(ConditionPredictorReady, false, ReasonInvalidSpec, obs.SpecErr.Error())
	case obs.ApplyErr != nil && errors.Is(obs.ApplyErr, ErrNotOwned):
		set(ConditionPredictorReady, false, ReasonChildConflict, obs.ApplyErr.Error())
	case obs.ApplyErr != nil && obs.Deployment == nil:
		set(ConditionPredictorReady, false, ReasonApplyFailed, obs.ApplyErr.Error())
	case obs.Deployment == nil:
		set(ConditionPredictorReady, false, ReasonDeploymentMissing, "the predictor Deployment does not exist yet")
	case deploymentStalled(obs.Deployment):
		set(ConditionPredictorReady, false, ReasonProgressDeadline, "the predictor Deployment exceeded its progress deadline")
	case st.ReadyReplicas > 0:
		set(ConditionPredictorReady, true, ReasonReplicasReady, fmt.Sprintf("%d of %d replicas ready", st.ReadyReplicas, st.Replicas))
	case st.DesiredReplicas == 0 && isvcbuild.MinReplicas(isvc) == 0:
		set(ConditionPredictorReady, true, ReasonScaledToZero, "scaled to zero; the gateway holds requests while a replica starts")
	default:
		set(ConditionPredictorReady, false, ReasonNoReadyReplica, fmt.Sprintf("0 of %d replicas ready", st.Replicas))
	}

	// AutoscalerReady.
	switch class := isvcbuild.Class(isvc); {
	case obs.SpecErr != nil:
		set(ConditionAutoscalerReady, false, ReasonInvalidSpec, obs.SpecErr.Error())
	case class == spillwayv1alpha1.AutoscalerNone:
		set(ConditionAutoscalerReady, true, ReasonFixedReplicas, fmt.Sprintf("fixed at %d replicas", isvcbuild.MinReplicas(isvc)))
	case class == spillwayv1alpha1.AutoscalerLLM:
		if obs.AutoscalerErr != nil {
			set(ConditionAutoscalerReady, false, ReasonInvalidAutoscaling, obs.AutoscalerErr.Error())
		} else {
			set(ConditionAutoscalerReady, true, ReasonLLMAutoscaler, "replicas follow in-flight requests, queue and KV-cache use")
		}
	case obs.HPA == nil:
		set(ConditionAutoscalerReady, false, ReasonHPAMissing, "the HorizontalPodAutoscaler does not exist yet")
	default:
		ok, reason, msg := hpaState(obs.HPA)
		set(ConditionAutoscalerReady, ok, reason, msg)
	}

	// Ready: the service answers (through the gateway) when the predictor
	// does; a metrics gap of the autoscaler does not stop serving.
	if p := meta.FindStatusCondition(st.Conditions, ConditionPredictorReady); p != nil && p.Status == metav1.ConditionTrue {
		set(ConditionReady, true, ReasonServing, "serving at "+st.URL)
	} else {
		msg := "the predictor is not ready"
		if p != nil {
			msg = p.Reason + ": " + p.Message
		}
		set(ConditionReady, false, ReasonPredictorNotReady, msg)
	}
	return st
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func deploymentStalled(d *appsv1.Deployment) bool {
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded" {
			return true
		}
	}
	return false
}

// hpaState reads the HPA's own conditions: ScalingActive False (typically
// the custom metric is not served) is reported with the HPA's reason.
func hpaState(h *autoscalingv2.HorizontalPodAutoscaler) (bool, string, string) {
	var active *autoscalingv2.HorizontalPodAutoscalerCondition
	for i := range h.Status.Conditions {
		if h.Status.Conditions[i].Type == autoscalingv2.ScalingActive {
			active = &h.Status.Conditions[i]
		}
	}
	switch {
	case active == nil:
		return false, ReasonHPAPending, "the HorizontalPodAutoscaler has not computed a scale yet"
	case active.Status != corev1.ConditionTrue:
		return false, "HPA" + active.Reason, active.Message
	default:
		return true, "HPA" + active.Reason, active.Message
	}
}
