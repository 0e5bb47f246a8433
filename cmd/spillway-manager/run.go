package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/spillway-io/spillway/apis"
	"github.com/spillway-io/spillway/pkg/controllers/llmautoscaler"
	isvcbuild "github.com/spillway-io/spillway/pkg/inferenceservice"
)

// flags are the command line of spillway-manager.
type flags struct {
	kubeconfig              string
	metricsAddr             string
	probeAddr               string
	leaderElect             bool
	leaderElectionNamespace string
	domain                  string
	schedulerName           string
	gatewayURL              string
	llmInterval             time.Duration
	controllers             []string
	shutdownTimeout         time.Duration
}

func (f *flags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "Path to a kubeconfig (default: in-cluster config, then $KUBECONFIG, then ~/.kube/config).")
	fs.StringVar(&f.metricsAddr, "metrics-bind-address", "127.0.0.1:8080", `Address of the Prometheus /metrics endpoint ("0" turns it off).`)
	fs.StringVar(&f.probeAddr, "health-probe-bind-address", "127.0.0.1:8081", "Address of /healthz and /readyz.")
	fs.BoolVar(&f.leaderElect, "leader-elect", false, "Elect a leader so that only one of several managers acts.")
	fs.StringVar(&f.leaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader-election Lease (default: the in-cluster namespace).")
	fs.StringVar(&f.domain, "domain", isvcbuild.DefaultDomain, "Domain of service URLs: http://{name}-{namespace}.{domain}.")
	fs.StringVar(&f.schedulerName, "scheduler-name", "", `Scheduler of InferenceService replicas whose spec names none (e.g. "spillway-scheduler" when the ResourcePolicy plugin runs as a second scheduler; empty: the cluster's default scheduler).`)
	fs.StringVar(&f.gatewayURL, "gateway-url", "", "URL of the gateway's metrics (e.g. http://127.0.0.1:9090, /metrics added when no path), for the llm autoscaler's in-flight counts.")
	fs.DurationVar(&f.llmInterval, "llm-autoscaler-interval", llmautoscaler.DefaultInterval, "Tick of the llm autoscaler.")
	fs.StringSliceVar(&f.controllers, "controllers", []string{"*"}, `Controllers to run: "*" for all, "-name" to leave one out (known: `+strings.Join(controllerNames(), ", ")+`).`)
	fs.DurationVar(&f.shutdownTimeout, "graceful-shutdown-timeout", 30*time.Second, "How long running work may take to finish after SIGTERM.")
}

func controllerNames() []string {
	var out []string
	for _, c := range controllerSetups() {
		out = append(out, c.Name)
	}
	return out
}

// config is the validated configuration of a run.
type config struct {
	flags
	rest    *rest.Config
	enabled []controllerSetup
	opts    Options
}

// config validates the flags (every problem reported, each naming its flag)
// and loads the kubeconfig.
func (f *flags) config() (*config, error) {
	var errs []error
	for _, a := range []struct{ flag, addr string }{{"--metrics-bind-address", f.metricsAddr}, {"--health-probe-bind-address", f.probeAddr}} {
		if a.addr == "0" && a.flag == "--metrics-bind-address" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: want host:port, e.g. 127.0.0.1:8080", a.flag, a.addr))
		}
	}
	if msgs := validation.IsDNS1123Subdomain(f.domain); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("--domain %q: %s", f.domain, strings.Join(msgs, "; ")))
	}
	gw, err := gatewayMetricsURL(f.gatewayURL)
	if err != nil {
		errs = append(errs, err)
	}
	if f.llmInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("--llm-autoscaler-interval %s: want at least 100ms", f.llmInterval))
	}
	if f.shutdownTimeout < 0 {
		errs = append(errs, fmt.Errorf("--graceful-shutdown-timeout %s: must not be negative", f.shutdownTimeout))
	}
	enabled, err := selectControllers(f.controllers, controllerSetups())
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	restCfg, err := loadKubeconfig(f.kubeconfig)
	if err != nil {
		return nil, err
	}
	return &config{flags: *f, rest: restCfg, enabled: enabled, opts: Options{
		Domain: f.domain, SchedulerName: f.schedulerName, GatewayMetricsURL: gw, LLMInterval: f.llmInterval, Clock: clock.RealClock{},
	}}, nil
}

func gatewayMetricsURL(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("--gateway-url %q: want an http(s) URL such as http://127.0.0.1:9090/metrics", s)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/metrics"
	}
	return u.String(), nil
}

// selectControllers applies --controllers: "*" all, "name" one, "-name"
// not that one.
func selectControllers(sel []string, all []controllerSetup) ([]controllerSetup, error) {
	known := map[string]bool{}
	for _, c := range all {
		known[c.Name] = true
	}
	star := false
	on, off := map[string]bool{}, map[string]bool{}
	for _, s := range sel {
		s = strings.TrimSpace(s)
		switch {
		case s == "*":
			star = true
		case strings.HasPrefix(s, "-") && known[s[1:]]:
			off[s[1:]] = true
		case known[s]:
			on[s] = true
		default:
			return nil, fmt.Errorf("--controllers: unknown controller %q (known: %s)", s, strings.Join(slices.Sorted(maps.Keys(known)), ", "))
		}
	}
	var out []controllerSetup
	for _, c := range all {
		if (star || on[c.Name]) && !off[c.Name] {
			out = append(out, c)
		}
	}
	return out, nil
}

func loadKubeconfig(path string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if path != "" {
		rules.ExplicitPath = path
	} else if c, err := rest.InClusterConfig(); err == nil {
		return c, nil
	}
	c, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading the kubeconfig: %w", err)
	}
	return c, nil
}

// run starts the manager with the enabled controllers and blocks until ctx
// ends and the manager has stopped.
func run(ctx context.Context, cfg *config) error {
	logger := ctrl.Log.WithName("spillway-manager")
	shutdown := cfg.shutdownTimeout
	mgr, err := ctrl.NewManager(cfg.rest, ctrl.Options{
		Scheme:                  apis.NewScheme(),
		Metrics:                 metricsserver.Options{BindAddress: cfg.metricsAddr},
		HealthProbeBindAddress:  cfg.probeAddr,
		LeaderElection:          cfg.leaderElect,
		LeaderElectionID:        "spillway-manager.spillway.io",
		LeaderElectionNamespace: cfg.leaderElectionNamespace,
		GracefulShutdownTimeout: &shutdown,
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	for _, c := range cfg.enabled {
		if err := c.Setup(mgr, cfg.opts); err != nil {
			return fmt.Errorf("setting up controller %s: %w", c.Name, err)
		}
		logger.Info("Controller registered", "controller", c.Name)
	}
	logger.Info("Starting", "metrics", cfg.metricsAddr, "probes", cfg.probeAddr, "leaderElect", cfg.leaderElect,
		"domain", cfg.domain, "gatewayMetrics", cfg.opts.GatewayMetricsURL)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("running the manager: %w", err)
	}
	logger.Info("Stopped")
	return nil
}
