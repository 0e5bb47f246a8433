package bench

// Tests of the load generator against the real vLLM engine simulator
// (pkg/engine/server) on 127.0.0.1: bench's counts and latencies are
// compared with the simulator's own Prometheus metrics, and every hey flag
// is checked against what the server received.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/spillway-io/spillway/pkg/bench/trace"
	"github.com/spillway-io/spillway/pkg/engine/enginesim"
	"github.com/spillway-io/spillway/pkg/engine/server"
)

// seen is one request as the engine's HTTP server received it.
type seen struct {
	At     time.Time
	Method string
	Path   string
	Host   string
	Remote string
	Header http.Header
	Body   []byte
}

// simEngine is a real engine simulator serving on 127.0.0.1, behind a
// recorder that keeps every request and the peak number in flight.
type simEngine struct {
	URL string // http://127.0.0.1:port

	mu       sync.Mutex
	reqs     []seen
	inFlight int
	peak     int
}

// startEngine runs the simulator built from a vLLM command line, as the node
// simulator does, on a GPU profile: "h100" with a 1B model takes ~4ms per
// step (token), "a100" with a 7B model ~12ms.
func startEngine(t *testing.T, gpu string, paramsB float64, argv ...string) *simEngine {
	t.Helper()
	settings := enginesim.DefaultSettings()
	settings.GPU, settings.ModelParamsBillions, settings.StartupDelay, settings.GracePeriod = gpu, paramsB, 0, time.Second
	cfg, _, err := enginesim.BuildConfig(append([]string{"vllm", "serve", "/mnt/models/qwen", "--served-model-name", "qwen",
		"--max-model-len", "8192"}, argv...), settings)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, server.WithLogger(testr.NewWithOptions(t, testr.Options{Verbosity: 0})))
	if err != nil {
		t.Fatal(err)
	}
	e := &simEngine{}
	inner := srv.Handler()
	rec := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			at := time.Now()
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			e.mu.Lock()
			e.reqs = append(e.reqs, seen{At: at, Method: r.Method, Path: r.URL.Path, Host: r.Host, Remote: r.RemoteAddr,
				Header: r.Header.Clone(), Body: body})
			e.inFlight++
			e.peak = max(e.peak, e.inFlight)
			e.mu.Unlock()
			defer func() {
				e.mu.Lock()
				e.inFlight--
				e.mu.Unlock()
			}()
		}
		inner.ServeHTTP(w, r)
	})
	// Serve runs the engine's event loop (and answers on a listener nobody
	// uses); the recorder serves the same engine on the tested listener.
	idle, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx, idle); close(done) }()
	hs := &http.Server{Handler: rec, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() {
		_ = hs.Close()
		cancel()
		<-done
	})
	e.URL = "http://" + ln.Addr().String()
	return e
}

func (e *simEngine) seen() []seen {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.reqs)
}

// metrics scrapes the engine's /metrics.
func (e *simEngine) metrics(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(e.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return mfs
}

// sum adds the values of every series of a counter or gauge.
func sum(t *testing.T, mfs map[string]*dto.MetricFamily, name string) float64 {
	t.Helper()
	mf, ok := mfs[name]
	if !ok {
		// A labelled family without series is not exposed: zero.
		return 0
	}
	v := 0.0
	for _, m := range mf.Metric {
		switch {
		case m.Counter != nil:
			v += m.Counter.GetValue()
		case m.Gauge != nil:
			v += m.Gauge.GetValue()
		}
	}
	return v
}

func histogramOf(t *testing.T, mfs map[string]*dto.MetricFamily, name string) *dto.Histogram {
	t.Helper()
	mf, ok := mfs[name]
	if !ok || len(mf.Metric) != 1 || mf.Metric[0].Histogram == nil {
		t.Fatalf("histogram %s missing", name)
	}
	return mf.Metric[0].Histogram
}

func hmean(h *dto.Histogram) float64 { return h.GetSampleSum() / float64(h.GetSampleCount()) }

// ttftSlack bounds how much later than the engine's own TTFT (arrival to
// first token, inside the server) the client sees the first token: request
// write, parse, response flush and read over loopback on a loaded 2-core
// machine.
const ttftSlack = 0.025

// checkAgainstHistogram checks bench's per-request values against the
// engine's histogram of the same quantity: each client value is its server
// value plus a delay in [0, slack], so for every bucket bound b
// #{client ≤ b} ≤ #{server ≤ b} ≤ #{client ≤ b+slack}.
func checkAgainstHistogram(t *testing.T, what string, client []float64, h *dto.Histogram, slack float64) {
	t.Helper()
	if got := uint64(len(client)); got != h.GetSampleCount() {
		t.Errorf("%s: bench has %d values, the engine's histogram %d", what, got, h.GetSampleCount())
	}
	countLE := func(b float64) uint64 {
		n := uint64(0)
		for _, v := range client {
			if v <= b {
				n++
			}
		}
		return n
	}
	for _, bk := range h.Bucket {
		b, server := bk.GetUpperBound(), bk.GetCumulativeCount()
		// 1ms below: the engine's clock and ours are the same, but its
		// observation and our timestamps are taken in different places.
		if lo, hi := countLE(b-0.001), countLE(b+slack); lo > server || hi < server {
			t.Errorf("%s ≤ %gs: bench %d (≤ %gs: %d), engine %d", what, b, lo, b+slack, hi, server)
		}
	}
}

// stallProbe measures how late this process runs: a goroutine sleeps 1ms
// at a time and keeps the worst oversleep. On a shared 2-core machine with
// a load average of 10 the process is not scheduled for tens of
// milliseconds at times (measured up to 300ms); no client can send or read
// on time then, so the timing tolerances below are "bound + worst stall".
// A client that is late by itself still fails them.
func stallProbe() (stop func() time.Duration) {
	done := make(chan struct{})
	result := make(chan time.Duration, 1)
	go func() {
		worst := time.Duration(0)
		for {
			select {
			case <-done:
				result <- worst
				return
			default:
			}
			t0 := time.Now()
			time.Sleep(time.Millisecond)
			worst = max(worst, time.Since(t0)-time.Millisecond)
		}
	}()
	return func() time.Duration { close(done); return <-result }
}

func chatBody(stream, usage bool, maxTokens int) string {
	b := fmt.Sprintf(`{"model":"qwen","messages":[{"role":"user","content":"how does water spill over a weir?"}],"max_tokens":%d,"ignore_eos":true`, maxTokens)
	if stream {
		b += `,"stream":true`
		if usage {
			b += `,"stream_options":{"include_usage":true}`
		}
	}
	return b + "}"
}

// TestSimNonStreaming: counts and tokens equal the engine's counters exactly;
// the mean latency is the engine's mean end-to-end latency plus loopback.
func TestSimNonStreaming(t *testing.T) {
	e := startEngine(t, "h100", 1)
	const n, c, tokens = 48, 8, 24
	stop := stallProbe()
	s, _, results := run(t, "-n", fmt.Sprint(n), "-c", fmt.Sprint(c), "-m", "POST", "-H", "Content-Type: application/json",
		"-d", chatBody(false, false, tokens), e.URL+"/v1/chat/completions")
	stall := stop()
	mfs := e.metrics(t)
	if got := len(e.seen()); got != n || s.Requests != n || s.Responses != n || s.StatusCodes[200] != n || len(s.Errors) != 0 {
		t.Fatalf("engine saw %d requests; bench: %d requests, %d responses, codes %v, errors %v; want %d OK",
			got, s.Requests, s.Responses, s.StatusCodes, s.Errors, n)
	}
	if got := sum(t, mfs, "vllm:request_success_total"); got != n {
		t.Errorf("vllm:request_success_total = %v, want %d", got, n)
	}
	if got := sum(t, mfs, "vllm:generation_tokens_total"); got != float64(s.OutputTokens) || s.OutputTokens != n*tokens {
		t.Errorf("output tokens: bench %d, vllm:generation_tokens_total %v, want %d", s.OutputTokens, got, n*tokens)
	}
	if got := sum(t, mfs, "vllm:prompt_tokens_total"); got != float64(s.PromptTokens) || s.PromptTokens == 0 {
		t.Errorf("prompt tokens: bench %d, vllm:prompt_tokens_total %v", s.PromptTokens, got)
	}
	if s.Streamed != 0 {
		t.Errorf("%d responses counted as streamed", s.Streamed)
	}
	// Each client latency is the engine's e2e plus the response's writing
	// and loopback: the histogram brackets them.
	var lats []float64
	for _, r := range results {
		lats = append(lats, r.Duration.Seconds())
		if r.TTFT <= 0 || r.TTFT > r.Duration {
			t.Errorf("non-streaming TTFT %v (first body byte) outside (0, %v]", r.TTFT, r.Duration)
		}
	}
	e2e := histogramOf(t, mfs, "vllm:e2e_request_latency_seconds")
	slack := ttftSlack + stall.Seconds()
	checkAgainstHistogram(t, "latency", lats, e2e, slack)
	if d := s.Average - hmean(e2e); d < -0.001 || d > slack {
		t.Errorf("mean latency: bench %.4fs, engine %.4fs: want bench - engine in [0, %.3f]", s.Average, hmean(e2e), slack)
	}
	t.Logf("mean latency bench %.4fs, engine e2e %.4fs; %d output tokens, %d prompt tokens; worst stall %v",
		s.Average, hmean(e2e), s.OutputTokens, s.PromptTokens, stall)
}

// TestSimStreaming: TTFT, TPOT and tokens of SSE responses against the
// engine's histograms and counters, with the usage chunk and without it
// (then tokens are counted one per text chunk).
func TestSimStreaming(t *testing.T) {
	for _, usage := range []bool{true, false} {
		t.Run(fmt.Sprintf("include_usage=%v", usage), func(t *testing.T) {
			// ~12ms steps: fewer events per second than h100-1B, so that
			// the comparison measures bench, not a starved test process.
			e := startEngine(t, "a100", 7)
			const n, c, tokens = 60, 12, 16
			stop := stallProbe()
			s, _, results := run(t, "-n", fmt.Sprint(n), "-c", fmt.Sprint(c), "-m", "POST", "-T", "application/json",
				"-d", chatBody(true, usage, tokens), e.URL+"/v1/chat/completions")
			stall := stop()
			slack := ttftSlack + stall.Seconds()
			mfs := e.metrics(t)
			if s.Responses != n || s.Streamed != n || len(s.Errors) != 0 {
				t.Fatalf("bench: %d responses, %d streamed, errors %v; want %d streamed", s.Responses, s.Streamed, s.Errors, n)
			}
			if got := sum(t, mfs, "vllm:request_success_total"); got != n {
				t.Errorf("vllm:request_success_total = %v, want %d", got, n)
			}
			if got := sum(t, mfs, "vllm:generation_tokens_total"); got != float64(s.OutputTokens) || s.OutputTokens != n*tokens {
				t.Errorf("output tokens: bench %d, vllm:generation_tokens_total %v, want %d", s.OutputTokens, got, n*tokens)
			}
			promptTotal := sum(t, mfs, "vllm:prompt_tokens_total")
			if want := 0.0; usage {
				want = promptTotal
				if float64(s.PromptTokens) != want {
					t.Errorf("prompt tokens: bench %d, vllm:prompt_tokens_total %v", s.PromptTokens, promptTotal)
				}
			} else if s.PromptTokens != 0 {
				t.Errorf("prompt tokens %d without a usage chunk, want 0", s.PromptTokens)
			}
			var ttfts []float64
			for _, r := range results {
				ttfts = append(ttfts, r.TTFT.Seconds())
			}
			ttft := histogramOf(t, mfs, "vllm:time_to_first_token_seconds")
			checkAgainstHistogram(t, "TTFT", ttfts, ttft, slack)
			if d := s.TTFTMean - hmean(ttft); d < -0.001 || d > slack {
				t.Errorf("mean TTFT: bench %.4fs, engine %.4fs: want bench - engine in [0, %.3f]", s.TTFTMean, hmean(ttft), slack)
			}
			// Every request has the same length, so bench's mean TPOT is the
			// engine's mean inter-token latency, but for the loopback delays
			// of the first and the last token spread over 15 gaps.
			itl := histogramOf(t, mfs, "vllm:inter_token_latency_seconds")
			if d := s.TPOTMean - hmean(itl); math.Abs(d) > 0.003+slack/(tokens-1) {
				t.Errorf("mean TPOT: bench %.5fs, engine inter-token %.5fs: differ by more than %.4fs", s.TPOTMean, hmean(itl), 0.003+slack/(tokens-1))
			}
			// Percentiles are nearest-rank values of the per-request TTFTs.
			slices.Sort(ttfts)
			for _, p := range s.TTFT {
				if want := ttfts[int(math.Ceil(p.P/100*n))-1]; p.Value != want {
					t.Errorf("TTFT p%v = %v, want %v", p.P, p.Value, want)
				}
			}
			t.Logf("TTFT mean bench %.4fs engine %.4fs, p50 %.4fs p99 %.4fs; TPOT mean bench %.5fs engine ITL %.5fs; worst stall %v",
				s.TTFTMean, hmean(ttft), s.TTFT[2].Value, s.TTFT[6].Value, s.TPOTMean, hmean(itl), stall)
		})
	}
}

// TestSimHeyFlags checks, for each of hey's flags, exactly what reached the server.
func TestSimHeyFlags(t *testing.T) {
	t.Run("-n -c -m -H -d -host -T -a", func(t *testing.T) {
		e := startEngine(t, "h100", 1, "--api-key", "sk-test")
		body := chatBody(false, false, 40)
		s, _, _ := run(t, "-n", "12", "-c", "3", "-m", "post", "-H", "Authorization: Bearer sk-test", "-H", "X-Tenant: team-a",
			"-host", "qwen-chat-default.example.com", "-T", "application/json", "-d", body, e.URL+"/v1/chat/completions")
		reqs := e.seen()
		if len(reqs) != 12 || s.StatusCodes[200] != 12 {
			t.Fatalf("engine saw %d requests, bench codes %v; want 12 answered 200 (the API key passed)", len(reqs), s.StatusCodes)
		}
		for i, r := range reqs {
			got := []string{r.Method, r.Path, r.Host, r.Header.Get("Content-Type"), r.Header.Get("X-Tenant"), r.Header.Get("Authorization"), string(r.Body)}
			want := []string{"POST", "/v1/chat/completions", "qwen-chat-default.example.com", "application/json", "team-a", "Bearer sk-test", body}
			if !slices.Equal(got, want) {
				t.Errorf("request %d: got %q, want %q", i, got, want)
			}
		}
		e.mu.Lock()
		peak := e.peak
		e.mu.Unlock()
		if peak != 3 {
			t.Errorf("at most %d requests were in flight at the engine, want exactly -c 3", peak)
		}
		// Basic authentication replaces the header: the engine refuses it.
		s, _, _ = run(t, "-n", "2", "-c", "1", "-a", "user:pass", e.URL+"/v1/models")
		reqs = e.seen()[12:]
		if len(reqs) != 2 || reqs[0].Header.Get("Authorization") != "Basic dXNlcjpwYXNz" || s.Errors["http_401"] != 2 {
			t.Errorf("-a: engine saw %d requests with Authorization %q; bench errors %v; want 2, Basic dXNlcjpwYXNz, 2 http_401",
				len(reqs), reqs[0].Header.Get("Authorization"), s.Errors)
		}
		if !strings.Contains(s.ErrorSamples["http_401"], "API key") {
			t.Errorf("http_401 sample %q: want the engine's OpenAI error message", s.ErrorSamples["http_401"])
		}
	})
	t.Run("-D -A -disable-keepalive", func(t *testing.T) {
		e := startEngine(t, "h100", 1)
		file := filepath.Join(t.TempDir(), "body.json")
		body := chatBody(true, true, 4)
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		s, _, _ := run(t, "-n", "6", "-c", "2", "-m", "POST", "-D", file, "-A", "text/event-stream", "-disable-keepalive",
			e.URL+"/v1/chat/completions")
		reqs := e.seen()
		remotes := map[string]bool{}
		for _, r := range reqs {
			remotes[r.Remote] = true
			if string(r.Body) != body || r.Header.Get("Accept") != "text/event-stream" || r.Header.Get("Content-Type") != "text/html" {
				t.Errorf("request: body %q, Accept %q, Content-Type %q; want the file's body, -A, hey's default -T",
					r.Body, r.Header.Get("Accept"), r.Header.Get("Content-Type"))
			}
		}
		if len(reqs) != 6 || len(remotes) != 6 || s.Streamed != 6 {
			t.Errorf("engine saw %d requests on %d connections, bench streamed %d; want 6 on 6 (-disable-keepalive)", len(reqs), len(remotes), s.Streamed)
		}
	})
	t.Run("-q", func(t *testing.T) {
		e := startEngine(t, "h100", 1)
		run(t, "-n", "6", "-c", "2", "-q", "5", "-m", "GET", e.URL+"/v1/models")
		reqs := e.seen()
		if len(reqs) != 6 {
			t.Fatalf("engine saw %d requests, want 6", len(reqs))
		}
		// Two workers at 5 requests/s each: worker k's request j leaves at
		// start + j×200ms at the earliest, so arrival i (in order) is at
		// least ⌊i/2⌋×200ms after the first (10ms for the first's own delay).
		for i, r := range reqs {
			if got, min := r.At.Sub(reqs[0].At), time.Duration(i/2)*200*time.Millisecond-10*time.Millisecond; got < min {
				t.Errorf("arrival %d came %v after the first, want ≥ %v (-c 2 -q 5)", i, got, min)
			}
		}
		if span := reqs[5].At.Sub(reqs[0].At); span < 390*time.Millisecond || span > 600*time.Millisecond {
			t.Errorf("6 requests at 2×5/s spanned %v, want ~400ms", span)
		}
	})
	t.Run("-z stops by itself", func(t *testing.T) {
		e := startEngine(t, "h100", 1)
		s, wall, results := run(t, "-z", "800ms", "-c", "4", "-m", "POST", "-d", chatBody(true, false, 20), e.URL+"/v1/chat/completions")
		reqs := e.seen()
		// The last requests leave just before 800ms and take ~100ms.
		if wall < 800*time.Millisecond || wall > 1800*time.Millisecond {
			t.Errorf("-z 800ms took %v", wall)
		}
		if len(reqs) != s.Requests || len(results) != s.Requests || s.Requests < 8 || len(s.Errors) != 0 {
			t.Errorf("engine saw %d, bench sent %d with errors %v", len(reqs), s.Requests, s.Errors)
		}
		if last := reqs[len(reqs)-1].At.Sub(reqs[0].At); last > 850*time.Millisecond {
			t.Errorf("a request arrived %v after the first, past -z 800ms", last)
		}
		if got := sum(t, e.metrics(t), "vllm:request_success_total"); got != float64(s.Requests) {
			t.Errorf("vllm:request_success_total %v, bench requests %d: every request in flight at -z must finish", got, s.Requests)
		}
	})
	t.Run("-t", func(t *testing.T) {
		e := startEngine(t, "h100", 1)
		// 900 tokens at ~4ms take ~3.6s: both requests time out at 1s.
		s, wall, _ := run(t, "-n", "2", "-c", "2", "-t", "1", "-m", "POST", "-d", chatBody(false, false, 900), e.URL+"/v1/chat/completions")
		if s.Errors["timeout"] != 2 || wall < time.Second || wall > 2500*time.Millisecond {
			t.Errorf("-t 1: errors %v after %v, want 2 timeouts after ~1s", s.Errors, wall)
		}
		if got := len(e.seen()); got != 2 {
			t.Errorf("engine saw %d requests, want 2", got)
		}
		mfs := e.metrics(t)
		if got := sum(t, mfs, "vllm:request_success_total"); got != 0 {
			t.Errorf("the engine finished %v requests the client had given up on", got)
		}
	})
}

// TestSimTraceReplay replays the Azure sample at 10x, each request four
// times (-rate-scale 4): the engine receives exactly the trace's requests and
// lengths, at the trace's times; the error of each arrival (server side,
// against its scaled time, the origin aligned by the median offset) is held
// to p99 ≤ 50ms. Non-streaming, so that parsing 10k SSE events a second
// does not compete with the dispatcher on a loaded 2-core machine.
func TestSimTraceReplay(t *testing.T) {
	e := startEngine(t, "h100", 1)
	file := filepath.Join("trace", "testdata", "azure_conv_sample.csv")
	stop := stallProbe()
	s, _, results := run(t, "-trace", file, "-speedup", "10", "-rate-scale", "4", "-c", "400", "-m", "POST",
		"-d", `{"model":"qwen"}`, e.URL+"/v1/chat/completions")
	stall := stop()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := trace.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	reqs := e.seen()
	const copies = 4
	if len(reqs) != copies*len(rows) || len(results) != copies*len(rows) || len(s.Errors) != 0 {
		t.Fatalf("engine saw %d, bench sent %d (errors %v); want %d", len(reqs), len(results), s.Errors, copies*len(rows))
	}
	// Lengths: each row's GeneratedTokens four times, as max_tokens = min_tokens with ignore_eos.
	var wantLens, gotLens []int
	wantTokens := 0
	for _, r := range rows {
		for range copies {
			wantLens = append(wantLens, r.OutputTokens)
		}
		wantTokens += copies * r.OutputTokens
	}
	for _, r := range reqs {
		var b struct {
			MaxTokens int  `json:"max_tokens"`
			MinTokens int  `json:"min_tokens"`
			IgnoreEOS bool `json:"ignore_eos"`
		}
		if err := json.Unmarshal(r.Body, &b); err != nil || b.MinTokens != b.MaxTokens || !b.IgnoreEOS {
			t.Fatalf("request body %s: want max_tokens = min_tokens and ignore_eos (%v)", r.Body, err)
		}
		gotLens = append(gotLens, b.MaxTokens)
	}
	slices.Sort(wantLens)
	slices.Sort(gotLens)
	if !slices.Equal(wantLens, gotLens) {
		t.Errorf("max_tokens received %v, want the trace's %v", gotLens, wantLens)
	}
	mfs := e.metrics(t)
	if got := sum(t, mfs, "vllm:generation_tokens_total"); got != float64(wantTokens) || s.OutputTokens != wantTokens {
		t.Errorf("tokens: engine %v, bench %d, trace %d", got, s.OutputTokens, wantTokens)
	}
	// Timing, on the server's arrival times.
	sched := make([]time.Duration, 0, len(rows)*copies)
	for _, r := range rows {
		for range copies {
			sched = append(sched, time.Duration(float64(r.At)/10))
		}
	}
	slices.Sort(sched)
	// The schedule's origin on the server's clock is the median of
	// (arrival - scheduled time): robust to a late first request.
	offsets := make([]time.Duration, len(reqs))
	for i, r := range reqs {
		offsets[i] = r.At.Sub(reqs[0].At) - sched[i]
	}
	origin := slices.Clone(offsets)
	slices.Sort(origin)
	var errs []float64
	for _, o := range offsets {
		errs = append(errs, math.Abs((o - origin[len(origin)/2]).Seconds()))
	}
	for i, e := range errs {
		if e > 0.02 {
			t.Logf("request %d (scheduled %v) arrived %.4fs off", i, sched[i], e)
		}
	}
	slices.Sort(errs)
	p99, worst := nearestRank(errs, 99), errs[len(errs)-1]
	if bound := 0.050 + stall.Seconds(); p99 > bound {
		t.Errorf("arrival error p99 %.4fs (max %.4fs), want ≤ 50ms + the worst stall %v", p99, worst, stall)
	}
	t.Logf("trace replay: %d requests over %.2fs; arrival error at the engine p50 %.4fs p99 %.4fs max %.4fs; bench schedule lag max %.4fs; worst stall %v",
		len(reqs), reqs[len(reqs)-1].At.Sub(reqs[0].At).Seconds(), nearestRank(errs, 50), p99, worst, s.ScheduleLag[len(s.ScheduleLag)-1].Value, stall)
}

// TestSimMainJSONAndPlot runs the command's Main: -o json parses into the
// summary, the PNG timeline is written and is a real picture, progress
// goes to stderr.
func TestSimMainJSONAndPlot(t *testing.T) {
	e := startEngine(t, "h100", 1)
	dir := t.TempDir()
	plot := filepath.Join(dir, "timeline.png")
	if keep := os.Getenv("SPILLWAY_KEEP_PLOT"); keep != "" {
		plot = keep
	}
	cfg, err := Parse([]string{"-z", "1500ms", "-c", "4", "-m", "POST", "-o", "json", "-progress", "200ms", "-plot", plot,
		"-kubeconfig", filepath.Join(dir, "no-such-kubeconfig"), "-d", chatBody(true, true, 16), e.URL + "/v1/chat/completions"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var out, progress bytes.Buffer
	if err := Main(context.Background(), cfg, &out, &progress); err != nil {
		t.Fatal(err)
	}
	var s Summary
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		t.Fatalf("-o json output does not parse: %v\n%s", err, out.String())
	}
	if s.Requests != len(e.seen()) || s.Streamed != s.Requests || s.OutputTokens != 16*s.Requests || len(s.TTFT) != 7 {
		t.Errorf("json summary: %d requests (engine %d), %d streamed, %d tokens, %d TTFT percentiles", s.Requests, len(e.seen()), s.Streamed, s.OutputTokens, len(s.TTFT))
	}
	for _, want := range []string{"sent ", "in flight", "not reading the cluster", "timeline written to " + plot} {
		if !strings.Contains(progress.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, progress.String())
		}
	}
	f, err := os.Open(plot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s is not a PNG: %v", plot, err)
	}
	colours, inked := pictureStats(img)
	if b := img.Bounds(); b.Dx() < 800 || b.Dy() < 400 || colours < 6 || inked < 0.02 {
		t.Errorf("picture %v: %d distinct colours, %.1f%% of pixels not background; want ≥ 800×400, ≥ 6 colours, ≥ 2%%",
			b, colours, 100*inked)
	}
	t.Logf("timeline %v, %d colours, %.1f%% inked", img.Bounds(), colours, 100*inked)
}

// pictureStats counts distinct colours and the share of pixels that are
// not the most common (background) colour.
func pictureStats(img image.Image) (int, float64) {
	counts := map[[4]uint32]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			counts[[4]uint32{r, g, bl, a}]++
		}
	}
	top := 0
	for _, n := range counts {
		top = max(top, n)
	}
	total := b.Dx() * b.Dy()
	return len(counts), float64(total-top) / float64(total)
}

// TestSimCommandUsageErrors: bad flags through the cobra command give a
// usage error that points at --help, and nothing is sent.
func TestSimCommandUsageErrors(t *testing.T) {
	e := startEngine(t, "h100", 1)
	for _, args := range [][]string{
		{"-c", "0", e.URL + "/v1/models"},
		{"-x", "http://proxy:3128", e.URL + "/v1/models"},
		{"-z", "soon", e.URL + "/v1/models"},
		{e.URL + "/v1/models", "-n", "5"},
	} {
		cmd := NewCommand()
		cmd.SetArgs(args)
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		cmd.SilenceErrors, cmd.SilenceUsage = true, true
		err := cmd.Execute()
		var ue *UsageError
		if err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), "See 'spillway bench --help'") {
			t.Errorf("bench %q: error %v, want a usage error", args, err)
		}
	}
	if got := len(e.seen()); got != 0 {
		t.Errorf("bad command lines sent %d requests", got)
	}
}
