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

	"github.com/go-logr/logr"
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
	"github.com/spillway-io/spillway/pkg/engine/enginesim"
	"github.com/spillway-io/spillway/pkg/localcluster"
	"github.com/spillway-io/spillway/pkg/simlet"
)

type flags struct {
	kubeconfig, clusterFile, addr string
	leaseDuration, grace, load    time.Duration
	// runtime is "engine" (vLLM pods run the engine simulator) or "port".
	runtime             string
	modelParams         float64
	seed                int64
	backOff, backOffMax time.Duration
}

// envDefault returns $SPILLWAY_SIMLET_<name> or def.
func envDefault(name, def string) string {
	if v, ok := os.LookupEnv("SPILLWAY_SIMLET_" + name); ok {
		return v
	}
	return def
}

func main() {
	var f flags
	fs := flag.NewFlagSet("spillway-simlet", flag.ContinueOnError)
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (default $KUBECONFIG)")
	fs.StringVar(&f.clusterFile, "cluster-file", "config/clusters/default.yaml", "cluster file listing the NodePools")
	fs.StringVar(&f.addr, "metrics-bind-address", "127.0.0.1:10361", "address of /metrics, /healthz and /faults (loopback only)")
	fs.DurationVar(&f.leaseDuration, "lease-duration", 40*time.Second, "node Lease duration; renewed every quarter of it")
	fs.DurationVar(&f.grace, "shutdown-grace", 30*time.Second, "how long running pods may finish their work on SIGTERM")
	fs.DurationVar(&f.load, "load-delay", 3*time.Second, "simulated model-load time of a pod (engine start-up delay; pod annotation "+
		simlet.AnnotationLoadDelay+" overrides it) [SPILLWAY_SIMLET_LOAD_DELAY]")
	fs.StringVar(&f.runtime, "runtime", "engine", `pod runtime: "engine" (vLLM command lines run the engine simulator, other pods `+
		`answer /health on their ports) or "port" (every pod only answers /health and /metrics) [SPILLWAY_SIMLET_RUNTIME]`)
	fs.Float64Var(&f.modelParams, "sim-model-params", 7, "simulated model size in billions of parameters [SPILLWAY_SIMLET_MODEL_PARAMS]")
	fs.Int64Var(&f.seed, "sim-seed", 0, "seed of the engines' outputs for requests without a seed [SPILLWAY_SIMLET_SEED]")
	fs.DurationVar(&f.backOff, "restart-backoff", 10*time.Second, "crash-loop back-off of exited containers: first delay, doubling")
	fs.DurationVar(&f.backOffMax, "restart-backoff-max", 5*time.Minute, "longest crash-loop back-off")
	klog.InitFlags(fs)
	// Environment first, flags override.
	for _, e := range []struct{ env, flag string }{{"LOAD_DELAY", "load-delay"}, {"RUNTIME", "runtime"}, {"MODEL_PARAMS", "sim-model-params"}, {"SEED", "sim-seed"}} {
		if v := envDefault(e.env, ""); v != "" {
			if err := fs.Set(e.flag, v); err != nil {
				fmt.Fprintf(os.Stderr, "spillway-simlet: SPILLWAY_SIMLET_%s=%q: %v\n", e.env, v, err)
				os.Exit(2)
			}
		}
	}
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
	rt, err := podRuntime(f)
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
		simlet.WithLeaseDuration(f.leaseDuration), simlet.WithRuntime(withLogger(rt, logger.WithName("engine"))),
		simlet.WithRestartBackOff(f.backOff, f.backOffMax), simlet.WithFreeAddresses())
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

// podRuntime builds the pod runtime the flags ask for.
func podRuntime(f flags) (simlet.Runtime, error) {
	if f.load < 0 {
		return nil, fmt.Errorf("--load-delay %s must not be negative", f.load)
	}
	if f.backOff < 0 || f.backOffMax < f.backOff {
		return nil, fmt.Errorf("--restart-backoff %s must not be negative nor above --restart-backoff-max %s", f.backOff, f.backOffMax)
	}
	port := simlet.PortRuntime{LoadDelay: f.load}
	switch f.runtime {
	case "port":
		return port, nil
	case "engine", "":
		s := enginesim.DefaultSettings()
		s.StartupDelay, s.ModelParamsBillions, s.Seed = f.load, f.modelParams, f.seed
		if !(f.modelParams > 0 && f.modelParams <= 1000) {
			return nil, fmt.Errorf("--sim-model-params %v must be in (0, 1000] billions", f.modelParams)
		}
		return simlet.EngineRuntime{Settings: s, Fallback: port}, nil
	}
	return nil, fmt.Errorf(`--runtime %q: want "engine" or "port"`, f.runtime)
}

func withLogger(rt simlet.Runtime, l logr.Logger) simlet.Runtime {
	if e, ok := rt.(simlet.EngineRuntime); ok {
		e.Logger = l
		return e
	}
	return rt
}
