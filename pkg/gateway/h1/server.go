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
	"net/http/httputil"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/net/http/httpguts"
)

// Server is the gateway's HTTP/1.1 server: an http.Handler behind a lean
// keep-alive loop, one goroutine per connection. It exists because, on a
// proxy's hot path, net/http's server costs as much CPU as the proxying
// itself. What it does differently:
//
//   - A client leaving is noticed by one process-wide epoll instance that
//     watches every connection for a hang-up (EPOLLRDHUP, registered once per
//     connection), instead of a background read per request.
//   - The end of a response is written with one non-blocking write when the
//     handler returns: no write deadline is set, and no timer touched, unless
//     the client's socket buffer is full.
//   - Headers are parsed from one string per request; the request's context
//     is the connection's.
//
// Semantics a handler may rely on: Request.Context is cancelled when the
// client hangs up or the server is closed — and not when the handler
// returns (it lives as long as the connection). Bodies are framed by
// Content-Length or chunked (HTTP/1.1), Expect: 100-continue is answered on
// the first read of the body, a response without Content-Length is chunked
// unless it fits the buffer when the handler returns, and the
// http.ResponseController operations Flush, SetReadDeadline,
// SetWriteDeadline and EnableFullDuplex work. No HTTP/2, TLS, upgrades,
// hijacking or trailers. On systems without epoll the gateway uses net/http
// (see Supported).
type Server struct {
	// Handler serves the requests.
	Handler http.Handler
	// ReadHeaderTimeout bounds a new connection's wait for its first request
	// and the reading of every request line and headers. Default 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a kept-alive
	// connection. Default 120s.
	IdleTimeout time.Duration
	// WriteTimeout bounds every write to the client that has to wait (its
	// socket buffer is full), unless the handler set its own write deadline.
	// Writes that do not wait touch no timer. Default 30s.
	WriteTimeout time.Duration
	// BodyReadTimeout bounds reading a request body, from its first read
	// that has to wait, unless the handler set its own read deadline. A body
	// already received touches no timer. Default 30s.
	BodyReadTimeout time.Duration
	// MaxHeaderBytes bounds the request line and headers (431 beyond).
	// Default 64 KiB.
	MaxHeaderBytes int
	// ErrorBody, when set, gives the body of the server's own error answers
	// (malformed requests); default plain text.
	ErrorBody func(status int, message string) (contentType string, body []byte)
	// Log receives accept errors and handler panics.
	Log logr.Logger

	mu        sync.Mutex
	listeners map[*net.Listener]struct{}
	conns     map[*serverConn]struct{}
	closing   atomic.Bool
	connsGone chan struct{} // closed when conns empties during a shutdown
}

// Supported reports whether Server can run here (it needs epoll).
func Supported() bool {
	_, err := hangups()
	return err == nil
}

// orDefault is d, or def when d is not positive.
func orDefault[T time.Duration | int](d, def T) T {
	if d > 0 {
		return d
	}
	return def
}

func (s *Server) readHeaderTimeout() time.Duration {
	return orDefault(s.ReadHeaderTimeout, 10*time.Second)
}
func (s *Server) idleTimeout() time.Duration     { return orDefault(s.IdleTimeout, 120*time.Second) }
func (s *Server) writeTimeout() time.Duration    { return orDefault(s.WriteTimeout, 30*time.Second) }
func (s *Server) bodyReadTimeout() time.Duration { return orDefault(s.BodyReadTimeout, 30*time.Second) }

func (s *Server) maxHeaderBytes() int { return orDefault(s.MaxHeaderBytes, 64<<10) }

// Serve accepts connections on l until Shutdown or Close; it then returns
// http.ErrServerClosed (l is closed). Other accept errors end it unless
// temporary.
func (s *Server) Serve(l net.Listener) error {
	w, err := hangups()
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		_ = l.Close()
		return http.ErrServerClosed
	}
	s.initLocked()
	s.listeners[&l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, &l)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.closing.Load() {
				return http.ErrServerClosed
			}
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() { // e.g. out of file descriptors
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.Log.Error(err, "accepting a connection; retrying", "delay", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		c := s.newConn(nc, w)
		if c == nil {
			continue // the server is closing
		}
		go c.serve()
	}
}

// initLocked makes the server's maps (s.mu held).
func (s *Server) initLocked() {
	if s.listeners == nil {
		s.listeners = map[*net.Listener]struct{}{}
	}
	if s.conns == nil {
		s.conns = map[*serverConn]struct{}{}
	}
}

// ServeConn serves nc on a goroutine of its own, as if Serve had accepted
// it; buffered is what was already read from it (the event loop hands a
// connection over with the request it leaves to the handler). A closing
// server closes nc.
func (s *Server) ServeConn(nc net.Conn, buffered []byte) { s.serveConn(nc, buffered, nil) }

// serveConn is ServeConn; back, when set, takes the connection back when
// it is idle (see handBack).
func (s *Server) serveConn(nc net.Conn, buffered []byte, back func(fd int, remote string) bool) {
	w, err := hangups()
	if err != nil {
		_ = nc.Close()
		return
	}
	s.mu.Lock()
	s.initLocked()
	s.mu.Unlock()
	c := s.newConn(nc, w)
	if c == nil {
		return // closing
	}
	if len(buffered) > 0 {
		c.rd = &prefixReader{p: buffered, r: c.rd}
	}
	c.back = back
	go c.serve()
}

// prefixReader reads p, then r.
type prefixReader struct {
	p []byte
	r io.Reader
}

func (pr *prefixReader) Read(b []byte) (int, error) {
	if len(pr.p) > 0 {
		n := copy(b, pr.p)
		pr.p = pr.p[n:]
		return n, nil
	}
	return pr.r.Read(b)
}

// Shutdown stops accepting, closes idle connections, lets requests in flight
// finish (their connections close after their response) and returns when
// none is left, or with ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing.Store(true)
	err := s.closeListeners()
	if s.connsGone == nil {
		s.connsGone = make(chan struct{})
		if len(s.conns) == 0 {
			close(s.connsGone)
		}
	}
	gone := s.connsGone
	s.mu.Unlock()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		for c := range s.conns {
			c.closeIfIdle()
		}
		s.mu.Unlock()
		select {
		case <-gone:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// closeListeners closes and forgets the listeners (s.mu held); it returns
// the first error.
func (s *Server) closeListeners() error {
	var err error
	for l := range s.listeners {
		if cerr := (*l).Close(); cerr != nil && err == nil {
			err = cerr
		}
	}
	s.listeners = nil
	return err
}

// Close stops accepting and closes every connection at once.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing.Store(true)
	err := s.closeListeners()
	for c := range s.conns {
		// Closed before the context ends: a handler that returns when it
		// sees the context done cannot get an answer out that looks whole.
		_ = c.nc.Close()
		c.cancel(errServerClosed)
	}
	return err
}

var (
	errServerClosed = errors.New("the server is closing")
	errClientGone   = errors.New("the client closed the connection")
)

// Connection states.
const (
	stateNew    int32 = iota // accepted, no request yet
	stateIdle                // waiting for the next request
	stateActive              // reading a request or answering it
	stateClosed              // closed by Shutdown while idle
)

type serverConn struct {
	s            *Server
	nc           net.Conn
	raw          syscall.RawConn
	rd           io.Reader // nc or an fdConn on it
	id           uint64
	remote       string
	br           *bufio.Reader
	out          []byte // output not yet written
	hdr          []byte // the request head being read
	state        atomic.Int32
	ctx          *connContext
	cancel       func(cause error)
	template     http.Request       // empty but for the context
	writeNB      func(uintptr) bool // write's callback, its argument and results
	pw, rest     []byte
	werr         error
	handlerWD    bool        // the handler set a write deadline
	idleDeadline time.Time   // the read deadline awaitRequest set (zero: another one replaced it)
	resp         response    // the current request's, reused
	respHeader   http.Header // resp's header map, cleared per request
	body         reqBody     // the current request's body, reused
	w            *hangupWatcher
	back         func(fd int, remote string) bool // see handBack
}

var connIDs atomic.Uint64

func (s *Server) newConn(nc net.Conn, w *hangupWatcher) *serverConn {
	ctx := newConnContext()
	cancel := ctx.cancel
	c := &serverConn{s: s, nc: nc, id: connIDs.Add(1), remote: nc.RemoteAddr().String(), ctx: ctx, cancel: cancel, w: w}
	c.template = *(&http.Request{}).WithContext(ctx)
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
		}
	}
	c.rd = connReader(nc, c.raw)
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		cancel(errServerClosed)
		_ = nc.Close()
		return nil
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	return c
}

// closeIfIdle closes c when it waits for a request (Shutdown).
func (c *serverConn) closeIfIdle() {
	if c.state.CompareAndSwap(stateIdle, stateClosed) {
		_ = c.nc.SetReadDeadline(time.Unix(1, 0)) // wakes the wait; it sees stateClosed
	}
}

func (c *serverConn) serve() {
	c.br = readers.Get().(*bufio.Reader)
	c.br.Reset(c.rd)
	if c.raw != nil {
		c.w.add(c)
	}
	defer c.finish()
	for {
		if !c.awaitRequest() {
			return
		}
		req, b, err := c.readRequest()
		if err != nil {
			c.replyError(err)
			return
		}
		if !c.handle(req, b) {
			return
		}
		c.state.Store(stateIdle)
		if c.s.closing.Load() {
			c.closeIfIdle()
		}
		if c.back != nil && c.handBack() {
			return
		}
	}
}

// handBack gives a connection the event loop handed over back to it, once
// its answer is written and nothing of a next request has been read: a
// request the loop left (one that had to wait, another path, a chunked
// body) does not keep its connection off the loop for good. The loop gets
// a duplicate of the descriptor; closing this one leaves the socket open.
func (c *serverConn) handBack() bool {
	if c.raw == nil || c.br.Buffered() > 0 || c.s.closing.Load() {
		return false
	}
	if pr, ok := c.rd.(*prefixReader); ok && len(pr.p) > 0 {
		return false
	}
	if !c.flushOut() || !c.state.CompareAndSwap(stateIdle, stateClosed) {
		return false
	}
	if giveFD(c.raw, func(fd int) bool { return c.back(fd, c.remote) }) {
		c.w.forget(c)
		return true
	}
	c.state.Store(stateIdle)
	if c.s.closing.Load() {
		c.closeIfIdle()
	}
	return false
}

// finish writes what is left and closes the connection.
func (c *serverConn) finish() {
	if len(c.out) > 0 {
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.s.writeTimeout()))
		_, _ = c.nc.Write(c.out)
	}
	if c.raw != nil {
		c.w.remove(c)
	}
	c.cancel(errServerClosed)
	_ = c.nc.Close()
	c.br.Reset(nil)
	readers.Put(c.br)
	c.br = nil
	s := c.s
	s.mu.Lock()
	delete(s.conns, c)
	if len(s.conns) == 0 && s.connsGone != nil {
		select {
		case <-s.connsGone:
		default:
			close(s.connsGone)
		}
	}
	s.mu.Unlock()
}

// awaitRequest writes the end of the last response and waits until the next
// request can be read. It returns false when the connection should close.
//
// (The client side writes its request from inside RawConn.Read to skip a
// read that finds nothing; here that is not safe: a request the client sent
// early — pipelined, or a new connection's first — may have made the socket
// readable before the wait began, and the reset of the readiness flag would
// lose it.)
func (c *serverConn) awaitRequest() bool {
	if c.br.Buffered() == 0 {
		timeout := c.s.idleTimeout()
		if c.state.Load() == stateNew {
			timeout = c.s.readHeaderTimeout()
		}
		// The deadline is moved only when less than 7/8 of the timeout is
		// left, not per request: no timer work per request.
		if now := time.Now(); c.idleDeadline.Sub(now) < timeout-timeout/8 {
			c.idleDeadline = now.Add(timeout)
			_ = c.nc.SetReadDeadline(c.idleDeadline)
		}
		if c.state.Load() == stateClosed { // Shutdown came first (its wake-up deadline was just replaced)
			return false
		}
	}
	if !c.flushOut() {
		return false
	}
	if _, err := c.br.Peek(1); err != nil {
		return false // idle too long, Shutdown, or the connection is gone
	}
	return c.activate()
}

// activate marks the connection busy; false when Shutdown closed it first.
func (c *serverConn) activate() bool {
	for {
		st := c.state.Load()
		if st == stateClosed {
			return false
		}
		if c.state.CompareAndSwap(st, stateActive) {
			return true
		}
	}
}

// write writes p: at once when the socket takes it, else it waits within
// the handler's write deadline if it set one, else within WriteTimeout. In
// the common case no deadline is set and no timer touched.
func (c *serverConn) write(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if c.handlerWD {
		_, err := c.nc.Write(p)
		return err
	}
	if c.raw == nil {
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.s.writeTimeout()))
		_, err := c.nc.Write(p)
		_ = c.nc.SetWriteDeadline(time.Time{})
		return err
	}
	if c.writeNB == nil {
		c.writeNB = c.writeNonBlockingCallback // one closure per connection, not per write
	}
	c.pw = p
	err := c.raw.Write(c.writeNB)
	rest, werr := c.rest, c.werr
	c.pw, c.rest, c.werr = nil, nil, nil
	if err == nil {
		err = werr
	}
	if err == nil && len(rest) > 0 { // the client's socket buffer is full: wait, within bounds
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.s.writeTimeout()))
		_, err = c.nc.Write(rest)
		_ = c.nc.SetWriteDeadline(time.Time{})
	}
	return err
}

// writeNonBlockingCallback is write's RawConn.Write callback.
func (c *serverConn) writeNonBlockingCallback(fd uintptr) bool {
	c.rest, c.werr = writeNonBlocking(fd, c.pw)
	return true
}

// writeNonBlocking writes p to the non-blocking fd and returns what the
// socket would not take (or what was left when an error came).
func writeNonBlocking(fd uintptr, p []byte) ([]byte, error) {
	for len(p) > 0 {
		n, err := writeFD(fd, p)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return p, nil
		case err != nil:
			return p, os.NewSyscallError("write", err)
		}
		p = p[n:]
	}
	return nil, nil
}

// flushOut writes the pending output.
func (c *serverConn) flushOut() bool { return c.writeOut() == nil }

// writeOut writes the pending output.
func (c *serverConn) writeOut() error {
	err := c.write(c.out)
	c.out = c.out[:0]
	return err
}

// requestError is a malformed request: answered with status, then closed.
type requestError struct {
	status int
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &requestError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// replyError answers a request that could not be read, when it can.
func (c *serverConn) replyError(err error) {
	var re *requestError
	if !errors.As(err, &re) {
		return // the connection broke or timed out: nothing to answer
	}
	ctype, body := "text/plain; charset=utf-8", []byte(strconv.Itoa(re.status)+" "+http.StatusText(re.status)+": "+re.msg)
	if c.s.ErrorBody != nil {
		ctype, body = c.s.ErrorBody(re.status, re.msg)
	}
	c.out = appendStatusLine(c.out[:0], re.status)
	c.out = append(c.out, "Content-Type: "...)
	c.out = append(c.out, ctype...)
	c.out = append(c.out, "\r\nConnection: close\r\nContent-Length: "...)
	c.out = strconv.AppendInt(c.out, int64(len(body)), 10)
	c.out = append(c.out, "\r\n\r\n"...)
	c.out = append(c.out, body...)
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.s.writeTimeout()))
	c.flushOut()
	c.lingerClose()
}

// lingerClose closes the sending side and reads what the client still sends
// for a moment, so that closing with unread input (which sends a reset)
// does not destroy the answer before the client reads it.
func (c *serverConn) lingerClose() {
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		_ = c.nc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, _ = io.Copy(io.Discard, io.LimitReader(c.nc, 1<<20))
	}
}

// readRequest reads a request line and headers.
func (c *serverConn) readRequest() (*http.Request, *reqBody, error) {
	limit := c.s.maxHeaderBytes()
	if !headComplete(c.br) {
		_ = c.nc.SetReadDeadline(time.Now().Add(c.s.readHeaderTimeout()))
		c.idleDeadline = time.Time{}
	}
	head, err := readHead(c.br, c.hdr, limit)
	c.hdr = head[:0]
	switch {
	case err == errHeadTooLarge:
		return nil, nil, &requestError{status: http.StatusRequestHeaderFieldsTooLarge,
			msg: fmt.Sprintf("the request line and headers exceed %d bytes", limit)}
	case err == io.ErrUnexpectedEOF:
		return nil, nil, badRequest("the connection closed inside the request head")
	case err != nil:
		return nil, nil, err
	}
	// The read deadline in force (idle or head) stays: the handler reads
	// nothing but the body, whose first read that waits sets its own.
	return c.parse(string(head))
}

// headComplete reports whether br already holds a whole request head.
func headComplete(br *bufio.Reader) bool {
	p, _ := br.Peek(br.Buffered())
	return bytes.Contains(p, []byte("\r\n\r\n")) || bytes.Contains(p, []byte("\n\n"))
}

// parse builds the request from its head.
func (c *serverConn) parse(head string) (*http.Request, *reqBody, error) {
	r, f, err := parseRequestHead(&c.template, c.remote, head)
	if err != nil {
		return nil, nil, err
	}
	b := &c.body // the connection's, reused: a body is not read after its handler returned
	*b = reqBody{c: c, remaining: f.remaining}
	if f.chunked {
		b.chunked = httputil.NewChunkedReader(c.br)
	}
	b.expect = f.expect
	if b.chunked == nil && b.remaining == 0 {
		r.Body = http.NoBody
		b.eof = true
	} else {
		r.Body = b
	}
	return r, b, nil
}

// reqFraming is how a request's body is framed.
type reqFraming struct {
	remaining int64 // Content-Length framing: the length
	chunked   bool  // chunked framing
	expect    bool  // Expect: 100-continue (HTTP/1.1)
}

// parseRequestLine parses a request's first line; rest is the head after it.
func parseRequestLine(head string) (method, target, proto string, minor int, rest string, err error) {
	line, rest := nextLine(head)
	method, line, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(line, " ")
	if !ok1 || !ok2 || method == "" || target == "" {
		return "", "", "", 0, "", badRequest("malformed request line %q", truncate(head))
	}
	if !validMethod(method) {
		return "", "", "", 0, "", badRequest("invalid method %q", method)
	}
	switch proto {
	case "HTTP/1.1":
		minor = 1
	case "HTTP/1.0":
	default:
		if len(proto) == 8 && strings.HasPrefix(proto, "HTTP/") && isDigit(proto[5]) && proto[6] == '.' && isDigit(proto[7]) {
			return "", "", "", 0, "", &requestError{status: http.StatusHTTPVersionNotSupported, msg: fmt.Sprintf("unsupported protocol version %q", proto)}
		}
		return "", "", "", 0, "", badRequest("malformed protocol %q", proto)
	}
	return method, target, proto, minor, rest, nil
}

// parseRequestHead builds a request (a copy of template, for its context)
// from its head; the caller sets its Body. Malformed heads give a
// *requestError.
func parseRequestHead(template *http.Request, remote, head string) (*http.Request, reqFraming, error) {
	method, target, proto, minor, rest, err := parseRequestLine(head)
	if err != nil {
		return nil, reqFraming{}, err
	}
	u, err := parseTarget(method, target)
	if err != nil {
		return nil, reqFraming{}, err
	}
	var hd heading
	h, err := parseFields(rest, &hd, true)
	if err != nil {
		return nil, reqFraming{}, badRequest("%v", err)
	}
	host, f, length, err := hd.request(minor)
	if err != nil {
		return nil, f, err
	}
	if u.Host != "" { // absolute form: its host wins (RFC 9112 3.2.2)
		if !httpguts.ValidHostHeader(u.Host) {
			return nil, f, badRequest("invalid host in request target %q", truncate(target))
		}
		host = u.Host
	}
	r := new(http.Request)
	*r = *template // carries the connection's context
	r.Method, r.RequestURI, r.RemoteAddr, r.URL, r.Header, r.Host = method, target, remote, u, h, host
	r.Proto, r.ProtoMajor, r.ProtoMinor = proto, 1, minor
	r.Close, r.ContentLength = hd.closes(minor), length
	if f.chunked {
		r.TransferEncoding = []string{"chunked"}
		delete(h, "Transfer-Encoding")
	}
	return r, f, nil
}

// errNotFast: a request the loop leaves to Server (which serves or
// refuses it): not in origin form, or with escapes in its path.
var errNotFast = errors.New("h1: not for the loop")

// parseIncoming parses a request's head into in, for the loop: no
// http.Request, URL or header map. Requests whose target is not a plain
// origin-form path give errNotFast.
func parseIncoming(in *Incoming, remote, head string) (reqFraming, error) {
	method, target, _, minor, rest, err := parseRequestLine(head)
	if err != nil {
		return reqFraming{}, err
	}
	if target[0] != '/' || hasAnyByte(target, "%#") || hasCTL(target) {
		return reqFraming{}, errNotFast // Server answers or serves it
	}
	var hd heading
	fields := in.Fields[:0]
	if err := scanFields(rest, &hd, true, func(k, v string) { fields = append(fields, Field{k, v}) }); err != nil {
		return reqFraming{}, badRequest("%v", err)
	}
	host, f, length, err := hd.request(minor)
	if err != nil {
		return f, err
	}
	path, _, _ := strings.Cut(target, "?")
	*in = Incoming{Method: method, Target: target, Path: path, Host: host, RemoteAddr: remote, Minor: minor,
		Close: hd.closes(minor), ContentLength: length, Fields: fields}
	return f, nil
}

func isDigit(b byte) bool { return '0' <= b && b <= '9' }

func validMethod(m string) bool {
	for i := 0; i < len(m); i++ {
		if !httpguts.IsTokenRune(rune(m[i])) {
			return false
		}
	}
	return true
}

// hasCTL reports a space or control character in a request target.
func hasCTL(target string) bool {
	for i := 0; i < len(target); i++ {
		if target[i] <= ' ' || target[i] == 0x7f {
			return true
		}
	}
	return false
}

// parseTarget parses the request target; origin form without escapes is
// taken as is.
func parseTarget(method, target string) (*url.URL, error) {
	if target[0] == '/' && !strings.ContainsAny(target, "%#") {
		if hasCTL(target) {
			return nil, badRequest("invalid request target %q", truncate(target))
		}
		path, query, _ := strings.Cut(target, "?")
		return &url.URL{Path: path, RawQuery: query}, nil
	}
	if target == "*" && method == http.MethodOptions {
		return &url.URL{Path: "*"}, nil
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, badRequest("invalid request target %q", truncate(target))
	}
	return u, nil
}

// handle runs the handler and ends the response; false closes the connection.
func (c *serverConn) handle(r *http.Request, b *reqBody) (keep bool) {
	// The response and its header map are the connection's, reused by its
	// next request: a ResponseWriter is not used after its handler returned.
	if c.respHeader == nil {
		c.respHeader = make(http.Header, 8)
	} else {
		clear(c.respHeader)
	}
	w := &c.resp
	*w = response{c: c, req: r, body: b, header: c.respHeader, cl: -1}
	b.resp = w
	w.closeAfter = r.Close || c.s.closing.Load()
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				buf := make([]byte, 16<<10)
				buf = buf[:runtime.Stack(buf, false)]
				c.s.Log.Error(fmt.Errorf("%v", v), "handler panicked", "method", r.Method, "path", r.URL.Path, "stack", string(buf))
			}
			c.out = c.out[:0] // an aborted answer must not look complete
			keep = false
		}
	}()
	c.s.Handler.ServeHTTP(w, r)
	return w.end()
}

// reqBody is a request body: Content-Length or chunked.
type reqBody struct {
	c         *serverConn
	resp      *response
	remaining int64     // Content-Length framing
	chunked   io.Reader // chunked framing
	expect    bool      // 100 Continue not sent yet
	timed     bool      // BodyReadTimeout's deadline is set
	eof       bool
	closed    bool
	err       error
}

func (b *reqBody) Read(p []byte) (int, error) {
	switch {
	case b.closed:
		return 0, http.ErrBodyReadAfterClose
	case b.eof:
		return 0, io.EOF
	case b.err != nil:
		return 0, b.err
	case len(p) == 0:
		return 0, nil
	}
	if b.expect {
		b.expect = false
		if b.resp != nil && b.resp.wroteHeader {
			// answered without the body: the client need not send it
		} else if err := b.c.write([]byte("HTTP/1.1 100 Continue\r\n\r\n")); err != nil {
			b.err = err
			return 0, err
		}
	}
	if !b.timed && (b.chunked != nil || b.c.br.Buffered() == 0) && (b.resp == nil || !b.resp.rdeadline) {
		// The first read that may wait: bound the rest of the body.
		b.timed = true
		_ = b.c.nc.SetReadDeadline(time.Now().Add(b.c.s.bodyReadTimeout()))
		b.c.idleDeadline = time.Time{}
	}
	if b.chunked != nil {
		n, err := b.chunked.Read(p)
		if err == io.EOF {
			if err = skipTrailer(b.c.br, b.c.s.maxHeaderBytes()); err == nil {
				b.eof = true
				return n, io.EOF
			}
		}
		if err != nil {
			b.err = err
		}
		return n, err
	}
	if int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	n, err := b.c.br.Read(p)
	b.remaining -= int64(n)
	if b.remaining == 0 {
		b.eof = true
		return n, io.EOF
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		b.err = err
	}
	return n, err
}

func (b *reqBody) Close() error {
	b.closed = true
	return nil
}

// drained reports whether the body was read to its end, reading the rest
// when it is already buffered (a handler that answered without reading it).
func (b *reqBody) drained() bool {
	if b.eof {
		return true
	}
	if b.err != nil || b.expect || b.chunked != nil {
		return false
	}
	if b.remaining <= int64(b.c.br.Buffered()) {
		_, _ = b.c.br.Discard(int(b.remaining))
		b.remaining, b.eof = 0, true
		return true
	}
	return false
}

// outBuf is how much output is gathered before it is written.
const outBuf = 4 << 10

// response is the http.ResponseWriter.
type response struct {
	c           *serverConn
	req         *http.Request
	body        *reqBody
	header      http.Header
	status      int
	wroteHeader bool
	committed   bool    // status and headers are in c.out (or sent)
	pending     []byte  // body written before the headers were committed
	pendingBuf  *[]byte // pending's buffer as pendingPool holds it
	cl          int64   // Content-Length, -1 unknown
	written     int64
	chunked     bool
	closeAfter  bool
	noBody      bool
	err         error // a write failed: the connection is done
	wdeadline   bool  // the handler set a write deadline
	rdeadline   bool
}

var pendingPool = sync.Pool{New: func() any { b := make([]byte, 0, outBuf); return &b }}

func (w *response) Header() http.Header { return w.header }

func (w *response) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("h1: invalid WriteHeader code %v", code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols { // informational: sent now, a final status follows
		c := w.c
		c.out = appendStatusLine(c.out, code)
		c.out = appendHeaders(c.out, w.header)
		c.out = append(c.out, "\r\n"...)
		if !c.flushOut() {
			w.err = errClientGone
		}
		return
	}
	w.wroteHeader, w.status = true, code
	w.noBody = w.req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
	if v := w.header.Get("Content-Length"); v != "" {
		if n, err := strconv.ParseUint(v, 10, 63); err == nil {
			w.cl = int64(n)
		} else {
			w.header.Del("Content-Length")
		}
	}
}

func (w *response) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.noBody {
		if w.req.Method == http.MethodHead {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if w.cl >= 0 && w.written+int64(len(p)) > w.cl {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if !w.committed {
		if w.pending == nil {
			w.pendingBuf = pendingPool.Get().(*[]byte)
			w.pending = (*w.pendingBuf)[:0]
		}
		if len(w.pending)+len(p) <= outBuf {
			w.pending = append(w.pending, p...)
			return len(p), nil
		}
		w.commit(false)
	}
	return len(p), w.send(p)
}

// send frames p and writes it out, gathering small writes.
func (w *response) send(p []byte) error {
	c := w.c
	if len(p) == 0 {
		return nil
	}
	if w.chunked {
		c.out = strconv.AppendInt(c.out, int64(len(p)), 16)
		c.out = append(c.out, "\r\n"...)
	}
	if len(c.out)+len(p) <= outBuf {
		c.out = append(c.out, p...)
		if w.chunked {
			c.out = append(c.out, "\r\n"...)
		}
		return nil
	}
	err := c.writeOut()
	if err == nil {
		err = c.write(p)
	}
	if w.chunked {
		c.out = append(c.out, "\r\n"...)
	}
	if err != nil {
		w.err = err
	}
	return err
}

// commit puts the status line and headers in c.out. final: the handler has
// returned, so a body still pending gets a Content-Length.
func (w *response) commit(final bool) {
	c := w.c
	h := w.header
	if hasToken(h["Connection"], "close") || c.s.closing.Load() {
		w.closeAfter = true
	}
	delete(h, "Connection")
	delete(h, "Transfer-Encoding")
	delete(h, "Trailer")
	switch {
	case w.noBody:
		if w.status == http.StatusNoContent {
			delete(h, "Content-Length")
		}
	case w.cl >= 0:
	case final:
		w.cl = int64(len(w.pending))
		h["Content-Length"] = []string{strconv.Itoa(len(w.pending))}
	case w.req.ProtoMinor == 1:
		w.chunked = true
	default: // HTTP/1.0 and no length: the end of the connection ends the body
		w.closeAfter = true
	}
	c.out = appendResponseHead(c.out, w.status, h, w.chunked)
	switch {
	case w.closeAfter:
		c.out = append(c.out, "Connection: close\r\n"...)
	case w.req.ProtoMinor == 0:
		c.out = append(c.out, "Connection: keep-alive\r\n"...)
	}
	c.out = append(c.out, "\r\n"...)
	w.committed = true
	if p := w.pending; p != nil {
		w.pending = nil
		_ = w.send(p)
		*w.pendingBuf = p[:0] // the pool's own pointer back: no new one to allocate
		pendingPool.Put(w.pendingBuf)
		w.pendingBuf = nil
	}
}

// end finishes the response after the handler returned; false closes the
// connection.
func (w *response) end() bool {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	c := w.c
	if !w.committed {
		// A body left unread (or a client gone) closes the connection:
		// the answer says so.
		if !w.closeAfter && (c.ctx.Err() != nil || !w.body.drained()) {
			w.closeAfter = true
		}
		w.commit(true)
	}
	if w.chunked && w.err == nil {
		c.out = append(c.out, "0\r\n\r\n"...)
	}
	if w.cl >= 0 && !w.noBody && w.written < w.cl {
		w.closeAfter = true
	}
	if w.wdeadline {
		_ = c.nc.SetWriteDeadline(time.Time{})
		c.handlerWD = false
	}
	if w.rdeadline {
		_ = c.nc.SetReadDeadline(time.Time{})
	}
	if w.err != nil {
		c.out = c.out[:0]
		return false
	}
	if w.closeAfter || c.ctx.Err() != nil || !w.body.drained() {
		if c.flushOut() && !w.body.eof {
			c.lingerClose()
		}
		return false
	}
	return true // c.out is written by the next awaitRequest
}

// FlushError sends what was written so far.
func (w *response) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return w.err
	}
	if !w.committed {
		w.commit(false)
	}
	if w.err == nil {
		w.err = w.c.writeOut() // the real cause: a deadline, a reset, …
	}
	return w.err
}

// Flush implements http.Flusher.
func (w *response) Flush() { _ = w.FlushError() }

// SetReadDeadline bounds reading the request body (http.ResponseController).
func (w *response) SetReadDeadline(t time.Time) error {
	w.rdeadline = !t.IsZero()
	w.c.idleDeadline = time.Time{}
	return w.c.nc.SetReadDeadline(t)
}

// SetWriteDeadline bounds writing the response (http.ResponseController).
func (w *response) SetWriteDeadline(t time.Time) error {
	w.wdeadline = !t.IsZero()
	w.c.handlerWD = w.wdeadline
	return w.c.nc.SetWriteDeadline(t)
}

// BoundsBlockingIO reports that the server bounds body reads and response
// writes that have to wait (BodyReadTimeout, WriteTimeout): a handler need
// not set deadlines for that, and saves their timers.
func (w *response) BoundsBlockingIO() bool { return true }

// EnableFullDuplex: the body can always be read while the answer is written.
func (w *response) EnableFullDuplex() error { return nil }

var statusLines sync.Map // int -> string

func appendStatusLine(b []byte, code int) []byte {
	if code == http.StatusOK {
		return append(b, "HTTP/1.1 200 OK\r\n"...)
	}
	if v, ok := statusLines.Load(code); ok {
		return append(b, v.(string)...)
	}
	text := http.StatusText(code)
	if text == "" {
		text = "status code " + strconv.Itoa(code)
	}
	line := "HTTP/1.1 " + strconv.Itoa(code) + " " + text + "\r\n"
	statusLines.Store(code, line)
	return append(b, line...)
}

// appendHeaders writes h; invalid names are skipped and line breaks in
// values become spaces (no response splitting).
func appendHeaders(b []byte, h http.Header) []byte {
	for k, vs := range h {
		for _, v := range vs {
			b = appendField(b, k, v)
		}
	}
	return b
}

// appendField writes one field as appendHeaders does.
func appendField(b []byte, k, v string) []byte {
	if !httpguts.ValidHeaderFieldName(k) {
		return b
	}
	b = append(b, k...)
	b = append(b, ": "...)
	start := len(b)
	b = append(b, v...)
	for i := start; i < len(b); i++ {
		if b[i] == '\r' || b[i] == '\n' {
			b[i] = ' '
		}
	}
	return append(b, "\r\n"...)
}

// appendResponseHead appends the status line, a Date unless h has one, h's
// fields and the chunked coding when asked (no blank line).
func appendResponseHead(b []byte, status int, h http.Header, chunked bool) []byte {
	b = appendStatusLine(b, status)
	if _, ok := h["Date"]; !ok {
		b = append(b, "Date: "...)
		b = append(b, httpDate()...)
		b = append(b, "\r\n"...)
	}
	b = appendHeaders(b, h)
	if chunked {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	return b
}

type dateCache struct {
	sec int64
	s   string
}

var lastDate atomic.Pointer[dateCache]

// httpDate is the Date header's value, formatted once a second.
func httpDate() string {
	now := time.Now()
	if d := lastDate.Load(); d != nil && d.sec == now.Unix() {
		return d.s
	}
	d := &dateCache{sec: now.Unix(), s: now.UTC().Format(http.TimeFormat)}
	lastDate.Store(d)
	return d.s
}
