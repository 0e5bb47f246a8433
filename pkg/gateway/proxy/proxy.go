// Package proxy is the gateway's request path: it checks the API key, routes
// the request to an InferenceService, holds it while the service has no ready
// replica, picks a replica with the balancer, forwards the request and passes
// the answer back — server-sent events flushed one by one. A failure before
// the first byte of the answer is retried on another replica (bounded); after
// it, a stream ends with an error event. Replicas that keep failing are
// ejected for a while.
package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/spillway-io/spillway/pkg/gateway/auth"
	"github.com/spillway-io/spillway/pkg/gateway/balancer"
	"github.com/spillway-io/spillway/pkg/gateway/h1"
	"github.com/spillway-io/spillway/pkg/gateway/hold"
	"github.com/spillway-io/spillway/pkg/gateway/metrics"
	"github.com/spillway-io/spillway/pkg/gateway/outlier"
	"github.com/spillway-io/spillway/pkg/gateway/routing"
	"github.com/spillway-io/spillway/pkg/gateway/upstream"
	"github.com/spillway-io/spillway/pkg/gateway/wire"
)

// Config tunes the request path. Zero fields take the defaults below.
type Config struct {
	// MaxBodyBytes bounds a request body (413 beyond). Default 8 MiB.
	MaxBodyBytes int64
	// MaxAttempts bounds the replicas tried before the first byte. Default 3.
	MaxAttempts int
	// Timeout bounds a request end to end when its service sets none. Default 10m.
	Timeout time.Duration
	// BodyReadTimeout bounds reading the request body. Default 30s.
	BodyReadTimeout time.Duration
	// WriteTimeout bounds one write to the client; a client that reads slower
	// is cut off and its upstream request cancelled. Default 30s.
	WriteTimeout time.Duration
	// LoadMaxAge: scraped engine load older than this is ignored. Default 3s.
	LoadMaxAge time.Duration
	// PrefixBytes is the length of the prompt prefix used for affinity. Default 256.
	PrefixBytes int
	// RetryAfter is the Retry-After (seconds) of a 503 after holding. Default 5.
	RetryAfter int
	// Outlier configures ejection of failing replicas.
	Outlier outlier.Policy
	// Seed seeds the balancer's random source.
	Seed uint64
}

func (c Config) withDefaults() Config {
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 8 << 20
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 3
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Minute
	}
	if c.BodyReadTimeout <= 0 {
		c.BodyReadTimeout = 30 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.LoadMaxAge <= 0 {
		c.LoadMaxAge = 3 * time.Second
	}
	if c.PrefixBytes <= 0 {
		c.PrefixBytes = 256
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = 5
	}
	return c
}

// Gateway serves the OpenAI paths.
type Gateway struct {
	cfg       Config
	router    *routing.Router
	upstreams *upstream.Registry
	holder    *hold.Holder
	metrics   *metrics.Metrics
	auth      *auth.Authenticator
	transport http.RoundTripper
	skip      func(string) bool // skipField, made once
	clock     clock.PassiveClock
	log       logr.Logger

	rndMu sync.Mutex
	rnd   *rand.Rand
	seq   atomic.Uint64
}

// Option configures a Gateway.
type Option func(*Gateway)

// WithAuth requires API keys.
func WithAuth(a *auth.Authenticator) Option { return func(g *Gateway) { g.auth = a } }

// WithTransport sets the upstream transport (default: an h1.Transport).
func WithTransport(t http.RoundTripper) Option { return func(g *Gateway) { g.transport = t } }

// WithClock sets the clock used for latency figures and ejection.
func WithClock(c clock.PassiveClock) Option { return func(g *Gateway) { g.clock = c } }

// WithLogger sets the logger.
func WithLogger(l logr.Logger) Option { return func(g *Gateway) { g.log = l } }

// New builds the request path.
func New(cfg Config, router *routing.Router, ups *upstream.Registry, holder *hold.Holder, m *metrics.Metrics, opts ...Option) *Gateway {
	cfg = cfg.withDefaults()
	g := &Gateway{
		cfg: cfg, router: router, upstreams: ups, holder: holder, metrics: m,
		clock: clock.RealClock{}, log: logr.Discard(),
		rnd: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
	}
	for _, o := range opts {
		o(g)
	}
	if g.transport == nil {
		g.transport = &h1.Transport{}
	}
	g.skip = g.skipField
	return g
}

// NewTransport is a net/http transport for the engines (the scraper's):
// keep-alive pools sized for many engines, short dial timeout, no
// transparent compression.
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil, // never through an environment proxy
		DialContext:           (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          4096,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ExpectContinueTimeout: 0,
	}
}

// ServeHTTP implements the OpenAI paths.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := g.clock.Now()
	switch r.URL.Path {
	case wire.PathModels:
		if r.Method != http.MethodGet {
			g.methodNotAllowed(w, r, http.MethodGet)
			return
		}
		if !g.authorize(w, r, start) {
			return
		}
		g.serveModels(w, r)
	case wire.PathChatCompletions, wire.PathCompletions, wire.PathEmbeddings:
		if r.Method != http.MethodPost {
			g.methodNotAllowed(w, r, http.MethodPost)
			return
		}
		if !g.authorize(w, r, start) {
			return
		}
		g.serveInference(w, r, start)
	default:
		wire.WriteError(w, http.StatusNotFound, "unknown_url",
			fmt.Sprintf("Unknown request URL: %s %s. The gateway serves %s, %s, %s and %s.", r.Method, r.URL.Path,
				wire.PathChatCompletions, wire.PathCompletions, wire.PathEmbeddings, wire.PathModels), 0)
	}
}

func (g *Gateway) methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	wire.WriteError(w, http.StatusMethodNotAllowed, "method_not_allowed",
		fmt.Sprintf("Method %s is not allowed on %s; use %s.", r.Method, r.URL.Path, allow), 0)
}

func (g *Gateway) authorize(w http.ResponseWriter, r *http.Request, now time.Time) bool {
	if g.auth == nil {
		return true
	}
	_, err := g.auth.Check(r.Header.Get("Authorization"), now)
	switch {
	case err == nil:
		return true
	case errors.Is(err, auth.ErrRateLimited):
		wire.WriteError(w, http.StatusTooManyRequests, "rate_limit_exceeded", err.Error(), 1)
	default:
		wire.WriteError(w, http.StatusUnauthorized, "invalid_api_key", err.Error(), 0)
	}
	return false
}

type model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// serveModels answers /v1/models from the routing table: the service's model
// on its host, every service's model on the bare host.
func (g *Gateway) serveModels(w http.ResponseWriter, r *http.Request) {
	t := g.router.Table()
	svc, err := t.ByHost(r.Host)
	if err != nil {
		wire.WriteError(w, http.StatusNotFound, "host_not_found", err.Error(), 0)
		return
	}
	svcs := t.Services()
	if svc != nil {
		svcs = []*routing.Service{svc}
	}
	list := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list", Data: []model{}}
	seen := map[string]bool{}
	for _, s := range svcs {
		if seen[s.Model] {
			continue
		}
		seen[s.Model] = true
		var created int64
		if !s.Created.IsZero() {
			created = s.Created.Unix()
		}
		list.Data = append(list.Data, model{ID: s.Model, Object: "model", Created: created, OwnedBy: s.Namespace})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(list)
}

// request is one inference request on its way.
type request struct {
	w       http.ResponseWriter
	r       *http.Request
	in      *h1.Incoming // on the loop, instead of w and r
	body    []byte
	parsed  wire.Request
	svc     *routing.Service
	start   time.Time
	ready   time.Time // when it could be forwarded (after holding, if it was held)
	noRetry bool
	pm      *metrics.PoolMetrics // of the replica being tried
	// deadline ends the request (the service's timeout, or the gateway's).
	deadline time.Time
	out      h1.Request  // to the replica being tried (outgoing)
	extra    [3]h1.Field // out's Extra
}

func (g *Gateway) serveInference(w http.ResponseWriter, r *http.Request, start time.Time) {
	table := g.router.Table()
	svc, err := table.ByHost(r.Host)
	if err != nil {
		wire.WriteError(w, http.StatusNotFound, "host_not_found", err.Error(), 0)
		return
	}
	body, status, err := g.readBody(w, r)
	if err != nil {
		code := "invalid_body"
		if status == http.StatusRequestEntityTooLarge {
			code = "request_too_large"
		}
		wire.WriteError(w, status, code, err.Error(), 0)
		return
	}
	parsed, err := wire.Parse(body, g.cfg.PrefixBytes)
	if err != nil {
		wire.WriteError(w, http.StatusBadRequest, "invalid_json", err.Error(), 0)
		return
	}
	if svc == nil {
		if svc, err = table.ByModel(parsed.Model); err != nil {
			wire.WriteError(w, http.StatusNotFound, "model_not_found", err.Error(), 0)
			return
		}
	}
	inNS, inName := svc.Namespace, svc.Name
	g.metrics.Enter(inNS, inName)
	defer g.metrics.Leave(inNS, inName)

	ready := start // when the request can go: now, or after holding
	if len(svc.Endpoints) == 0 {
		key := svc.Key()
		endHold := g.metrics.BeginHold(svc.Namespace, svc.Name)
		err := g.holder.Wait(r.Context(), key, func() bool {
			s := g.router.Table().ByKey(key)
			return s != nil && len(s.Endpoints) > 0
		}, g.router.Changed)
		endHold()
		switch {
		case errors.Is(err, hold.ErrQueueFull):
			g.finish(svc, "", http.StatusTooManyRequests, "queue_full", start)
			wire.WriteError(w, http.StatusTooManyRequests, "queue_full", err.Error(), g.cfg.RetryAfter)
			return
		case errors.Is(err, hold.ErrTimeout):
			g.finish(svc, "", http.StatusServiceUnavailable, "no_replica", start)
			wire.WriteError(w, http.StatusServiceUnavailable, "no_ready_replica",
				fmt.Sprintf("%v (waited %s); the service is scaling up, retry later", err, g.holder.Timeout()), g.cfg.RetryAfter)
			return
		case err != nil:
			g.finish(svc, "", 499, "client_gone", start)
			return
		}
		if svc = g.router.Table().ByKey(key); svc == nil {
			wire.WriteError(w, http.StatusNotFound, "model_not_found", "the service was deleted while the request waited", 0)
			return
		}
		ready = g.clock.Now()
	}

	timeout := svc.Timeout
	if timeout <= 0 {
		timeout = g.cfg.Timeout
	}
	// The end-to-end bound is a deadline, not a context: with h1's transport
	// it becomes the engine connection's deadline (no timer and no context
	// per request); other transports get a context with it.
	deadline := time.Now().Add(timeout)
	g.forward(r.Context(), &request{w: w, r: r, body: body, parsed: parsed, svc: svc, start: start, ready: ready, deadline: deadline})
}

// expired reports whether the request's end-to-end deadline has passed.
func (r *request) expired() bool { return !time.Now().Before(r.deadline) }

// readBody reads the body within the size and time limits.
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request) ([]byte, int, error) {
	if r.ContentLength > g.cfg.MaxBodyBytes {
		return nil, http.StatusRequestEntityTooLarge,
			fmt.Errorf("the request body (%d bytes) is larger than the limit of %d bytes", r.ContentLength, g.cfg.MaxBodyBytes)
	}
	if !serverBoundsIO(w) {
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(g.clock.Now().Add(g.cfg.BodyReadTimeout))
		defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	}
	if n := r.ContentLength; n >= 0 && n <= 1<<20 {
		// The common case: a declared length (the server's framing stops
		// there), read into one exact buffer.
		body := make([]byte, n)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("reading the request body: %w", err)
		}
		return body, 0, nil
	}
	size := r.ContentLength
	if size < 0 || size > 1<<20 {
		size = 512
	}
	buf := bytes.NewBuffer(make([]byte, 0, size+1))
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, g.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, http.StatusRequestEntityTooLarge,
				fmt.Errorf("the request body is larger than the limit of %d bytes", g.cfg.MaxBodyBytes)
		}
		return nil, http.StatusBadRequest, fmt.Errorf("reading the request body: %w", err)
	}
	return buf.Bytes(), 0, nil
}

// finish records a finished request.
func (g *Gateway) finish(svc *routing.Service, pool string, code int, reason string, start time.Time) {
	g.finishPM(svc, g.metrics.Pool(svc.Namespace, svc.Name, pool), pool, code, reason, start)
}

// finishPM is finish with the pool's metrics at hand.
func (g *Gateway) finishPM(svc *routing.Service, pm *metrics.PoolMetrics, pool string, code int, reason string, start time.Time) {
	g.finishPMAt(svc, pm, pool, code, reason, start, g.clock.Now())
}

// finishPMAt is finishPM with the end time at hand (one clock read less).
func (g *Gateway) finishPMAt(svc *routing.Service, pm *metrics.PoolMetrics, pool string, code int, reason string, start, end time.Time) {
	if code == http.StatusOK {
		pm.OK.Inc()
	} else {
		g.metrics.Requests.WithLabelValues(svc.Namespace, svc.Name, pool, strconv.Itoa(code)).Inc()
	}
	if reason != "" {
		g.metrics.Errors.WithLabelValues(svc.Namespace, svc.Name, pool, reason).Inc()
	}
	if code < 400 {
		pm.E2E.Observe(end.Sub(start).Seconds())
	}
}

// snapshot builds the balancer's view of the service's endpoints in dst
// (a caller's array for the common few replicas: no allocation).
func (g *Gateway) snapshot(dst []balancer.Endpoint, svc *routing.Service, tried addrSet, now time.Time) []balancer.Endpoint {
	eps := dst[:0]
	if cap(eps) < len(svc.Endpoints) {
		eps = make([]balancer.Endpoint, 0, len(svc.Endpoints))
	}
	eps = eps[:len(svc.Endpoints)]
	healthy := 0
	for i, e := range svc.Endpoints {
		u := g.upstreams.Get(e.Address)
		be := balancer.Endpoint{Address: e.Address, Pool: e.Pool, PoolRank: e.PoolRank, Outstanding: u.Outstanding()}
		if l, ok := u.Load(now, g.cfg.LoadMaxAge); ok {
			be.Scraped, be.Waiting, be.Running, be.KVUsage, be.OutstandingAtScrape = true, l.Waiting, l.Running, l.KVUsage, l.Outstanding
		}
		be.Excluded = tried.has(e.Address) || u.Ejected(now)
		if !be.Excluded {
			healthy++
		}
		eps[i] = be
	}
	if healthy == 0 { // every untried replica is ejected: try them rather than fail
		for i := range eps {
			eps[i].Excluded = tried.has(eps[i].Address)
		}
	}
	return eps
}

func (g *Gateway) pick(svc *routing.Service, eps []balancer.Endpoint, prefix []byte) int {
	req := balancer.Request{Prefix: prefix, Sequence: g.seq.Add(1)}
	g.rndMu.Lock()
	defer g.rndMu.Unlock()
	return balancer.Pick(svc.Policy, eps, req, g.rnd)
}

// addrSet is the few replicas a request tried.
type addrSet []string

func (s addrSet) has(a string) bool {
	for _, x := range s {
		if x == a {
			return true
		}
	}
	return false
}

// forward tries replicas until one answers.
func (g *Gateway) forward(ctx context.Context, req *request) {
	svc := req.svc
	var triedBuf [4]string
	tried := addrSet(triedBuf[:0])
	var epsBuf [8]balancer.Endpoint
	var lastErr error
	lastPool := ""
	for attempt := 0; attempt < g.cfg.MaxAttempts; attempt++ {
		now := req.ready // the first attempt goes at once
		if attempt > 0 {
			now = g.clock.Now()
		}
		eps := g.snapshot(epsBuf[:0], svc, tried, now)
		i := g.pick(svc, eps, req.parsed.Prefix)
		if i < 0 {
			break
		}
		ep := eps[i]
		if !tried.has(ep.Address) {
			tried = append(tried, ep.Address)
		}
		lastPool = ep.Pool
		if attempt > 0 {
			g.metrics.Retries.WithLabelValues(svc.Namespace, svc.Name).Inc()
		}
		req.noRetry = attempt == g.cfg.MaxAttempts-1 || len(tried) == len(svc.Endpoints)
		err := g.attempt(ctx, req, ep)
		if err == nil {
			return
		}
		var rerr *retryable
		if !errors.As(err, &rerr) {
			return // answered (with an error) or client gone: already recorded
		}
		lastErr = rerr.err
		if ctx.Err() != nil || req.expired() {
			break
		}
		g.log.V(2).Info("retrying on another replica", "service", svc.Key(), "address", ep.Address, "err", rerr.err)
	}
	if req.r.Context().Err() != nil {
		g.finish(svc, lastPool, 499, "client_gone", req.start)
		return
	}
	g.noReplicaAnswered(req.w, req, lastPool, lastErr)
}

// noReplicaAnswered answers a request no replica answered: 504 when its
// deadline passed, else 502 with the last failure.
func (g *Gateway) noReplicaAnswered(w http.ResponseWriter, req *request, lastPool string, lastErr error) {
	if req.expired() {
		g.finish(req.svc, lastPool, http.StatusGatewayTimeout, "timeout", req.start)
		wire.WriteError(w, http.StatusGatewayTimeout, "timeout", "the request timed out before a replica answered", 0)
		return
	}
	msg := "no replica of the service could be reached"
	if lastErr != nil {
		msg = fmt.Sprintf("%s: %v", msg, lastErr)
	}
	g.finish(req.svc, lastPool, http.StatusBadGateway, "upstream_unreachable", req.start)
	wire.WriteError(w, http.StatusBadGateway, "upstream_unreachable", msg, 0)
}

// retryable is a failure before the answer's first byte.
type retryable struct{ err error }

func (r *retryable) Error() string { return r.err.Error() }

var errAnswered = errors.New("answered")

// isHopHeader: not forwarded (RFC 9110 section 7.6.1), nor Expect (the
// gateway has read the body already).
func isHopHeader(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te",
		"Trailer", "Transfer-Encoding", "Upgrade", "Expect":
		return true
	}
	return false
}

// copyHeaders copies the end-to-end fields of src (canonical keys) to dst,
// sharing the values, and drops those the Connection field names.
func copyHeaders(dst, src http.Header) {
	var conn []string
	for k, vs := range src {
		if isHopHeader(k) {
			if k == "Connection" {
				conn = vs
			}
			continue
		}
		dst[k] = vs[:len(vs):len(vs)] // shared, capacity clipped: an Add copies
	}
	for _, f := range conn {
		for name := range strings.SplitSeq(f, ",") {
			dst.Del(strings.TrimSpace(name))
		}
	}
}

// attempt sends the request to one replica. It returns nil when the answer
// was passed on, *retryable when the replica failed before the first byte,
// errAnswered when the request ended otherwise (already recorded).
func (g *Gateway) attempt(ctx context.Context, req *request, ep balancer.Endpoint) error {
	svc := req.svc
	up := g.upstreams.Get(ep.Address)
	up.Begin()
	defer up.End()
	req.pm = g.metrics.Pool(svc.Namespace, svc.Name, ep.Pool)
	poolGauge := req.pm.InFlight
	poolGauge.Inc()
	defer poolGauge.Dec()

	// Leaving this function closes the answer's body, which drops the
	// upstream connection if the answer was not read to its end.
	out := g.outgoing(req, ep.Address)
	var resp *http.Response
	var err error
	if t, ok := g.transport.(*h1.Transport); ok {
		resp, err = t.Send(ctx, ep.Address, out, req.deadline)
	} else {
		dctx, cancel := context.WithDeadline(ctx, req.deadline)
		defer cancel()
		var hreq *http.Request
		if hreq, err = out.HTTPRequest(dctx, ep.Address); err != nil {
			return &retryable{err: err}
		}
		resp, err = g.transport.RoundTrip(hreq)
	}
	if err != nil {
		return g.upstreamFailed(req, up, ep, fmt.Errorf("sending to %s: %w", ep.Address, err))
	}
	defer func() { _ = resp.Body.Close() }()
	if isRetryableStatus(resp.StatusCode) && !req.noRetry {
		return g.upstreamFailed(req, up, ep, fmt.Errorf("replica %s answered %s", ep.Address, resp.Status))
	}
	if isEventStream(resp.Header) {
		return g.stream(req, resp, up, ep)
	}
	return g.plain(req, resp, up, ep)
}

// outgoing is the request to the replica at addr: the client's, with its
// header map forwarded as it is (no copy) less the hop-by-hop fields, those
// the Connection field names, the gateway's API key and the X-Forwarded-*
// fields, which are set anew. The Host is the replica's address: the
// upstream URL comes from the routing table only (no open proxying).
func (g *Gateway) outgoing(req *request, addr string) *h1.Request {
	if in := req.in; in != nil {
		var prior, named []string
		for _, f := range in.Fields {
			switch f.Name {
			case "X-Forwarded-For":
				prior = append(prior, f.Value)
			case "Connection":
				named = append(named, f.Value)
			}
		}
		req.out = h1.Request{Method: in.Method, Target: in.Target, Host: addr, Fields: in.Fields, Body: req.body}
		g.forwarded(req, in.RemoteAddr, in.Host, prior, named)
		return &req.out
	}
	in := req.r
	target := in.RequestURI
	if !strings.HasPrefix(target, "/") { // absolute-form: sent in origin form
		target = in.URL.RequestURI()
	}
	req.out = h1.Request{Method: in.Method, Target: target, Host: addr, Header: in.Header, Body: req.body}
	g.forwarded(req, in.RemoteAddr, in.Host, in.Header["X-Forwarded-For"], in.Header["Connection"])
	return &req.out
}

// forwarded sets the fields of req.out the gateway adds (X-Forwarded-*)
// and the client's it does not forward: see skipField, and the ones its
// Connection fields (named) name.
func (g *Gateway) forwarded(req *request, remote, host string, prior, named []string) {
	extra := req.extra[:0]
	if ip, _, err := net.SplitHostPort(remote); err == nil {
		if len(prior) > 0 {
			ip = strings.Join(prior, ", ") + ", " + ip
		}
		extra = append(extra, h1.Field{Name: "X-Forwarded-For", Value: ip})
	}
	req.out.Extra = append(extra, h1.Field{Name: "X-Forwarded-Host", Value: host}, h1.Field{Name: "X-Forwarded-Proto", Value: "http"})
	req.out.Skip = g.skip
	if len(named) > 0 {
		req.out.Skip = connectionSkip(g.skip, named)
	}
}

// skipField reports the client's fields not forwarded (see outgoing).
func (g *Gateway) skipField(k string) bool {
	switch k {
	case "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto":
		return true
	case "Authorization":
		return g.auth != nil // the gateway's key is not the engine's
	}
	return isHopHeader(k)
}

// connectionSkip adds the fields a Connection field names (hop-by-hop too).
func connectionSkip(skip func(string) bool, connection []string) func(string) bool {
	var names []string
	for _, f := range connection {
		for name := range strings.SplitSeq(f, ",") {
			if name = strings.TrimSpace(name); name != "" {
				names = append(names, http.CanonicalHeaderKey(name))
			}
		}
	}
	return func(k string) bool { return skip(k) || slices.Contains(names, k) }
}

// isEventStream reports whether an answer is server-sent events. Its keys
// are canonical (parsed by h1 or net/http): a map read, not Header.Get's
// canonicalisation.
func isEventStream(h http.Header) bool {
	ct := h["Content-Type"]
	return len(ct) > 0 && isEventStreamType(ct[0])
}

// isEventStreamType reports whether a Content-Type is server-sent events'.
func isEventStreamType(ct string) bool { return strings.HasPrefix(ct, "text/event-stream") }

func isRetryableStatus(code int) bool {
	return code == http.StatusBadGateway || code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout
}

// upstreamFailed records a replica failure before the first byte.
func (g *Gateway) upstreamFailed(req *request, up *upstream.Upstream, ep balancer.Endpoint, err error) error {
	if req.r == nil || req.r.Context().Err() == nil { // the client leaving is not the replica's fault (the loop reports it otherwise)
		if up.Failure(g.cfg.Outlier, g.clock.Now()) {
			g.metrics.Ejections.WithLabelValues(req.svc.Namespace, req.svc.Name, ep.Pool).Inc()
			g.log.Info("replica ejected after consecutive failures", "service", req.svc.Key(), "address", ep.Address, "pool", ep.Pool)
		}
	}
	return &retryable{err: err}
}

// commit sends the answer's status and headers.
func (g *Gateway) commit(req *request, resp *http.Response) {
	answerHeader(req.w.Header(), resp)
	req.w.WriteHeader(resp.StatusCode)
}

// answerHeader fills h with the fields of the answer to the client: the
// end-to-end ones of resp, a Content-Length when the body has a known
// length and is not streamed.
func answerHeader(h http.Header, resp *http.Response) {
	copyHeaders(h, resp.Header)
	switch v := h["Content-Length"]; {
	case resp.ContentLength < 0 || isEventStream(resp.Header):
		delete(h, "Content-Length") // streamed: chunked to the client
	case len(v) == 1 && sameLength(v[0], resp.ContentLength):
		// the engine's own field, copied
	default:
		h["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
	}
}

// sameLength reports whether the Content-Length field v says n (parsing
// allocates nothing, formatting would).
func sameLength(v string, n int64) bool {
	m, err := strconv.ParseInt(v, 10, 64)
	return err == nil && m == n
}

// serverBoundsIO reports whether the server bounds body reads and writes
// that have to wait with its own timeouts (h1.Server, configured with the
// same BodyReadTimeout and WriteTimeout): then the request path sets no
// deadlines, and saves their timers.
func serverBoundsIO(w http.ResponseWriter) bool {
	b, ok := w.(interface{ BoundsBlockingIO() bool })
	return ok && b.BoundsBlockingIO()
}

// clientWriter writes to the client within the write timeout. The deadline
// is pushed forward at most every WriteTimeout/8, not on every write, so a
// client that stops reading is cut off after 7/8 to 1 WriteTimeout.
type clientWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController        // when the server does not bound writes
	flusher interface{ FlushError() error } // when it does
	clock   clock.PassiveClock
	timeout time.Duration
	setAt   time.Time
}

func (g *Gateway) newClientWriter(w http.ResponseWriter) clientWriter {
	if f, ok := w.(interface{ FlushError() error }); ok && serverBoundsIO(w) {
		return clientWriter{w: w, flusher: f} // the server bounds each write that waits
	}
	return clientWriter{w: w, rc: http.NewResponseController(w), clock: g.clock, timeout: g.cfg.WriteTimeout}
}

func (c *clientWriter) write(p []byte, flush bool) error {
	if c.rc != nil {
		if now := c.clock.Now(); now.Sub(c.setAt) > c.timeout/8 {
			_ = c.rc.SetWriteDeadline(now.Add(c.timeout))
			c.setAt = now
		}
	}
	if _, err := c.w.Write(p); err != nil {
		return err
	}
	switch {
	case !flush:
		return nil
	case c.rc != nil:
		return c.rc.Flush()
	default:
		return c.flusher.FlushError()
	}
}

// done clears the deadline (the connection may serve another request).
func (c *clientWriter) done() {
	if c.rc != nil && !c.setAt.IsZero() {
		_ = c.rc.SetWriteDeadline(time.Time{})
	}
}

// stream passes server-sent events on, one flush per event.
func (g *Gateway) stream(req *request, resp *http.Response, up *upstream.Upstream, ep balancer.Endpoint) error {
	svc := req.svc
	labels := []string{svc.Namespace, svc.Name, ep.Pool}
	events := wire.NewEventReader(resp.Body)
	defer events.Release()
	first, err := events.Next()
	if err != nil && (err != io.EOF || len(first) == 0) && !req.noRetry && req.r.Context().Err() == nil {
		return g.upstreamFailed(req, up, ep, fmt.Errorf("replica %s failed before its first event: %w", ep.Address, err))
	}
	g.commit(req, resp)
	cw := g.newClientWriter(req.w)
	defer cw.done()
	now := g.clock.Now()
	pm := req.pm
	pm.TTFT.Observe(now.Sub(req.start).Seconds())
	t := tally{last: now}
	ev := first
	for {
		if len(ev) > 0 {
			t.add(ev, pm.InterToken, g.clock)
			// Flush every event as soon as the next one is not already here:
			// no event waits for another; a burst goes out in one write.
			if werr := cw.write(ev, events.Buffered() == 0); werr != nil {
				g.finishPM(svc, req.pm, ep.Pool, 499, "client_gone", req.start)
				g.log.V(2).Info("client stopped reading a stream", "service", svc.Key(), "err", werr)
				return errAnswered // returning closes the upstream body: the engine sees the cancel
			}
		}
		if err != nil {
			break
		}
		ev, err = events.Next()
	}
	if err != io.EOF && !t.done {
		if req.r.Context().Err() != nil {
			g.finishPM(svc, req.pm, ep.Pool, 499, "client_gone", req.start)
			return errAnswered
		}
		reason, msg := streamBroken(err, req.expired())
		_ = cw.write(wire.ErrorEvent(reason, msg), true)
		if up.Failure(g.cfg.Outlier, g.clock.Now()) {
			g.metrics.Ejections.WithLabelValues(labels...).Inc()
		}
		g.finishPM(svc, req.pm, ep.Pool, resp.StatusCode, reason, req.start)
		return errAnswered
	}
	end := g.clock.Now()
	up.Success(end)
	g.countTokens(pm, t.tokens())
	g.finishPMAt(svc, req.pm, ep.Pool, resp.StatusCode, statusReason(resp.StatusCode), req.start, end)
	return nil
}

// tally is what a stream's events add up to.
type tally struct {
	done    bool      // [DONE] passed on: the answer is complete whatever follows
	events  int64     // events with output
	last    time.Time // the last output event (the first byte before it)
	usage   wire.Usage
	haveUse bool
}

// add counts one event, observing the time since the previous output event
// on itl.
func (t *tally) add(ev []byte, itl prometheus.Observer, clock clock.PassiveClock) {
	e := wire.ScanEvent(ev)
	t.done = t.done || e.Done
	if e.Choices {
		if t.events > 0 {
			now := clock.Now()
			itl.Observe(now.Sub(t.last).Seconds())
			t.last = now
		}
		t.events++
	}
	if e.HasUsage {
		t.usage, t.haveUse = e.Usage, true
	}
}

// tokens is the stream's usage: the engine's, else the output events counted.
func (t *tally) tokens() wire.Usage {
	if !t.haveUse {
		return wire.Usage{CompletionTokens: t.events}
	}
	return t.usage
}

func statusReason(code int) string {
	if code >= 400 {
		return "upstream_" + strconv.Itoa(code)
	}
	return ""
}

func (g *Gateway) countTokens(pm *metrics.PoolMetrics, u wire.Usage) {
	if u.PromptTokens > 0 {
		pm.Prompt.Add(float64(u.PromptTokens))
	}
	if u.CompletionTokens > 0 {
		pm.Completion.Add(float64(u.CompletionTokens))
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// usageTail is how much of the end of a plain answer is kept to read its
// usage (OpenAI-compatible servers put "usage" last).
const usageTail = 8 << 10

// plain passes a non-streamed answer on.
func (g *Gateway) plain(req *request, resp *http.Response, up *upstream.Upstream, ep balancer.Endpoint) error {
	svc := req.svc
	labels := []string{svc.Namespace, svc.Name, ep.Pool}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	n, err := io.ReadAtLeast(resp.Body, buf, 1)
	if n == 0 && err != io.EOF && !req.noRetry && req.r.Context().Err() == nil {
		return g.upstreamFailed(req, up, ep, fmt.Errorf("replica %s failed before its answer: %w", ep.Address, err))
	}
	g.commit(req, resp)
	pm := req.pm
	pm.TTFT.Observe(g.clock.Since(req.start).Seconds())
	cw := g.newClientWriter(req.w)
	defer cw.done()
	// The answer is often whole in the first read: its usage is read there,
	// else from a copy of the answer's last bytes.
	whole := resp.ContentLength >= 0 && int64(n) == resp.ContentLength
	var usage wire.Usage
	var haveUsage bool
	if whole {
		usage, haveUsage = wire.FindUsage(buf[:n])
	}
	var kept []byte
	for {
		if n > 0 {
			if !whole {
				kept = appendTail(kept, buf[:n], usageTail)
			}
			if werr := cw.write(buf[:n], false); werr != nil {
				g.finishPM(svc, req.pm, ep.Pool, 499, "client_gone", req.start)
				return errAnswered
			}
		}
		if err != nil {
			break
		}
		n, err = resp.Body.Read(buf)
	}
	if err != io.EOF {
		g.finishPM(svc, req.pm, ep.Pool, resp.StatusCode, "upstream_body_broken", req.start)
		if up.Failure(g.cfg.Outlier, g.clock.Now()) {
			g.metrics.Ejections.WithLabelValues(labels...).Inc()
		}
		// A truncated JSON answer must not look complete: abort the connection.
		panic(http.ErrAbortHandler)
	}
	end := g.clock.Now()
	if resp.StatusCode < 500 {
		up.Success(end)
	}
	if !whole {
		usage, haveUsage = wire.FindUsage(kept)
	}
	if haveUsage {
		g.countTokens(pm, usage)
	}
	g.finishPMAt(svc, req.pm, ep.Pool, resp.StatusCode, statusReason(resp.StatusCode), req.start, end)
	return nil
}

// appendTail appends p to tail and keeps only the last max bytes.
func appendTail(tail, p []byte, max int) []byte {
	if len(p) >= max {
		return append(tail[:0], p[len(p)-max:]...)
	}
	if over := len(tail) + len(p) - max; over > 0 {
		tail = append(tail[:0], tail[over:]...)
	}
	return append(tail, p...)
}
