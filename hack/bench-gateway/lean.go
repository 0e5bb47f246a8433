package main

// The throughput phases' load generator and engine, lean on purpose. With
// net/http on both ends the load generator's CPU (~125 µs a request, 70 % of
// it in the client's and the engine's user space) was the bottleneck of
// every target, so req/s measured the load generator; the proxies ran half
// busy. These do the same system calls with little else — a request written
// whole, an answer read to its end by its framing; an engine answering at
// once with the bytes net/http writes for enginetest's answers (same heads,
// bodies and writes: a stream's head with its first event, one write per
// event, [DONE], the last chunk) — so the proxy under test is what limits.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// leanEngine answers chat completions at once: a JSON answer of tokens
// tokens, or, when the body asks for a stream, tokens events and [DONE];
// itl apart when the body's "user" is "paced".
type leanEngine struct {
	itl     time.Duration
	ln      net.Listener
	plain   []byte   // the whole plain answer, less its Date line
	metrics []byte   // the answer to GET /metrics (the gateway reads it), less its Date line
	events  [][]byte // a stream's chunks, [DONE]'s included
	date    atomic.Pointer[[]byte]
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
}

// startLeanEngine serves on 127.0.0.1.
func startLeanEngine(model string, tokens int, itl time.Duration) (*leanEngine, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	text := make([]byte, 0, tokens*4)
	for i := range tokens {
		text = append(text, "tok"...)
		text = append(text, byte('0'+i%10))
	}
	body := fmt.Sprintf(`{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"length","logprobs":null}],"usage":{"prompt_tokens":3,"completion_tokens":%d,"total_tokens":%d}}`,
		model, text, tokens, tokens+3)
	e := &leanEngine{ln: ln, conns: map[net.Conn]struct{}{}, stop: make(chan struct{}), itl: itl,
		plain: fmt.Appendf(nil, "Content-Length: %d\r\nContent-Type: application/json\r\n\r\n%s", len(body), body)}
	m := fmt.Sprintf("# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name=%q} 0\n"+
		"# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name=%q} 0\n"+
		"# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{model_name=%q} 0\n", model, model, model)
	e.metrics = fmt.Appendf(nil, "Content-Length: %d\r\nContent-Type: text/plain; version=0.0.4\r\n\r\n%s", len(m), m)
	for i := range tokens {
		finish := "null"
		if i == tokens-1 {
			finish = `"length"`
		}
		e.events = append(e.events, chunk(fmt.Sprintf(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":%q,"choices":[{"index":0,"delta":{"role":"assistant","content":"tok%d"},"finish_reason":%s}]}`+"\n\n", model, i%10, finish)))
	}
	e.events = append(e.events, chunk("data: [DONE]\n\n"))
	e.tick(time.Now())
	e.wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case now := <-t.C:
				e.tick(now)
			case <-e.stop:
				return
			}
		}
	})
	e.wg.Go(e.accept)
	return e, nil
}

func chunk(s string) []byte { return fmt.Appendf(nil, "%x\r\n%s\r\n", len(s), s) }

func (e *leanEngine) tick(now time.Time) {
	d := []byte("Date: " + now.UTC().Format(http.TimeFormat) + "\r\n")
	e.date.Store(&d)
}

// Addr is the engine's host:port.
func (e *leanEngine) Addr() string { return e.ln.Addr().String() }

// Close stops the engine and its connections.
func (e *leanEngine) Close() {
	_ = e.ln.Close()
	close(e.stop)
	e.mu.Lock()
	for c := range e.conns {
		_ = c.Close()
	}
	e.conns = nil
	e.mu.Unlock()
	e.wg.Wait()
}

func (e *leanEngine) accept() {
	for {
		c, err := e.ln.Accept()
		if err != nil {
			return
		}
		e.mu.Lock()
		if e.conns == nil {
			e.mu.Unlock()
			_ = c.Close()
			return
		}
		e.conns[c] = struct{}{}
		e.mu.Unlock()
		e.wg.Go(func() {
			e.serve(c)
			e.mu.Lock()
			delete(e.conns, c)
			e.mu.Unlock()
			_ = c.Close()
		})
	}
}

// serve answers c's requests in turn until it closes or sends something
// this engine does not take (it answers 400 and closes then).
func (e *leanEngine) serve(c net.Conn) {
	buf := make([]byte, 16<<10)
	var out []byte
	r, w := 0, 0
	for {
		end := bytes.Index(buf[r:w], []byte("\r\n\r\n"))
		if end < 0 {
			if r > 0 {
				w = copy(buf, buf[r:w])
				r = 0
			}
			if w == len(buf) {
				_, _ = io.WriteString(c, "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
				return
			}
			n, err := c.Read(buf[w:])
			if err != nil {
				return
			}
			w += n
			continue
		}
		headLen := end + 4
		length, ok := contentLength(buf[r : r+headLen])
		if !ok || headLen+length > len(buf) {
			_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			return
		}
		if r+headLen+length > len(buf) { // make room for the body
			w = copy(buf, buf[r:w])
			r = 0
		}
		for w < r+headLen+length {
			n, err := c.Read(buf[w:])
			if err != nil {
				return
			}
			w += n
		}
		get, metrics := bytes.HasPrefix(buf[r:], []byte("GET ")), bytes.HasPrefix(buf[r:], []byte("GET /metrics "))
		stream := bytes.Contains(buf[r+headLen:r+headLen+length], []byte(`"stream":true`))
		paced := stream && bytes.Contains(buf[r+headLen:r+headLen+length], []byte(`"user":"paced"`))
		r += headLen + length
		date := *e.date.Load()
		if get { // the gateway's scrape of the engine's load, as enginetest answers it
			out = append(out[:0], "HTTP/1.1 404 Not Found\r\n"...)
			body := []byte("Content-Length: 0\r\n\r\n")
			if metrics {
				out, body = append(out[:0], "HTTP/1.1 200 OK\r\n"...), e.metrics
			}
			if _, err := c.Write(append(append(out, date...), body...)); err != nil {
				return
			}
			continue
		}
		if !stream {
			out = append(append(append(out[:0], "HTTP/1.1 200 OK\r\n"...), date...), e.plain...)
			if _, err := c.Write(out); err != nil {
				return
			}
			continue
		}
		// As net/http writes a handler's flushed events: the head with the
		// first, one write per event, then the last chunk.
		out = append(append(append(out[:0], "HTTP/1.1 200 OK\r\nCache-Control: no-cache\r\nContent-Type: text/event-stream\r\n"...), date...), "Transfer-Encoding: chunked\r\n\r\n"...)
		for i, ev := range e.events {
			if i > 0 {
				out = out[:0]
				if paced {
					time.Sleep(e.itl)
				}
			}
			if _, err := c.Write(append(out, ev...)); err != nil {
				return
			}
		}
		if _, err := io.WriteString(c, "0\r\n\r\n"); err != nil {
			return
		}
	}
}

// contentLength is the Content-Length of a request head (0 without one);
// false for a chunked or malformed one.
func contentLength(head []byte) (int, bool) {
	n := 0
	for line := range bytes.SplitSeq(head, []byte("\r\n")) {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			v, err := strconv.Atoi(string(bytes.TrimSpace(value)))
			if err != nil || v < 0 {
				return 0, false
			}
			n = v
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return 0, false
		}
	}
	return n, true
}

// leanConn is a kept-alive HTTP/1.1 client connection.
type leanConn struct {
	nc   net.Conn
	buf  []byte
	r, w int // unread answer bytes: buf[r:w]
}

// pools keeps the idle leanConns of each address, across rounds (as
// net/http's Transport keeps its idle connections).
var pools sync.Map // host:port -> chan *leanConn

func pool(addr string) chan *leanConn {
	if p, ok := pools.Load(addr); ok {
		return p.(chan *leanConn)
	}
	p, _ := pools.LoadOrStore(addr, make(chan *leanConn, 4096))
	return p.(chan *leanConn)
}

// errStatus: an answer other than 200.
var errStatus = errors.New("status not 200")

// leanPost sends req (a POST) to addr (host:port) and reads the whole
// answer, on an idle kept-alive connection when there is one. The
// connection goes back to the pool after a whole answer, unless the answer
// closes it (nginx does after keepalive_requests); an error closes it.
// ctx's deadline bounds the exchange.
func leanPost(ctx context.Context, addr string, req []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d, hasDeadline := ctx.Deadline()
	if hasDeadline && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	var c *leanConn
	select {
	case c = <-pool(addr):
	default:
		nc, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		c = &leanConn{nc: nc, buf: make([]byte, 16<<10)}
	}
	_ = c.nc.SetDeadline(d) // zero without a deadline: none
	keep, err := c.roundTrip(req)
	if !keep || err != nil && !errors.Is(err, errStatus) {
		_ = c.nc.Close()
		return err
	}
	select {
	case pool(addr) <- c:
	default:
		_ = c.nc.Close()
	}
	return err
}

// closeIdle closes the pooled connections of every address.
func closeIdle() {
	pools.Range(func(_, p any) bool {
		for {
			select {
			case c := <-p.(chan *leanConn):
				_ = c.nc.Close()
			default:
				return true
			}
		}
	})
}

// leanRequest is a POST of body to /v1/chat/completions on addr.
func leanRequest(addr, body string) []byte {
	return fmt.Appendf(nil, "POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", addr, len(body), body)
}

// roundTrip sends req and reads the answer to its end; keep: the
// connection may carry another request.
func (c *leanConn) roundTrip(req []byte) (keep bool, err error) {
	if c.r != c.w {
		return false, errors.New("bytes after the last answer")
	}
	c.r, c.w = 0, 0
	if _, err := c.nc.Write(req); err != nil {
		return false, err
	}
	head, err := c.line()
	if err != nil {
		return false, err
	}
	ok := len(head) >= 12 && string(head[:9]) == "HTTP/1.1 " && string(head[9:12]) == "200"
	length, chunked := -1, false
	keep = true
	for {
		line, err := c.line()
		if err != nil {
			return false, err
		}
		if len(line) == 0 {
			break
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return false, fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
			if !chunked {
				return false, fmt.Errorf("transfer coding %q", value)
			}
		case bytes.EqualFold(name, []byte("Connection")) && bytes.EqualFold(value, []byte("close")):
			keep = false
		}
	}
	switch {
	case chunked:
		for {
			line, err := c.line()
			if err != nil {
				return false, err
			}
			size, _, _ := bytes.Cut(line, []byte(";"))
			n, err := strconv.ParseUint(string(bytes.TrimSpace(size)), 16, 31)
			if err != nil {
				return false, fmt.Errorf("bad chunk size %q", line)
			}
			if n == 0 {
				for { // trailer fields, then the blank line
					if line, err = c.line(); err != nil || len(line) == 0 {
						break
					}
				}
				if err != nil {
					return false, err
				}
				break
			}
			if err := c.skip(int(n)); err != nil {
				return false, err
			}
			if line, err := c.line(); err != nil || len(line) != 0 {
				return false, errors.New("no CRLF after a chunk")
			}
		}
	case length >= 0:
		if err := c.skip(length); err != nil {
			return false, err
		}
	default:
		return false, errors.New("an answer without a length")
	}
	if !ok {
		return keep, fmt.Errorf("%w: %q", errStatus, head)
	}
	return keep, nil
}

// fill reads more of the answer.
func (c *leanConn) fill() error {
	if c.r == c.w {
		c.r, c.w = 0, 0
	} else if c.w == len(c.buf) {
		if c.r == 0 {
			return errors.New("a line longer than the buffer")
		}
		c.w = copy(c.buf, c.buf[c.r:c.w])
		c.r = 0
	}
	n, err := c.nc.Read(c.buf[c.w:])
	if n == 0 && err == nil {
		err = io.ErrNoProgress
	}
	c.w += n
	if err != nil && n == 0 {
		return err
	}
	return nil
}

// line returns the next line, without its CRLF.
func (c *leanConn) line() ([]byte, error) {
	for {
		if i := bytes.Index(c.buf[c.r:c.w], []byte("\r\n")); i >= 0 {
			l := c.buf[c.r : c.r+i]
			c.r += i + 2
			return l, nil
		}
		if err := c.fill(); err != nil {
			return nil, err
		}
	}
}

// skip consumes n bytes of the answer.
func (c *leanConn) skip(n int) error {
	for n > 0 {
		if c.r == c.w {
			if err := c.fill(); err != nil {
				return err
			}
		}
		k := min(n, c.w-c.r)
		c.r += k
		n -= k
	}
	return nil
}
