package h1

import (
	"bytes"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
)

// FastHandler serves requests on an event loop's goroutine: it decides,
// it never waits. The loop does the I/O: it reads the request, sends it to
// the upstream the exchange names, and passes the answer back as it comes.
type FastHandler interface {
	// StartFast begins the exchange of r (valid until the exchange
	// ends). nil leaves the request, with its connection, to the Loop's
	// Server and its handler (which hands the connection back once idle).
	StartFast(r *Incoming) Exchange
}

// Incoming is a request read whole by the loop: no http.Request, URL or
// header map is built for it. Its strings are parts of one string.
type Incoming struct {
	Method string
	// Target is the request-target, in origin form (path and query).
	Target string
	// Path is Target's path (the loop takes no target with escapes).
	Path string
	// Host is the Host field's value.
	Host       string
	RemoteAddr string
	// Minor is the protocol's minor version (HTTP/1.Minor).
	Minor int
	// Close: the client ends the connection after this request.
	Close         bool
	ContentLength int64
	// Fields are the request's fields but Host, in their order, names in
	// canonical form.
	Fields []Field
	// Body is the whole body.
	Body []byte
}

// Get is the first value of the field named name (in canonical form), or "".
func (r *Incoming) Get(name string) string {
	for _, f := range r.Fields {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// Answer is an upstream's answer head, as the loop passes it on.
type Answer struct {
	Status int
	// ContentType is the Content-Type field's value.
	ContentType string
	// ContentLength is the body's length, -1 when unknown. The loop frames
	// the body to the client with it, or chunked when it is -1 (which
	// Exchange.Answer may set).
	ContentLength int64
	// Fields are the answer's end-to-end fields, names in canonical form:
	// without the hop-by-hop ones (those Connection names too) and the
	// framing (Content-Length, Transfer-Encoding), which the loop writes.
	Fields []Field
}

// Exchange is one request on its way through the loop. The loop calls Next,
// then Failed or Answer, then Body for every piece of the answer's body,
// then End — or Fail when Next has no upstream left. After End or Fail
// the loop does not use the exchange again.
type Exchange interface {
	// Next names the upstream to try (host:port), the request to send it
	// and the deadline of the whole exchange (zero: none). ok false: none
	// is left (or the exchange is already decided): the loop calls Fail.
	Next() (addr string, req *Request, deadline time.Time, ok bool)
	// Failed reports that the upstream of the last Next failed before the
	// first byte of its answer's body; the loop calls Next again.
	Failed(err error)
	// Answer gives the upstream's answer head (valid during the call; the
	// exchange may set its ContentLength to -1, and change its Fields).
	// retry true: the answer is dropped (the exchange recorded why) and
	// the loop calls Next.
	Answer(a *Answer) (retry bool)
	// Body is a piece of the answer's body (decoded from chunks), before
	// the loop sends it on; p is valid during the call.
	Body(p []byte)
	// End ends the exchange: err nil when the answer was passed on whole,
	// ErrClientGone when the client left, else why the upstream's answer
	// broke off (ErrTimeout: the deadline passed). For a chunked answer,
	// the bytes it returns are sent as its last piece (an error event).
	End(err error) (tail []byte)
	// Fail writes the answer when no upstream answered (Next returned
	// false), and ends the exchange.
	Fail(w http.ResponseWriter)
}

var (
	// ErrClientGone ends an exchange whose client closed its connection,
	// stopped reading, or was closed by the server.
	ErrClientGone = errors.New("the client closed the connection")
	// ErrTimeout ends an exchange whose deadline passed.
	ErrTimeout = errors.New("the request's deadline passed")
)

// Loop serves HTTP/1.1 with event loops (epoll on Linux): a loop reads
// requests from many connections, hands each to its FastHandler, writes it
// to the upstream the exchange picks over the loop's own keep-alive
// connections, and passes the answer back as it arrives — all on one
// goroutine per loop, with no goroutine switch and no read that finds
// nothing per request. It is a proxy's fast path: requests its handler
// leaves (nil from StartFast), malformed requests, chunked or large bodies,
// Expect and HTTP/1.0 requests are handed, with their connection, to
// Server (goroutine per connection, http.Handler), which gives the
// connection back once its answer is written; Server also gives the
// timeouts and limits. Where it cannot run (no epoll, or a listener that is
// not TCP) Server serves everything.
type Loop struct {
	// Fast serves requests on the loop.
	Fast FastHandler
	// Server serves what the loop leaves, and sets the timeouts
	// (ReadHeaderTimeout, IdleTimeout, WriteTimeout, BodyReadTimeout),
	// MaxHeaderBytes and Log.
	Server *Server
	// MaxFastBody: requests with a larger body go to Server. Default 1 MiB.
	MaxFastBody int
	// Loops is the number of event loops (default GOMAXPROCS-1, at least
	// one: each keeps a P, and the rest of the process keeps one).
	Loops int
	// ConnectTimeout bounds connecting to an upstream. Default 3s.
	ConnectTimeout time.Duration
	// UpstreamIdleTimeout closes upstream connections idle this long. Default 90s.
	UpstreamIdleTimeout time.Duration

	mu      sync.Mutex
	loops   []*evloop
	closing atomic.Bool
	forced  atomic.Bool
	done    chan struct{} // closed when every loop has ended
	lfds    atomic.Int32  // loops still holding the listening descriptor
}

func (lp *Loop) log() logr.Logger { return lp.Server.Log }

func (lp *Loop) maxFastBody() int { return orDefault(lp.MaxFastBody, 1<<20) }

func (lp *Loop) connectTimeout() time.Duration { return orDefault(lp.ConnectTimeout, 3*time.Second) }

func (lp *Loop) upstreamIdleTimeout() time.Duration {
	return orDefault(lp.UpstreamIdleTimeout, 90*time.Second)
}

// captured is the ResponseWriter of Exchange.Fail: the answer is kept and
// framed by the loop.
type captured struct {
	header http.Header
	status int
	body   []byte
}

func (w *captured) Header() http.Header { return w.header }

func (w *captured) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *captured) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.body = append(w.body, p...)
	return len(p), nil
}

// headEnd finds a message head at the start of b (empty lines before it are
// skipped, RFC 9112 2.2): its start and the end of its blank line, or
// end -1 while it is incomplete.
func headEnd(b []byte) (start, end int) {
	for start < len(b) && (b[start] == '\n' || b[start] == '\r' && start+1 < len(b) && b[start+1] == '\n') {
		if b[start] == '\r' {
			start++
		}
		start++
	}
	for i := start; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return start, -1
		}
		i += j + 1
		switch {
		case i < len(b) && b[i] == '\n':
			return start, i + 1
		case i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n':
			return start, i + 2
		case i >= len(b) || i+1 >= len(b) && b[i] == '\r':
			return start, -1
		}
	}
}
