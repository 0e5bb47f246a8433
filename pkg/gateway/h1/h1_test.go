package h1

import (
	"context"
	"io"
	"net"
	"net/http"
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
