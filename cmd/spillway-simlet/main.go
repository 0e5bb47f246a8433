// Command spillway-simlet is the node simulator of Spillway's local cluster:
// it registers the static pools' nodes of a cluster file, heartbeats every
// node it manages, runs the pods bound to them on their own 127.x.y.z
// address, serves per-node DCGM metrics and injects faults on request.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/pkg/localcluster"
	"github.com/spillway-io/spillway/pkg/simlet"
)

type flags struct {
	kubeconfig, clusterFile, addr string
	leaseDuration, grace, load    time.Duration
}

func main() {
	var f flags
	fs := flag.NewFlagSet("spillway-simlet", flag.ContinueOnError)
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (default $KUBECONFIG)")
	fs.StringVar(&f.clusterFile, "cluster-file", "config/clusters/default.yaml", "cluster file listing the NodePools")
	fs.StringVar(&f.addr, "metrics-bind-address", "127.0.0.1:10361", "address of /metrics, /healthz and /faults (loopback only)")
	fs.DurationVar(&f.leaseDuration, "lease-duration", 40*time.Second, "node Lease duration; renewed every quarter of it")
	fs.DurationVar(&f.grace, "shutdown-grace", 30*time.Second, "how long running pods may finish their work on SIGTERM")
	fs.DurationVar(&f.load, "load-delay", 3*time.Second, "default simulated model-load time of the builtin runtime")
	klog.InitFlags(fs)
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		os.Exit(2)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "spillway-simlet: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, f); err != nil {
		klog.ErrorS(err, "spillway-simlet failed")
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}

func run(ctx context.Context, f flags) error {
	host, _, err := net.SplitHostPort(f.addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--metrics-bind-address %q must be a loopback host:port", f.addr)
	}
	cf, err := localcluster.ReadClusterFile(f.clusterFile)
	if err != nil {
		return err
	}
	logger := klog.NewKlogr()
	ctrl.SetLogger(logger)
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = f.kubeconfig
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	rc.QPS, rc.Burst = 50, 100
	scheme := runtime.NewScheme()
	_ = corev1.AddToScheme(scheme)
	_ = coordinationv1.AddToScheme(scheme)
	_ = spillwayv1alpha1.AddToScheme(scheme)
	mgr, err := ctrl.NewManager(rc, ctrl.Options{
		Scheme: scheme, Logger: logger,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Client:                 client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&coordinationv1.Lease{}}}},
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	sim := simlet.New(mgr.GetClient(), cf.Pools, simlet.WithLogger(logger.WithName("simlet")),
		simlet.WithLeaseDuration(f.leaseDuration), simlet.WithRuntime(simlet.PortRuntime{LoadDelay: f.load}))
	if err := ctrl.NewControllerManagedBy(mgr).Named("simlet-pods").
		For(&corev1.Pod{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.(*corev1.Pod).Spec.NodeName != ""
		}))).Complete(sim); err != nil {
		return fmt.Errorf("creating pod controller: %w", err)
	}
	counts := map[string]int{}
	for i := range cf.Pools {
		counts[cf.Pools[i].Name] = localcluster.StaticNodes(&cf.Pools[i])
	}
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		if err := sim.RegisterStatic(ctx, counts); err != nil {
			return err
		}
		return sim.Run(ctx, f.grace)
	})); err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(crmetrics.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.Handle("/faults", sim.FaultHandler())
	mux.Handle("/faults/", sim.FaultHandler())
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return fmt.Errorf("listening on --metrics-bind-address: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	logger.Info("spillway-simlet started", "pools", len(cf.Pools), "address", f.addr)
	return mgr.Start(ctx)
}
