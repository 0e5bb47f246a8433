// Package nodepool is the NodePool controller of spillway-manager and the
// node autoscaler's control loop. Static pools (IDC) keep the nodes they have:
// the controller labels them and reports them. Elastic pools are sized
// between min and max through a cloud provider: pods that become
// unschedulable trigger a scale-up pass (debounced to batch a burst), planned
// by pkg/nodeautoscaler; nodes unneeded long enough are cordoned, drained
// through the Eviction API (PodDisruptionBudgets hold) and deleted; a node
// not usable within the pool's max provision time is replaced. Status,
// events and Prometheus metrics report all of it.
package nodepool

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	schedulingv1alpha1 "github.com/spillway-io/spillway/apis/scheduling/v1alpha1"
	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/pkg/cloudprovider"
)

// Name is the controller's name (logs, events, metrics).
const Name = "nodepool"

// AnnotationScaleDown marks a node the autoscaler cordoned to remove; its
// value is the reason. It makes a drain survive a manager restart.
const AnnotationScaleDown = "spillway.io/scale-down"

// Options configure the controller.
type Options struct {
	// Providers maps spec.provider.name to the provider (required for elastic pools).
	Providers cloudprovider.Registry
	// Clock is the time source; the real clock when nil.
	Clock clock.PassiveClock
	// Debounce batches a burst of unschedulable pods into one pass (default 200ms).
	Debounce time.Duration
	// ScanInterval is the period of the pass when nothing happens, for
	// scale-down and provision timeouts (default 10s).
	ScanInterval time.Duration
	// Backoff: after a provider failure no nodes are asked of the pool for
	// this long and other pools are used (default 1m).
	Backoff time.Duration
	// Registerer receives the metrics; controller-runtime's registry when nil.
	Registerer prometheus.Registerer
}

func (o *Options) defaults() {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Debounce <= 0 {
		o.Debounce = 200 * time.Millisecond
	}
	if o.ScanInterval <= 0 {
		o.ScanInterval = 10 * time.Second
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Minute
	}
	if o.Registerer == nil {
		o.Registerer = crmetrics.Registry
	}
}

// eventRecorder is the part of an events recorder the controller uses.
type eventRecorder interface {
	Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// Reconciler runs the node autoscaler's passes. All work happens in one pass
// keyed by a single request, so passes never race each other.
type Reconciler struct {
	client   client.Client
	events   eventRecorder
	opts     Options
	metrics  *metrics
	debounce time.Duration

	mu sync.Mutex
	st state
}

// state is what the controller remembers between passes.
type state struct {
	backoffUntil  map[string]time.Time
	lastScaleUp   map[string]time.Time
	lastScaleDown map[string]time.Time
	lastWhy       map[string]string // pool -> last scale-up/down reason
	unneededSince map[string]time.Time
	firstSeen     map[types.UID]time.Time // unschedulable pods, for the reaction metric
	notHelped     map[types.UID]string    // pods told no pool helps, with the reason told
	providerErr   map[string]error
}

// passKey is the single request every event maps to.
var passKey = reconcile.Request{NamespacedName: types.NamespacedName{Name: "node-autoscaler"}}

// New returns a Reconciler; SetupWithManager wires it to a manager.
func New(c client.Client, events eventRecorder, opts Options) *Reconciler {
	opts.defaults()
	return &Reconciler{client: c, events: events, opts: opts, metrics: newMetrics(opts.Registerer),
		st: state{backoffUntil: map[string]time.Time{}, lastScaleUp: map[string]time.Time{},
			lastScaleDown: map[string]time.Time{}, lastWhy: map[string]string{},
			unneededSince: map[string]time.Time{}, firstSeen: map[types.UID]time.Time{}, notHelped: map[types.UID]string{},
			providerErr: map[string]error{}}}
}

// SetupWithManager creates the controller and registers it with mgr.
func SetupWithManager(mgr ctrl.Manager, opts Options) error {
	r := New(mgr.GetClient(), mgr.GetEventRecorder("spillway-"+Name), opts)
	return r.SetupWithManager(mgr)
}

// SetupWithManager registers r with mgr: pods, nodes, NodePools and
// ResourcePolicies all trigger a (debounced) pass.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named(Name).
		WithOptions(controller.Options{MaxConcurrentReconciles: 1}).
		Watches(&corev1.Pod{}, r.podHandler()).
		Watches(&corev1.Node{}, r.anyChange()).
		Watches(&spillwayv1alpha1.NodePool{}, r.anyChange()).
		Watches(&schedulingv1alpha1.ResourcePolicy{}, r.anyChange()).
		Complete(r)
}

type queue = workqueue.TypedRateLimitingInterface[reconcile.Request]

func (r *Reconciler) kick(q queue) { q.AddAfter(passKey, r.opts.Debounce) }

// anyChange triggers a pass on every change of the watched kind.
func (r *Reconciler) anyChange() handler.EventHandler {
	return handler.Funcs{
		CreateFunc: func(_ context.Context, _ event.CreateEvent, q queue) { r.kick(q) },
		UpdateFunc: func(_ context.Context, _ event.UpdateEvent, q queue) { r.kick(q) },
		DeleteFunc: func(_ context.Context, _ event.DeleteEvent, q queue) { r.kick(q) },
	}
}

// podHandler triggers a pass when a pod becomes unschedulable (remembering
// when, for the reaction metric), is bound, or goes away (scale-down).
func (r *Reconciler) podHandler() handler.EventHandler {
	seen := func(obj client.Object, q queue) {
		pod, ok := obj.(*corev1.Pod)
		if !ok || !Unschedulable(pod) {
			return
		}
		r.mu.Lock()
		if _, known := r.st.firstSeen[pod.UID]; !known {
			r.st.firstSeen[pod.UID] = r.opts.Clock.Now()
		}
		r.mu.Unlock()
		r.kick(q)
	}
	return handler.Funcs{
		CreateFunc: func(_ context.Context, e event.CreateEvent, q queue) { seen(e.Object, q) },
		UpdateFunc: func(_ context.Context, e event.UpdateEvent, q queue) {
			oldPod, _ := e.ObjectOld.(*corev1.Pod)
			newPod, _ := e.ObjectNew.(*corev1.Pod)
			if newPod == nil || oldPod == nil {
				return
			}
			switch {
			case Unschedulable(newPod):
				seen(newPod, q)
			case oldPod.Spec.NodeName != newPod.Spec.NodeName,
				oldPod.Status.Phase != newPod.Status.Phase,
				(oldPod.DeletionTimestamp == nil) != (newPod.DeletionTimestamp == nil):
				r.kick(q)
			}
		},
		DeleteFunc: func(_ context.Context, _ event.DeleteEvent, q queue) { r.kick(q) },
	}
}

// Unschedulable reports whether the scheduler gave up on pod for now:
// unbound, not being deleted, PodScheduled=False with reason Unschedulable.
func Unschedulable(pod *corev1.Pod) bool {
	if pod.Spec.NodeName != "" || pod.DeletionTimestamp != nil {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled {
			return c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable
		}
	}
	return false
}

var _ reconcile.Reconciler = (*Reconciler)(nil)
