package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spillway-io/spillway/pkg/gateway/enginetest"
	"github.com/spillway-io/spillway/pkg/gateway/routing"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String()
}

// TestBinary runs the command with a static config and an API key file,
// on each HTTP server (and with two event loops): health, metrics, a
// request, and a clean stop on cancellation (SIGTERM).
func TestBinary(t *testing.T) {
	for _, server := range []string{"event-loop", "goroutines", "net/http"} {
		t.Run(server, func(t *testing.T) { testBinary(t, server) })
	}
	t.Run("two event loops", func(t *testing.T) { testBinary(t, "event-loop", "--event-loops", "2") })
}

func testBinary(t *testing.T, server string, extra ...string) {
	_, engine, stop, err := enginetest.Start(enginetest.Config{Model: "qwen"})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	dir := t.TempDir()
	cfg, _ := json.Marshal([]routing.Service{{Namespace: "default", Name: "qwen-chat", Model: "qwen",
		Endpoints: []routing.Endpoint{{Address: engine, Pool: "idc"}}}})
	if err := os.WriteFile(filepath.Join(dir, "services.json"), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keys"), []byte("sk-test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	api, admin := freeAddr(t), freeAddr(t)
	runtime.GC() // the live heap is known from the first collection on: the GC tuner's first step then sets its percent
	cmd := newCommand()
	cmd.SetArgs(append([]string{"--static-config", filepath.Join(dir, "services.json"), "--api-keys-file", filepath.Join(dir, "keys"),
		"--listen", api, "--admin-listen", admin, "--drain-timeout", "5s", "--http-server", server}, extra...))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()

	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/healthz")
		if err == nil {
			_ = resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the gateway did not come up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+api+"/v1/chat/completions", strings.NewReader(`{"model":"qwen","messages":[]}`))
	req.Host = "qwen-chat-default.example.com"
	req.Header.Set("Authorization", "Bearer sk-test")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// The server in use shows in its answer to a malformed request: OpenAI-style
	// JSON from spillway's, plain text from net/http's.
	conn, err := net.Dial("tcp", api)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(conn, "GET /v1/models HTTP/1.1\r\n\r\n") // no Host
	bad, err := http.ReadResponse(bufio.NewReader(conn), nil)
	_ = conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	wantType := map[string]string{"event-loop": "application/json", "goroutines": "application/json", "net/http": "text/plain; charset=utf-8"}[server]
	if bad.StatusCode != 400 || bad.Header.Get("Content-Type") != wantType {
		t.Errorf("malformed request: %d %q, want 400 %q", bad.StatusCode, bad.Header.Get("Content-Type"), wantType)
	}
	m, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(m.Body)
	_ = m.Body.Close()
	if !strings.Contains(string(body), `spillway_gateway_requests_total{code="200",namespace="default",pool="idc",service="qwen-chat"} 1`) {
		t.Errorf("metrics do not count the request:\n%s", body)
	}
	// --gc-headroom (32Mi by default) raised GOGC above 100: the live heap is small.
	if os.Getenv("GOGC") == "" {
		var percent float64
		for _, line := range strings.Split(string(body), "\n") {
			if v, ok := strings.CutPrefix(line, "go_gc_gogc_percent "); ok {
				percent, _ = strconv.ParseFloat(v, 64)
			}
		}
		if percent <= 100 {
			t.Errorf("go_gc_gogc_percent = %v, want > 100 (tuned)", percent)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not stop")
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--scrape-interval", "2s", "--static-config", "x"},
		{"--endpoints-from", "dns", "--static-config", "x"},
		{"--http-server", "nginx", "--static-config", "x"},
		{"--event-loops", "-1", "--static-config", "x"},
		{"--gc-headroom", "lots", "--static-config", "x"},
		{"--gc-headroom", "-1Mi", "--static-config", "x"},
		{"--api-keys-file", "a", "--api-keys-secret", "b/c", "--static-config", "x"},
		{"--no-such-flag"},
	} {
		cmd := newCommand()
		cmd.SetArgs(args)
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), "--") {
			t.Errorf("%v: err = %v, want a usage error", args, err)
		}
	}
}
