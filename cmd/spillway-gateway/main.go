// Command spillway-gateway is Spillway's OpenAI-compatible front door: it
// routes requests to InferenceServices by Host or model, balances them over
// ready replicas with pool preference, holds them while replicas start, and
// streams answers. See docs/gateway.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/spillway-io/spillway/apis"
	"github.com/spillway-io/spillway/internal/gctune"
	"github.com/spillway-io/spillway/pkg/gateway"
	"github.com/spillway-io/spillway/pkg/gateway/auth"
	"github.com/spillway-io/spillway/pkg/gateway/endpoints"
	"github.com/spillway-io/spillway/pkg/gateway/outlier"
	"github.com/spillway-io/spillway/pkg/gateway/proxy"
	"github.com/spillway-io/spillway/pkg/gateway/routing"
)

type flags struct {
	listen, adminListen   string
	domain                string
	kubeconfig, namespace string
	staticConfig          string
	endpointsFrom         string
	keysFile, keysSecret  string
	holdTimeout           time.Duration
	holdQueue             int
	maxBody               int64
	maxAttempts           int
	requestTimeout        time.Duration
	writeTimeout          time.Duration
	scrapeInterval        time.Duration
	drainTimeout          time.Duration
	ejectAfter            int
	ejectFor              time.Duration
	seed                  uint64
	keysRefresh           time.Duration
	retryAfter            int
	prefixBytes           int
	httpServer            string
	eventLoops            int
	gcHeadroom            string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func newCommand() *cobra.Command {
	f := &flags{}
	cmd := &cobra.Command{
		Use:   "spillway-gateway",
		Short: "OpenAI-compatible gateway for Spillway's InferenceServices",
		Long: `spillway-gateway routes OpenAI requests (/v1/chat/completions, /v1/completions,
/v1/embeddings, /v1/models) to InferenceServices: by Host {name}-{namespace}.{domain}, or by
the request's model on any other host. Replicas come from EndpointSlices (ready only) and are
balanced by least outstanding requests with the engines' queue and KV use, preferring the
cheapest node pool until it saturates. Requests for a service without a ready replica are held.

Services come from the cluster (--kubeconfig or in-cluster config) or from --static-config, a
JSON list of {"namespace","name","model","endpoints":[{"address","pool","poolRank"}],"policy"}.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          func(cmd *cobra.Command, _ []string) error { return run(cmd.Context(), f) },
	}
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w\n%s", err, c.UsageString())
	})
	fs := cmd.Flags()
	fs.StringVar(&f.listen, "listen", "127.0.0.1:8080", "address of the OpenAI API (use :8080 in a cluster)")
	fs.StringVar(&f.adminListen, "admin-listen", "127.0.0.1:9090", `address of /healthz, /readyz, /metrics, /debug/inflight ("" serves them on --listen)`)
	fs.StringVar(&f.domain, "domain", "example.com", "domain of service hosts {name}-{namespace}.{domain}")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster config, then $KUBECONFIG)")
	fs.StringVar(&f.namespace, "namespace", "", "watch only this namespace (default all)")
	fs.StringVar(&f.endpointsFrom, "endpoints-from", "endpointslices", "where replicas come from: endpointslices, or pods (ready pods' IPs; for local clusters on loopback addresses)")
	fs.StringVar(&f.staticConfig, "static-config", "", "JSON file of services to route, instead of watching a cluster")
	fs.StringVar(&f.keysFile, "api-keys-file", "", `require API keys listed in this file ("KEY [RPS [BURST]]" per line); re-read when it changes`)
	fs.StringVar(&f.keysSecret, "api-keys-secret", "", "require API keys from this Secret (namespace/name; every value in key-file format)")
	fs.DurationVar(&f.keysRefresh, "api-keys-refresh", 10*time.Second, "how often the key file or Secret is re-read")
	fs.DurationVar(&f.holdTimeout, "hold-timeout", 60*time.Second, "how long a request waits for a replica of a service that has none ready")
	fs.IntVar(&f.holdQueue, "hold-queue", 1000, "most requests held per service (429 beyond)")
	fs.IntVar(&f.retryAfter, "retry-after", 5, "Retry-After seconds of a 503 after holding")
	fs.Int64Var(&f.maxBody, "max-body-bytes", 8<<20, "largest request body (413 beyond)")
	fs.IntVar(&f.maxAttempts, "max-attempts", 3, "replicas tried before the first byte of an answer")
	fs.DurationVar(&f.requestTimeout, "request-timeout", 10*time.Minute, "end-to-end limit of a request when its service sets no timeoutSeconds")
	fs.DurationVar(&f.writeTimeout, "client-write-timeout", 30*time.Second, "a client not reading for this long is cut off")
	fs.DurationVar(&f.scrapeInterval, "scrape-interval", 500*time.Millisecond, "period of reading the engines' /metrics (at most 1s)")
	fs.DurationVar(&f.drainTimeout, "drain-timeout", 5*time.Minute, "on SIGTERM, how long streams in flight may take to finish")
	fs.IntVar(&f.ejectAfter, "outlier-consecutive-failures", 3, "failures in a row that eject a replica")
	fs.DurationVar(&f.ejectFor, "outlier-ejection", 10*time.Second, "first ejection length (grows with each ejection)")
	fs.IntVar(&f.prefixBytes, "affinity-prefix-bytes", 256, "prompt bytes hashed for prefix affinity")
	fs.Uint64Var(&f.seed, "seed", 0, "seed of the balancer's random choices (0: from the clock)")
	fs.StringVar(&f.gcHeadroom, "gc-headroom", "32Mi", `least growth of the heap between garbage collections: GOGC is raised while the live heap is small (0 or an explicit GOGC: the runtime's own)`)
	fs.IntVar(&f.eventLoops, "event-loops", 0, "event loops of --http-server=event-loop (0: GOMAXPROCS-1, at least 1; a busy loop keeps a CPU, other work then runs between its requests — GOMAXPROCS suits a gateway whose CPUs are its own)")
	fs.StringVar(&f.httpServer, "http-server", gateway.ServerEventLoop, "HTTP/1.1 server of the API: event-loop (event loops with a fast path for inference requests), goroutines (a goroutine per connection) or net/http; the first two run on Linux, elsewhere net/http serves")
	kfs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(kfs)
	fs.AddGoFlagSet(kfs)
	return cmd
}

func validate(f *flags) error {
	var errs []error
	if f.scrapeInterval <= 0 || f.scrapeInterval > time.Second {
		errs = append(errs, fmt.Errorf("--scrape-interval must be in (0, 1s], got %s", f.scrapeInterval))
	}
	if f.holdQueue < 1 || f.maxAttempts < 1 || f.maxBody < 1 || f.ejectAfter < 1 || f.retryAfter < 1 || f.prefixBytes < 1 {
		errs = append(errs, errors.New("--hold-queue, --max-attempts, --max-body-bytes, --outlier-consecutive-failures, --retry-after and --affinity-prefix-bytes must be positive"))
	}
	if f.holdTimeout <= 0 || f.requestTimeout <= 0 || f.writeTimeout <= 0 || f.drainTimeout <= 0 {
		errs = append(errs, errors.New("--hold-timeout, --request-timeout, --client-write-timeout and --drain-timeout must be positive"))
	}
	if f.keysFile != "" && f.keysSecret != "" {
		errs = append(errs, errors.New("--api-keys-file and --api-keys-secret are exclusive"))
	}
	if f.keysSecret != "" && !strings.Contains(f.keysSecret, "/") {
		errs = append(errs, fmt.Errorf("--api-keys-secret must be namespace/name, got %q", f.keysSecret))
	}
	if f.endpointsFrom != "endpointslices" && f.endpointsFrom != "pods" {
		errs = append(errs, fmt.Errorf("--endpoints-from must be endpointslices or pods, got %q", f.endpointsFrom))
	}
	if f.httpServer != gateway.ServerEventLoop && f.httpServer != gateway.ServerGoroutines && f.httpServer != gateway.ServerNetHTTP {
		errs = append(errs, fmt.Errorf("--http-server must be event-loop, goroutines or net/http, got %q", f.httpServer))
	}
	if f.eventLoops < 0 {
		errs = append(errs, fmt.Errorf("--event-loops must be 0 or more, got %d", f.eventLoops))
	}
	if f.domain == "" {
		errs = append(errs, errors.New("--domain must not be empty"))
	}
	if q, err := resource.ParseQuantity(f.gcHeadroom); err != nil || q.Sign() < 0 {
		errs = append(errs, fmt.Errorf("--gc-headroom must be a size such as 32Mi or 0, got %q", f.gcHeadroom))
	}
	return errors.Join(errs...)
}

func run(ctx context.Context, f *flags) error {
	if err := validate(f); err != nil {
		return fmt.Errorf("%w\nrun 'spillway-gateway --help' for usage", err)
	}
	if f.seed == 0 {
		f.seed = uint64(time.Now().UnixNano())
	}
	log := klog.NewKlogr().WithName("gateway")
	ctx = logr.NewContext(ctx, log)
	if headroom := resource.MustParse(f.gcHeadroom); headroom.Sign() > 0 && os.Getenv("GOGC") == "" {
		tuneCtx, stopTuning := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { (&gctune.Tuner{Headroom: uint64(headroom.Value()), Log: log.WithName("gc")}).Run(tuneCtx) })
		defer func() { stopTuning(); wg.Wait() }() // the runtime's percent is back when run returns
	}

	var restCfg *rest.Config
	needCluster := f.staticConfig == "" || f.keysSecret != ""
	if needCluster {
		var err error
		if restCfg, err = kubeConfig(f.kubeconfig); err != nil {
			return err
		}
	}

	var authn *auth.Authenticator
	var loadKeys auth.Source
	switch {
	case f.keysFile != "":
		loadKeys = auth.FileSource(f.keysFile)
	case f.keysSecret != "":
		cs, err := kubernetes.NewForConfig(restCfg)
		if err != nil {
			return err
		}
		ns, name, _ := strings.Cut(f.keysSecret, "/")
		loadKeys = auth.SecretSource(cs, ns, name)
	}
	if loadKeys != nil {
		keys, err := loadKeys(ctx)
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			return errors.New("API keys are required but none were found")
		}
		authn = auth.New(keys)
		go auth.Refresh(ctx, log, f.keysRefresh, authn, loadKeys)
	}

	gw := gateway.New(gateway.Options{
		Domain: f.domain,
		Proxy: proxy.Config{
			MaxBodyBytes: f.maxBody, MaxAttempts: f.maxAttempts, Timeout: f.requestTimeout,
			WriteTimeout: f.writeTimeout, RetryAfter: f.retryAfter, PrefixBytes: f.prefixBytes, Seed: f.seed,
			Outlier: outlier.Policy{Consecutive: f.ejectAfter, BaseEjection: f.ejectFor},
		},
		HoldTimeout:    f.holdTimeout,
		HoldQueue:      f.holdQueue,
		ScrapeInterval: f.scrapeInterval,
		Auth:           authn,
		Log:            log,
		HTTPServer:     f.httpServer,
		EventLoops:     f.eventLoops,
	})

	watchErr := make(chan error, 1)
	if f.staticConfig != "" {
		svcs, err := readStatic(f.staticConfig)
		if err != nil {
			return err
		}
		gw.Update(svcs)
		log.Info("routing static services", "file", f.staticConfig, "services", len(svcs))
	} else {
		w, err := endpoints.NewWatcher(restCfg, apis.NewScheme(), f.namespace, gw, log.WithName("endpoints"))
		if err != nil {
			return err
		}
		w.FromPods = f.endpointsFrom == "pods"
		go func() { watchErr <- w.Run(ctx) }()
	}

	api, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("listening on --listen %s: %w", f.listen, err)
	}
	var admin net.Listener
	if f.adminListen != "" {
		if admin, err = net.Listen("tcp", f.adminListen); err != nil {
			_ = api.Close()
			return fmt.Errorf("listening on --admin-listen %s: %w", f.adminListen, err)
		}
	}
	serveCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case err := <-watchErr:
			if err != nil {
				log.Error(err, "watching the cluster failed; stopping")
			}
			cancel()
		case <-serveCtx.Done():
		}
	}()
	return gw.Serve(serveCtx, api, admin, f.drainTimeout)
}

func kubeConfig(path string) (*rest.Config, error) {
	if path == "" {
		if c, err := rest.InClusterConfig(); err == nil {
			return c, nil
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = path
	c, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading the cluster config (use --kubeconfig, or --static-config to run without a cluster): %w", err)
	}
	return c, nil
}

func readStatic(path string) ([]routing.Service, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading --static-config: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	var svcs []routing.Service
	if err := dec.Decode(&svcs); err != nil {
		return nil, fmt.Errorf("parsing --static-config %s: %w", path, err)
	}
	for i, s := range svcs {
		if s.Name == "" || s.Namespace == "" {
			return nil, fmt.Errorf("--static-config %s: service %d needs a namespace and a name", path, i)
		}
		if s.Model == "" {
			svcs[i].Model = s.Name
		}
	}
	return svcs, nil
}
