package scrape

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/spillway-io/spillway/pkg/metricsadapter/store"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func serve(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL + "/metrics"
}

func podTarget(name, url string) Target {
	return Target{Source: "pod/default/" + name, Kind: KindPod, URL: url,
		Object: store.Object{Resource: store.Pods, Namespace: "default", Name: name}}
}

func TestRound(t *testing.T) {
	good := serve(t, func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name=\"q\"} 7\n")
	})
	broken := serve(t, func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) })
	garbage := serve(t, func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "<html>{{{ not metrics\n") })
	release := make(chan struct{})
	slow := serve(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	dcgm := serve(t, func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "# TYPE DCGM_CUSTOM_PROCESS_SM_UTIL gauge\nDCGM_CUSTOM_PROCESS_SM_UTIL{gpu=\"0\",namespace=\"default\",pod=\"good\"} 64\n")
	})

	st := store.New(time.Minute)
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	clk := clocktesting.NewFakeClock(t0)
	s := New(st, m, WithClock(clk), WithTimeout(200*time.Millisecond), WithConcurrency(2))

	targets := []Target{
		podTarget("good", good), podTarget("broken", broken), podTarget("garbage", garbage), podTarget("slow", slow),
		{Source: "node/gpu-1", Kind: KindNode, URL: dcgm, Object: store.Object{Resource: store.Nodes, Name: "gpu-1"}},
	}
	res := s.Round(context.Background(), targets)
	if diff := cmp.Diff(Result{OK: 2, Failed: 3}, res); diff != "" {
		t.Errorf("Round (-want,+got):\n%s", diff)
	}
	goodPod := store.Object{Resource: store.Pods, Namespace: "default", Name: "good"}
	for metric, want := range map[string]float64{"vllm_num_requests_waiting": 7, "DCGM_CUSTOM_PROCESS_SM_UTIL": 64} {
		got, err := st.Get(goodPod, metric, t0)
		if err != nil {
			t.Fatalf("Get %s: %v", metric, err)
		}
		if got.Value != want {
			t.Errorf("%s = %v, want %v", metric, got.Value, want)
		}
	}
	for _, c := range []struct {
		target, reason string
	}{{"pod/default/broken", ReasonStatus}, {"pod/default/garbage", ReasonParse}, {"pod/default/slow", ReasonRequest}} {
		if got := testutil.ToFloat64(m.errors.WithLabelValues(c.target, c.reason)); got != 1 {
			t.Errorf("errors{%s,%s} = %v, want 1", c.target, c.reason, got)
		}
		if got := testutil.ToFloat64(m.up.WithLabelValues(c.target)); got != 0 {
			t.Errorf("up{%s} = %v, want 0", c.target, got)
		}
	}
	if got, want := testutil.ToFloat64(m.lastSuccess.WithLabelValues("pod/default/good")), float64(t0.Unix()); got != want {
		t.Errorf("last success = %v, want %v", got, want)
	}
	if got := testutil.ToFloat64(m.targets.WithLabelValues("pod")); got != 4 {
		t.Errorf("pod targets = %v, want 4", got)
	}

	// The node goes away: its values and its metrics' series are dropped.
	s.Round(context.Background(), targets[:1])
	if _, err := st.Get(goodPod, "DCGM_CUSTOM_PROCESS_SM_UTIL", t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after the node left, Get = %v, want ErrNotFound", err)
	}
	if n := testutil.CollectAndCount(m.up); n != 1 {
		t.Errorf("target_up series after removals = %d, want 1", n)
	}
	if problems, err := testutil.CollectAndLint(m.errors); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

func TestRoundBoundsConcurrency(t *testing.T) {
	var inFlight, peak atomic.Int32
	var mu sync.Mutex
	url := serve(t, func(w http.ResponseWriter, _ *http.Request) {
		n := inFlight.Add(1)
		mu.Lock()
		if n > peak.Load() {
			peak.Store(n)
		}
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		inFlight.Add(-1)
		fmt.Fprint(w, "vllm:num_requests_running 1\n")
	})
	var targets []Target
	for i := range 12 {
		targets = append(targets, podTarget(fmt.Sprintf("p%d", i), url))
	}
	s := New(store.New(time.Minute), NewMetrics(prometheus.NewRegistry()), WithConcurrency(3))
	if res := s.Round(context.Background(), targets); res.OK != 12 {
		t.Fatalf("Round = %+v, want 12 OK", res)
	}
	if p := peak.Load(); p > 3 || p < 2 {
		t.Errorf("peak concurrent scrapes = %d, want 2..3", p)
	}
}

func TestRunStopsWithContext(t *testing.T) {
	var calls atomic.Int32
	url := serve(t, func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		fmt.Fprint(w, "vllm:num_requests_running 1\n")
	})
	var logMu sync.Mutex
	var errorLines []string
	logger := funcr.New(func(_, args string) {
		logMu.Lock()
		defer logMu.Unlock()
		if strings.Contains(args, "skipping a scrape target") {
			errorLines = append(errorLines, args)
		}
	}, funcr.Options{})
	m := NewMetrics(prometheus.NewRegistry())
	s := New(store.New(time.Minute), m, WithLogger(logger))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		s.Run(ctx, 10*time.Millisecond, func() ([]Target, []error) {
			return []Target{podTarget("a", url)}, []error{errors.New("node bad: annotation spillway.io/dcgm-endpoint is not a URL")}
		})
		close(done)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for calls.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop after the context ended")
	}
	if calls.Load() < 3 {
		t.Errorf("scrapes = %d, want at least 3", calls.Load())
	}
	if len(errorLines) != 1 {
		t.Errorf("a wrong annotation seen every round was logged %d times, want once: %q", len(errorLines), errorLines)
	}
	if got := testutil.ToFloat64(m.configErrors); got != 1 {
		t.Errorf("target_config_errors = %v, want 1", got)
	}
}

// BenchmarkRound100Targets scrapes 100 pod targets (one local server, a
// vLLM-sized exposition) per iteration with the default concurrency.
func BenchmarkRound100Targets(b *testing.B) {
	var body strings.Builder
	for _, n := range []string{"num_requests_running", "num_requests_waiting", "kv_cache_usage_perc", "prompt_tokens_total", "generation_tokens_total"} {
		fmt.Fprintf(&body, "# TYPE vllm:%s gauge\nvllm:%s{model_name=\"qwen\"} 3\n", n, n)
	}
	for i := range 40 {
		fmt.Fprintf(&body, "vllm:e2e_request_latency_seconds_bucket{model_name=\"qwen\",le=\"%d\"} %d\n", i, i)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, body.String()) }))
	defer srv.Close()
	var targets []Target
	for i := range 100 {
		targets = append(targets, podTarget(fmt.Sprintf("p%d", i), srv.URL+"/metrics"))
	}
	st := store.New(time.Minute)
	s := New(st, NewMetrics(prometheus.NewRegistry()), WithHTTPClient(&http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}))
	for b.Loop() {
		if res := s.Round(context.Background(), targets); res.Failed > 0 {
			b.Fatalf("round: %+v", res)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100, "ns/target")
}
