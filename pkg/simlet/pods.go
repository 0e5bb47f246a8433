package simlet

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// pollEvery is how often a running pod is looked at (readiness, exits).
const pollEvery = 500 * time.Millisecond

// +kubebuilder:rbac:groups="",resources=pods;pods/status,verbs=get;list;watch;update;patch;delete
// +kubebuilder:rbac:groups="",resources=nodes;nodes/status,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update

// Reconcile runs, reports and ends the pod of req when it is bound to a
// managed node.
func (s *Simlet) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	logger := log.FromContext(ctx)
	pod := &corev1.Pod{}
	if err := s.client.Get(ctx, req.NamespacedName, pod); err != nil {
		if apierrors.IsNotFound(err) {
			s.forget(req.NamespacedName)
		}
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if pod.Spec.NodeName == "" {
		return reconcile.Result{}, nil
	}
	node := &corev1.Node{}
	if err := s.client.Get(ctx, client.ObjectKey{Name: pod.Spec.NodeName}, node); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !s.Managed(node) {
		return reconcile.Result{}, nil
	}
	ns := s.trackNode(node)
	if err := s.ServeDCGM(); err != nil {
		logger.Error(err, "starting DCGM exporter")
	}
	s.mu.Lock()
	killed := s.killed[node.Name]
	ps := s.pods[pod.UID]
	if ps == nil {
		ps = &podState{key: req.NamespacedName, node: node.Name, run: RunState{HostIP: ns.ip}}
		if len(pod.Spec.Containers) > 0 {
			ps.container = pod.Spec.Containers[0].Name
		}
		s.pods[pod.UID] = ps
	}
	s.mu.Unlock()
	if killed {
		// A dead node's kubelet reports nothing; the control plane deals with its pods.
		return reconcile.Result{}, nil
	}

	if pod.DeletionTimestamp != nil {
		return reconcile.Result{}, s.terminate(ctx, pod, ps)
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return reconcile.Result{}, nil
	}

	now := s.clock.Now()
	if ps.runner != nil {
		select {
		case <-ps.runner.Done():
			exitCode, reason := int32(0), "Completed"
			if err := ps.runner.Err(); err != nil {
				exitCode, reason = 1, "Error"
			}
			s.mu.Lock()
			ps.run.LastExit = &Exit{At: now, Started: ps.run.Started, ExitCode: exitCode, Reason: reason}
			ps.run.Restarts++
			ps.run.Started = time.Time{}
			ps.run.Ready = false
			ps.runner = nil
			s.mu.Unlock()
			logger.Info("pod exited, restarting", "pod", req.NamespacedName, "restarts", ps.run.Restarts)
		default:
		}
	}
	if ps.runner == nil {
		if ps.run.PodIP == "" {
			ip, err := s.podIP(ns)
			if err != nil {
				return reconcile.Result{}, err
			}
			ps.run.PodIP = ip
		}
		r, err := s.runtime.Start(context.WithoutCancel(ctx), pod, ps.run.PodIP, ns.gpu)
		s.mu.Lock()
		if err != nil {
			ps.run.StartErr = err.Error()
		} else {
			ps.runner, ps.run.Started, ps.run.StartErr = r, now, ""
		}
		s.mu.Unlock()
		if err != nil {
			logger.Error(err, "starting pod", "pod", req.NamespacedName)
		}
	}
	s.mu.Lock()
	if ps.runner != nil {
		ps.run.Ready = ps.runner.Ready()
	}
	run := ps.run
	s.mu.Unlock()
	if err := s.writeStatus(ctx, pod, run, now); err != nil {
		return reconcile.Result{}, err
	}
	return reconcile.Result{RequeueAfter: pollEvery}, nil
}

func (s *Simlet) writeStatus(ctx context.Context, pod *corev1.Pod, run RunState, now time.Time) error {
	want := PodStatus(pod, run, now)
	if apiequality.Semantic.DeepEqual(want, pod.Status) {
		return nil
	}
	pod.Status = want
	if err := s.client.Status().Update(ctx, pod); err != nil {
		if apierrors.IsConflict(err) {
			return nil // the next poll retries with the new version
		}
		return fmt.Errorf("writing status of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

// terminate stops a deleted pod's runner (in-flight work may finish until the
// grace period ends), then removes the pod with grace 0, as a kubelet does.
func (s *Simlet) terminate(ctx context.Context, pod *corev1.Pod, ps *podState) error {
	grace := 30 * time.Second
	if pod.DeletionGracePeriodSeconds != nil {
		grace = time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
	}
	s.mu.Lock()
	r := ps.runner
	ps.runner = nil
	s.mu.Unlock()
	if r != nil {
		sctx, cancel := context.WithTimeout(ctx, grace)
		err := r.Stop(sctx)
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			log.FromContext(ctx).Error(err, "stopping pod", "pod", ps.key)
		}
	}
	err := s.client.Delete(ctx, pod, client.GracePeriodSeconds(0), client.Preconditions{UID: &pod.UID})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("removing pod %s: %w", ps.key, err)
	}
	s.forget(ps.key)
	return nil
}

func (s *Simlet) forget(key interface{ String() string }) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for uid, ps := range s.pods {
		if ps.key.String() == key.String() {
			if ps.runner != nil {
				r := ps.runner
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					_ = r.Stop(ctx)
				}()
			}
			delete(s.pods, uid)
		}
	}
}
