// Package deletioncost keeps controller.kubernetes.io/pod-deletion-cost of
// the pods matched by a ResourcePolicy in line with their unit (unit i of n:
// (n-i)*100, outside every unit: 0), so a ReplicaSet scale-down removes the
// pods of the last units (cloud) first, and keeps the policy's status (pods
// and requests per unit, outside units, pending) current.
//
// A deletion cost the user wrote is kept: the controller writes the
// annotation only on pods that have none, or whose cost it wrote itself
// (marked by the annotation spillway.io/deletion-cost-managed: "true").
// Policy conflicts (a pod matched by two policies) are reported as Warning
// events on each policy involved.
package deletioncost

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	schedulingv1alpha1 "github.com/spillway-io/spillway/apis/scheduling/v1alpha1"
	"github.com/spillway-io/spillway/pkg/resourcepolicy"
)

// Name is the controller's name.
const Name = "deletioncost"

// ManagedAnnotation marks a deletion cost written by this controller.
const ManagedAnnotation = "spillway.io/deletion-cost-managed"

// Reconciler reconciles one ResourcePolicy.
type Reconciler struct {
	client   client.Client
	recorder events.EventRecorder
}

var _ reconcile.Reconciler = (*Reconciler)(nil)

// New builds the reconciler; recorder may be nil.
func New(c client.Client, recorder events.EventRecorder) *Reconciler {
	return &Reconciler{client: c, recorder: recorder}
}

// SetupWithManager registers the controller: policies, and pods and nodes
// (mapped to the policies of their namespace, all policies for nodes).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named(Name).
		For(&schedulingv1alpha1.ResourcePolicy{}).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return r.policiesIn(ctx, o.GetNamespace())
		})).
		Watches(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
			return r.policiesIn(ctx, "")
		})).
		Complete(r)
}

func (r *Reconciler) policiesIn(ctx context.Context, ns string) []reconcile.Request {
	var list schedulingv1alpha1.ResourcePolicyList
	if err := r.client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil
	}
	out := make([]reconcile.Request, len(list.Items))
	for i := range list.Items {
		out[i] = reconcile.Request{NamespacedName: types.NamespacedName{Namespace: list.Items[i].Namespace, Name: list.Items[i].Name}}
	}
	return out
}

// +kubebuilder:rbac:groups=scheduling.alibabacloud.com,resources=resourcepolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=scheduling.alibabacloud.com,resources=resourcepolicies/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile updates the deletion costs of the policy's pods and its status.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	logger := log.FromContext(ctx)
	var rp schedulingv1alpha1.ResourcePolicy
	if err := r.client.Get(ctx, req.NamespacedName, &rp); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	var policies schedulingv1alpha1.ResourcePolicyList
	if err := r.client.List(ctx, &policies, client.InNamespace(rp.Namespace)); err != nil {
		return reconcile.Result{}, fmt.Errorf("listing ResourcePolicies: %w", err)
	}
	var pods corev1.PodList
	if err := r.client.List(ctx, &pods, client.InNamespace(rp.Namespace)); err != nil {
		return reconcile.Result{}, fmt.Errorf("listing pods: %w", err)
	}
	var nodes corev1.NodeList
	// Read only (the snapshot does not change nodes): no copy of every node
	// out of the cache on each reconcile.
	if err := r.client.List(ctx, &nodes, client.UnsafeDisableDeepCopy); err != nil {
		return reconcile.Result{}, fmt.Errorf("listing nodes: %w", err)
	}
	all := make([]*schedulingv1alpha1.ResourcePolicy, len(policies.Items))
	for i := range policies.Items {
		all[i] = &policies.Items[i]
	}
	podPtrs := make([]*corev1.Pod, len(pods.Items))
	for i := range pods.Items {
		podPtrs[i] = &pods.Items[i]
	}
	nodePtrs := make([]*corev1.Node, len(nodes.Items))
	for i := range nodes.Items {
		nodePtrs[i] = &nodes.Items[i]
	}
	snap := resourcepolicy.NewSnapshot(all, nodePtrs, podPtrs)

	var errs []error
	conflicts := 0
	for _, pod := range podPtrs {
		match, err := snap.Match(pod)
		var ce *resourcepolicy.ConflictError
		if errors.As(err, &ce) {
			conflicts++
			if r.recorder != nil && conflicts == 1 {
				r.recorder.Eventf(&rp, pod, corev1.EventTypeWarning, "PolicyConflict", "Matching", "%s", ce.Error())
			}
			continue
		}
		if err != nil || match == nil || match.Name != rp.Name {
			continue
		}
		cost, ok := snap.DeletionCost(pod)
		if !ok {
			continue
		}
		want, write := Desired(pod, cost)
		if !write {
			continue
		}
		patch := client.MergeFrom(pod.DeepCopy())
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations[resourcepolicy.DeletionCostAnnotation] = want
		pod.Annotations[ManagedAnnotation] = "true"
		if err := r.client.Patch(ctx, pod, patch); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("patching deletion cost of pod %s/%s: %w", pod.Namespace, pod.Name, err))
			continue
		}
		logger.V(1).Info("deletion cost set", "pod", client.ObjectKeyFromObject(pod), "cost", want)
	}

	status := snap.Status(&rp)
	status.ObservedGeneration = rp.Generation
	status.Conditions = rp.Status.Conditions
	if !equality.Semantic.DeepEqual(status, rp.Status) {
		patch := client.MergeFrom(rp.DeepCopy())
		rp.Status = status
		if err := r.client.Status().Patch(ctx, &rp, patch); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("updating status: %w", err))
		}
	}
	return reconcile.Result{}, errors.Join(errs...)
}

// Desired returns the annotation value for cost and whether to write it: a
// pod without a deletion cost, or with one this controller wrote that
// differs, is written; a cost the user set is kept.
func Desired(pod *corev1.Pod, cost int32) (string, bool) {
	want := strconv.Itoa(int(cost))
	have, set := pod.Annotations[resourcepolicy.DeletionCostAnnotation]
	if !set {
		return want, true
	}
	if pod.Annotations[ManagedAnnotation] != "true" {
		return "", false
	}
	return want, have != want
}

// SetupWithManager builds the controller from mgr and registers it.
func SetupWithManager(mgr ctrl.Manager) error {
	return New(mgr.GetClient(), mgr.GetEventRecorder("spillway-"+Name)).SetupWithManager(mgr)
}
