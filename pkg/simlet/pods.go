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
		// Draining may take the whole grace period: done aside, so other
		// pods keep being reconciled meanwhile.
		s.mu.Lock()
		busy := ps.terminating
		ps.terminating = true
		s.mu.Unlock()
		if !busy {
			go func() {
				if err := s.terminate(context.WithoutCancel(ctx), pod, ps); err != nil {
					logger.Error(err, "terminating pod")
					s.mu.Lock()
					ps.terminating = false
					s.mu.Unlock()
				}
			}()
		}
		return reconcile.Result{RequeueAfter: pollEvery}, nil
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return reconcile.Result{}, nil
	}

	now := s.clock.Now()
	s.mu.Lock()
	runner := ps.runner
	s.mu.Unlock()
	if runner != nil {
		s.checkExit(ctx, ps, runner, now)
	}
	s.mu.Lock()
	due := ps.runner == nil && !now.Before(ps.run.BackOffUntil)
	s.mu.Unlock()
	if due {
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
			// The container could not be created (port taken, bad
			// annotation): retried with the crash-loop back-off.
			ps.crashes++
			ps.run.StartErr = err.Error()
			ps.run.BackOffUntil = now.Add(CrashLoopDelay(ps.crashes, s.backOff, s.backOffMax))
		} else {
			if ps.runs > 0 {
				ps.run.Restarts++
			}
			ps.runs++
			ps.runner, ps.run.Started, ps.run.StartErr = r, now, ""
		}
		s.mu.Unlock()
		if err != nil {
			logger.Error(err, "starting pod", "pod", req.NamespacedName)
		} else {
			// A run that ended at once (a refused command line) is reported
			// as terminated right away, not as running.
			s.checkExit(ctx, ps, r, now)
		}
	}
	s.mu.Lock()
	runner = ps.runner
	s.mu.Unlock()
	ready := false
	if runner != nil {
		ready = runner.Ready() // may probe the pod over HTTP: outside the lock
	}
	s.mu.Lock()
	if ps.runner != nil && ps.runner == runner {
		ps.run.Ready = ready
	}
	run := ps.run
	// A node whose link is cut cannot reach the apiserver: its pods keep
	// running but their status is not written (the node lifecycle
	// controller marks them not ready), until the link is restored.
	silent := s.cut[ns.pool] || s.killed[pod.Spec.NodeName]
	s.mu.Unlock()
	if silent {
		return reconcile.Result{RequeueAfter: pollEvery}, nil
	}
	if err := s.writeStatus(ctx, pod, run, now); err != nil {
		return reconcile.Result{}, err
	}
	return reconcile.Result{RequeueAfter: pollEvery}, nil
}

// checkExit records the end of runner's run, if it ended: the exit code and
// reason, and when the next run may start (kubelet's crash-loop back-off).
func (s *Simlet) checkExit(ctx context.Context, ps *podState, runner Runner, now time.Time) {
	select {
	case <-runner.Done():
	default:
		return
	}
	exit := Exit{At: now, ExitCode: 0, Reason: "Completed"}
	if err := runner.Err(); err != nil {
		exit.ExitCode, exit.Reason, exit.Message = 1, "Error", err.Error()
		var ee *ExitError
		if errors.As(err, &ee) {
			exit.ExitCode, exit.Reason, exit.Message = ee.Code, ee.Reason, ee.Message
		}
	}
	s.mu.Lock()
	if ps.runner != runner {
		s.mu.Unlock()
		return
	}
	exit.Started = ps.run.Started
	// A run longer than twice the longest back-off resets the back-off, as
	// the kubelet's does.
	if now.Sub(ps.run.Started) >= 2*s.backOffMax {
		ps.crashes = 0
	}
	ps.crashes++
	ps.run.LastExit = &exit
	ps.run.BackOffUntil = now.Add(CrashLoopDelay(ps.crashes, s.backOff, s.backOffMax))
	ps.run.Started = time.Time{}
	ps.run.Ready = false
	ps.runner = nil
	restarts, until := ps.run.Restarts, ps.run.BackOffUntil
	s.mu.Unlock()
	log.FromContext(ctx).Info("container exited", "pod", ps.key, "exitCode", exit.ExitCode, "reason", exit.Reason,
		"message", exit.Message, "restarts", restarts, "restartAt", until)
}

// CrashLoopDelay is how long the kubelet waits before restarting a container
// that exited for the crashes-th time in a row: the first exit restarts at
// once, then base, 2×base, 4×base… up to max.
func CrashLoopDelay(crashes int, base, max time.Duration) time.Duration {
	if crashes <= 1 || base <= 0 {
		return 0
	}
	d := base
	for i := 2; i < crashes; i++ {
		d *= 2
		if d >= max {
			return max
		}
	}
	return min(d, max)
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
