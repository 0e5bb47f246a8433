//go:build linux

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
	"net/http/httptrace"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// proxyTo is a FastHandler that sends POST /fast/... to one upstream and
// leaves everything else to the Server.
type proxyTo struct {
	addr string
	mu   sync.Mutex
	ends []error
	body strings.Builder
}

func (p *proxyTo) StartFast(r *Incoming) Exchange {
	if r.Method != http.MethodPost || !strings.HasPrefix(r.Path, "/fast/") {
		return nil
	}
	return &testExchange{p: p, req: &Request{Method: r.Method, Target: r.Target, Host: p.addr, Fields: r.Fields, Body: r.Body}}
}

func (p *proxyTo) endings() []error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]error(nil), p.ends...)
}

type testExchange struct {
	p     *proxyTo
	req   *Request
	tried bool
}

func (x *testExchange) Next() (string, *Request, time.Time, bool) {
	if x.tried {
		return "", nil, time.Time{}, false
	}
	x.tried = true
	return x.p.addr, x.req, time.Now().Add(5 * time.Second), true
}
func (x *testExchange) Failed(error)          {}
func (x *testExchange) Answer(a *Answer) bool { return false }
func (x *testExchange) Body(p []byte) {
	x.p.mu.Lock()
	x.p.body.Write(p)
	x.p.mu.Unlock()
}
func (x *testExchange) End(err error) []byte {
	x.p.mu.Lock()
	x.p.ends = append(x.p.ends, err)
	x.p.mu.Unlock()
	if err != nil {
		return []byte("data: broken\n\n")
	}
	return nil
}
func (x *testExchange) Fail(w http.ResponseWriter) {
	w.WriteHeader(http.StatusBadGateway)
	_, _ = w.Write([]byte("no upstream"))
}

// startLoop serves a Loop on 127.0.0.1 in front of upstream (a handler on
// a real server whose connections are counted).
func startLoop(t *testing.T, upstream http.HandlerFunc) (addr string, p *proxyTo, upConns *atomic.Int32) {
	t.Helper()
	return startLoops(t, upstream, 0)
}

// startLoops is startLoop with n event loops (0: the default).
func startLoops(t *testing.T, upstream http.HandlerFunc, n int) (addr string, p *proxyTo, upConns *atomic.Int32) {
	t.Helper()
	if !LoopSupported() {
		t.Skip("no epoll")
	}
	upConns = new(atomic.Int32)
	ul, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	us := &http.Server{Handler: upstream, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			upConns.Add(1)
		}
	}}
	go func() { _ = us.Serve(ul) }()
	t.Cleanup(func() { _ = us.Close() })

	p = &proxyTo{addr: ul.Addr().String()}
	lp := &Loop{Fast: p, Server: &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "server %s %s %s", r.Method, r.URL.Path, b)
	}), WriteTimeout: 500 * time.Millisecond}, Loops: n}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- lp.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := lp.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return l.Addr().String(), p, upConns
}

func TestLoopFastPathReusesUpstreamsAndHandsOff(t *testing.T) {
	addr, p, upConns := startLoop(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "upstream %s %s", r.URL.Path, b)
	})
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	var reused atomic.Int32 // requests sent on a kept-alive connection
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		if i.Reused {
			reused.Add(1)
		}
	}}
	post := func(path, body string) string {
		t.Helper()
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodPost, "http://"+addr+path, strings.NewReader(body))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	for i := range 20 {
		if got, want := post("/fast/x", fmt.Sprint(i)), fmt.Sprintf("upstream /fast/x %d", i); got != want {
			t.Fatalf("request %d: %q, want %q", i, got, want)
		}
	}
	if n := upConns.Load(); n != 1 {
		t.Errorf("20 requests in a row opened %d upstream connections, want 1 (kept alive)", n)
	}
	if n := len(p.endings()); n != 20 {
		t.Errorf("%d exchanges ended, want 20", n)
	}
	// A request the fast path leaves goes to the Server; once answered,
	// its connection comes back to the loop, for the next fast request
	// and the next left one alike.
	reused.Store(0)
	for i := range 3 {
		if got := post("/other", "a"); got != "server POST /other a" {
			t.Errorf("left request %d: %q", i, got)
		}
		if got, want := post("/fast/y", "b"), "upstream /fast/y b"; got != want {
			t.Errorf("after hand-over %d: %q, want %q (back on the loop)", i, got, want)
		}
	}
	if n := reused.Load(); n != 6 {
		t.Errorf("%d of 6 requests on the kept-alive connection", n)
	}
	// Only left requests, maxHandoffs times in a row: the connection stays
	// with the Server.
	for i := range maxHandoffs {
		if got := post("/other", "c"); got != "server POST /other c" {
			t.Errorf("left request %d: %q", i, got)
		}
	}
	if got := post("/fast/z", "d"); got != "server POST /fast/z d" {
		t.Errorf("after %d hand-overs in a row: %q, want the Server's answer", maxHandoffs, got)
	}
}

func TestLoopPipelinedRequestsAnsweredInOrder(t *testing.T) {
	addr, _, _ := startLoop(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fast/slow" {
			time.Sleep(50 * time.Millisecond)
		}
		fmt.Fprint(w, r.URL.Path)
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := "POST /fast/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n" +
		"POST /fast/quick HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for _, want := range []string{"/fast/slow", "/fast/quick"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != want {
			t.Errorf("answer %q, want %q (in order)", b, want)
		}
	}
}

func TestLoopStreamsAndCancelsWhenTheClientLeaves(t *testing.T) {
	upstreamGone := make(chan struct{})
	addr, p, _ := startLoop(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(w, "data: %d\n\n", i); err != nil {
				break
			}
			w.(http.Flusher).Flush()
			if r.URL.Path == "/fast/short" && i == 2 {
				return
			}
			select {
			case <-r.Context().Done():
				close(upstreamGone)
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	})
	// A whole stream: chunked through, decoded for the exchange.
	resp, err := http.Post("http://"+addr+"/fast/short", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := "data: 0\n\ndata: 1\n\ndata: 2\n\n"; string(b) != want || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("stream %q (%v), want %q chunked", b, resp.TransferEncoding, want)
	}
	p.mu.Lock()
	seen := p.body.String()
	p.mu.Unlock()
	if seen != "data: 0\n\ndata: 1\n\ndata: 2\n\n" {
		t.Errorf("the exchange saw %q", seen)
	}

	// A client that leaves mid-stream cancels the upstream request.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("POST /fast/long HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case <-upstreamGone:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream request was not cancelled when the client left")
	}
	ends := p.endings()
	if len(ends) != 2 || ends[0] != nil || !errors.Is(ends[1], ErrClientGone) {
		t.Errorf("exchanges ended with %v, want [nil, ErrClientGone]", ends)
	}
}

func TestLoopUpstreamBreaksMidStream(t *testing.T) {
	addr, p, _ := startLoop(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: 0\n\n")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the connection is cut
	})
	resp, err := http.Post("http://"+addr+"/fast/x", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(b) != "data: 0\n\ndata: broken\n\n" {
		t.Errorf("got %q (%v): want the first event, then the exchange's last piece, properly ended", b, err)
	}
	if ends := p.endings(); len(ends) != 1 || ends[0] == nil || errors.Is(ends[0], ErrClientGone) {
		t.Errorf("ended with %v, want the upstream's failure", ends)
	}
}

// Several loops share the listener: concurrent clients all get their own
// answers, with the client's fields forwarded and the upstream's
// end-to-end fields passed back (not its hop-by-hop ones).
func TestLoopManyLoopsAndFields(t *testing.T) {
	addr, p, _ := startLoops(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Upstream", "yes")
		w.Header().Set("Connection", "X-Private")
		w.Header().Set("X-Private", "hop")
		fmt.Fprintf(w, "%s %s", r.Header.Get("X-Request-Id"), b)
	}, 3)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	var wg sync.WaitGroup
	for c := range 24 {
		wg.Go(func() {
			for i := range 25 {
				body := fmt.Sprintf("%d-%d", c, i)
				req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/fast/x", strings.NewReader(body))
				req.Header.Set("X-Request-Id", "id"+body)
				resp, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if want := "id" + body + " " + body; string(b) != want {
					t.Errorf("answer %q, want %q", b, want)
				}
				if resp.Header.Get("X-Upstream") != "yes" || resp.Header.Get("X-Private") != "" || resp.ContentLength != int64(len(b)) {
					t.Errorf("answer's head: %v (length %d)", resp.Header, resp.ContentLength)
				}
			}
		})
	}
	wg.Wait()
	if n := len(p.endings()); n != 24*25 {
		t.Errorf("%d exchanges ended, want %d", n, 24*25)
	}
}

// Connections going back and forth between the loops and the Server while
// the Loop shuts down: Shutdown still ends (startLoops' cleanup checks it),
// every answer that arrives is whole, and no descriptor is left open.
func TestLoopHandBackDuringShutdown(t *testing.T) {
	// Cleanups run last first: the Loop shuts down while the clients go on,
	// then the clients stop, then the descriptors are counted.
	if _, err := hangups(); err != nil { // the process's hang-up watcher (one descriptor, kept)
		t.Fatal(err)
	}
	fdsBefore := openFDs(t)
	t.Cleanup(func() {
		deadline := time.Now().Add(2 * time.Second)
		for openFDs(t) > fdsBefore && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := openFDs(t); n > fdsBefore {
			t.Errorf("%d descriptors open after the test, %d before", n, fdsBefore)
		}
	})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(stop); wg.Wait() })
	addr, _, _ := startLoops(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "upstream")
	}, 2)
	var answers atomic.Int32
	for range 8 {
		wg.Go(func() {
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				path, want := "/fast/x", "upstream"
				if i%2 == 0 {
					path, want = "/other", "server POST /other "
				}
				resp, err := client.Post("http://"+addr+path, "text/plain", nil)
				if err != nil {
					time.Sleep(time.Millisecond) // the Loop is closing
					continue
				}
				b, err := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if err == nil && string(b) != want {
					t.Errorf("%s: %q, want %q", path, b, want)
				}
				answers.Add(1)
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	if answers.Load() == 0 {
		t.Error("no answer before the shutdown")
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(entries)
}

// Back-pressure both ways on one connection, the paths where a loop could
// lose a wake-up and stall: pipelined requests past the loop's read-ahead
// bound while an answer is awaited (reading stops, then goes on after the
// exchange), answers far larger than the socket buffers and the loop's read
// buffer to a client that does not read for a while (the client's socket
// fills, the upstream is paused, then resumed), and answers that end with the
// upstream closing its connection (its last bytes and the close arrive
// together). Every answer must arrive whole and in order.
func TestLoopBackPressureAndAnswersToEOF(t *testing.T) {
	const big = 8 << 20 // more than the client's and the loop's socket buffers hold
	pattern := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = 'a' + byte(i%23)
		}
		return b
	}
	addr, p, _ := startLoop(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/fast/slow": // meanwhile the loop reads the pipelined requests, up to its bound
			time.Sleep(100 * time.Millisecond)
			fmt.Fprint(w, "slow")
		case "/fast/big":
			w.Header().Set("Content-Length", fmt.Sprint(big))
			_, _ = w.Write(pattern(big))
		case "/fast/chunked": // no length: chunked, written in pieces
			for range 48 {
				_, _ = w.Write(pattern(big / 48))
				w.(http.Flusher).Flush()
			}
		case "/fast/eof": // no length, no chunks: the answer ends with the connection
			conn, bw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			// One write, then the close: both are most often there by the
			// time the loop reads.
			_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + r.Header.Get("X-Pad"))
			if r.Header.Get("X-Pad") == "eof0" {
				_, _ = bw.Write(pattern(big))
			}
			_ = bw.Flush()
			_ = conn.Close()
		default:
			fmt.Fprint(w, r.URL.Path)
		}
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.(*net.TCPConn).SetReadBuffer(256 << 10) // not smaller: a window below loopback's MSS crawls
	small := func(i int) string { return fmt.Sprintf("/fast/n%04d", i) }
	var reqs strings.Builder
	for _, path := range []string{"/fast/slow", "/fast/big", "/fast/chunked"} {
		fmt.Fprintf(&reqs, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", path)
	}
	const pipelined = 3000 // ~250 KiB of requests behind the slow answer: far more than maxPipelined
	for i := range pipelined {
		fmt.Fprintf(&reqs, "POST %s HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\nContent-Length: 0\r\n\r\n", small(i), strings.Repeat("p", 16))
	}
	const eofs = 20 // answers ending with the upstream's close, each on a new upstream connection
	for i := range eofs {
		fmt.Fprintf(&reqs, "POST /fast/eof HTTP/1.1\r\nHost: x\r\nX-Pad: eof%d\r\nContent-Length: 0\r\n\r\n", i)
	}
	if reqs.Len() <= maxPipelined {
		t.Fatalf("%d bytes of requests: not past the read-ahead bound", reqs.Len())
	}
	go func() { _, _ = c.Write([]byte(reqs.String())) }() // blocks until the loop reads on
	time.Sleep(200 * time.Millisecond)                    // not reading: the loop's writes to c fill its socket
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	read := func(what string) []byte {
		t.Helper()
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		b, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			t.Fatalf("%s: body after %d bytes: %v", what, len(b), err)
		}
		return b
	}
	if b := read("slow"); string(b) != "slow" {
		t.Fatalf("first answer %q", b)
	}
	if b := read("big"); !bytes.Equal(b, pattern(big)) {
		t.Fatalf("big answer: %d bytes, want %d, same bytes", len(b), big)
	}
	want := bytes.Repeat(pattern(big/48), 48)
	if b := read("chunked"); !bytes.Equal(b, want) {
		t.Fatalf("chunked answer: %d bytes, want %d, same bytes", len(b), len(want))
	}
	for i := range pipelined {
		if b := read(small(i)); string(b) != small(i) {
			t.Fatalf("pipelined answer %d: %q, want %q (in order)", i, b, small(i))
		}
	}
	for i := range eofs {
		want := fmt.Sprint("eof", i)
		if i == 0 {
			want += string(pattern(big))
		}
		if b := read("eof"); string(b) != want {
			t.Fatalf("answer %d to the upstream's close: %d bytes, want %d, same bytes", i, len(b), len(want))
		}
	}
	if n := len(p.endings()); n != pipelined+3+eofs {
		t.Errorf("%d exchanges ended, want %d", n, pipelined+3+eofs)
	}
}
