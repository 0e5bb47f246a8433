// Package enginetest is a small OpenAI-compatible engine for the gateway's
// tests and benchmark: chat/completions/embeddings answers, plain or as
// server-sent events, with a configurable time to first token, inter-token
// time, batch capacity (requests beyond it queue, as in vLLM), vLLM's load
// gauges on /metrics, and faults (die mid-stream, answer 503, stall). It
// serves on a listener the caller opens (127.0.0.1 in tests).
package enginetest

import (
	"context"
	"encoding/json"
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

// Fault is an injected failure.
type Fault int32

const (
	// FaultNone answers normally.
	FaultNone Fault = iota
	// FaultDieMidStream closes the connection after DieAfter events of a stream.
	FaultDieMidStream
	// FaultUnavailable answers 503 to every inference request.
	FaultUnavailable
	// FaultResetBeforeAnswer closes the connection without answering.
	FaultResetBeforeAnswer
)

// Config shapes the engine.
type Config struct {
	// Model is the served model name.
	Model string
	// TTFT is the prefill time before the first token.
	TTFT time.Duration
	// ITL is the time between tokens.
	ITL time.Duration
	// Tokens is the answer's length when the request sets no max_tokens.
	Tokens int
	// Capacity is the batch size: requests beyond it wait (0: unlimited).
	Capacity int
	// DieAfter is the number of events sent before FaultDieMidStream cuts.
	DieAfter int
}

// Engine is a running fake engine.
type Engine struct {
	cfg   Config
	fault atomic.Int32
	slots chan struct{}

	running, waiting atomic.Int64
	Requests         atomic.Int64 // inference requests received
	Completed        atomic.Int64 // answers sent to the end
	Cancelled        atomic.Int64 // requests whose client went away
	server           *http.Server
	mu               sync.Mutex
	lastHeaders      http.Header
	lastTarget       string
	extraTTFTNanos   atomic.Int64
}

// New returns an engine.
func New(cfg Config) *Engine {
	if cfg.Model == "" {
		cfg.Model = "test-model"
	}
	if cfg.Tokens <= 0 {
		cfg.Tokens = 8
	}
	e := &Engine{cfg: cfg}
	if cfg.Capacity > 0 {
		e.slots = make(chan struct{}, cfg.Capacity)
	}
	return e
}

// SetFault changes the injected failure.
func (e *Engine) SetFault(f Fault) { e.fault.Store(int32(f)) }

// SetExtraTTFT adds to the time to first token (a slow replica).
func (e *Engine) SetExtraTTFT(d time.Duration) { e.extraTTFTNanos.Store(int64(d)) }

// LastHeaders returns the headers of the last inference request.
func (e *Engine) LastHeaders() http.Header {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastHeaders.Clone()
}

// LastTarget returns the request-target of the last inference request.
func (e *Engine) LastTarget() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastTarget
}

// Serve answers on ln until ctx ends.
func (e *Engine) Serve(ctx context.Context, ln net.Listener) error {
	e.server = &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = e.server.Close()
	}()
	if err := e.server.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Start serves on a new 127.0.0.1 port and returns its address; stop ends it.
func Start(cfg Config) (e *Engine, addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", nil, err
	}
	e = New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = e.Serve(ctx, ln); close(done) }()
	return e, ln.Addr().String(), func() { cancel(); <-done }, nil
}

type request struct {
	Model         string `json:"model"`
	Stream        bool   `json:"stream"`
	MaxTokens     *int   `json:"max_tokens"`
	MaxCompTokens *int   `json:"max_completion_tokens"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

func (e *Engine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/health":
		return
	case "/metrics":
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name=%q} %d\n", e.cfg.Model, e.running.Load())
		fmt.Fprintf(w, "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name=%q} %d\n", e.cfg.Model, e.waiting.Load())
		kv := 0.0
		if e.cfg.Capacity > 0 {
			kv = float64(e.running.Load()) / float64(e.cfg.Capacity)
		}
		fmt.Fprintf(w, "# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{model_name=%q} %g\n", e.cfg.Model, kv)
		return
	case "/v1/models":
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"object":"list","data":[{"id":%q,"object":"model","created":0,"owned_by":"vllm"}]}`, e.cfg.Model)
		return
	case "/v1/chat/completions", "/v1/completions", "/v1/embeddings":
	default:
		http.NotFound(w, r)
		return
	}
	e.Requests.Add(1)
	e.mu.Lock()
	e.lastHeaders = r.Header.Clone()
	e.lastTarget = r.RequestURI
	e.mu.Unlock()
	var req request
	body, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, `{"error":{"message":"bad json","type":"BadRequestError","code":400}}`, http.StatusBadRequest)
		return
	}
	switch Fault(e.fault.Load()) {
	case FaultUnavailable:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"error":{"message":"engine overloaded","type":"ServiceUnavailableError","code":503}}`)
		return
	case FaultResetBeforeAnswer:
		abort(w)
		return
	}
	ctx := r.Context()
	// Queue for a batch slot.
	if e.slots != nil {
		e.waiting.Add(1)
		select {
		case e.slots <- struct{}{}:
			e.waiting.Add(-1)
		case <-ctx.Done():
			e.waiting.Add(-1)
			e.Cancelled.Add(1)
			return
		}
		defer func() { <-e.slots }()
	}
	e.running.Add(1)
	defer e.running.Add(-1)

	tokens := e.cfg.Tokens
	if req.MaxTokens != nil && *req.MaxTokens > 0 {
		tokens = *req.MaxTokens
	} else if req.MaxCompTokens != nil && *req.MaxCompTokens > 0 {
		tokens = *req.MaxCompTokens
	}
	if r.URL.Path == "/v1/embeddings" {
		tokens = 1
	}
	if !sleep(ctx, e.cfg.TTFT+time.Duration(e.extraTTFTNanos.Load())) {
		e.Cancelled.Add(1)
		return
	}
	if req.Stream {
		e.stream(w, r, tokens, req.StreamOptions != nil && req.StreamOptions.IncludeUsage)
		return
	}
	for i := 1; i < tokens; i++ {
		if !sleep(ctx, e.cfg.ITL) {
			e.Cancelled.Add(1)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	var out string
	switch r.URL.Path {
	case "/v1/embeddings":
		out = fmt.Sprintf(`{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2,0.3]}],"model":%q,"usage":{"prompt_tokens":3,"total_tokens":3}}`, e.cfg.Model)
	case "/v1/completions":
		out = fmt.Sprintf(`{"id":"cmpl-1","object":"text_completion","created":1700000000,"model":%q,"choices":[{"index":0,"text":%q,"finish_reason":"length","logprobs":null}],"usage":{"prompt_tokens":3,"completion_tokens":%d,"total_tokens":%d}}`,
			e.cfg.Model, text(tokens), tokens, tokens+3)
	default:
		out = fmt.Sprintf(`{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"length","logprobs":null}],"usage":{"prompt_tokens":3,"completion_tokens":%d,"total_tokens":%d}}`,
			e.cfg.Model, text(tokens), tokens, tokens+3)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	_, _ = io.WriteString(w, out)
	e.Completed.Add(1)
}

func text(tokens int) string {
	b := make([]byte, 0, tokens*4)
	for i := range tokens {
		b = append(b, "tok"...)
		b = append(b, byte('0'+i%10))
	}
	return string(b)
}

func (e *Engine) stream(w http.ResponseWriter, r *http.Request, tokens int, usage bool) {
	ctx := r.Context()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	chat := r.URL.Path == "/v1/chat/completions"
	for i := range tokens {
		if i > 0 && !sleep(ctx, e.cfg.ITL) {
			e.Cancelled.Add(1)
			return
		}
		if Fault(e.fault.Load()) == FaultDieMidStream && i >= e.cfg.DieAfter {
			_ = rc.Flush()
			abort(w)
			return
		}
		finish := "null"
		if i == tokens-1 {
			finish = `"length"`
		}
		var ev string
		if chat {
			ev = fmt.Sprintf(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":%q,"choices":[{"index":0,"delta":{"role":"assistant","content":"tok%d"},"finish_reason":%s}]}`+"\n\n", e.cfg.Model, i%10, finish)
		} else {
			ev = fmt.Sprintf(`data: {"id":"cmpl-1","object":"text_completion","created":1700000000,"model":%q,"choices":[{"index":0,"text":"tok%d","finish_reason":%s}]}`+"\n\n", e.cfg.Model, i%10, finish)
		}
		if _, err := io.WriteString(w, ev); err != nil {
			e.Cancelled.Add(1)
			return
		}
		if err := rc.Flush(); err != nil {
			e.Cancelled.Add(1)
			return
		}
	}
	if usage {
		fmt.Fprintf(w, `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":%q,"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":%d,"total_tokens":%d}}`+"\n\n", e.cfg.Model, tokens, tokens+3)
	}
	_, _ = io.WriteString(w, "data: [DONE]\n\n")
	_ = rc.Flush()
	e.Completed.Add(1)
}

// abort closes the client connection without a proper answer.
func abort(w http.ResponseWriter) {
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // reset, as a crashed process does
		}
		_ = conn.Close()
		return
	}
	panic(http.ErrAbortHandler)
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
