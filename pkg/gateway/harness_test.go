package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/spillway-io/spillway/pkg/gateway/enginetest"
	"github.com/spillway-io/spillway/pkg/gateway/routing"
)

// startEngine runs a fake engine on 127.0.0.1 for the test's life.
func startEngine(t *testing.T, cfg enginetest.Config) (*enginetest.Engine, string) {
	t.Helper()
	e, addr, stop, err := enginetest.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return e, addr
}

// deadAddress is a 127.0.0.1 port nobody listens on (connections refused).
func deadAddress(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

type testGateway struct {
	*Gateway
	URL    string
	cancel context.CancelFunc
	done   chan error
}

// startGateway serves g on 127.0.0.1 (API and admin on one port).
func startGateway(t testing.TB, o Options, svcs ...routing.Service) *testGateway {
	t.Helper()
	if o.Domain == "" {
		o.Domain = "example.com"
	}
	o.Log = testr.NewWithInterface(t, testr.Options{Verbosity: 1})
	g := New(o)
	g.Update(svcs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tg := &testGateway{Gateway: g, URL: "http://" + ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { tg.done <- g.Serve(ctx, ln, nil, 10*time.Second) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-tg.done:
		case <-time.After(15 * time.Second):
			t.Error("gateway did not stop")
		}
	})
	return tg
}

func service(name, model string, addrs ...string) routing.Service {
	s := routing.Service{Namespace: "default", Name: name, Model: model}
	for _, a := range addrs {
		s.Endpoints = append(s.Endpoints, routing.Endpoint{Address: a, Pool: "idc"})
	}
	return s
}

// post sends a JSON body with an optional Host.
func post(t *testing.T, client *http.Client, url, host, body string, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if host != "" {
		req.Host = host
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

type apiError struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Code    *string `json:"code"`
	} `json:"error"`
}

// readError decodes an OpenAI error body and checks the status.
func readError(t *testing.T, resp *http.Response, status int) apiError {
	t.Helper()
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d; body %s", resp.StatusCode, status, body)
	}
	var e apiError
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Message == "" || e.Error.Type == "" {
		t.Fatalf("not an OpenAI error body (%v): %s", err, body)
	}
	return e
}

// eventually polls cond every few milliseconds for up to 10s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }
