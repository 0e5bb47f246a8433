package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"

	"github.com/spillway-io/spillway/pkg/bench/trace"
)

// Result is one request's outcome. Times are offsets from the run's start.
type Result struct {
	Start     time.Duration
	Duration  time.Duration // end to end
	TTFT      time.Duration // to the first token (streaming) or first body byte
	Scheduled time.Duration // planned send time in a trace replay, else -1
	Status    int           // 0 when no response arrived
	ErrType   string        // "" on success; timeout, connection, http_<code>, stream, decode
	Err       string
	Bytes     int64
	Tokens    int // output tokens
	// PromptTokens is the usage's prompt_tokens (0 when the response has no usage).
	PromptTokens int
	Streamed     bool
}

type job struct {
	at   time.Duration // -1: as soon as possible
	body []byte
}

// Run sends the load described by c and returns every request's result
// and the run's wall time. It stops by itself: after -n requests, after
// -z, at the end of the trace, or at the safety bounds.
func Run(ctx context.Context, c Config, clk clock.WithTicker, progress io.Writer) ([]Result, time.Duration, error) {
	var schedule []trace.Request
	if c.Trace != "" {
		var err error
		if schedule, err = loadTrace(c); err != nil {
			return nil, 0, err
		}
	}
	limit := c.MaxDuration
	if c.Duration > 0 && c.Duration < limit {
		limit = c.Duration
	}
	// Sending stops at limit; requests in flight then get their timeout.
	sendCtx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	client := newHTTPClient(c)
	start := clk.Now()
	deadline := clk.After(limit)
	go func() {
		select {
		case <-deadline:
			stopSending()
		case <-sendCtx.Done():
		}
	}()

	jobs := make(chan job)
	var (
		mu       sync.Mutex
		results  []Result
		inFlight atomic.Int64
		sent     atomic.Int64
		failed   atomic.Int64
	)
	var wg sync.WaitGroup
	for w := 0; w < c.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			for j := range jobs {
				if c.QPS > 0 {
					// hey's -q: each worker sends at most QPS requests per second.
					next := start.Add(time.Duration(float64(n) / c.QPS * float64(time.Second)))
					if d := next.Sub(clk.Now()); d > 0 {
						select {
						case <-clk.After(d):
						case <-sendCtx.Done():
							continue
						}
					}
				}
				n++
				inFlight.Add(1)
				r := do(ctx, c, client, clk, start, j)
				inFlight.Add(-1)
				if r.ErrType != "" {
					failed.Add(1)
				}
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
			}
		}()
	}
	stopProgress := startProgress(progress, c, clk, start, &sent, &failed, &inFlight)
	// The dispatcher: bounded by count, the trace's end and sendCtx.
	body := c.Body
dispatch:
	for i := 0; ; i++ {
		var j job
		switch {
		case schedule != nil:
			if i >= len(schedule) || i >= c.MaxRequests {
				break dispatch
			}
			s := schedule[i]
			j = job{at: s.At, body: traceBody(c, s)}
			if d := start.Add(s.At).Sub(clk.Now()); d > 0 {
				select {
				case <-clk.After(d):
				case <-sendCtx.Done():
					break dispatch
				}
			}
		case c.Duration > 0:
			if i >= c.MaxRequests {
				break dispatch
			}
			j = job{at: -1, body: body}
		default:
			if i >= c.Requests {
				break dispatch
			}
			j = job{at: -1, body: body}
		}
		select {
		case jobs <- j:
			sent.Add(1)
		case <-sendCtx.Done():
			break dispatch
		}
	}
	close(jobs)
	wg.Wait()
	wall := clk.Since(start)
	stopProgress()
	return results, wall, nil
}

func loadTrace(c Config) ([]trace.Request, error) {
	f, err := openFile(c.Trace)
	if err != nil {
		return nil, fmt.Errorf("-trace: %w", err)
	}
	defer f.Close()
	reqs, err := trace.Parse(f)
	if err != nil {
		return nil, fmt.Errorf("-trace %s: %w", c.Trace, err)
	}
	return trace.Transform{SpeedUp: c.SpeedUp, RateScale: c.RateScale, Limit: c.TraceLimit, MaxAt: c.Duration}.Apply(reqs)
}

// traceBody fills the body template (or a chat request) with the trace's
// prompt length and output length.
func traceBody(c Config, s trace.Request) []byte {
	m := map[string]any{}
	if len(c.Body) > 0 {
		_ = json.Unmarshal(c.Body, &m) // validated by Parse
	}
	if _, ok := m["model"]; !ok && c.Model != "" {
		m["model"] = c.Model
	}
	prompt := syntheticPrompt(s.PromptTokens)
	if _, ok := m["prompt"]; ok {
		m["prompt"] = prompt
	} else {
		m["messages"] = []map[string]string{{"role": "user", "content": prompt}}
	}
	out := max(s.OutputTokens, 1)
	m["max_tokens"] = out
	// vLLM's extensions: generate exactly the trace's length.
	m["min_tokens"] = out
	m["ignore_eos"] = true
	b, _ := json.Marshal(m)
	return b
}

// syntheticPrompt is n words, about n tokens for common tokenizers.
func syntheticPrompt(n int) string {
	words := []string{"the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog"}
	var sb strings.Builder
	for i := range n {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(words[i%len(words)])
	}
	return sb.String()
}

func newHTTPClient(c Config) *http.Client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		MaxIdleConnsPerHost: c.Concurrency,
		DisableCompression:  c.DisableCompression,
		DisableKeepAlives:   c.DisableKeepAlives,
	}
	cl := &http.Client{Transport: tr}
	if c.DisableRedirects {
		cl.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return cl
}

func do(ctx context.Context, c Config, cl *http.Client, clk clock.Clock, start time.Time, j job) Result {
	r := Result{Scheduled: j.at}
	t0 := clk.Now()
	r.Start = t0.Sub(start)
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	finish := func(errType, msg string) Result {
		r.Duration = clk.Since(t0)
		r.ErrType, r.Err = errType, msg
		return r
	}
	req, err := http.NewRequestWithContext(ctx, c.Method, c.URL, bytes.NewReader(j.body))
	if err != nil {
		return finish("request", err.Error())
	}
	req.Header = c.Header.Clone()
	if c.Host != "" {
		req.Host = c.Host
	}
	if u, p, ok := strings.Cut(c.BasicAuth, ":"); ok {
		req.SetBasicAuth(u, p)
	}
	resp, err := cl.Do(req)
	if err != nil {
		return finish(transportErrType(ctx, err), err.Error())
	}
	defer resp.Body.Close()
	r.Status = resp.StatusCode
	br := bufio.NewReaderSize(resp.Body, 32<<10)
	if _, err := br.Peek(1); err == nil {
		r.TTFT = clk.Since(t0)
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") && resp.StatusCode < 300 {
		r.Streamed = true
		r.TTFT = 0
		errType, msg := readStream(br, clk, t0, &r)
		return finish(errType, msg)
	}
	data, err := io.ReadAll(br)
	r.Bytes = int64(len(data))
	if err != nil {
		return finish(transportErrType(ctx, err), err.Error())
	}
	if resp.StatusCode >= 400 {
		return finish(fmt.Sprintf("http_%d", resp.StatusCode), openAIMessage(data))
	}
	var body struct {
		Usage *tokenUsage `json:"usage"`
	}
	if json.Unmarshal(data, &body) == nil && body.Usage != nil {
		r.Tokens = body.Usage.CompletionTokens
		r.PromptTokens = body.Usage.PromptTokens
	}
	return finish("", "")
}

// tokenUsage is the token accounting of an OpenAI response.
type tokenUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
}

// readStream reads an OpenAI SSE stream: TTFT is the first chunk carrying
// text; tokens are the usage's completion_tokens when sent, else the
// chunks carrying text.
func readStream(br *bufio.Reader, clk clock.Clock, t0 time.Time, r *Result) (string, string) {
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	chunks, usage, done := 0, -1, false
	for sc.Scan() {
		line := sc.Bytes()
		r.Bytes += int64(len(line)) + 1
		data, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok {
			continue
		}
		data = bytes.TrimSpace(data)
		if string(data) == "[DONE]" {
			done = true
			break
		}
		var ev struct {
			Choices []struct {
				Text  string `json:"text"`
				Delta struct {
					Content          string `json:"content"`
					ReasoningContent string `json:"reasoning_content"`
				} `json:"delta"`
			} `json:"choices"`
			Usage *tokenUsage `json:"usage"`
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(data, &ev); err != nil {
			return "decode", fmt.Sprintf("bad stream event: %v", err)
		}
		if ev.Error != nil {
			return "stream", "error event: " + ev.Error.Message
		}
		for _, ch := range ev.Choices {
			if ch.Text != "" || ch.Delta.Content != "" || ch.Delta.ReasoningContent != "" {
				if chunks == 0 {
					r.TTFT = clk.Since(t0)
				}
				chunks++
			}
		}
		if ev.Usage != nil {
			usage = ev.Usage.CompletionTokens
			r.PromptTokens = ev.Usage.PromptTokens
		}
	}
	r.Tokens = chunks
	if usage >= 0 {
		r.Tokens = usage
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return "timeout", err.Error()
		}
		return "stream", err.Error()
	}
	if !done {
		return "stream", "stream ended without data: [DONE]"
	}
	return "", ""
}

func transportErrType(ctx context.Context, err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || ctx.Err() == context.DeadlineExceeded,
		errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	default:
		return "connection"
	}
}

func openAIMessage(data []byte) string {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(data, &e) == nil && e.Error.Message != "" {
		return e.Error.Message
	}
	s := strings.TrimSpace(string(data))
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

func startProgress(w io.Writer, c Config, clk clock.WithTicker, start time.Time, sent, failed, inFlight *atomic.Int64) func() {
	if w == nil || c.Progress <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := clk.NewTicker(c.Progress)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprintln(w)
				return
			case <-t.C():
				el := clk.Since(start)
				fmt.Fprintf(w, "\r%6.1fs  sent %d  errors %d  in flight %d  %.1f req/s   ",
					el.Seconds(), sent.Load(), failed.Load(), inFlight.Load(), float64(sent.Load())/el.Seconds())
			}
		}
	}()
	return func() { close(done); <-finished }
}
