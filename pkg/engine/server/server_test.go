package server

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/spillway-io/spillway/pkg/engine/perf"
)

func testConfig(t testing.TB) Config {
	t.Helper()
	g, err := perf.LookupGPU("v100")
	if err != nil {
		t.Fatal(err)
	}
	return Config{
		ServedModelNames: []string{"qwen"},
		ModelPath:        "/mnt/models/Qwen",
		Engine: perf.Config{GPU: g, Model: perf.ModelForParams(7, "gptq"), GPUMemoryUtilization: 0.95,
			MaxModelLen: 6144, PrefixCaching: true},
		GracePeriod: 5 * time.Second,
	}
}

// start serves cfg on 127.0.0.1:0 and returns the base URL; the server stops with the test.
func start(t testing.TB, cfg Config, opts ...Option) (string, *Server, context.CancelFunc, <-chan error) {
	t.Helper()
	s, err := New(cfg, append([]Option{WithLogger(testr.NewWithInterface(t, testr.Options{}))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return "http://" + ln.Addr().String(), s, cancel, done
}

func client(base string) openai.Client {
	return openai.NewClient(option.WithBaseURL(base+"/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
}

func chatParams(seed int64, maxTokens int64) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:     "qwen",
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("你好")},
		MaxTokens: openai.Int(maxTokens),
		Seed:      openai.Int(seed),
	}
}

func TestChatCompletion(t *testing.T) {
	base, _, _, _ := start(t, testConfig(t))
	c := client(base)
	ctx := context.Background()
	resp, err := c.Chat.Completions.New(ctx, chatParams(10, 8))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Choices) != 1 || resp.Choices[0].Message.Content == "" || resp.Choices[0].FinishReason != "length" {
		t.Fatalf("unexpected response %+v", resp)
	}
	prompt := promptTokens(renderChat([]chatMessage{{Role: "user", text: "你好"}}))
	want := openai.CompletionUsage{PromptTokens: int64(prompt), CompletionTokens: 8, TotalTokens: int64(prompt) + 8}
	got := openai.CompletionUsage{PromptTokens: resp.Usage.PromptTokens, CompletionTokens: resp.Usage.CompletionTokens, TotalTokens: resp.Usage.TotalTokens}
	if diff := cmp.Diff(want.TotalTokens, got.TotalTokens); diff != "" || got.PromptTokens != want.PromptTokens || got.CompletionTokens != 8 {
		t.Errorf("usage: want %d/%d/%d, got %d/%d/%d", want.PromptTokens, want.CompletionTokens, want.TotalTokens, got.PromptTokens, got.CompletionTokens, got.TotalTokens)
	}
	again, err := c.Chat.Completions.New(ctx, chatParams(10, 8))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(resp.Choices[0].Message.Content, again.Choices[0].Message.Content); diff != "" {
		t.Errorf("same seed, different text (-want,+got):\n%s", diff)
	}
	other, err := c.Chat.Completions.New(ctx, chatParams(11, 8))
	if err != nil {
		t.Fatal(err)
	}
	if other.Choices[0].Message.Content == resp.Choices[0].Message.Content {
		t.Errorf("seeds 10 and 11 gave the same text %q", other.Choices[0].Message.Content)
	}
}

func TestChatStreamingMatchesWhole(t *testing.T) {
	base, _, _, _ := start(t, testConfig(t))
	c := client(base)
	ctx := context.Background()
	whole, err := c.Chat.Completions.New(ctx, chatParams(3, 12))
	if err != nil {
		t.Fatal(err)
	}
	p := chatParams(3, 12)
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	st := c.Chat.Completions.NewStreaming(ctx, p)
	var text strings.Builder
	var finish string
	var usage openai.CompletionUsage
	chunks := 0
	for st.Next() {
		ch := st.Current()
		chunks++
		for _, choice := range ch.Choices {
			text.WriteString(choice.Delta.Content)
			if choice.FinishReason != "" {
				finish = choice.FinishReason
			}
		}
		if ch.Usage.TotalTokens > 0 {
			usage = ch.Usage
		}
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(whole.Choices[0].Message.Content, text.String()); diff != "" {
		t.Errorf("streamed text differs from the whole answer (-want,+got):\n%s", diff)
	}
	if finish != "length" || usage.CompletionTokens != 12 || usage.TotalTokens != whole.Usage.TotalTokens {
		t.Errorf("finish %q usage %+v, want length and 12 completion tokens", finish, usage)
	}
	if chunks != 12+2 { // role chunk, 12 tokens, usage chunk
		t.Errorf("got %d chunks, want 14", chunks)
	}
}

func TestCompletions(t *testing.T) {
	base, _, _, _ := start(t, testConfig(t))
	c := client(base)
	ctx := context.Background()
	params := openai.CompletionNewParams{Model: "qwen", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
		MaxTokens: openai.Int(6), Seed: openai.Int(1)}
	resp, err := c.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].Text == "" || resp.Usage.CompletionTokens != 6 || resp.Usage.PromptTokens != 4 {
		t.Errorf("unexpected completion %+v", resp)
	}
	st := c.Completions.NewStreaming(ctx, params)
	var text strings.Builder
	for st.Next() {
		for _, ch := range st.Current().Choices {
			text.WriteString(ch.Text)
		}
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(resp.Choices[0].Text, text.String()); diff != "" {
		t.Errorf("streamed completion differs (-want,+got):\n%s", diff)
	}
}

func TestStop(t *testing.T) {
	base, _, _, _ := start(t, testConfig(t))
	c := client(base)
	ctx := context.Background()
	free, err := c.Chat.Completions.New(ctx, chatParams(42, 20))
	if err != nil {
		t.Fatal(err)
	}
	pl := makePlan(42, 20, false, nil)
	// Stop on the word of the fifth token: the answer ends just before it.
	word := pl.upTo(4, 5)
	want := free.Choices[0].Message.Content[:strings.Index(free.Choices[0].Message.Content, word)]
	p := chatParams(42, 20)
	p.Stop = openai.ChatCompletionNewParamsStopUnion{OfStringArray: []string{"<|im_end|>", word}}
	resp, err := c.Chat.Completions.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, resp.Choices[0].Message.Content); diff != "" {
		t.Errorf("stopped text (-want,+got):\n%s", diff)
	}
	if resp.Choices[0].FinishReason != "stop" || resp.Usage.CompletionTokens > 5 {
		t.Errorf("finish %q after %d tokens, want stop within 5", resp.Choices[0].FinishReason, resp.Usage.CompletionTokens)
	}
}

func TestErrorsThroughClient(t *testing.T) {
	base, _, _, _ := start(t, testConfig(t))
	c := client(base)
	ctx := context.Background()
	cases := []struct {
		name   string
		params openai.ChatCompletionNewParams
		status int
		msg    string
	}{
		{"unknown model", func() openai.ChatCompletionNewParams { p := chatParams(1, 5); p.Model = "gpt-9"; return p }(), 404, "The model `gpt-9` does not exist."},
		{"beyond max model len", chatParams(1, 6144), 400, "maximum context length is 6144 tokens"},
		{"max tokens zero", chatParams(1, 0), 400, "max_tokens must be at least 1"},
	}
	for _, tc := range cases {
		_, err := c.Chat.Completions.New(ctx, tc.params)
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) {
			t.Fatalf("%s: error %v is not an API error", tc.name, err)
		}
		if apiErr.StatusCode != tc.status || !strings.Contains(apiErr.Message, tc.msg) {
			t.Errorf("%s: got %d %q, want %d containing %q", tc.name, apiErr.StatusCode, apiErr.Message, tc.status, tc.msg)
		}
	}
}

func TestErrorsRaw(t *testing.T) {
	base, _, _, _ := start(t, testConfig(t))
	cases := []struct {
		path, body string
		status     int
		msg        string
	}{
		{"/v1/chat/completions", `{"model":"qwen","messages":[`, 400, "invalid JSON body"},
		{"/v1/chat/completions", `{"model":"qwen"}`, 400, "messages must be a non-empty array"},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}]}`, 400, "you must provide a model parameter"},
		{"/v1/chat/completions", `{"model":"qwen","messages":[{"role":"wizard","content":"x"}]}`, 400, "is not one of system, user"},
		{"/v1/completions", `{"model":"qwen"}`, 400, "prompt is required"},
		{"/v1/completions", `{"model":"qwen","prompt":"x","stream_options":{"include_usage":true}}`, 400, "stream_options can only be set"},
		{"/v1/nothing", `{}`, 404, "is not an endpoint"},
	}
	for _, tc := range cases {
		resp, err := http.Post(base+tc.path, "application/json", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(body), `"error":{"message":`) || !strings.Contains(string(body), tc.msg) {
			t.Errorf("POST %s %s: got %d %s, want %d with %q", tc.path, tc.body, resp.StatusCode, body, tc.status, tc.msg)
		}
	}
}

func TestHealthWaitsForStartupDelay(t *testing.T) {
	fc := testingclock.NewFakeClock(time.Unix(1000, 0))
	cfg := testConfig(t)
	cfg.StartupDelay = 30 * time.Second
	base, s, _, _ := start(t, cfg, WithClock(fc))
	status := func(path string) int {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status("/health"); got != 503 || s.Ready() {
		t.Errorf("before load: /health %d, Ready %v; want 503, false", got, s.Ready())
	}
	if got := status("/healthz"); got != 200 {
		t.Errorf("/healthz %d, want 200 (process liveness)", got)
	}
	fc.Step(30 * time.Second)
	if got := status("/health"); got != 200 || !s.Ready() {
		t.Errorf("after load: /health %d, Ready %v; want 200, true", got, s.Ready())
	}
}

func TestMetrics(t *testing.T) {
	base, s, _, _ := start(t, testConfig(t))
	c := client(base)
	if _, err := c.Chat.Completions.New(context.Background(), chatParams(5, 7)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`vllm:generation_tokens_total{model_name="qwen"} 7`,
		`vllm:request_success_total{finished_reason="length",model_name="qwen"} 1`,
		`vllm:num_requests_running{model_name="qwen"} 0`,
		`vllm:num_requests_waiting{model_name="qwen"} 0`,
		`vllm:time_to_first_token_seconds_count{model_name="qwen"} 1`,
		`vllm:inter_token_latency_seconds_count{model_name="qwen"} 6`,
		`vllm:e2e_request_latency_seconds_count{model_name="qwen"} 1`,
		`vllm:request_queue_time_seconds_count{model_name="qwen"} 1`,
		`# TYPE vllm:kv_cache_usage_perc gauge`,
		`# TYPE vllm:prompt_tokens_total counter`,
		`vllm:prefix_cache_queries_total{model_name="qwen"}`,
		`spillway_engine_sm_utilization_percent{model_name="qwen"}`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if st := s.Stats(); st.SMUtilPercent <= 0 || st.Running != 0 {
		t.Errorf("stats after one request: %+v, want some SM use and nothing running", st)
	}
}

func TestDrainFinishesStreams(t *testing.T) {
	base, _, cancel, done := start(t, testConfig(t))
	body := `{"model":"qwen","prompt":"drain me","max_tokens":40,"ignore_eos":true,"stream":true}`
	resp, err := http.Post(base+"/v1/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	if _, err := r.ReadString('\n'); err != nil { // first token arrived: the request is in flight
		t.Fatal(err)
	}
	cancel()
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("stream cut during drain: %v", err)
	}
	if !strings.HasSuffix(string(rest), "data: [DONE]\n\n") || strings.Count(string(rest), `"text":`) != 39 {
		t.Errorf("drained stream incomplete: %q", rest)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after draining")
	}
	if _, err := http.Get(base + "/health"); err == nil {
		t.Error("server still listening after drain")
	}
}

func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(`{"model":"qwen","messages":[{"role":"user","content":"你好"}],"max_tokens":512,"seed":10,"stop":["<|endoftext|>"]}`), true)
	f.Add([]byte(`{"model":"m","prompt":[1,2,3],"stop":"x","stream":true,"stream_options":{"include_usage":true}}`), false)
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"}]}]}`), true)
	f.Fuzz(func(t *testing.T, body []byte, chat bool) {
		r, aerr := parseRequest(body, chat)
		if aerr != nil {
			if aerr.Status != 400 || aerr.Message == "" {
				t.Fatalf("bad error %+v", aerr)
			}
			return
		}
		if r.model == "" || r.promptTokens < 0 || r.maxTokens < 0 {
			t.Fatalf("accepted invalid request %+v", r)
		}
		for _, s := range r.stops {
			if s == "" {
				t.Fatal("empty stop string kept")
			}
		}
	})
}
