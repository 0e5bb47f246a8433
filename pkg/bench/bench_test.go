package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/utils/clock"
)

// upstream is a small OpenAI-speaking server on 127.0.0.1 that records
// what it did, so the bench's figures can be checked against it.
type upstream struct {
	ttft, itl time.Duration
	tokens    int
	failEvery int // every failEvery-th request gets a 503 (0: never)

	n        atomic.Int64
	mu       sync.Mutex
	arrivals []time.Time
	genTotal int
	hosts    map[string]int
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	i := u.n.Add(1)
	var req struct {
		Stream    bool `json:"stream"`
		MaxTokens int  `json:"max_tokens"`
	}
	_ = json.NewDecoder(r.Body).Decode(&req)
	u.mu.Lock()
	u.arrivals = append(u.arrivals, time.Now())
	u.hosts[r.Host]++
	u.mu.Unlock()
	if u.failEvery > 0 && i%int64(u.failEvery) == 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"error":{"message":"no replica ready","type":"unavailable"}}`)
		return
	}
	n := u.tokens
	if req.MaxTokens > 0 {
		n = req.MaxTokens
	}
	u.mu.Lock()
	u.genTotal += n
	u.mu.Unlock()
	time.Sleep(u.ttft)
	if !req.Stream {
		time.Sleep(u.itl * time.Duration(n-1))
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"choices":[{"message":{"content":"x"}}],"usage":{"completion_tokens":%d}}`, n)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	f := w.(http.Flusher)
	for k := range n {
		if k > 0 {
			time.Sleep(u.itl)
		}
		fmt.Fprintf(w, "data: {\"choices\":[{\"delta\":{\"content\":\"t%d\"}}]}\n\n", k)
		f.Flush()
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
}

func start(t *testing.T, u *upstream) string {
	t.Helper()
	u.hosts = map[string]int{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: u}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String() + "/v1/chat/completions"
}

func run(t *testing.T, args ...string) (Summary, time.Duration, []Result) {
	t.Helper()
	cfg, err := Parse(append([]string{"-progress=0"}, args...), io.Discard)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	results, wall, err := Run(context.Background(), cfg, clock.RealClock{}, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return Summarize(results, wall), wall, results
}

func within(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if got < want-tol || got > want+tol {
		t.Errorf("%s = %.4f, want %.4f ± %.4f", what, got, want, tol)
	}
}

func TestNonStreaming(t *testing.T) {
	u := &upstream{ttft: 20 * time.Millisecond, itl: 2 * time.Millisecond, tokens: 6, failEvery: 10}
	url := start(t, u)
	s, _, _ := run(t, "-n", "40", "-c", "4", "-m", "POST", "-host", "qwen-chat-default.example.com",
		"-H", "Content-Type: application/json", "-d", `{"model":"qwen","messages":[{"role":"user","content":"hi"}],"max_tokens":6}`, url)
	if got := u.n.Load(); got != 40 {
		t.Errorf("upstream saw %d requests, want 40", got)
	}
	if diff := cmp.Diff(map[string]int{"qwen-chat-default.example.com": 40}, u.hosts); diff != "" {
		t.Errorf("Host headers (-want,+got):\n%s", diff)
	}
	if diff := cmp.Diff(map[int]int{200: 36, 503: 4}, s.StatusCodes); diff != "" {
		t.Errorf("status codes (-want,+got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"http_503": 4}, s.Errors); diff != "" {
		t.Errorf("errors by type (-want,+got):\n%s", diff)
	}
	if s.ErrorSamples["http_503"] != "no replica ready" {
		t.Errorf("error sample %q, want the OpenAI error message", s.ErrorSamples["http_503"])
	}
	if want := 36 * 6; s.OutputTokens != want || u.genTotal != want {
		t.Errorf("output tokens: bench %d, upstream %d, want %d", s.OutputTokens, u.genTotal, want)
	}
	// Successful requests take ttft + 5 itl = 30ms on the server; loopback adds little.
	p50 := s.TTFT[2]
	within(t, "TTFT p50 (non-streaming: first body byte)", p50.Value, 0.030, 0.015)
}

func TestStreaming(t *testing.T) {
	u := &upstream{ttft: 40 * time.Millisecond, itl: 10 * time.Millisecond, tokens: 8}
	url := start(t, u)
	s, _, results := run(t, "-n", "20", "-c", "5", "-m", "POST", "-d", `{"stream":true,"max_tokens":8}`, url)
	if s.Streamed != 20 || s.Responses != 20 || len(s.Errors) != 0 {
		t.Fatalf("streamed %d of %d, errors %v; want 20 of 20, none", s.Streamed, s.Responses, s.Errors)
	}
	if s.OutputTokens != 160 || u.genTotal != 160 {
		t.Errorf("output tokens: bench %d, upstream %d, want 160", s.OutputTokens, u.genTotal)
	}
	within(t, "TTFT p50", s.TTFT[2].Value, 0.040, 0.015)
	within(t, "TPOT p50", s.TPOT[2].Value, 0.010, 0.004)
	within(t, "latency p50", s.Latency[2].Value, 0.110, 0.030)
	// Percentiles are the nearest-rank values of the per-request latencies.
	var lats []float64
	for _, r := range results {
		lats = append(lats, r.Duration.Seconds())
	}
	slices.Sort(lats)
	if got, want := s.Latency[6].Value, lats[19]; got != want { // p99 of 20 = the 20th
		t.Errorf("p99 = %v, want the slowest %v", got, want)
	}
	if s.Fastest != lats[0] || s.Slowest != lats[19] {
		t.Errorf("fastest/slowest %v/%v, want %v/%v", s.Fastest, s.Slowest, lats[0], lats[19])
	}
	var text bytes.Buffer
	if err := s.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Summary:", "Requests/sec:", "Response time histogram:", "Latency distribution:", "  99% in ", "[200]\t20 responses", "TTFT:", "TPOT:", "Output tokens/sec:"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, text.String())
		}
	}
}

func TestDurationStopsByItself(t *testing.T) {
	u := &upstream{ttft: 5 * time.Millisecond, tokens: 1}
	url := start(t, u)
	s, wall, _ := run(t, "-z", "500ms", "-c", "3", "-t", "2", url)
	if wall < 450*time.Millisecond || wall > 1500*time.Millisecond {
		t.Errorf("a -z 500ms run took %v", wall)
	}
	if s.Responses < 30 || int64(s.Requests) != u.n.Load() {
		t.Errorf("requests %d, responses %d, upstream %d", s.Requests, s.Responses, u.n.Load())
	}
}

func TestQPSLimit(t *testing.T) {
	u := &upstream{tokens: 1}
	url := start(t, u)
	_, wall, _ := run(t, "-n", "10", "-c", "2", "-q", "10", url)
	// Each worker sends 5 at 10/s: the last leaves 400ms after the start.
	if wall < 380*time.Millisecond {
		t.Errorf("-q 10 with 5 requests per worker took %v, want ≥ 400ms", wall)
	}
}

func TestConnectionErrors(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	s, _, _ := run(t, "-n", "3", "-c", "1", "http://"+addr+"/")
	if s.Errors["connection"] != 3 || s.Responses != 0 {
		t.Errorf("errors %v, responses %d; want 3 connection errors", s.Errors, s.Responses)
	}
}

// TestTraceReplay replays the first 40 requests of the Azure sample at 20x:
// every request must leave within 30ms of its scheduled time and carry
// the trace's output length.
func TestTraceReplay(t *testing.T) {
	u := &upstream{ttft: time.Millisecond, tokens: 1}
	url := start(t, u)
	trace := filepath.Join("trace", "testdata", "azure_conv_sample.csv")
	s, _, results := run(t, "-trace", trace, "-speedup", "20", "-trace-limit", "30", "-c", "50", "-m", "POST",
		"-d", `{"model":"qwen","stream":true}`, url)
	if len(results) != 30 || u.n.Load() != 30 {
		t.Fatalf("sent %d, upstream saw %d; want 30", len(results), u.n.Load())
	}
	const tol = 0.030
	if lag := s.ScheduleLag[len(s.ScheduleLag)-1].Value; lag > tol {
		t.Errorf("max schedule lag %.4fs, want ≤ %.3fs", lag, tol)
	}
	// The upstream's arrivals follow the schedule too.
	slices.SortFunc(u.arrivals, func(a, b time.Time) int { return a.Compare(b) })
	sched := make([]time.Duration, len(results))
	for i, r := range results {
		sched[i] = r.Scheduled
	}
	slices.Sort(sched)
	for i := range sched {
		got := u.arrivals[i].Sub(u.arrivals[0]) - sched[i]
		if got.Seconds() < -tol || got.Seconds() > tol {
			t.Errorf("request %d arrived %v off its schedule", i, got)
		}
	}
	// Output lengths come from the trace (first rows: 44, 109, 55, 16, ...).
	if u.genTotal != s.OutputTokens || s.OutputTokens < 30 {
		t.Errorf("tokens: bench %d, upstream %d", s.OutputTokens, u.genTotal)
	}
}

func TestPlot(t *testing.T) {
	u := &upstream{ttft: 10 * time.Millisecond, itl: time.Millisecond, tokens: 4}
	url := start(t, u)
	_, wall, results := run(t, "-z", "1500ms", "-c", "2", "-d", `{"stream":true}`, url)
	samples := []ClusterSample{
		{T: 0, Replicas: map[string]int{"GPU-V100-Edge": 1}, Nodes: map[string]int{"GPU-V100-Edge": 1}},
		{T: 0.7, Replicas: map[string]int{"GPU-V100-Edge": 1, "pending": 2}, Nodes: map[string]int{"GPU-V100-Edge": 1}},
		{T: 1.4, Replicas: map[string]int{"GPU-V100-Edge": 1, "GPU-V100-Elastic": 2}, Nodes: map[string]int{"GPU-V100-Edge": 1, "GPU-V100-Elastic": 2}},
	}
	panels := Panels(results, wall, samples)
	if len(panels) != 4 {
		t.Fatalf("%d panels, want 4", len(panels))
	}
	if got := len(panels[2].Series); got != 3 {
		t.Errorf("replica series %d, want 3 (edge, elastic, pending)", got)
	}
	path := filepath.Join(t.TempDir(), "bench.png")
	if keep := os.Getenv("SPILLWAY_KEEP_PLOT"); keep != "" {
		path = keep // to look at it
	}
	if err := writePlot(path, "test", panels); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if img.Bounds().Dx() < 800 || img.Bounds().Dy() < 800 {
		t.Errorf("picture %v is too small", img.Bounds())
	}
}

func TestParse(t *testing.T) {
	cfg, err := Parse([]string{"-z", "2m", "-c", "5", "-m", "post", "--host", "h.example.com", "-H", "Content-Type: application/json",
		"-H", "X-A: 1", "-d", "{}", "-t", "3", "-o", "json", "http://127.0.0.1:8080/v1/chat/completions"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	got := []any{cfg.Duration, cfg.Concurrency, cfg.Method, cfg.Host, cfg.Header.Get("Content-Type"), cfg.Header.Get("X-A"), string(cfg.Body), cfg.Timeout, cfg.Output}
	want := []any{2 * time.Minute, 5, "POST", "h.example.com", "application/json", "1", "{}", 3 * time.Second, "json"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want,+got):\n%s", diff)
	}
	if cfg, _ := Parse([]string{"-T", "text/plain", "http://x/"}, io.Discard); cfg.Header.Get("Content-Type") != "text/plain" {
		t.Errorf("-T not applied")
	}
	bad := []struct {
		args []string
		want string
	}{
		{[]string{}, "URL is missing"},
		{[]string{"-n", "10", "-c", "20", "http://x/"}, "-n 10 cannot be less than -c 20"},
		{[]string{"-m", "FETCH", "http://x/"}, `-m "FETCH"`},
		{[]string{"-H", "NoColon", "http://x/"}, `want "Name: value"`},
		{[]string{"-o", "yaml", "http://x/"}, `-o "yaml"`},
		{[]string{"-x", "proxy", "http://x/"}, "hey's -x is not supported"},
		{[]string{"-h2", "http://x/"}, "hey's -h2 is not supported"},
		{[]string{"-cpus", "2", "http://x/"}, "hey's -cpus is not supported"},
		{[]string{"-o", "csv", "http://x/"}, "-o csv (hey's per-request CSV) is not supported"},
		{[]string{"-y", "http://x/"}, "flag provided but not defined: -y"},
		{[]string{"-n", "many", "http://x/"}, `invalid value "many" for flag -n`},
		{[]string{"ftp://x/"}, "want http://"},
		{[]string{"http://x/", "-n", "3"}, "options go before the URL"},
		{[]string{"-d", "a", "-D", "f", "http://x/"}, "not both"},
		{[]string{"-speedup", "2", "http://x/"}, "-speedup needs -trace"},
		{[]string{"-trace", "t.csv", "-d", "not json", "http://x/"}, "JSON template"},
		{[]string{"-c", "0", "http://x/"}, "-c 0"},
		{[]string{"-z", "-1s", "http://x/"}, "must not be negative"},
	}
	for _, b := range bad {
		_, err := Parse(b.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), b.want) || !strings.Contains(err.Error(), "--help") {
			t.Errorf("Parse(%q) error = %v, want one containing %q and a pointer to --help", b.args, err, b.want)
		}
	}
	var help bytes.Buffer
	cmd := NewCommand()
	cmd.SetOut(&help)
	cmd.SetArgs([]string{"--help"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"-z", "-n", "-c", "-q", "-m", "-H", "-d", "-D", "-host", "-T", "-t", "-trace", "-plot", "-o"} {
		if !strings.Contains(help.String(), "  "+f+" ") && !strings.Contains(help.String(), "  "+f+"\n") {
			t.Errorf("--help does not list %s", f)
		}
	}
}

func TestSummarizeHistogram(t *testing.T) {
	var rs []Result
	for i := 1; i <= 100; i++ {
		rs = append(rs, Result{Status: 200, Duration: time.Duration(i) * time.Millisecond, Scheduled: -1})
	}
	s := Summarize(rs, time.Second)
	total := 0
	for _, b := range s.Histogram {
		total += b.Count
	}
	if total != 100 {
		t.Errorf("histogram holds %d, want 100", total)
	}
	want := []Percentile{{10, 0.010}, {25, 0.025}, {50, 0.050}, {75, 0.075}, {90, 0.090}, {95, 0.095}, {99, 0.099}}
	if diff := cmp.Diff(want, s.Latency); diff != "" {
		t.Errorf("percentiles (-want,+got):\n%s", diff)
	}
	within(t, "requests/sec", s.RequestsSec, 100, 1e-9)
}

// BenchmarkSummarize: the report of a 100k-request run.
func BenchmarkSummarize(b *testing.B) {
	rs := make([]Result, 100_000)
	for i := range rs {
		d := time.Duration(i%997+1) * time.Millisecond
		rs[i] = Result{Status: 200, Duration: d, TTFT: d / 4, Tokens: 64, Streamed: true, Scheduled: -1}
	}
	for b.Loop() {
		Summarize(rs, time.Minute)
	}
}
