// Package inferenceservice is the InferenceService controller of
// spillway-manager: it creates and updates the predictor Deployment, its
// Service and, for autoscaler class hpa, its HPA (built by the pure builders
// of pkg/inferenceservice), writes only when what is live differs from what
// was built, and reports the status: URL, replicas, replicas per node pool,
// and Ready/PredictorReady/AutoscalerReady conditions with reasons.
//
// Replicas: class none pins the Deployment at minReplicas; for classes hpa
// and llm the replica count is set when the Deployment is created and then
// left to the HPA or to the llm autoscaler (pkg/controllers/llmautoscaler).
package inferenceservice

import (
	"context"
	"errors"
	"fmt"
	"maps"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/pkg/autoscaler/llm"
	isvcbuild "github.com/spillway-io/spillway/pkg/inferenceservice"
)

// ControllerName names the controller (logs, metrics, field manager).
const ControllerName = "inferenceservice"

// ErrNotOwned is returned when a child's name is taken by an object the
// InferenceService does not own; the controller leaves such objects alone.
var ErrNotOwned = errors.New("exists and is not owned by the InferenceService")

// Reconciler reconciles InferenceServices.
type Reconciler struct {
	client        client.Client
	domain        string
	schedulerName string
	clock         clock.PassiveClock
}

var _ reconcile.Reconciler = (*Reconciler)(nil)

// Option configures a Reconciler.
type Option func(*Reconciler)

// WithDomain sets the domain of service URLs (default example.com).
func WithDomain(d string) Option { return func(r *Reconciler) { r.domain = d } }

// WithSchedulerName sets the scheduler of replicas whose spec names none
// (empty: the cluster's default scheduler).
func WithSchedulerName(n string) Option { return func(r *Reconciler) { r.schedulerName = n } }

// WithClock sets the clock of condition transition times.
func WithClock(c clock.PassiveClock) Option { return func(r *Reconciler) { r.clock = c } }

// New returns a Reconciler using c.
func New(c client.Client, opts ...Option) *Reconciler {
	r := &Reconciler{client: c, domain: isvcbuild.DefaultDomain, clock: clock.RealClock{}}
	for _, o := range opts {
		o(r)
	}
	if r.domain == "" {
		r.domain = isvcbuild.DefaultDomain
	}
	return r
}

// SetupWithManager registers the controller: InferenceServices, the
// children they own, their pods (for readiness and pools) and the labels of
// nodes (for pools).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	podToISVC := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		name := o.GetLabels()[isvcbuild.LabelInferenceService]
		if name == "" {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
	})
	hasISVCLabel := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetLabels()[isvcbuild.LabelInferenceService] != ""
	})
	// A node changing pool moves its replicas in status.pools.
	nodeToISVCs := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		pods := &corev1.PodList{}
		if err := r.client.List(ctx, pods, client.HasLabels{isvcbuild.LabelInferenceService}); err != nil {
			log.FromContext(ctx).Error(err, "Listing the pods of inference services")
			return nil
		}
		seen := map[types.NamespacedName]bool{}
		var out []reconcile.Request
		for _, p := range pods.Items {
			key := types.NamespacedName{Namespace: p.Namespace, Name: p.Labels[isvcbuild.LabelInferenceService]}
			if p.Spec.NodeName == o.GetName() && !seen[key] {
				seen[key] = true
				out = append(out, reconcile.Request{NamespacedName: key})
			}
		}
		return out
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named(ControllerName).
		For(&spillwayv1alpha1.InferenceService{}).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}).
		Owns(&autoscalingv2.HorizontalPodAutoscaler{}).
		Watches(&corev1.Pod{}, podToISVC, builder.WithPredicates(hasISVCLabel)).
		Watches(&corev1.Node{}, nodeToISVCs, builder.WithPredicates(predicate.LabelChangedPredicate{})).
		Complete(r)
}

// +kubebuilder:rbac:groups=spillway.io,resources=inferenceservices,verbs=get;list;watch
// +kubebuilder:rbac:groups=spillway.io,resources=inferenceservices/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=autoscaling,resources=horizontalpodautoscalers,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=pods;nodes,verbs=get;list;watch

// Reconcile brings the children of one InferenceService to what its spec
// asks for and updates its status.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	logger := log.FromContext(ctx)
	isvc := &spillwayv1alpha1.InferenceService{}
	if err := r.client.Get(ctx, req.NamespacedName, isvc); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if isvc.DeletionTimestamp != nil {
		return reconcile.Result{}, nil // children go with it (owner references)
	}
	var obs Observed
	var applyErr error
	obs.Deployment, obs.HPA, obs.SpecErr, applyErr = r.applyChildren(ctx, isvc)
	obs.ApplyErr = applyErr
	if isvcbuild.Class(isvc) == spillwayv1alpha1.AutoscalerLLM {
		_, obs.AutoscalerErr = llm.SpecFor(isvc)
	}
	pods := &corev1.PodList{}
	if err := r.client.List(ctx, pods, client.InNamespace(isvc.Namespace),
		client.MatchingLabels(isvcbuild.SelectorLabels(isvc.Name))); err != nil {
		return reconcile.Result{}, fmt.Errorf("listing the pods of %s: %w", klog.KObj(isvc), err)
	}
	obs.Pods = pods.Items
	obs.NodePools = map[string]string{}
	for _, p := range pods.Items {
		if n := p.Spec.NodeName; n != "" {
			if _, seen := obs.NodePools[n]; seen {
				continue
			}
			node := &corev1.Node{}
			if err := r.client.Get(ctx, types.NamespacedName{Name: n}, node); err != nil {
				if !apierrors.IsNotFound(err) {
					return reconcile.Result{}, fmt.Errorf("reading node %s: %w", n, err)
				}
			}
			obs.NodePools[n] = node.Labels[spillwayv1alpha1.LabelNodePool]
		}
	}
	status := ComputeStatus(isvc, obs, r.domain, metav1.NewTime(r.clock.Now()))
	if !equality.Semantic.DeepEqual(status, isvc.Status) {
		patch := client.MergeFrom(isvc.DeepCopy())
		isvc.Status = status
		if err := r.client.Status().Patch(ctx, isvc, patch); err != nil {
			return reconcile.Result{}, fmt.Errorf("updating the status of %s: %w", klog.KObj(isvc), err)
		}
		logger.V(2).Info("Status updated", "inferenceService", klog.KObj(isvc),
			"replicas", status.Replicas, "ready", status.ReadyReplicas, "desired", status.DesiredReplicas)
	}
	return reconcile.Result{}, applyErr
}

// applyChildren creates or updates the Deployment, Service and HPA. specErr
// is a problem of the spec (reported in the status, not retried); err a
// failed API call (retried).
func (r *Reconciler) applyChildren(ctx context.Context, isvc *spillwayv1alpha1.InferenceService) (
	dep *appsv1.Deployment, hpa *autoscalingv2.HorizontalPodAutoscaler, specErr, err error) {
	wantDep, specErr := isvcbuild.MakeDeployment(isvc)
	if specErr != nil {
		return nil, nil, specErr, nil
	}
	if wantDep.Spec.Template.Spec.SchedulerName == "" {
		wantDep.Spec.Template.Spec.SchedulerName = r.schedulerName
	}
	wantSvc, specErr := isvcbuild.MakeService(isvc)
	if specErr != nil {
		return nil, nil, specErr, nil
	}
	wantHPA, specErr := isvcbuild.MakeHPA(isvc)
	if specErr != nil {
		return nil, nil, specErr, nil
	}
	if dep, err = r.applyDeployment(ctx, isvc, wantDep); err != nil {
		return nil, nil, nil, err
	}
	if err = r.applyService(ctx, isvc, wantSvc); err != nil {
		return dep, nil, nil, err
	}
	hpa, err = r.applyHPA(ctx, isvc, wantHPA)
	return dep, hpa, nil, err
}

func (r *Reconciler) applyDeployment(ctx context.Context, isvc *spillwayv1alpha1.InferenceService, want *appsv1.Deployment) (*appsv1.Deployment, error) {
	logger := log.FromContext(ctx)
	have := &appsv1.Deployment{}
	err := r.client.Get(ctx, client.ObjectKeyFromObject(want), have)
	if apierrors.IsNotFound(err) {
		if err := r.client.Create(ctx, want); err != nil {
			return nil, fmt.Errorf("creating deployment %s: %w", klog.KObj(want), err)
		}
		logger.Info("Created the predictor Deployment", "deployment", klog.KObj(want), "replicas", *want.Spec.Replicas)
		return want, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading deployment %s: %w", klog.KObj(want), err)
	}
	if !metav1.IsControlledBy(have, isvc) {
		return nil, fmt.Errorf("deployment %s %w", klog.KObj(have), ErrNotOwned)
	}
	next := have.DeepCopy()
	next.Labels = mergeLabels(have.Labels, want.Labels)
	next.Spec.Template = want.Spec.Template
	switch isvcbuild.Class(isvc) {
	case spillwayv1alpha1.AutoscalerNone:
		next.Spec.Replicas = ptr.To(isvcbuild.MinReplicas(isvc))
	case spillwayv1alpha1.AutoscalerHPA:
		// The HPA does not scale a Deployment at zero replicas (it takes
		// that as autoscaling turned off): a service coming from class llm
		// scaled to zero is given its minimum first.
		if have.Spec.Replicas != nil && *have.Spec.Replicas == 0 {
			next.Spec.Replicas = ptr.To(isvcbuild.InitialReplicas(isvc))
		}
	}
	// Compare what was built with what is live, ignoring the fields the
	// apiserver defaults (DeepDerivative skips fields unset in the first).
	if equality.Semantic.DeepDerivative(want.Spec.Template, have.Spec.Template) &&
		equality.Semantic.DeepEqual(next.Labels, have.Labels) &&
		equality.Semantic.DeepEqual(next.Spec.Replicas, have.Spec.Replicas) {
		return have, nil
	}
	if err := r.client.Patch(ctx, next, client.MergeFrom(have)); err != nil {
		return nil, fmt.Errorf("updating deployment %s: %w", klog.KObj(next), err)
	}
	logger.Info("Updated the predictor Deployment", "deployment", klog.KObj(next))
	return next, nil
}

func (r *Reconciler) applyService(ctx context.Context, isvc *spillwayv1alpha1.InferenceService, want *corev1.Service) error {
	have := &corev1.Service{}
	err := r.client.Get(ctx, client.ObjectKeyFromObject(want), have)
	if apierrors.IsNotFound(err) {
		if err := r.client.Create(ctx, want); err != nil {
			return fmt.Errorf("creating service %s: %w", klog.KObj(want), err)
		}
		log.FromContext(ctx).Info("Created the predictor Service", "service", klog.KObj(want))
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading service %s: %w", klog.KObj(want), err)
	}
	if !metav1.IsControlledBy(have, isvc) {
		return fmt.Errorf("service %s %w", klog.KObj(have), ErrNotOwned)
	}
	next := have.DeepCopy()
	next.Labels = mergeLabels(have.Labels, want.Labels)
	next.Spec.Selector = want.Spec.Selector
	next.Spec.Ports = want.Spec.Ports
	if equality.Semantic.DeepEqual(next.Labels, have.Labels) &&
		equality.Semantic.DeepEqual(next.Spec.Selector, have.Spec.Selector) &&
		equality.Semantic.DeepDerivative(want.Spec.Ports, have.Spec.Ports) {
		return nil
	}
	if err := r.client.Patch(ctx, next, client.MergeFrom(have)); err != nil {
		return fmt.Errorf("updating service %s: %w", klog.KObj(next), err)
	}
	log.FromContext(ctx).Info("Updated the predictor Service", "service", klog.KObj(next))
	return nil
}

// applyHPA creates or updates the HPA of class hpa, and deletes the one a
// service of another class still owns.
func (r *Reconciler) applyHPA(ctx context.Context, isvc *spillwayv1alpha1.InferenceService, want *autoscalingv2.HorizontalPodAutoscaler) (*autoscalingv2.HorizontalPodAutoscaler, error) {
	logger := log.FromContext(ctx)
	have := &autoscalingv2.HorizontalPodAutoscaler{}
	key := types.NamespacedName{Namespace: isvc.Namespace, Name: isvcbuild.HPAName(isvc.Name)}
	err := r.client.Get(ctx, key, have)
	switch {
	case apierrors.IsNotFound(err) && want == nil:
		return nil, nil
	case apierrors.IsNotFound(err):
		if err := r.client.Create(ctx, want); err != nil {
			return nil, fmt.Errorf("creating HPA %s: %w", klog.KObj(want), err)
		}
		logger.Info("Created the HPA", "hpa", klog.KObj(want))
		return want, nil
	case err != nil:
		return nil, fmt.Errorf("reading HPA %s: %w", key, err)
	case want == nil:
		if !metav1.IsControlledBy(have, isvc) {
			return nil, nil
		}
		if err := r.client.Delete(ctx, have); client.IgnoreNotFound(err) != nil {
			return nil, fmt.Errorf("deleting HPA %s: %w", klog.KObj(have), err)
		}
		logger.Info("Deleted the HPA: the service's autoscaler class is not hpa", "hpa", klog.KObj(have))
		return nil, nil
	}
	next := have.DeepCopy()
	next.Labels = mergeLabels(have.Labels, want.Labels)
	next.Spec.ScaleTargetRef = want.Spec.ScaleTargetRef
	next.Spec.MinReplicas = want.Spec.MinReplicas
	next.Spec.MaxReplicas = want.Spec.MaxReplicas
	next.Spec.Metrics = want.Spec.Metrics
	if equality.Semantic.DeepEqual(next.Labels, have.Labels) &&
		equality.Semantic.DeepEqual(next.Spec.ScaleTargetRef, have.Spec.ScaleTargetRef) &&
		equality.Semantic.DeepEqual(next.Spec.MinReplicas, have.Spec.MinReplicas) &&
		next.Spec.MaxReplicas == have.Spec.MaxReplicas &&
		equality.Semantic.DeepDerivative(want.Spec.Metrics, have.Spec.Metrics) {
		return have, nil
	}
	if err := r.client.Patch(ctx, next, client.MergeFrom(have)); err != nil {
		return nil, fmt.Errorf("updating HPA %s: %w", klog.KObj(next), err)
	}
	logger.Info("Updated the HPA", "hpa", klog.KObj(next))
	return next, nil
}

// mergeLabels returns have with want's labels set (others' labels kept).
func mergeLabels(have, want map[string]string) map[string]string {
	out := maps.Clone(have)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, want)
	return out
}
