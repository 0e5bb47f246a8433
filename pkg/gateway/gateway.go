// Package gateway assembles spillway-gateway: the OpenAI request path
// (proxy), the admin endpoints (/healthz, /readyz, /metrics, /debug/inflight,
// /debug/routes), the engine-load scraper, and a graceful shutdown that stops
// accepting, reports not-ready, and lets streams in flight finish.
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/utils/clock"

	"github.com/spillway-io/spillway/pkg/gateway/auth"
	"github.com/spillway-io/spillway/pkg/gateway/h1"
	"github.com/spillway-io/spillway/pkg/gateway/hold"
	"github.com/spillway-io/spillway/pkg/gateway/metrics"
	"github.com/spillway-io/spillway/pkg/gateway/proxy"
	"github.com/spillway-io/spillway/pkg/gateway/routing"
	"github.com/spillway-io/spillway/pkg/gateway/scrape"
	"github.com/spillway-io/spillway/pkg/gateway/upstream"
	"github.com/spillway-io/spillway/pkg/gateway/wire"
)

// Options configure a Gateway.
type Options struct {
	// Domain of service hosts {name}-{namespace}.{domain}.
	Domain string
	// Proxy tunes the request path.
	Proxy proxy.Config
	// HoldTimeout is how long a request waits for a replica (default 60s).
	HoldTimeout time.Duration
	// HoldQueue bounds the held requests per service (default 1000).
	HoldQueue int
	// ScrapeInterval is the engines' metrics period (default 500ms; 0 < it <= 1s).
	ScrapeInterval time.Duration
	// Auth, when set, requires API keys.
	Auth *auth.Authenticator
	// Clock defaults to the real clock.
	Clock clock.WithTicker
	// Log is the logger.
	Log logr.Logger
	// Registry receives the metrics (default: a new one, with Go and process collectors).
	Registry *prometheus.Registry
	// Transport overrides the upstream transport.
	Transport http.RoundTripper
	// HTTPServer is the API's HTTP/1.1 server: ServerEventLoop (the
	// default), ServerGoroutines or ServerNetHTTP. Where h1's servers do
	// not run, net/http's serves.
	HTTPServer string
	// EventLoops is the number of event loops of ServerEventLoop (0:
	// GOMAXPROCS-1, at least one — a busy loop keeps its P, and the rest
	// of the process keeps one).
	EventLoops int
}

// The API's servers (Options.HTTPServer).
const (
	// ServerEventLoop: h1.Loop, event loops with the proxy's fast path
	// (about a third less CPU per request than ServerGoroutines, see
	// docs/gateway.md); what it leaves goes to h1.Server.
	ServerEventLoop = "event-loop"
	// ServerGoroutines: h1.Server, a goroutine per connection.
	ServerGoroutines = "goroutines"
	// ServerNetHTTP: net/http's server.
	ServerNetHTTP = "net/http"
)

// Gateway is the assembled server.
type Gateway struct {
	Router    *routing.Router
	Upstreams *upstream.Registry
	Metrics   *metrics.Metrics
	Proxy     *proxy.Gateway

	opts     Options
	registry *prometheus.Registry
	scraper  *scrape.Scraper
	draining atomic.Bool
}

// New assembles a gateway.
func New(o Options) *Gateway {
	if o.HoldTimeout <= 0 {
		o.HoldTimeout = 60 * time.Second
	}
	if o.HoldQueue <= 0 {
		o.HoldQueue = 1000
	}
	if o.ScrapeInterval <= 0 || o.ScrapeInterval > time.Second {
		o.ScrapeInterval = 500 * time.Millisecond
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	reg := o.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	g := &Gateway{
		Router:    routing.NewRouter(o.Domain),
		Upstreams: upstream.NewRegistry(),
		Metrics:   metrics.New(reg),
		opts:      o,
		registry:  reg,
	}
	opts := []proxy.Option{proxy.WithClock(o.Clock), proxy.WithLogger(o.Log.WithName("proxy"))}
	if o.Auth != nil {
		opts = append(opts, proxy.WithAuth(o.Auth))
	}
	if o.Transport != nil {
		opts = append(opts, proxy.WithTransport(o.Transport))
	}
	g.Proxy = proxy.New(o.Proxy, g.Router, g.Upstreams,
		hold.New(o.HoldQueue, o.HoldTimeout, hold.WithClock(o.Clock)), g.Metrics, opts...)
	g.scraper = &scrape.Scraper{
		Interval: o.ScrapeInterval,
		Timeout:  o.ScrapeInterval,
		Client:   &http.Client{Transport: proxy.NewTransport()},
		Clock:    o.Clock,
		Targets:  endpointsOf{g.Router},
		Store:    g.Upstreams,
		Log:      o.Log.WithName("scrape"),
	}
	return g
}

// endpointsOf lists the addresses in the current routing table.
type endpointsOf struct{ r *routing.Router }

func (e endpointsOf) Addresses() []string {
	var out []string
	for _, s := range e.r.Table().Services() {
		for _, ep := range s.Endpoints {
			out = append(out, ep.Address)
		}
	}
	return out
}

// Update replaces the routed services (from the Kubernetes watcher or a
// static file) and forgets replicas that are gone.
func (g *Gateway) Update(svcs []routing.Service) {
	g.Router.Update(svcs)
	keep := map[string]bool{}
	for _, s := range svcs {
		for _, ep := range s.Endpoints {
			keep[ep.Address] = true
		}
	}
	g.Upstreams.Retain(keep)
}

// APIHandler serves the OpenAI paths.
func (g *Gateway) APIHandler() http.Handler { return g.Proxy }

// AdminHandler serves /healthz, /readyz, /metrics, /debug/inflight,
// /debug/routes and /debug/pprof (keep the admin address private).
func (g *Gateway) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if g.draining.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(g.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /debug/inflight", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(g.Metrics.Report(g.opts.Clock.Now()))
	})
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /debug/routes", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(g.Router.Table().Services())
	})
	return mux
}

// httpServer is what Serve needs of net/http's and h1's servers.
type httpServer interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// apiServer serves the OpenAI paths: h1.Loop with the proxy's fast path,
// h1.Server (about 8 % less CPU per non-streamed request than net/http's
// server and a fifth less memory with 1,000 streams, see docs/gateway.md),
// or net/http's server — by Options.HTTPServer, and what runs here.
func (g *Gateway) apiServer(h http.Handler) httpServer {
	const (
		readHeader = 10 * time.Second
		idle       = 120 * time.Second
		maxHeader  = 64 << 10
	)
	log := g.opts.Log.WithName("http")
	if g.opts.HTTPServer == ServerNetHTTP || !h1.Supported() {
		return &http.Server{Handler: h, ReadHeaderTimeout: readHeader, IdleTimeout: idle, MaxHeaderBytes: maxHeader,
			ErrorLog: stdLogger(log)}
	}
	s := &h1.Server{Handler: h, ReadHeaderTimeout: readHeader, IdleTimeout: idle, MaxHeaderBytes: maxHeader,
		// The request path leaves these two bounds to the server (see proxy.serverBoundsIO).
		WriteTimeout: g.opts.Proxy.WriteTimeout, BodyReadTimeout: g.opts.Proxy.BodyReadTimeout, Log: log,
		ErrorBody: func(status int, msg string) (string, []byte) {
			return "application/json", wire.NewError(status, "invalid_http_request", msg).Marshal()
		}}
	if g.opts.HTTPServer == ServerGoroutines || !h1.LoopSupported() {
		return s
	}
	return &h1.Loop{Fast: g.Proxy, Server: s, Loops: g.opts.EventLoops}
}

// Serve runs the API on api and the admin endpoints on admin (nil: the admin
// paths are served on api too) until ctx ends, then drains: it reports
// not-ready, stops accepting, and waits up to drain for requests and streams
// in flight to finish before closing what is left.
func (g *Gateway) Serve(ctx context.Context, api, admin net.Listener, drain time.Duration) error {
	log := g.opts.Log
	apiHandler := g.APIHandler()
	if admin == nil {
		// The admin paths on the API's listener: a plain switch, not a
		// ServeMux (its pattern matching allocates on every request).
		adminH, api := g.AdminHandler(), apiHandler
		apiHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch p := r.URL.Path; {
			case p == "/healthz", p == "/readyz", p == "/metrics", strings.HasPrefix(p, "/debug/"):
				adminH.ServeHTTP(w, r)
			default:
				api.ServeHTTP(w, r)
			}
		})
	}
	servers := []httpServer{g.apiServer(apiHandler)}
	listeners := []net.Listener{api}
	if admin != nil {
		servers = append(servers, &http.Server{Handler: g.AdminHandler(), ReadHeaderTimeout: 10 * time.Second})
		listeners = append(listeners, admin)
	}
	scrapeCtx, stopScrape := context.WithCancel(context.WithoutCancel(ctx))
	defer stopScrape()
	go g.scraper.Run(scrapeCtx)

	errc := make(chan error, len(servers))
	for i, s := range servers {
		go func() {
			if err := s.Serve(listeners[i]); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
				return
			}
			errc <- nil
		}()
	}
	log.Info("gateway serving", "api", api.Addr().String(), "domain", g.opts.Domain)
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	g.draining.Store(true)
	log.Info("draining: no new connections, waiting for requests in flight", "timeout", drain)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
	defer cancel()
	var errs []error
	if serveErr != nil {
		errs = append(errs, serveErr)
	}
	if err := servers[0].Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("draining the API server: %w", err))
		_ = servers[0].Close()
	}
	for _, s := range servers[1:] {
		_ = s.Close()
	}
	log.Info("gateway stopped")
	return errors.Join(errs...)
}
