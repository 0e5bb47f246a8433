package endpoints

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/pkg/gateway/routing"
)

// Sink receives the routed services.
type Sink interface {
	Update([]routing.Service)
}

// Watcher keeps a Sink up to date from the apiserver.
type Watcher struct {
	cache cache.Cache
	sink  Sink
	log   logr.Logger
	// Debounce groups bursts of changes into one rebuild (default 50ms).
	Debounce time.Duration
	// FromPods takes endpoints from ready Pods instead of EndpointSlices
	// (local clusters with loopback pod addresses). Set before Run.
	FromPods bool
	kick     chan struct{}
}

// NewWatcher watches InferenceServices, EndpointSlices, Nodes and NodePools
// (namespace "" for all namespaces) with a scheme holding the built-in and
// Spillway types.
func NewWatcher(cfg *rest.Config, scheme *runtime.Scheme, namespace string, sink Sink, log logr.Logger) (*Watcher, error) {
	opts := cache.Options{Scheme: scheme}
	if namespace != "" {
		opts.DefaultNamespaces = map[string]cache.Config{namespace: {}}
	}
	c, err := cache.New(cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("creating the informer cache: %w", err)
	}
	return &Watcher{cache: c, sink: sink, log: log, Debounce: 50 * time.Millisecond, kick: make(chan struct{}, 1)}, nil
}

// Run starts the informers, pushes a table once they are synced and after
// every change, until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	handler := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { w.trigger() },
		UpdateFunc: func(any, any) { w.trigger() },
		DeleteFunc: func(any) { w.trigger() },
	}
	var endpointsObj client.Object = &discoveryv1.EndpointSlice{}
	if w.FromPods {
		endpointsObj = &corev1.Pod{}
	}
	for _, obj := range []client.Object{&spillwayv1alpha1.InferenceService{}, endpointsObj,
		&corev1.Node{}, &spillwayv1alpha1.NodePool{}} {
		inf, err := w.cache.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("informer for %T: %w", obj, err)
		}
		if _, err := inf.AddEventHandler(handler); err != nil {
			return fmt.Errorf("handler for %T: %w", obj, err)
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- w.cache.Start(ctx) }()
	if !w.cache.WaitForCacheSync(ctx) {
		select {
		case err := <-errc:
			return fmt.Errorf("starting the informers: %w", err)
		default:
			return fmt.Errorf("informers did not sync: %w", ctx.Err())
		}
	}
	w.log.Info("informers synced")
	w.trigger()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			if err != nil {
				return fmt.Errorf("informers stopped: %w", err)
			}
			return nil
		case <-w.kick:
		}
		// Let a burst settle, then rebuild once.
		t := time.NewTimer(w.Debounce)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		select {
		case <-w.kick:
		default:
		}
		if err := w.rebuild(ctx); err != nil {
			w.log.Error(err, "rebuilding the routing table")
		}
	}
}

func (w *Watcher) trigger() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *Watcher) rebuild(ctx context.Context) error {
	var (
		isvcs  spillwayv1alpha1.InferenceServiceList
		slices discoveryv1.EndpointSliceList
		pods   corev1.PodList
		nodes  corev1.NodeList
		pools  spillwayv1alpha1.NodePoolList
	)
	var eps client.ObjectList = &slices
	if w.FromPods {
		eps = &pods
	}
	for _, l := range []client.ObjectList{&isvcs, eps, &nodes, &pools} {
		if err := w.cache.List(ctx, l); err != nil {
			return fmt.Errorf("listing %T: %w", l, err)
		}
	}
	nodePools := make(map[string]string, len(nodes.Items))
	for _, n := range nodes.Items {
		if p := n.Labels[spillwayv1alpha1.LabelNodePool]; p != "" {
			nodePools[n.Name] = p
		}
	}
	svcs, err := Build(State{Services: isvcs.Items, Slices: slices.Items, Pods: pods.Items, FromPods: w.FromPods,
		NodePools: nodePools, Pools: pools.Items})
	if err != nil {
		w.log.Info("bad gateway annotations, using defaults", "err", err.Error())
	}
	w.sink.Update(svcs)
	if w.log.V(2).Enabled() {
		ready := 0
		for _, s := range svcs {
			ready += len(s.Endpoints)
		}
		w.log.V(2).Info("routing table updated", "services", len(svcs), "endpoints", ready)
	}
	return nil
}
