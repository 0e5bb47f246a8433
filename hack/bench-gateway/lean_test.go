package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spillway-io/spillway/pkg/gateway/enginetest"
)

// The lean engine answers what enginetest answers, byte for byte in the
// bodies, with the same heads' fields; the lean client reads both whole.
func TestLeanEngineAnswersAsEnginetest(t *testing.T) {
	lean, err := startLeanEngine("bench", 16, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer lean.Close()
	_, refAddr, stop, err := enginetest.Start(enginetest.Config{Model: "bench", Tokens: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	post := func(addr, body string) (*http.Response, string) {
		t.Helper()
		resp, err := http.Post("http://"+addr+"/v1/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}
	for _, body := range []string{plainBody, streamBody} {
		got, gotBody := post(lean.Addr(), body)
		want, wantBody := post(refAddr, body)
		if gotBody != wantBody {
			t.Errorf("%s: body\n%q\nwant\n%q", body, gotBody, wantBody)
		}
		for _, f := range []string{"Content-Type", "Content-Length", "Cache-Control"} {
			if got.Header.Get(f) != want.Header.Get(f) {
				t.Errorf("%s: %s %q, want %q", body, f, got.Header.Get(f), want.Header.Get(f))
			}
		}
		if got.Header.Get("Date") == "" || !slicesEqual(got.TransferEncoding, want.TransferEncoding) {
			t.Errorf("%s: Date %q, transfer coding %v (want %v)", body, got.Header.Get("Date"), got.TransferEncoding, want.TransferEncoding)
		}
		for range 3 { // kept alive: the same connection again
			if err := leanPost(context.Background(), lean.Addr(), leanRequest(lean.Addr(), body)); err != nil {
				t.Fatalf("%s: %v", body, err)
			}
		}
	}
	// Paced: the same stream, its events 1ms apart.
	start := time.Now()
	_, paced := post(lean.Addr(), pacedBody)
	if took := time.Since(start); took < 15*time.Millisecond {
		t.Errorf("a paced stream took %s, want 16 events 1ms apart", took)
	}
	if _, want := post(refAddr, streamBody); paced != want {
		t.Errorf("paced stream\n%q\nwant\n%q", paced, want)
	}
	for _, addr := range []string{lean.Addr(), refAddr} { // the scrape of the engine's load
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `vllm:num_requests_running{model_name="bench"} 0`) ||
			!strings.Contains(string(b), `vllm:num_requests_waiting{model_name="bench"} 0`) {
			t.Errorf("%s/metrics: %d %q", addr, resp.StatusCode, b)
		}
	}
	if n := len(pool(lean.Addr())); n != 1 {
		t.Errorf("%d idle connections, want 1 (reused)", n)
	}
	closeIdle()
}

func slicesEqual(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }

func TestLeanClientReadsAnswersByTheirFraming(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("a") {
		case "chunked": // chunked, flushed in pieces, with a trailer
			w.Header().Set("Trailer", "X-T")
			for range 5 {
				_, _ = io.WriteString(w, strings.Repeat("x", 7000))
				w.(http.Flusher).Flush()
			}
			w.Header().Set("X-T", "end")
		case "500":
			http.Error(w, "no", http.StatusInternalServerError)
		case "close":
			w.Header().Set("Connection", "close")
			_, _ = io.WriteString(w, "bye")
		case "slow":
			time.Sleep(time.Second)
		default:
			_, _ = io.WriteString(w, strings.Repeat("y", 40000)) // longer than the client's buffer
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	req := func(q string) []byte {
		return []byte("POST /?a=" + q + " HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
	}
	ctx := context.Background()
	for _, q := range []string{"chunked", "plain", "chunked"} {
		if err := leanPost(ctx, addr, req(q)); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := leanPost(ctx, addr, req("500")); !errors.Is(err, errStatus) {
		t.Fatalf("500: %v, want errStatus", err)
	}
	if err := leanPost(ctx, addr, req("plain")); err != nil {
		t.Fatalf("after a 500 (kept alive): %v", err)
	}
	idle := len(pool(addr))
	if err := leanPost(ctx, addr, req("close")); err != nil {
		t.Fatalf("an answer closing the connection: %v", err)
	}
	if n := len(pool(addr)); n != idle-1 {
		t.Fatalf("%d idle connections after an answer closing its connection, want %d (closed, not pooled)", n, idle-1)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := leanPost(short, addr, req("slow")); err == nil {
		t.Fatal("no error past the context's deadline")
	}
	closeIdle()
}
