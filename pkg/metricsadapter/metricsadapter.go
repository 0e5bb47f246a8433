// Package metricsadapter is Spillway's custom-metrics adapter: it scrapes the
// vLLM metrics every inference pod serves and the DCGM GPU metrics every GPU
// node's exporter serves, keeps the newest values in memory, and serves them
// as custom.metrics.k8s.io (v1beta2 and v1beta1) through the API aggregation
// layer, so a plain autoscaling/v2 HPA can scale on `DCGM_CUSTOM_PROCESS_SM_UTIL`
// or `vllm_num_requests_waiting`. See docs/metrics-adapter.md.
//
// Run is the library entry point; cmd/spillway-metrics-adapter wraps it.
package metricsadapter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	basecmd "sigs.k8s.io/custom-metrics-apiserver/pkg/cmd"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/cmd/options"

	"github.com/spillway-io/spillway/pkg/metricsadapter/provider"
	"github.com/spillway-io/spillway/pkg/metricsadapter/scrape"
	"github.com/spillway-io/spillway/pkg/metricsadapter/store"
)

// Name is the adapter's name (API server name, logger name).
const Name = "spillway-metrics-adapter"

// Config configures the adapter.
type Config struct {
	// Kubeconfig is the cluster's kubeconfig, used to watch pods and nodes and
	// for delegated authentication/authorization; empty means in-cluster.
	Kubeconfig string
	// Server holds the aggregated API server's options (secure serving,
	// delegated authn/authz). DefaultConfig binds 127.0.0.1:6443.
	Server *options.CustomMetricsAdapterServerOptions
	// ServingDNSNames are added to the self-signed serving certificate, e.g.
	// the APIService's Service name <service>.<namespace>.svc, which the
	// aggregator verifies. Used when no certificate files are given.
	ServingDNSNames []string

	// ScrapeInterval is how often every target is scraped.
	ScrapeInterval time.Duration
	// ScrapeTimeout bounds one scrape.
	ScrapeTimeout time.Duration
	// ScrapeConcurrency bounds the scrapes in flight.
	ScrapeConcurrency int
	// Staleness is the age past which a value is no longer served.
	Staleness time.Duration
	// PodSelector chooses the pods whose /metrics are scraped (label selector,
	// empty = all running pods with an IP and a port).
	PodSelector string

	// HealthAddr serves /metrics, /healthz and /readyz over plain HTTP; empty
	// disables it.
	HealthAddr string
	// Registry receives the adapter's own metrics (nil: a new one with the Go
	// and process collectors).
	Registry *prometheus.Registry
	// Clock timestamps values and decides staleness (nil: the real clock).
	Clock clock.WithTicker
}

// DefaultConfig is the configuration the binary starts from.
func DefaultConfig() Config {
	srv := options.NewCustomMetricsAdapterServerOptions()
	srv.SecureServing.BindAddress = net.ParseIP("127.0.0.1")
	srv.SecureServing.BindPort = 6443
	srv.SecureServing.ServerCert.PairName = "apiserver"
	return Config{
		Server:            srv,
		ScrapeInterval:    5 * time.Second,
		ScrapeTimeout:     2 * time.Second,
		ScrapeConcurrency: 16,
		Staleness:         30 * time.Second,
		HealthAddr:        "127.0.0.1:8082",
	}
}

// AddFlags adds the adapter's flags and the API server's to fs.
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Kubeconfig, "kubeconfig", c.Kubeconfig, "Kubeconfig of the cluster (empty: in-cluster config).")
	fs.StringSliceVar(&c.ServingDNSNames, "serving-dns-names", c.ServingDNSNames, "Extra DNS names of the self-signed serving certificate, e.g. spillway-metrics-adapter.spillway-system.svc.")
	fs.DurationVar(&c.ScrapeInterval, "scrape-interval", c.ScrapeInterval, "How often every pod and node target is scraped.")
	fs.DurationVar(&c.ScrapeTimeout, "scrape-timeout", c.ScrapeTimeout, "Timeout of one scrape.")
	fs.IntVar(&c.ScrapeConcurrency, "scrape-concurrency", c.ScrapeConcurrency, "Scrapes in flight at most.")
	fs.DurationVar(&c.Staleness, "staleness", c.Staleness, "Values older than this are not served.")
	fs.StringVar(&c.PodSelector, "pod-selector", c.PodSelector, "Label selector of the pods to scrape (empty: every running pod with a port).")
	fs.StringVar(&c.HealthAddr, "health-addr", c.HealthAddr, "Plain-HTTP address of /metrics, /healthz and /readyz (empty: off).")
	if c.Server == nil {
		c.Server = DefaultConfig().Server
	}
	c.Server.AddFlags(fs)
}

// Validate reports the first wrong setting.
func (c *Config) Validate() error {
	var errs []error
	if c.ScrapeInterval <= 0 {
		errs = append(errs, fmt.Errorf("--scrape-interval must be positive, got %s", c.ScrapeInterval))
	}
	if c.ScrapeTimeout <= 0 || c.ScrapeTimeout > c.ScrapeInterval {
		errs = append(errs, fmt.Errorf("--scrape-timeout must be positive and at most --scrape-interval (%s), got %s", c.ScrapeInterval, c.ScrapeTimeout))
	}
	if c.ScrapeConcurrency < 1 {
		errs = append(errs, fmt.Errorf("--scrape-concurrency must be at least 1, got %d", c.ScrapeConcurrency))
	}
	if c.Staleness < c.ScrapeInterval {
		errs = append(errs, fmt.Errorf("--staleness (%s) must be at least --scrape-interval (%s)", c.Staleness, c.ScrapeInterval))
	}
	if _, err := labels.Parse(c.PodSelector); err != nil {
		errs = append(errs, fmt.Errorf("--pod-selector %q: %w", c.PodSelector, err))
	}
	if c.Server == nil {
		errs = append(errs, errors.New("server options are missing"))
	} else {
		errs = append(errs, c.Server.Validate()...)
	}
	return errors.Join(errs...)
}

// Run runs the adapter until ctx ends, then shuts the API server down
// (draining requests in flight) and stops scraping.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := klog.FromContext(ctx).WithName("metrics-adapter")
	// Everything Run starts stops with this context, also when the API
	// server fails on its own (port taken, bad certificate).
	ctx, cancel := context.WithCancel(klog.NewContext(ctx, log))
	defer cancel()
	clk := cfg.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	podSel, _ := labels.Parse(cfg.PodSelector) // validated

	srvOpts := cfg.Server
	if cfg.Kubeconfig != "" {
		if srvOpts.Authentication.RemoteKubeConfigFile == "" {
			srvOpts.Authentication.RemoteKubeConfigFile = cfg.Kubeconfig
		}
		if srvOpts.Authorization.RemoteKubeConfigFile == "" {
			srvOpts.Authorization.RemoteKubeConfigFile = cfg.Kubeconfig
		}
	}
	cleanup, err := servingCert(srvOpts, cfg.ServingDNSNames)
	defer cleanup()
	if err != nil {
		return err
	}

	base := &basecmd.AdapterBase{
		Name:                              Name,
		CustomMetricsAdapterServerOptions: srvOpts,
		RemoteKubeConfigFile:              cfg.Kubeconfig,
		FlagSet:                           pflag.NewFlagSet(Name, pflag.ContinueOnError),
	}
	factory, err := base.Informers()
	if err != nil {
		return fmt.Errorf("informers: %w", err)
	}
	pods := factory.Core().V1().Pods()
	nodes := factory.Core().V1().Nodes()
	podsSynced, nodesSynced := pods.Informer().HasSynced, nodes.Informer().HasSynced

	st := store.New(cfg.Staleness)
	objs := listerObjects{pods: pods.Lister(), nodes: nodes.Lister()}
	base.WithCustomMetrics(provider.New(st, objs, clk))
	server, err := base.Server()
	if err != nil {
		return fmt.Errorf("custom metrics API server: %w", err)
	}

	scraper := scrape.New(st, scrape.NewMetrics(reg),
		scrape.WithClock(clk), scrape.WithTimeout(cfg.ScrapeTimeout),
		scrape.WithConcurrency(cfg.ScrapeConcurrency), scrape.WithLogger(log.WithName("scrape")))
	lister := func() ([]scrape.Target, []error) { return objs.targets(podSel) }

	var ready atomic.Bool
	var wg sync.WaitGroup
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	wg.Go(func() {
		if !cache.WaitForCacheSync(ctx.Done(), podsSynced, nodesSynced) {
			return
		}
		log.Info("watching pods and nodes; scraping", "interval", cfg.ScrapeInterval, "staleness", cfg.Staleness, "podSelector", podSel.String())
		first := true
		scraper.Run(ctx, cfg.ScrapeInterval, func() ([]scrape.Target, []error) {
			if !first {
				ready.Store(true)
			}
			first = false
			return lister()
		})
	})

	var health *http.Server
	if cfg.HealthAddr != "" {
		health, err = serveHealth(cfg.HealthAddr, reg, &ready, log)
		if err != nil {
			return err
		}
	}

	log.Info("serving custom.metrics.k8s.io", "address", net.JoinHostPort(srvOpts.SecureServing.BindAddress.String(), fmt.Sprint(srvOpts.SecureServing.BindPort)))
	runErr := server.GenericAPIServer.PrepareRun().RunWithContext(ctx)
	cancel()
	if health != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = health.Shutdown(sctx)
	}
	wg.Wait()
	log.Info("stopped")
	return runErr
}

// servingCert writes a self-signed certificate carrying dnsNames into the
// certificate folder (a temporary one when none is set) unless certificate
// files are given, so the API server does not generate one without them.
func servingCert(o *options.CustomMetricsAdapterServerOptions, dnsNames []string) (func(), error) {
	noop := func() {}
	sc := &o.SecureServing.ServerCert
	if sc.CertKey.CertFile != "" || sc.CertKey.KeyFile != "" {
		return noop, nil
	}
	cleanup := noop
	if sc.CertDirectory == "" {
		dir, err := os.MkdirTemp("", Name+"-certs-")
		if err != nil {
			return noop, err
		}
		sc.CertDirectory = dir
		cleanup = func() { _ = os.RemoveAll(dir) }
	}
	if sc.PairName == "" {
		sc.PairName = "apiserver"
	}
	if err := os.MkdirAll(sc.CertDirectory, 0o700); err != nil {
		return cleanup, err
	}
	if err := o.SecureServing.MaybeDefaultWithSelfSignedCerts("localhost", dnsNames, []net.IP{net.ParseIP("127.0.0.1")}); err != nil {
		return cleanup, fmt.Errorf("self-signed serving certificate: %w", err)
	}
	return cleanup, nil
}

// ServingCertFile is where Run writes (or finds) the serving certificate,
// PEM with its CA: the APIService's caBundle.
func ServingCertFile(o *options.CustomMetricsAdapterServerOptions) string {
	sc := o.SecureServing.ServerCert
	if sc.CertKey.CertFile != "" {
		return sc.CertKey.CertFile
	}
	return filepath.Join(sc.CertDirectory, sc.PairName+".crt")
}

func serveHealth(addr string, reg *prometheus.Registry, ready *atomic.Bool, log klog.Logger) (*http.Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("health/metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready: caches not synced or first scrape round not done", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(err, "health/metrics server")
		}
	}()
	log.Info("serving /metrics, /healthz, /readyz", "address", l.Addr().String())
	return srv, nil
}

// listerObjects reads pods and nodes from informer caches.
type listerObjects struct {
	pods  podLister
	nodes nodeLister
}

type podLister interface {
	List(selector labels.Selector) ([]*corev1.Pod, error)
	Pods(namespace string) corev1listers.PodNamespaceLister
}

type nodeLister interface {
	List(selector labels.Selector) ([]*corev1.Node, error)
}

func (o listerObjects) Pods(namespace string, sel labels.Selector) ([]*corev1.Pod, error) {
	return o.pods.Pods(namespace).List(sel)
}

func (o listerObjects) Nodes(sel labels.Selector) ([]*corev1.Node, error) { return o.nodes.List(sel) }

// targets lists the scrape targets: the selected pods and every node that
// publishes a DCGM endpoint.
func (o listerObjects) targets(podSel labels.Selector) ([]scrape.Target, []error) {
	var out []scrape.Target
	var errs []error
	pods, err := o.pods.List(podSel)
	if err != nil {
		errs = append(errs, err)
	}
	for _, p := range pods {
		t, ok, err := scrape.PodTarget(p)
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			out = append(out, t)
		}
	}
	nodes, err := o.nodes.List(labels.Everything())
	if err != nil {
		errs = append(errs, err)
	}
	for _, n := range nodes {
		t, ok, err := scrape.NodeTarget(n)
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			out = append(out, t)
		}
	}
	return out, errs
}
