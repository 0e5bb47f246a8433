// Package h1 is the gateway's HTTP/1.1 client to the engines: an
// http.RoundTripper that writes the request and reads the answer on the
// caller's goroutine over pooled keep-alive connections. net/http's
// Transport hands every request to two goroutines per connection; on the
// gateway's hot path (many short requests, or thousands of long streams)
// doing it inline saves the goroutine hand-offs and their memory. Plain HTTP
// only, no proxies, no HTTP/2: what the engines inside the cluster speak.
package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Transport pools connections per host:port.
type Transport struct {
	// DialTimeout bounds connecting (default 3s).
	DialTimeout time.Duration
	// MaxIdlePerHost bounds the idle connections kept per address (default 256).
	MaxIdlePerHost int
	// IdleTimeout drops connections idle longer (default 60s).
	IdleTimeout time.Duration
	// DialContext, when set, replaces the TCP dialer (tests map addresses).
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)

	mu   sync.Mutex
	idle map[string][]*conn
}

var _ http.RoundTripper = (*Transport)(nil)

type conn struct {
	nc        net.Conn
	raw       syscall.RawConn    // nc's, when it has one
	w         io.Writer          // nc or an fdConn on it
	await     func(uintptr) bool // flushAndAwait's callback and its state (with bw)
	flushed   bool
	werr      error
	br        *bufio.Reader
	bw        *bufio.Writer // while a request is written
	head      []byte        // the answer's head being read
	deadline  bool          // a request's deadline is (still) set on nc
	sent      sentCounter   // nc, counting what a request wrote before its last write
	cut       func()        // sets a past deadline on nc (a cancel): made once
	watched   *connContext  // the request's context, when cut is kept in its slot
	stopCut   func() bool   // else context.AfterFunc's stop
	idleSince time.Time
}

var (
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

func (c *conn) close() {
	_ = c.nc.Close()
	if c.br != nil {
		c.br.Reset(nil)
		readers.Put(c.br)
		c.br = nil
	}
}

// get returns an idle connection to addr or dials one.
func (t *Transport) get(ctx context.Context, addr string, deadline time.Time) (*conn, bool, error) {
	idleTimeout := t.IdleTimeout
	if idleTimeout <= 0 {
		idleTimeout = 60 * time.Second
	}
	now := time.Now()
	t.mu.Lock()
	for list := t.idle[addr]; len(list) > 0; list = t.idle[addr] {
		c := list[len(list)-1]
		t.idle[addr] = list[:len(list)-1]
		if now.Sub(c.idleSince) < idleTimeout {
			t.mu.Unlock()
			return c, true, nil
		}
		c.close()
	}
	t.mu.Unlock()
	timeout := t.DialTimeout
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	dial := (&net.Dialer{Timeout: timeout, Deadline: deadline, KeepAlive: 30 * time.Second}).DialContext
	if t.DialContext != nil {
		dial = t.DialContext
	}
	nc, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	c := &conn{nc: nc, w: nc}
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
		}
	}
	br := readers.Get().(*bufio.Reader)
	br.Reset(nc)
	if fc := newFDConn(c.raw); fc != nil {
		br.Reset(fc)
		c.w = fc
	}
	c.br = br
	return c, false, nil
}

// put keeps c for reuse.
func (t *Transport) put(addr string, c *conn) {
	max := t.MaxIdlePerHost
	if max <= 0 {
		max = 256
	}
	c.idleSince = time.Now()
	t.mu.Lock()
	if t.idle == nil {
		t.idle = map[string][]*conn{}
	}
	if len(t.idle[addr]) < max {
		t.idle[addr] = append(t.idle[addr], c)
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	c.close()
}

// CloseIdleConnections closes every pooled connection.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, list := range idle {
		for _, c := range list {
			c.close()
		}
	}
}

// errNoResponse marks a failure before any byte of the answer was read.
type errNoResponse struct{ err error }

func (e *errNoResponse) Error() string { return e.err.Error() }
func (e *errNoResponse) Unwrap() error { return e.err }

// RoundTrip sends req (http scheme only) and returns the answer; its Body
// must be read to the end or closed. A reused connection the engine had
// closed is detected (no answer byte) and the request is sent once more on a
// new connection when its body can be replayed.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	return t.RoundTripUntil(req, time.Time{})
}

// RoundTripUntil is RoundTrip with a deadline for the whole exchange (zero:
// none), applied as the connection's deadline: cheaper than a context with
// a deadline, which costs a timer and a context per request. Reading the
// body after the deadline fails with os.ErrDeadlineExceeded.
func (t *Transport) RoundTripUntil(req *http.Request, deadline time.Time) (*http.Response, error) {
	if req.URL.Scheme != "http" {
		return nil, fmt.Errorf("h1: unsupported scheme %q", req.URL.Scheme)
	}
	r := &Request{Method: req.Method, Target: req.URL.RequestURI(), Host: req.Host, Header: req.Header, from: req}
	if r.Host == "" {
		r.Host = req.URL.Host
	}
	if req.Body != nil && req.Body != http.NoBody {
		if req.ContentLength > 0 {
			r.stream, r.length = req.Body, req.ContentLength // streamed
		} else {
			body, err := io.ReadAll(req.Body)
			_ = req.Body.Close()
			if err != nil {
				return nil, fmt.Errorf("reading the request body: %w", err)
			}
			r.Body = body
		}
	}
	return t.Send(req.Context(), req.URL.Host, r, deadline)
}

// Request is a request given by its parts, for Send: a proxy forwards the
// client's header map as it is, less the fields Skip names, plus Extra —
// no http.Request, URL or second header map is built per request.
type Request struct {
	Method string
	// Target is the request-target in origin form: path and query.
	Target string
	// Host is the Host field's value.
	Host string
	// Header's fields are sent but for Host, Content-Length,
	// Transfer-Encoding, Connection and Trailer (the transport writes the
	// ones it needs) and those Skip reports (nil: none).
	Header http.Header
	// Fields are sent like Header's (a request read by Loop has no map).
	Fields []Field
	Skip   func(name string) bool
	// Extra fields follow Header's and Fields.
	Extra []Field
	// Body is sent with its Content-Length (replayed as is on a retry).
	Body []byte

	from   *http.Request // RoundTrip's request
	stream io.ReadCloser // RoundTrip's body of known length, streamed
	length int64
}

// HTTPRequest is r as an http.Request to addr, for another RoundTripper:
// the same fields, in a header map of its own.
func (r *Request) HTTPRequest(ctx context.Context, addr string) (*http.Request, error) {
	out, err := http.NewRequestWithContext(ctx, r.Method, "http://"+addr+r.Target, bytes.NewReader(r.Body))
	if err != nil {
		return nil, err
	}
	for k, vs := range r.Header {
		if !skipHeader(k) && (r.Skip == nil || !r.Skip(k)) {
			out.Header[k] = vs[:len(vs):len(vs)]
		}
	}
	for _, f := range r.Fields {
		if !skipHeader(f.Name) && (r.Skip == nil || !r.Skip(f.Name)) {
			out.Header.Add(f.Name, f.Value)
		}
	}
	for _, f := range r.Extra {
		out.Header.Add(f.Name, f.Value)
	}
	out.Host = r.Host
	return out, nil
}

// Field is a header field.
type Field struct{ Name, Value string }

// Send sends r to addr (host:port) and returns the answer, whose Body must
// be read to the end or closed. ctx cancels the exchange; deadline (zero:
// none) bounds all of it, as RoundTripUntil's. A reused connection the
// engine had closed is detected (no answer byte) and r is sent once more on
// a new connection.
func (t *Transport) Send(ctx context.Context, addr string, r *Request, deadline time.Time) (*http.Response, error) {
	if hasAnyByte(r.Host, "\r\n ") {
		return nil, fmt.Errorf("h1: invalid host %q", r.Host)
	}
	for attempt := 0; ; attempt++ {
		c, reused, err := t.get(ctx, addr, deadline)
		if err != nil {
			return nil, err
		}
		resp, err := t.do(ctx, c, addr, r, deadline)
		if err == nil {
			return resp, nil
		}
		var nr *errNoResponse
		if reused && attempt == 0 && errors.As(err, &nr) && ctx.Err() == nil && (deadline.IsZero() || time.Now().Before(deadline)) &&
			(r.stream == nil || r.from.GetBody != nil) {
			if r.stream != nil {
				body, gerr := r.from.GetBody()
				if gerr != nil {
					return nil, err
				}
				r.stream = body
			}
			continue
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
}

func (t *Transport) do(ctx context.Context, c *conn, addr string, r *Request, deadline time.Time) (*http.Response, error) {
	// A pooled connection keeps the last request's deadline until here
	// (nothing reads it meanwhile): one timer operation per request.
	if !deadline.IsZero() {
		_ = c.nc.SetDeadline(deadline)
		c.deadline = true
	} else if c.deadline {
		_ = c.nc.SetDeadline(time.Time{})
		c.deadline = false
	}
	// Cancelling the request unblocks reads and writes on the connection.
	c.watch(ctx)
	bw := writers.Get().(*bufio.Writer)
	c.sent = sentCounter{w: c.w}
	bw.Reset(&c.sent)
	err := writeRequest(bw, r)
	if err == nil {
		err = c.flushAndAwait(bw)
	}
	bw.Reset(nil)
	writers.Put(bw)
	if err != nil {
		c.unwatch()
		c.close()
		return nil, &errNoResponse{err}
	}
	if _, err := c.br.Peek(1); err != nil {
		c.unwatch()
		c.close()
		return nil, &errNoResponse{err}
	}
	resp, b, err := c.readResponse(r.Method, r.from)
	if err != nil {
		c.unwatch()
		c.close()
		return nil, err
	}
	b.t, b.addr, b.reuse = t, addr, !resp.Close && (r.from == nil || !r.from.Close)
	if b.done {
		b.release(true)
		resp.Body = http.NoBody
		return resp, nil
	}
	resp.Body = b
	return resp, nil
}

// flushAndAwait sends what bw holds and waits until the answer can be read.
// The last write is made from inside RawConn.Read, after the connection's
// readiness was reset and before waiting on it, so the wait needs no read
// attempt first: a plain Flush then Read would try a read that finds nothing
// (EAGAIN) before parking — one system call per request saved. Waiting obeys
// the connection's deadline (the request's cancel).
//
// Only for a request written in that one last write: when part of it went
// out before (a body larger than the buffer), the engine may already have
// answered early (and the reset would lose that).
func (c *conn) flushAndAwait(bw *bufio.Writer) error {
	if c.raw == nil || c.br.Buffered() > 0 || c.sent.n > 0 {
		return bw.Flush()
	}
	if c.await == nil {
		c.await = c.flushOnce // one closure per connection, not per request
	}
	c.bw, c.flushed, c.werr = bw, false, nil
	err := c.raw.Read(c.await)
	werr := c.werr
	c.bw, c.werr = nil, nil
	if werr != nil {
		return werr
	}
	return err
}

// watch makes the cancel of ctx cut the connection (unblocking its reads
// and writes), until unwatch.
func (c *conn) watch(ctx context.Context) {
	if c.cut == nil {
		c.cut = func() { _ = c.nc.SetDeadline(time.Unix(1, 0)) }
	}
	if cc, ok := ctx.(*connContext); ok && cc.watch(c.cut) {
		c.watched = cc // served by Server: its connection's slot
		return
	}
	c.stopCut = context.AfterFunc(ctx, c.cut)
}

// unwatch ends watch; false when the cancel came first (the connection is
// cut or about to be).
func (c *conn) unwatch() bool {
	if cc := c.watched; cc != nil {
		c.watched = nil
		return cc.unwatch()
	}
	stop := c.stopCut
	c.stopCut = nil
	return stop != nil && stop()
}

// sentCounter counts the bytes of a request written before its last write.
type sentCounter struct {
	w io.Writer
	n int64
}

func (s *sentCounter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	s.n += int64(n)
	return n, err
}

// flushOnce is flushAndAwait's RawConn.Read callback: the first call writes,
// the next (once readable, or closed) lets the read that follows find it.
func (c *conn) flushOnce(uintptr) bool {
	if c.flushed {
		return true
	}
	c.flushed = true
	c.werr = c.bw.Flush()
	return c.werr != nil
}

// body is an answer's body; it returns the connection to the pool once
// read to its end.
type body struct {
	c         *conn
	remaining int64     // Content-Length framing
	chunked   io.Reader // chunked framing
	toEOF     bool      // ends with the connection
	done      bool      // the whole body was read
	t         *Transport
	addr      string
	reuse     bool
	released  bool
}

func (b *body) Read(p []byte) (int, error) {
	if b.released {
		return 0, io.EOF
	}
	if b.done {
		b.release(true)
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	var err error
	switch {
	case b.chunked != nil:
		n, err = b.chunked.Read(p)
		if err == io.EOF {
			err = skipTrailer(b.c.br, maxResponseHead)
			b.done = err == nil
		}
	case b.toEOF:
		n, err = b.c.br.Read(p)
		b.done = err == io.EOF
	default:
		if int64(len(p)) > b.remaining {
			p = p[:b.remaining]
		}
		n, err = b.c.br.Read(p)
		b.remaining -= int64(n)
		if b.remaining == 0 {
			b.done = true
		} else if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
	}
	if b.done {
		b.release(true)
		return n, io.EOF
	}
	if err != nil {
		b.release(false)
	}
	return n, err
}

func (b *body) Close() error {
	b.release(false)
	return nil
}

// release ends the body; the connection is kept when the answer was read to
// its end, the engine allows keep-alive and the cancel did not fire.
func (b *body) release(complete bool) {
	if b.released {
		return
	}
	b.released = true
	notFired := b.c.unwatch()
	if complete && b.reuse && notFired {
		b.t.put(b.addr, b.c)
		return
	}
	b.c.close()
}

// skipHeader reports the fields writeRequest writes itself, or not at all.
func skipHeader(k string) bool {
	switch k {
	case "Host", "Content-Length", "Transfer-Encoding", "Connection", "Trailer":
		return true
	}
	return false
}

// writeRequest writes r in HTTP/1.1 form: request line, Host, the header
// fields, Content-Length, blank line, body. It is leaner than
// Request.Write, which re-validates every header byte; names and values
// holding CR or LF are still refused.
func writeRequest(bw *bufio.Writer, r *Request) error {
	length := int64(len(r.Body))
	if r.stream != nil {
		length = r.length
	}
	head, err := appendRequestHead(bw.AvailableBuffer(), r, length)
	if err != nil {
		return err
	}
	_, _ = bw.Write(head)
	if r.stream == nil {
		_, err := bw.Write(r.Body)
		return err
	}
	n, err := io.CopyN(bw, r.stream, length)
	_ = r.stream.Close()
	if err != nil {
		return fmt.Errorf("sending the request body (%d of %d bytes): %w", n, length, err)
	}
	return nil
}

// appendRequestHead appends r's head (see writeRequest), for a body of
// length bytes.
func appendRequestHead(b []byte, r *Request, length int64) ([]byte, error) {
	b = append(b, r.Method...)
	b = append(b, ' ')
	b = append(b, r.Target...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, r.Host...)
	b = append(b, "\r\n"...)
	var err error
	for k, vs := range r.Header {
		if skipHeader(k) || r.Skip != nil && r.Skip(k) {
			continue
		}
		for _, v := range vs {
			if b, err = appendCheckedField(b, k, v); err != nil {
				return b, err
			}
		}
	}
	for _, f := range r.Fields {
		if skipHeader(f.Name) || r.Skip != nil && r.Skip(f.Name) {
			continue
		}
		if b, err = appendCheckedField(b, f.Name, f.Value); err != nil {
			return b, err
		}
	}
	for _, f := range r.Extra {
		if b, err = appendCheckedField(b, f.Name, f.Value); err != nil {
			return b, err
		}
	}
	if length > 0 || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, length, 10)
		b = append(b, "\r\n"...)
	}
	return append(b, "\r\n"...), nil
}

// hasAnyByte is strings.ContainsAny for a few ASCII bytes, without the set
// ContainsAny builds on each call (the per-field checks of every request).
func hasAnyByte(s, bytes string) bool {
	for i := 0; i < len(bytes); i++ {
		if strings.IndexByte(s, bytes[i]) >= 0 {
			return true
		}
	}
	return false
}

// appendCheckedField appends one header field, refusing a name or value
// that would break the head.
func appendCheckedField(b []byte, name, value string) ([]byte, error) {
	if name == "" || hasAnyByte(name, "\r\n: ") {
		return b, fmt.Errorf("h1: invalid header name %q", name)
	}
	if hasAnyByte(value, "\r\n") {
		return b, fmt.Errorf("h1: invalid value of header %s", name)
	}
	b = append(b, name...)
	b = append(b, ": "...)
	b = append(b, value...)
	return append(b, "\r\n"...), nil
}
