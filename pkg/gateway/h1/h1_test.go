package h1

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// serve runs handler on 127.0.0.1 and counts the connections it accepts.
func serve(t *testing.T, h http.HandlerFunc) (string, *atomic.Int64, *http.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int64
	srv := &http.Server{Handler: h, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String(), &conns, srv
}

func get(t *testing.T, tr *Transport, ctx context.Context, addr, body string) (string, error) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/x", strings.NewReader(body))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestKeepAliveAndReplay(t *testing.T) {
	addr, conns, srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(append([]byte("echo:"), b...))
	})
	tr := &Transport{}
	for i := range 5 {
		got, err := get(t, tr, context.Background(), addr, "hi")
		if err != nil || got != "echo:hi" {
			t.Fatalf("request %d: %q %v", i, got, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("5 sequential requests used %d connections, want 1", n)
	}
	// The server drops its idle connections: the next request replays on a new one.
	srv.SetKeepAlivesEnabled(false)
	time.Sleep(50 * time.Millisecond)
	srv.SetKeepAlivesEnabled(true)
	if got, err := get(t, tr, context.Background(), addr, "again"); err != nil || got != "echo:again" {
		t.Fatalf("after the server closed idle connections: %q %v", got, err)
	}
}

func TestCancelUnblocksBody(t *testing.T) {
	release := make(chan struct{})
	addr, _, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("first"))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	tr := &Transport{}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	done := make(chan error, 1)
	go func() { _, err := resp.Body.Read(buf); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("read after cancel succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancel did not unblock the body")
	}
	_ = resp.Body.Close()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if n := len(tr.idle[addr]); n != 0 {
		t.Errorf("a cancelled connection was pooled (%d idle)", n)
	}
}

func TestRefused(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	_ = ln.Close()
	if _, err := get(t, &Transport{}, context.Background(), addr, ""); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("err = %v, want connection refused", err)
	}
	req, _ := http.NewRequest(http.MethodGet, "https://"+addr, nil)
	if _, err := (&Transport{}).RoundTrip(req); err == nil {
		t.Error("https accepted")
	}
}

func TestWriteRequestRefusesInjection(t *testing.T) {
	addr, _, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {})
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	req.Header["X-Bad"] = []string{"a\r\nInjected: yes"}
	if _, err := (&Transport{}).RoundTrip(req); err == nil || !strings.Contains(err.Error(), "X-Bad") {
		t.Errorf("err = %v, want a refusal naming X-Bad", err)
	}
}

func TestHeadersAndQueryArrive(t *testing.T) {
	got := make(chan *http.Request, 1)
	addr, _, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(b)))
		got <- r
		_, _ = w.Write(b)
	})
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/x?a=1&b=%20", strings.NewReader("body!"))
	req.Header.Add("X-Multi", "1")
	req.Header.Add("X-Multi", "2")
	resp, err := (&Transport{}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	r := <-got
	if string(b) != "body!" || r.URL.RawQuery != "a=1&b=%20" || r.URL.Path != "/v1/x" ||
		strings.Join(r.Header.Values("X-Multi"), ",") != "1,2" || r.ContentLength != 5 || r.Host != addr {
		t.Errorf("server saw %s %s host %s headers %v length %d; answer %q", r.Method, r.URL, r.Host, r.Header, r.ContentLength, b)
	}
}

// rawServer answers each connection's requests with the scripted raw
// answers in turn (one per request read), counting connections.
func rawServer(t *testing.T, answers ...string) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	var conns atomic.Int64
	var next atomic.Int64
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer func() { _ = nc.Close() }()
				br := bufio.NewReader(nc)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					i := int(next.Add(1)) - 1
					if i >= len(answers) {
						return
					}
					if _, err := io.WriteString(nc, answers[i]); err != nil {
						return
					}
					if strings.Contains(answers[i], "Connection: close") || !strings.Contains(answers[i], "Content-Length") && !strings.Contains(answers[i], "chunked") && !strings.HasPrefix(answers[i], "HTTP/1.1 204") {
						return // the end of the connection ends the body
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), &conns
}

func TestResponseFraming(t *testing.T) {
	cases := []struct {
		name, answer, want string
		status             int
		reused             bool // the next request goes on the same connection
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "hello", 200, true},
		{"chunked with trailer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2;ext=1\r\nlo\r\n0\r\nX-Trailer: 1\r\n\r\n", "hello", 200, true},
		{"interim 100 skipped", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", "ok", 201, true},
		{"no content", "HTTP/1.1 204 No Content\r\n\r\n", "", 204, true},
		{"to the end of the connection", "HTTP/1.1 200 OK\r\n\r\nuntil close", "until close", 200, false},
		{"connection close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye", "bye", 200, false},
		{"HTTP/1.0 without keep-alive", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", "ok", 200, false},
		{"bare LF lines", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", "ok", 200, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr, conns := rawServer(t, tc.answer, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext")
			tr := &Transport{}
			req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/x", strings.NewReader("q"))
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err != nil || string(b) != tc.want || resp.StatusCode != tc.status {
				t.Fatalf("got %d %q %v; want %d %q", resp.StatusCode, b, err, tc.status, tc.want)
			}
			if got, err := get(t, tr, context.Background(), addr, "again"); err != nil || got != "next" {
				t.Fatalf("second request: %q %v", got, err)
			}
			if want := map[bool]int64{true: 1, false: 2}[tc.reused]; conns.Load() != want {
				t.Errorf("used %d connections, want %d", conns.Load(), want)
			}
		})
	}
}

func TestResponseErrors(t *testing.T) {
	for name, answer := range map[string]string{
		"malformed status line":      "HTTP/1.1 OK\r\n\r\n",
		"not HTTP":                   "SSH-2.0-OpenSSH\r\n\r\n",
		"conflicting lengths":        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
		"invalid length":             "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"header folding":             "HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 0\r\n\r\n",
		"connection ends in headers": "HTTP/1.1 200 OK\r\nContent-Le",
	} {
		t.Run(name, func(t *testing.T) {
			addr, _ := rawServer(t, answer)
			req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/x", nil)
			if resp, err := (&Transport{}).RoundTrip(req); err == nil {
				_ = resp.Body.Close()
				t.Fatalf("answer %q accepted (status %d)", answer, resp.StatusCode)
			}
		})
	}
	// A body cut short is an error, not a short success.
	addr, _ := rawServer(t, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nshort")
	if got, err := get(t, &Transport{}, context.Background(), addr, "x"); err != io.ErrUnexpectedEOF {
		t.Errorf("truncated body: %q %v, want io.ErrUnexpectedEOF", got, err)
	}
}

func TestRoundTripUntil(t *testing.T) {
	stall := make(chan struct{})
	defer close(stall)
	addr, conns, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("stall") {
			w.WriteHeader(200)
			_, _ = w.Write([]byte("partial"))
			w.(http.Flusher).Flush()
			<-stall
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	tr := &Transport{}
	do := func(query string, deadline time.Time) (string, error) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/x"+query, nil)
		resp, err := tr.RoundTripUntil(req, deadline)
		if err != nil {
			return "", err
		}
		defer func() { _ = resp.Body.Close() }()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	// Within its deadline; then the same connection without one: the old
	// deadline (now past) must not linger on the pooled connection.
	if got, err := do("", time.Now().Add(100*time.Millisecond)); err != nil || got != "ok" {
		t.Fatalf("%q %v", got, err)
	}
	time.Sleep(150 * time.Millisecond)
	if got, err := do("", time.Time{}); err != nil || got != "ok" {
		t.Fatalf("after a deadline passed on the pooled connection: %q %v", got, err)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1 (kept alive)", n)
	}
	// An answer that stalls is cut at the deadline, with a deadline error.
	start := time.Now()
	got, err := do("?stall", time.Now().Add(200*time.Millisecond))
	if !errors.Is(err, os.ErrDeadlineExceeded) || got != "partial" {
		t.Fatalf("stalled answer: %q %v, want the partial body and a deadline error", got, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cut after %v", d)
	}
}

// TestEarlyAnswerToALargeBody: an engine that answers before reading a body
// larger than the write buffer (and keeps the connection open) is heard at
// once, not at the deadline.
func TestEarlyAnswerToALargeBody(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); _ = ln.Close() })
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer func() { _ = nc.Close() }()
		br := bufio.NewReader(nc)
		for { // the head only
			line, err := br.ReadString('\n')
			if err != nil || line == "\r\n" {
				break
			}
		}
		_, _ = io.WriteString(nc, "HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 3\r\n\r\nbig")
		<-done // open, silent
	}()
	req, _ := http.NewRequest(http.MethodPost, "http://"+ln.Addr().String()+"/x", strings.NewReader(strings.Repeat("x", 64<<10)))
	start := time.Now()
	resp, err := (&Transport{}).RoundTripUntil(req, time.Now().Add(5*time.Second))
	if err != nil {
		t.Fatalf("after %v: %v", time.Since(start), err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 413 || time.Since(start) > 3*time.Second {
		t.Errorf("status %d after %v, want 413 at once", resp.StatusCode, time.Since(start))
	}
}

func TestConnContextWatch(t *testing.T) {
	// One function in the slot; a second at once falls back to
	// context.AfterFunc; the cancel runs both; after it, unwatch reports
	// that the cancel came first.
	cc := newConnContext()
	var ran atomic.Int32
	a, b := &conn{}, &conn{}
	a.cut, b.cut = func() { ran.Add(1) }, func() { ran.Add(10) }
	a.watch(cc)
	b.watch(cc)
	if a.watched != cc || b.watched != nil || b.stopCut == nil {
		t.Fatalf("slot holders: a %v, b %v (AfterFunc %v)", a.watched != nil, b.watched != nil, b.stopCut != nil)
	}
	if !a.unwatch() || !b.unwatch() {
		t.Fatal("unwatch before the cancel: want true")
	}
	a.watch(cc) // the slot is free again
	b.watch(cc)
	cc.cancel(errClientGone)
	if !errors.Is(context.Cause(cc), errClientGone) || cc.Err() == nil {
		t.Fatalf("cause %v, err %v", context.Cause(cc), cc.Err())
	}
	deadline := time.Now().Add(5 * time.Second)
	for ran.Load() != 11 && time.Now().Before(deadline) { // AfterFunc runs on its own goroutine
		time.Sleep(time.Millisecond)
	}
	if ran.Load() != 11 {
		t.Fatalf("ran %d, want both (11)", ran.Load())
	}
	if a.unwatch() || b.unwatch() {
		t.Error("unwatch after the cancel: want false")
	}
	c := &conn{}
	c.cut = func() { ran.Add(100) }
	c.watch(cc) // after the cancel: AfterFunc runs it at once
	for ran.Load() != 111 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if ran.Load() != 111 || c.watched != nil {
		t.Errorf("watch after the cancel: ran %d, in slot %v", ran.Load(), c.watched != nil)
	}
}

func TestSendRefusesFieldsThatBreakTheHead(t *testing.T) {
	// A name or value that would end the field or the head early is refused
	// before anything is sent (no header injection into the engine's
	// stream); good requests on the same transport still go.
	addr, _ := rawServer(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	tr := &Transport{}
	defer tr.CloseIdleConnections()
	for name, r := range map[string]*Request{
		"value with CRLF": {Header: http.Header{"X-A": {"1\r\nX-Injected: 1"}}},
		"value with LF":   {Header: http.Header{"X-A": {"1\nX-Injected: 1"}}},
		"name with colon": {Header: http.Header{"X-A: b": {"1"}}},
		"name with space": {Extra: []Field{{Name: "X A", Value: "1"}}},
		"empty name":      {Extra: []Field{{Name: "", Value: "1"}}},
		"extra with CR":   {Extra: []Field{{Name: "X-A", Value: "1\r"}}},
		"host with space": {Host: "a b"},
	} {
		r.Method, r.Target = http.MethodGet, "/"
		if r.Host == "" {
			r.Host = addr
		}
		if _, err := tr.Send(context.Background(), addr, r, time.Time{}); err == nil {
			t.Errorf("%s: sent", name)
		}
	}
	resp, err := tr.Send(context.Background(), addr, &Request{Method: http.MethodGet, Target: "/", Host: addr,
		Header: http.Header{"X-A": {"1"}}, Extra: []Field{{Name: "X-B", Value: "2"}}}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if string(b) != "ok" {
		t.Errorf("answer %q", b)
	}
}
