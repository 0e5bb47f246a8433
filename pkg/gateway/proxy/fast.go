package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/spillway-io/spillway/pkg/gateway/auth"
	"github.com/spillway-io/spillway/pkg/gateway/balancer"
	"github.com/spillway-io/spillway/pkg/gateway/h1"
	"github.com/spillway-io/spillway/pkg/gateway/upstream"
	"github.com/spillway-io/spillway/pkg/gateway/wire"
)

// The request path on h1.Loop's event loops: the same decisions as
// ServeHTTP's — key check, routing by host or model, balancing, retries
// before the first byte, ejection, metrics — made as the loop reports what
// happened instead of while a goroutine waits. Requests that must wait
// (held for a service without a ready replica) and the other paths are
// left to ServeHTTP.

var _ h1.FastHandler = (*Gateway)(nil)

var exchanges = sync.Pool{New: func() any { return new(exchange) }}

// exchange is one inference request on the loop.
type exchange struct {
	g   *Gateway
	req request

	// decided before any replica: the error answer
	rejectStatus int
	rejectCode   string
	rejectMsg    string
	retryAfter   int

	triedBuf [4]string
	tried    addrSet
	epsBuf   [8]balancer.Endpoint
	attempts int
	lastErr  error
	lastPool string
	ep       balancer.Endpoint
	up       *upstream.Upstream // of the attempt in flight (Begin called)
	entered  bool               // in the service's in-flight count

	// the answer
	status  int
	stream  bool
	length  int64 // Content-Length, -1 unknown
	started bool  // its first body byte came
	whole   bool  // its body came in the first piece
	kept    []byte
	partial []byte // an event not complete yet
	tally          // of a stream's events; usage also of a whole answer
}

// StartFast implements h1.FastHandler.
func (g *Gateway) StartFast(r *h1.Incoming) h1.Exchange {
	if _, ok := g.transport.(*h1.Transport); !ok {
		return nil // the loop speaks h1 to the engines; other transports go through ServeHTTP
	}
	switch r.Path {
	case wire.PathChatCompletions, wire.PathCompletions, wire.PathEmbeddings:
	default:
		return nil
	}
	if r.Method != http.MethodPost {
		return nil
	}
	start := g.clock.Now()
	// Routing first, without side effects: a request to be held goes to
	// ServeHTTP before its key is counted against its rate.
	table := g.router.Table()
	svc, routeErr := table.ByHost(r.Host)
	status, code := http.StatusNotFound, "host_not_found"
	var parsed wire.Request
	if routeErr == nil && r.ContentLength > g.cfg.MaxBodyBytes {
		routeErr = fmt.Errorf("the request body (%d bytes) is larger than the limit of %d bytes", r.ContentLength, g.cfg.MaxBodyBytes)
		status, code = http.StatusRequestEntityTooLarge, "request_too_large"
	}
	if routeErr == nil {
		if parsed, routeErr = wire.Parse(r.Body, g.cfg.PrefixBytes); routeErr != nil {
			status, code = http.StatusBadRequest, "invalid_json"
		}
	}
	if routeErr == nil && svc == nil {
		if svc, routeErr = table.ByModel(parsed.Model); routeErr != nil {
			status, code = http.StatusNotFound, "model_not_found"
		}
	}
	if routeErr == nil && len(svc.Endpoints) == 0 {
		return nil // held: ServeHTTP waits
	}
	x := exchanges.Get().(*exchange)
	x.g = g
	x.req = request{in: r, body: r.Body, start: start, ready: start}
	x.tried = addrSet(x.triedBuf[:0])
	x.length = -1
	if g.auth != nil {
		if _, err := g.auth.Check(r.Get("Authorization"), start); err != nil {
			if errors.Is(err, auth.ErrRateLimited) {
				x.reject(http.StatusTooManyRequests, "rate_limit_exceeded", err.Error(), 1)
			} else {
				x.reject(http.StatusUnauthorized, "invalid_api_key", err.Error(), 0)
			}
			return x
		}
	}
	if routeErr != nil {
		x.reject(status, code, routeErr.Error(), 0)
		return x
	}
	timeout := svc.Timeout
	if timeout <= 0 {
		timeout = g.cfg.Timeout
	}
	x.req.svc, x.req.parsed, x.req.deadline = svc, parsed, start.Add(timeout)
	g.metrics.Enter(svc.Namespace, svc.Name)
	x.entered = true
	return x
}

func (x *exchange) reject(status int, code, msg string, retryAfter int) {
	x.rejectStatus, x.rejectCode, x.rejectMsg, x.retryAfter = status, code, msg, retryAfter
}

// Next implements h1.Exchange.
func (x *exchange) Next() (string, *h1.Request, time.Time, bool) {
	g, req := x.g, &x.req
	if x.rejectStatus != 0 || x.attempts >= g.cfg.MaxAttempts || x.attempts > 0 && req.expired() {
		return "", nil, time.Time{}, false
	}
	svc := req.svc
	now := req.ready
	if x.attempts > 0 {
		now = g.clock.Now()
	}
	eps := g.snapshot(x.epsBuf[:0], svc, x.tried, now)
	i := g.pick(svc, eps, req.parsed.Prefix)
	if i < 0 {
		x.attempts = g.cfg.MaxAttempts
		return "", nil, time.Time{}, false
	}
	ep := eps[i]
	if !x.tried.has(ep.Address) {
		x.tried = append(x.tried, ep.Address)
	}
	x.lastPool = ep.Pool
	if x.attempts > 0 {
		g.metrics.Retries.WithLabelValues(svc.Namespace, svc.Name).Inc()
	}
	req.noRetry = x.attempts == g.cfg.MaxAttempts-1 || len(x.tried) == len(svc.Endpoints)
	x.attempts++
	x.ep = ep
	x.up = g.upstreams.Get(ep.Address)
	x.up.Begin()
	req.pm = g.metrics.Pool(svc.Namespace, svc.Name, ep.Pool)
	req.pm.InFlight.Inc()
	x.status, x.stream, x.length = 0, false, -1
	return ep.Address, g.outgoing(req, ep.Address), req.deadline, true
}

// endAttempt ends the attempt in flight.
func (x *exchange) endAttempt() {
	if x.up != nil {
		x.up.End()
		x.req.pm.InFlight.Dec()
		x.up = nil
	}
}

// Failed implements h1.Exchange.
func (x *exchange) Failed(err error) {
	if x.up == nil {
		return
	}
	x.lastErr = err
	_ = x.g.upstreamFailed(&x.req, x.up, x.ep, err)
	x.endAttempt()
}

// Answer implements h1.Exchange.
func (x *exchange) Answer(a *h1.Answer) bool {
	if isRetryableStatus(a.Status) && !x.req.noRetry {
		x.Failed(fmt.Errorf("replica %s answered %d %s", x.ep.Address, a.Status, http.StatusText(a.Status)))
		return true
	}
	x.status, x.stream, x.length = a.Status, isEventStreamType(a.ContentType), a.ContentLength
	if x.stream {
		a.ContentLength = -1 // streamed: chunked to the client
	}
	return false
}

// Body implements h1.Exchange.
func (x *exchange) Body(p []byte) {
	if !x.started {
		x.started = true
		now := x.g.clock.Now()
		x.req.pm.TTFT.Observe(now.Sub(x.req.start).Seconds())
		x.last = now
		x.whole = !x.stream && x.length >= 0 && int64(len(p)) == x.length
		if x.whole {
			x.usage, x.haveUse = wire.FindUsage(p)
			return
		}
	}
	if !x.stream {
		x.kept = appendTail(x.kept, p, usageTail)
		return
	}
	if len(x.partial) > 0 {
		x.partial = append(x.partial, p...)
		p = x.partial
	}
	for {
		n := eventEnd(p)
		if n < 0 {
			break
		}
		x.event(p[:n])
		p = p[n:]
	}
	if len(p) >= wire.MaxEventSize { // passed on in pieces, as EventReader does
		x.event(p)
		p = nil
	}
	x.partial = append(x.partial[:0], p...)
}

// eventEnd is the length of the first whole event in b (up to and with its
// blank line), or -1.
func eventEnd(b []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1
		switch {
		case i < len(b) && b[i] == '\n':
			return i + 1
		case i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n':
			return i + 2
		}
	}
}

// event counts one server-sent event of a stream.
func (x *exchange) event(ev []byte) { x.add(ev, x.req.pm.InterToken, x.g.clock) }

// End implements h1.Exchange.
func (x *exchange) End(err error) (tail []byte) {
	g, req := x.g, &x.req
	svc, pm, pool := req.svc, req.pm, x.ep.Pool
	defer x.release()
	switch {
	case err == nil || x.stream && x.done:
		// Whole, or a stream whose [DONE] was passed on (a client may
		// leave as soon as it reads it, before the last chunk's end).
		end := g.clock.Now()
		if x.stream {
			if len(x.partial) > 0 {
				x.event(x.partial)
			}
			x.up.Success(end)
			g.countTokens(pm, x.tokens())
		} else {
			if x.status < 500 {
				x.up.Success(end)
			}
			if !x.whole {
				x.usage, x.haveUse = wire.FindUsage(x.kept)
			}
			if x.haveUse {
				g.countTokens(pm, x.usage)
			}
		}
		g.finishPMAt(svc, pm, pool, x.status, statusReason(x.status), req.start, end)
		return nil
	case errors.Is(err, h1.ErrClientGone):
		if x.up == nil {
			g.finish(svc, x.lastPool, 499, "client_gone", req.start)
			return nil
		}
		g.finishPM(svc, pm, pool, 499, "client_gone", req.start)
		return nil
	}
	reason := "upstream_body_broken"
	if x.stream {
		var msg string
		reason, msg = streamBroken(err, req.expired())
		tail = wire.ErrorEvent(reason, msg)
	}
	if x.up.Failure(g.cfg.Outlier, g.clock.Now()) {
		g.metrics.Ejections.WithLabelValues(svc.Namespace, svc.Name, pool).Inc()
	}
	g.finishPM(svc, pm, pool, x.status, reason, req.start)
	return tail
}

// streamBroken is why a stream ended early, and what its error event says.
func streamBroken(err error, expired bool) (reason, msg string) {
	if errors.Is(err, h1.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) || expired {
		return "timeout", "the request timed out during the stream"
	}
	return "upstream_stream_broken", fmt.Sprintf("the replica failed during the stream: %v", err)
}

// Fail implements h1.Exchange.
func (x *exchange) Fail(w http.ResponseWriter) {
	defer x.release()
	if x.rejectStatus != 0 {
		wire.WriteError(w, x.rejectStatus, x.rejectCode, x.rejectMsg, x.retryAfter)
		return
	}
	x.g.noReplicaAnswered(w, &x.req, x.lastPool, x.lastErr)
}

// release ends the exchange and returns it to the pool.
func (x *exchange) release() {
	x.endAttempt()
	if x.entered {
		x.g.metrics.Leave(x.req.svc.Namespace, x.req.svc.Name)
	}
	kept, partial := x.kept[:0], x.partial[:0]
	if cap(kept) > usageTail*2 {
		kept = nil
	}
	if cap(partial) > 64<<10 {
		partial = nil
	}
	*x = exchange{kept: kept, partial: partial}
	exchanges.Put(x)
}
