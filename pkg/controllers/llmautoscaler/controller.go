// Package llmautoscaler runs the `llm` autoscaler class in spillway-manager.
// Every tick (2 s) it samples each llm-class InferenceService — the
// gateway's in-flight requests for it, and vLLM's running/waiting/KV-cache
// gauges from each ready replica's /metrics — keeps a window of samples per
// service, asks the pure llm.Decide for the replica count, and writes it to
// the predictor Deployment's scale subresource when it differs.
//
// Where the figures come from is behind two small interfaces (the gateway's
// per-service in-flight count, a replica's engine gauges); GatewayScraper and
// EngineScraper read them in the Prometheus text format.
package llmautoscaler

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/pkg/autoscaler/llm"
	isvcbuild "github.com/spillway-io/spillway/pkg/inferenceservice"
)

// DefaultInterval is the tick of the autoscaler (Knative's).
const DefaultInterval = 2 * time.Second

// defaultScrapeConcurrency bounds the replicas scraped at once.
const defaultScrapeConcurrency = 16

// inFlightSource gives the requests in flight per service.
type inFlightSource interface {
	InFlight(ctx context.Context) (map[types.NamespacedName]float64, error)
}

// engineSource gives one replica's engine gauges; addr is host:port.
type engineSource interface {
	EngineMetrics(ctx context.Context, addr string) (EngineMetrics, error)
}

// Controller is the llm autoscaler; it is a manager.Runnable.
type Controller struct {
	client      client.Client
	clock       clock.WithTicker
	interval    time.Duration
	inFlight    inFlightSource
	engines     engineSource
	concurrency int
	metrics     *metrics

	mu      sync.Mutex
	windows map[types.NamespacedName]*llm.Window
}

var (
	_ manager.Runnable               = (*Controller)(nil)
	_ manager.LeaderElectionRunnable = (*Controller)(nil)
)

// Option configures a Controller.
type Option func(*Controller)

// WithClock sets the clock (a fake one in tests).
func WithClock(c clock.WithTicker) Option { return func(a *Controller) { a.clock = c } }

// WithInterval sets the tick.
func WithInterval(d time.Duration) Option { return func(a *Controller) { a.interval = d } }

// WithInFlightSource sets where the gateway's in-flight counts come from
// (none: the engines' running+waiting alone).
func WithInFlightSource(s inFlightSource) Option { return func(a *Controller) { a.inFlight = s } }

// WithEngineSource sets how replicas' gauges are read (default EngineScraper).
func WithEngineSource(s engineSource) Option { return func(a *Controller) { a.engines = s } }

// WithRegisterer registers the controller's metrics with r.
func WithRegisterer(r prometheus.Registerer) Option {
	return func(a *Controller) { a.metrics = newMetrics(r) }
}

// New returns a Controller using c.
func New(c client.Client, opts ...Option) *Controller {
	a := &Controller{
		client: c, clock: clock.RealClock{}, interval: DefaultInterval,
		engines: &EngineScraper{}, concurrency: defaultScrapeConcurrency,
		windows: map[types.NamespacedName]*llm.Window{},
	}
	for _, o := range opts {
		o(a)
	}
	if a.metrics == nil {
		a.metrics = newMetrics(nil)
	}
	return a
}

// NeedLeaderElection: only the leader scales.
func (a *Controller) NeedLeaderElection() bool { return true }

// Start ticks until ctx ends.
func (a *Controller) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("llmautoscaler")
	ctx = log.IntoContext(ctx, logger)
	logger.Info("Starting the llm autoscaler", "interval", a.interval)
	t := a.clock.NewTicker(a.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			logger.Info("Stopped the llm autoscaler")
			return nil
		case <-t.C():
			if err := a.Tick(ctx); err != nil {
				logger.Error(err, "Autoscaler tick failed")
			}
		}
	}
}

// Tick samples every llm-class service once, decides and scales.
func (a *Controller) Tick(ctx context.Context) error {
	logger := log.FromContext(ctx)
	now := a.clock.Now()
	list := &spillwayv1alpha1.InferenceServiceList{}
	if err := a.client.List(ctx, list); err != nil {
		return fmt.Errorf("listing inference services: %w", err)
	}
	var inFlight map[types.NamespacedName]float64
	if a.inFlight != nil {
		var err error
		if inFlight, err = a.inFlight.InFlight(ctx); err != nil {
			a.metrics.scrapeErrors.WithLabelValues("gateway").Inc()
			logger.V(1).Info("Gateway in-flight figures unavailable; using the engines' own", "err", err.Error())
			inFlight = nil
		}
	}
	seen := map[types.NamespacedName]bool{}
	var errs []error
	for i := range list.Items {
		isvc := &list.Items[i]
		if isvcbuild.Class(isvc) != spillwayv1alpha1.AutoscalerLLM || isvc.DeletionTimestamp != nil {
			continue
		}
		key := client.ObjectKeyFromObject(isvc)
		seen[key] = true
		if err := a.scaleOne(ctx, now, isvc, inFlight); err != nil {
			errs = append(errs, err)
		}
	}
	a.mu.Lock()
	for k := range a.windows {
		if !seen[k] {
			delete(a.windows, k)
			a.metrics.forget(k)
		}
	}
	a.mu.Unlock()
	if len(errs) > 0 {
		return fmt.Errorf("%d service(s) failed, first: %w", len(errs), errs[0])
	}
	return nil
}

func (a *Controller) scaleOne(ctx context.Context, now time.Time, isvc *spillwayv1alpha1.InferenceService, inFlight map[types.NamespacedName]float64) error {
	logger := log.FromContext(ctx).WithValues("inferenceService", klog.KObj(isvc))
	spec, err := llm.SpecFor(isvc)
	if err != nil {
		// Reported in the status by the InferenceService controller.
		logger.V(2).Info("Not scaling: bad autoscaling annotations", "err", err.Error())
		return nil
	}
	if a.inFlight == nil {
		// Without the gateway's count nothing would bring the service back
		// from zero: keep one replica.
		spec.MinReplicas = max(spec.MinReplicas, 1)
		spec.MaxReplicas = max(spec.MaxReplicas, spec.MinReplicas)
	}
	dep := &appsv1.Deployment{}
	if err := a.client.Get(ctx, types.NamespacedName{Namespace: isvc.Namespace, Name: isvcbuild.PredictorName(isvc.Name)}, dep); err != nil {
		if apierrors.IsNotFound(err) {
			return nil // not created yet
		}
		return fmt.Errorf("reading the deployment of %s: %w", klog.KObj(isvc), err)
	}
	if !metav1.IsControlledBy(dep, isvc) || dep.Spec.Replicas == nil {
		return nil
	}
	sample, err := a.sample(ctx, now, isvc, inFlight)
	if err != nil {
		return err
	}
	key := client.ObjectKeyFromObject(isvc)
	a.mu.Lock()
	w := a.windows[key]
	if w == nil {
		w = &llm.Window{}
		a.windows[key] = w
	}
	w.Add(sample, spec.History())
	d := llm.Decide(now, llm.Observations{Samples: w.Samples(), Replicas: *dep.Spec.Replicas}, spec)
	a.mu.Unlock()
	a.metrics.observe(key, sample, d)

	current := *dep.Spec.Replicas
	if logger.V(4).Enabled() {
		logger.V(4).Info("Decision", "current", current, "desired", d.Desired, "reason", d.Reason, "panic", d.Panic,
			"stableLoad", d.StableLoad, "panicLoad", d.PanicLoad, "ready", sample.Ready, "starting", sample.Starting)
	}
	if d.Desired == current {
		return nil
	}
	scale := &autoscalingv1.Scale{
		ObjectMeta: metav1.ObjectMeta{Name: dep.Name, Namespace: dep.Namespace},
		Spec:       autoscalingv1.ScaleSpec{Replicas: d.Desired},
	}
	if err := a.client.SubResource("scale").Update(ctx, dep, client.WithSubResourceBody(scale)); err != nil {
		return fmt.Errorf("scaling %s to %d: %w", klog.KObj(dep), d.Desired, err)
	}
	a.metrics.scalings.WithLabelValues(key.Namespace, key.Name, string(d.Reason)).Inc()
	logger.Info("Scaled", "deployment", klog.KObj(dep), "from", current, "to", d.Desired, "reason", d.Reason,
		"panic", d.Panic, "stableLoad", d.StableLoad, "inFlightReplicas", d.InFlightReplicas,
		"queueReplicas", d.QueueReplicas, "kvReplicas", d.KVReplicas)
	return nil
}

// sample reads one service's figures: in-flight from the gateway, engine
// gauges from each ready replica (scraped concurrently, bounded).
func (a *Controller) sample(ctx context.Context, now time.Time, isvc *spillwayv1alpha1.InferenceService, inFlight map[types.NamespacedName]float64) (llm.Sample, error) {
	pods := &corev1.PodList{}
	if err := a.client.List(ctx, pods, client.InNamespace(isvc.Namespace), client.MatchingLabels(isvcbuild.SelectorLabels(isvc.Name))); err != nil {
		return llm.Sample{}, fmt.Errorf("listing the pods of %s: %w", klog.KObj(isvc), err)
	}
	s := llm.Sample{Time: now, InFlight: -1}
	if inFlight != nil {
		s.InFlight = inFlight[client.ObjectKeyFromObject(isvc)] // absent: none in flight
	}
	var addrs []string
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if !podReady(p) {
			s.Starting++
			continue
		}
		s.Ready++
		if p.Status.PodIP != "" && len(p.Spec.Containers) > 0 {
			port := isvcbuild.ServerPort(&p.Spec.Containers[0])
			addrs = append(addrs, net.JoinHostPort(p.Status.PodIP, strconv.Itoa(int(port))))
		}
	}
	results := make([]EngineMetrics, len(addrs))
	sem := make(chan struct{}, a.concurrency)
	var wg sync.WaitGroup
	for i, addr := range addrs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			m, err := a.engines.EngineMetrics(ctx, addr)
			if err != nil {
				a.metrics.scrapeErrors.WithLabelValues("engine").Inc()
				log.FromContext(ctx).V(2).Info("Engine metrics unavailable", "addr", addr, "err", err.Error())
				return
			}
			results[i] = m
		}()
	}
	wg.Wait()
	for _, m := range results {
		s.Running += m.Running
		s.Waiting += m.Waiting
		s.KVCache += m.KVCache
	}
	return s, nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// +kubebuilder:rbac:groups=spillway.io,resources=inferenceservices,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=deployments/scale,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
