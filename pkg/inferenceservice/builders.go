package inferenceservice

import (
	"errors"
	"fmt"
	"maps"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
)

// Scale metrics with a meaning of their own (KServe's names); any other
// value is a per-pod custom metric.
const (
	MetricCPU         = "cpu"
	MetricMemory      = "memory"
	MetricConcurrency = "concurrency"
	MetricRPS         = "rps"
)

// DefaultUtilization is the HPA's target utilisation (percent of requests)
// for cpu and memory when the spec gives no scaleTarget.
const DefaultUtilization int32 = 80

// HealthPath is the model server's health endpoint (vLLM's), used by the
// readiness probe.
const HealthPath = "/health"

// preStopSleepSeconds keeps a terminating replica serving while the gateway
// and kube-proxy learn it is going, before the engine gets SIGTERM and drains
// the streams in flight.
const preStopSleepSeconds = 5

// ErrNoContainer is returned for a predictor without containers.
var ErrNoContainer = errors.New("the predictor has no container")

// MinReplicas is the spec's minReplicas with its default (1).
func MinReplicas(isvc *spillwayv1alpha1.InferenceService) int32 {
	if m := isvc.Spec.Predictor.MinReplicas; m != nil {
		return *m
	}
	return 1
}

// MaxReplicas is the spec's maxReplicas, or minReplicas when it is 0 or less
// than minReplicas.
func MaxReplicas(isvc *spillwayv1alpha1.InferenceService) int32 {
	return max(isvc.Spec.Predictor.MaxReplicas, MinReplicas(isvc))
}

// Class is the spec's autoscaler class with its default (hpa).
func Class(isvc *spillwayv1alpha1.InferenceService) spillwayv1alpha1.AutoscalerClass {
	if c := isvc.Spec.Predictor.AutoscalerClass; c != "" {
		return c
	}
	return spillwayv1alpha1.AutoscalerHPA
}

// InitialReplicas is the replica count a new Deployment starts with:
// minReplicas, but at least one so a new service is seen to come up (class
// llm then scales an idle service with minReplicas 0 down to zero).
func InitialReplicas(isvc *spillwayv1alpha1.InferenceService) int32 {
	return max(MinReplicas(isvc), 1)
}

func ownerRef(isvc *spillwayv1alpha1.InferenceService) []metav1.OwnerReference {
	return []metav1.OwnerReference{*metav1.NewControllerRef(isvc, spillwayv1alpha1.GroupVersion.WithKind("InferenceService"))}
}

// childLabels are the labels of the Deployment, Service and HPA.
func childLabels(isvc *spillwayv1alpha1.InferenceService) map[string]string {
	l := maps.Clone(isvc.Labels)
	if l == nil {
		l = map[string]string{}
	}
	l[LabelApp] = AppLabelValue(isvc.Name)
	l[LabelInferenceService] = isvc.Name
	l[LabelComponent] = "predictor"
	return l
}

// podLabels are the service's own labels, the predictor's labels, then
// Spillway's (which win, since the selector depends on them).
func podLabels(isvc *spillwayv1alpha1.InferenceService) map[string]string {
	l := maps.Clone(isvc.Labels)
	if l == nil {
		l = map[string]string{}
	}
	maps.Copy(l, isvc.Spec.Predictor.Labels)
	l[LabelApp] = AppLabelValue(isvc.Name)
	l[LabelInferenceService] = isvc.Name
	l[LabelComponent] = "predictor"
	return l
}

// dataVolumeName names the pod volume of the i-th data mount: the claim's
// name when it is a valid volume name not used yet, else data-<i>.
func dataVolumeName(claim string, i int, used map[string]bool) string {
	name := claim
	if len(validation.IsDNS1123Label(name)) > 0 || used[name] || name == "dshm" {
		name = fmt.Sprintf("data-%d", i)
	}
	used[name] = true
	return name
}

// MakeDeployment builds the predictor Deployment of isvc. Its replica count
// is the initial one (InitialReplicas); the controller decides whether to
// keep the live value, which the autoscaler owns for classes hpa and llm.
func MakeDeployment(isvc *spillwayv1alpha1.InferenceService) (*appsv1.Deployment, error) {
	p := &isvc.Spec.Predictor
	if len(p.Containers) == 0 {
		return nil, ErrNoContainer
	}
	containers := make([]corev1.Container, len(p.Containers))
	for i := range p.Containers {
		containers[i] = *p.Containers[i].DeepCopy()
	}
	server := &containers[0]
	if server.Name == "" {
		server.Name = ContainerName
	}
	port := ServerPort(server)
	if !hasPort(server, port) {
		// The server listens on a port the spec does not declare (its
		// command line says so): declare it, under a name still free.
		name := "http"
		for _, p := range server.Ports {
			if p.Name == name {
				name = "server"
			}
		}
		server.Ports = append(server.Ports, corev1.ContainerPort{Name: name, ContainerPort: port, Protocol: corev1.ProtocolTCP})
	}
	if server.ReadinessProbe == nil {
		server.ReadinessProbe = &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: HealthPath, Port: intstr.FromInt32(port), Scheme: corev1.URISchemeHTTP,
			}},
			PeriodSeconds:    2,
			TimeoutSeconds:   2,
			FailureThreshold: 3,
			SuccessThreshold: 1,
		}
	}
	if server.Lifecycle == nil {
		server.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{
			Sleep: &corev1.SleepAction{Seconds: preStopSleepSeconds},
		}}
	}

	var volumes []corev1.Volume
	used := map[string]bool{}
	for i, d := range p.Data {
		name := dataVolumeName(d.ClaimName, i, used)
		volumes = append(volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: d.ClaimName, ReadOnly: d.ReadOnly},
		}})
		server.VolumeMounts = append(server.VolumeMounts, corev1.VolumeMount{Name: name, MountPath: d.MountPath, ReadOnly: d.ReadOnly})
	}
	if p.ShareMemory != nil {
		volumes = append(volumes, corev1.Volume{Name: "dshm", VolumeSource: corev1.VolumeSource{
			EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: ptr.To(p.ShareMemory.DeepCopy())},
		}})
		server.VolumeMounts = append(server.VolumeMounts, corev1.VolumeMount{Name: "dshm", MountPath: "/dev/shm"})
	}

	grace := DefaultTerminationGracePeriodSeconds
	if p.TerminationGracePeriodSeconds != nil {
		grace = *p.TerminationGracePeriodSeconds
	}
	d := &appsv1.Deployment{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{
			Name:            PredictorName(isvc.Name),
			Namespace:       isvc.Namespace,
			Labels:          childLabels(isvc),
			OwnerReferences: ownerRef(isvc),
		},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(InitialReplicas(isvc)),
			Selector: &metav1.LabelSelector{MatchLabels: SelectorLabels(isvc.Name)},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      podLabels(isvc),
					Annotations: maps.Clone(p.Annotations),
				},
				Spec: corev1.PodSpec{
					Containers:                    containers,
					Volumes:                       volumes,
					NodeSelector:                  maps.Clone(p.NodeSelector),
					Tolerations:                   append([]corev1.Toleration(nil), p.Tolerations...),
					ImagePullSecrets:              append([]corev1.LocalObjectReference(nil), p.ImagePullSecrets...),
					TerminationGracePeriodSeconds: ptr.To(grace),
					SchedulerName:                 p.SchedulerName,
					EnableServiceLinks:            ptr.To(false),
				},
			},
		},
	}
	return d, nil
}

func hasPort(c *corev1.Container, port int32) bool {
	for _, p := range c.Ports {
		if p.ContainerPort == port {
			return true
		}
	}
	return false
}

// MakeService builds the predictor Service: port 80 to the model server's
// port. The gateway reads its EndpointSlices.
func MakeService(isvc *spillwayv1alpha1.InferenceService) (*corev1.Service, error) {
	if len(isvc.Spec.Predictor.Containers) == 0 {
		return nil, ErrNoContainer
	}
	port := ServerPort(&isvc.Spec.Predictor.Containers[0])
	return &corev1.Service{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{
			Name:            PredictorName(isvc.Name),
			Namespace:       isvc.Namespace,
			Labels:          childLabels(isvc),
			OwnerReferences: ownerRef(isvc),
		},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: SelectorLabels(isvc.Name),
			Ports: []corev1.ServicePort{{
				Name: "http", Protocol: corev1.ProtocolTCP, Port: ServicePort, TargetPort: intstr.FromInt32(port),
			}},
		},
	}, nil
}

// CustomMetricName is the name a Prometheus metric is served under by the
// custom metrics API (and so the name an HPA asks for): ':' cannot appear
// there, so it becomes '_' (vllm:num_requests_waiting ->
// vllm_num_requests_waiting), the rule of pkg/metricsadapter/exposition.
func CustomMetricName(promName string) string { return strings.ReplaceAll(promName, ":", "_") }

// MakeHPA builds the autoscaling/v2 HPA of a service of class hpa, as Arena
// does: cpu and memory become Resource metrics with a utilisation target
// (percent, default 80), anything else (concurrency and rps included) a Pods
// metric of that name with scaleTarget as its average value. No scaleMetric
// means cpu, KServe's default. It returns nil for the other classes.
func MakeHPA(isvc *spillwayv1alpha1.InferenceService) (*autoscalingv2.HorizontalPodAutoscaler, error) {
	if Class(isvc) != spillwayv1alpha1.AutoscalerHPA {
		return nil, nil
	}
	p := &isvc.Spec.Predictor
	minR := MinReplicas(isvc)
	if minR < 1 {
		return nil, fmt.Errorf("autoscaler class hpa cannot scale to zero (minReplicas %d); use class llm", minR)
	}
	var metric autoscalingv2.MetricSpec
	switch m := p.ScaleMetric; m {
	case "", MetricCPU, MetricMemory:
		name := corev1.ResourceCPU
		if m == MetricMemory {
			name = corev1.ResourceMemory
		}
		util := DefaultUtilization
		if p.ScaleTarget != nil {
			util = *p.ScaleTarget
		}
		metric = autoscalingv2.MetricSpec{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
			Name:   name,
			Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr.To(util)},
		}}
	default:
		if p.ScaleTarget == nil {
			return nil, fmt.Errorf("scaleMetric %q needs a scaleTarget (the per-replica average to keep)", m)
		}
		metric = autoscalingv2.MetricSpec{Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricSource{
			Metric: autoscalingv2.MetricIdentifier{Name: CustomMetricName(m)},
			Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType,
				AverageValue: resource.NewQuantity(int64(*p.ScaleTarget), resource.DecimalSI)},
		}}
	}
	return &autoscalingv2.HorizontalPodAutoscaler{
		TypeMeta: metav1.TypeMeta{APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler"},
		ObjectMeta: metav1.ObjectMeta{
			Name:            HPAName(isvc.Name),
			Namespace:       isvc.Namespace,
			Labels:          childLabels(isvc),
			OwnerReferences: ownerRef(isvc),
		},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: PredictorName(isvc.Name)},
			MinReplicas:    ptr.To(minR),
			MaxReplicas:    MaxReplicas(isvc),
			Metrics:        []autoscalingv2.MetricSpec{metric},
		},
	}, nil
}
