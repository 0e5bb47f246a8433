package gateway

// Tests against the real engine simulator (pkg/engine/server), several
// replicas on their own 127.0.0.1 sockets, driven through the gateway with
// the official OpenAI Go client.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/spillway-io/spillway/pkg/engine/enginesim"
	"github.com/spillway-io/spillway/pkg/engine/server"
	"github.com/spillway-io/spillway/pkg/gateway/balancer"
	"github.com/spillway-io/spillway/pkg/gateway/routing"
)

// simReplica is one engine simulator serving on 127.0.0.1.
type simReplica struct {
	*server.Server
	Addr string
	ln   *killableListener
}

// killableListener records accepted connections so that the replica can be
// killed at once, as a crashing process would be: listener closed (new
// connections refused) and every open connection reset.
type killableListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *killableListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *killableListener) kill() {
	_ = l.Listener.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST, not an orderly FIN
		}
		_ = c.Close()
	}
}

// startSim runs an engine simulator built from a vLLM command line, as the
// node simulator does, on a GPU profile: "h100" with a 1B model answers a
// token every ~4ms, "v100" with a 13B model every ~25ms.
func startSim(t *testing.T, gpu string, paramsB float64, argv ...string) *simReplica {
	t.Helper()
	settings := enginesim.DefaultSettings()
	settings.GPU, settings.ModelParamsBillions, settings.StartupDelay, settings.GracePeriod = gpu, paramsB, 0, 2*time.Second
	cfg, _, err := enginesim.BuildConfig(append([]string{"vllm", "serve", "/mnt/models/m"}, argv...), settings)
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(cfg, server.WithLogger(testr.NewWithInterface(t, testr.Options{})))
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &killableListener{Listener: inner}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() {
		cancel()
		ln.kill()
		<-done
	})
	return &simReplica{Server: s, Addr: inner.Addr().String(), ln: ln}
}

// served is the number of requests the replica finished (its own
// vllm:request_success_total, read from its /metrics).
func (r *simReplica) served(t *testing.T) int {
	t.Helper()
	n := 0
	for _, line := range strings.Split(get(t, "http://"+r.Addr+"/metrics"), "\n") {
		if strings.HasPrefix(line, "vllm:request_success_total{") {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			n += int(v)
		}
	}
	return n
}

func simService(ns, name, model string, reps ...*simReplica) routing.Service {
	s := routing.Service{Namespace: ns, Name: name, Model: model}
	for _, r := range reps {
		s.Endpoints = append(s.Endpoints, routing.Endpoint{Address: r.Addr, Pool: "idc"})
	}
	return s
}

// hostClient is an OpenAI client for http://host/v1/ whose connections go
// to the gateway, as if the host's DNS name pointed at it.
func hostClient(gatewayURL, host string) openai.Client {
	addr := strings.TrimPrefix(gatewayURL, "http://")
	var d net.Dialer
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}}}
	return oaiClient("http://"+host, option.WithHTTPClient(hc))
}

func oaiClient(base string, opts ...option.RequestOption) openai.Client {
	return openai.NewClient(append([]option.RequestOption{option.WithBaseURL(base + "/v1/"),
		option.WithAPIKey("unused"), option.WithMaxRetries(0)}, opts...)...)
}

func simChat(model string, seed, maxTokens int64) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:     model,
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Tell me about spillways.")},
		MaxTokens: openai.Int(maxTokens),
		Seed:      openai.Int(seed),
	}
}

// streamText reads a stream to its end and returns its text and usage.
func streamText(s interface {
	Next() bool
	Current() openai.ChatCompletionChunk
	Err() error
}) (string, int64, int, error) {
	var b strings.Builder
	var usage int64
	chunks := 0
	for s.Next() {
		ch := s.Current()
		chunks++
		for _, c := range ch.Choices {
			b.WriteString(c.Delta.Content)
		}
		if ch.Usage.CompletionTokens > 0 {
			usage = ch.Usage.CompletionTokens
		}
	}
	return b.String(), usage, chunks, s.Err()
}

func TestSimOpenAIClientRouting(t *testing.T) {
	a1 := startSim(t, "h100", 1, "--served-model-name", "qwen")
	a2 := startSim(t, "h100", 1, "--served-model-name", "qwen")
	b1 := startSim(t, "h100", 1, "--served-model-name", "llama")
	c1 := startSim(t, "h100", 1, "--served-model-name", "qwen")
	gw := startGateway(t, Options{},
		simService("default", "qwen-chat", "qwen", a1, a2),
		simService("default", "llama", "llama", b1),
		// Same model name in another namespace: reachable by host only.
		simService("staging", "qwen-canary", "qwen", c1))
	ctx := context.Background()
	direct := oaiClient("http://" + a1.Addr)
	viaGW := oaiClient(gw.URL)

	// Non-streaming, routed by model: the same answer as the engine gives directly.
	want, err := direct.Chat.Completions.New(ctx, simChat("qwen", 7, 12))
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		got, err := viaGW.Chat.Completions.New(ctx, simChat("qwen", 7, 12))
		if err != nil {
			t.Fatal(err)
		}
		if got.Model != "qwen" || got.Choices[0].Message.Content != want.Choices[0].Message.Content ||
			got.Usage.CompletionTokens != 12 || got.Usage.PromptTokens != want.Usage.PromptTokens {
			t.Fatalf("through the gateway %+v, directly %+v", got, want)
		}
	}

	// Streaming, with usage: the same text, chunk by chunk.
	params := simChat("qwen", 7, 12)
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	text, usage, chunks, err := streamText(viaGW.Chat.Completions.NewStreaming(ctx, params))
	if err != nil || text != want.Choices[0].Message.Content || usage != 12 || chunks < 13 {
		t.Fatalf("stream: err %v, usage %d, %d chunks, text %q want %q", err, usage, chunks, text, want.Choices[0].Message.Content)
	}

	// Legacy completions by model, on the other service.
	comp, err := viaGW.Completions.New(ctx, openai.CompletionNewParams{Model: "llama",
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("x")}, MaxTokens: openai.Int(3)})
	if err != nil || comp.Model != "llama" || comp.Usage.CompletionTokens != 3 {
		t.Fatalf("completion: %v %+v", err, comp)
	}

	// By host: the canary's replica, though model routing would pick qwen-chat.
	canary := hostClient(gw.URL, "qwen-canary-staging.example.com")
	for range 3 {
		if _, err := canary.Chat.Completions.New(ctx, simChat("qwen", 1, 2)); err != nil {
			t.Fatal(err)
		}
	}
	if got := []int{a1.served(t) + a2.served(t), b1.served(t), c1.served(t)}; !cmp.Equal(got, []int{1 + 4 + 1, 1, 3}) {
		t.Errorf("served by qwen-chat, llama, qwen-canary = %v, want [6 1 3]", got)
	}

	// /v1/models: aggregated on the bare host, the service's on its host.
	ids := func(c openai.Client) []string {
		page, err := c.Models.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range page.Data {
			out = append(out, m.ID)
		}
		return out
	}
	if d := cmp.Diff([]string{"llama", "qwen"}, ids(viaGW)); d != "" {
		t.Errorf("aggregated models (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"llama"}, ids(hostClient(gw.URL, "llama-default.example.com"))); d != "" {
		t.Errorf("models on the llama host (-want +got):\n%s", d)
	}

	// The engine's own errors pass through in OpenAI's format.
	_, err = viaGW.Chat.Completions.New(ctx, simChat("qwen", 1, 100000))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 {
		t.Errorf("prompt + max_tokens beyond the context: %v", err)
	}
	_, err = viaGW.Chat.Completions.New(ctx, simChat("gpt-4", 1, 1))
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" {
		t.Errorf("unknown model: %v", err)
	}
}

func TestSimReplicaDiesMidStream(t *testing.T) {
	dying := startSim(t, "h100", 1, "--served-model-name", "qwen")
	other := startSim(t, "h100", 1, "--served-model-name", "qwen")
	svc := simService("default", "qwen-chat", "qwen", dying, other)
	svc.Endpoints[1].PoolRank = 1 // the dying replica is picked first
	svc.Policy.PoolPreference = true
	gw := startGateway(t, Options{}, svc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	params := simChat("qwen", 3, 2000)
	sc := oaiClient(gw.URL, option.WithJSONSet("ignore_eos", true))
	stream := sc.Chat.Completions.NewStreaming(ctx, params)
	chunks := 0
	for stream.Next() {
		if chunks++; chunks == 5 {
			dying.ln.kill()
		}
	}
	err := stream.Err()
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "upstream_stream_broken") {
		t.Fatalf("after %d chunks: err %v (context: %v); want the gateway's error event", chunks, err, ctx.Err())
	}
	if chunks >= 2000 {
		t.Fatalf("the stream was not cut (%d chunks)", chunks)
	}
	// The dead replica now refuses connections: requests are retried on the other.
	c := oaiClient(gw.URL)
	for i := range 6 {
		res, err := c.Chat.Completions.New(context.Background(), simChat("qwen", int64(i), 3))
		if err != nil || res.Usage.CompletionTokens != 3 {
			t.Fatalf("request %d after the death: %v", i, err)
		}
	}
	if n := other.served(t); n != 6 {
		t.Errorf("the surviving replica served %d, want 6", n)
	}
}

func TestSimRefusedConnectionsRetried(t *testing.T) {
	live := startSim(t, "h100", 1, "--served-model-name", "qwen")
	svc := simService("default", "qwen-chat", "qwen", live)
	svc.Endpoints = append([]routing.Endpoint{{Address: deadAddress(t), Pool: "idc"}, {Address: deadAddress(t), Pool: "idc"}}, svc.Endpoints...)
	svc.Policy.Algorithm = balancer.RoundRobin // the dead ones come first in turn
	gw := startGateway(t, Options{}, svc)
	c := oaiClient(gw.URL)
	ctx := context.Background()
	for i := range 8 {
		if i%2 == 0 {
			if _, err := c.Chat.Completions.New(ctx, simChat("qwen", int64(i), 2)); err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			continue
		}
		if _, _, _, err := streamText(c.Chat.Completions.NewStreaming(ctx, simChat("qwen", int64(i), 2))); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	if n := live.served(t); n != 8 {
		t.Errorf("live replica served %d, want 8", n)
	}
	m := get(t, gw.URL+"/metrics")
	if !strings.Contains(m, `spillway_gateway_retries_total{namespace="default",service="qwen-chat"}`) ||
		!strings.Contains(m, `spillway_gateway_outlier_ejections_total`) {
		t.Error("retries or ejections not recorded")
	}
}

func TestSimSlowReplica(t *testing.T) {
	// A replica on an older GPU with a bigger model answers ~7x slower (33 ms
	// a token against 4.5): the balancer sees its outstanding requests and
	// queue and sends it fewer.
	slow := startSim(t, "v100", 20, "--served-model-name", "qwen", "--quantization", "gptq")
	fast := startSim(t, "h100", 1, "--served-model-name", "qwen")
	gw := startGateway(t, Options{ScrapeInterval: 100 * time.Millisecond}, simService("default", "qwen-chat", "qwen", slow, fast))
	c := oaiClient(gw.URL)
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			for i := range 8 {
				if _, err := c.Chat.Completions.New(context.Background(), simChat("qwen", int64(w*100+i), 32)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	// Round robin or a random pick would give both about 24.
	if s, f := slow.served(t), fast.served(t); s+f != 48 || s*2 > f {
		t.Errorf("slow replica served %d, fast %d; want 48 in all and the fast one 2x more", s, f)
	}

	// A request the slow replica cannot finish in the service's timeout: 504,
	// and the engine stops working on it (the cancel reaches it).
	only := simService("default", "slow-only", "slow", slow)
	only.Timeout = 300 * time.Millisecond
	gw.Update([]routing.Service{only})
	start := time.Now()
	resp := post(t, &http.Client{}, gw.URL+"/v1/chat/completions", "slow-only-default.example.com",
		`{"model":"qwen","messages":[{"role":"user","content":"x"}],"max_tokens":500,"ignore_eos":true}`)
	readError(t, resp, http.StatusGatewayTimeout)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("answered after %s, want ~300ms", d)
	}
	eventually(t, "the engine to drop the request", func() bool { st := slow.Stats(); return st.Running == 0 && st.Waiting == 0 })
}

func TestSimSlowAndGoneClients(t *testing.T) {
	eng := startSim(t, "h100", 1, "--served-model-name", "qwen")
	gw := startGateway(t, Options{}, simService("default", "qwen-chat", "qwen", eng))
	body := `{"model":"qwen","messages":[{"role":"user","content":"x"}],"max_tokens":40,"ignore_eos":true,"seed":5,"stream":true}`
	direct := post(t, &http.Client{}, "http://"+eng.Addr+"/v1/chat/completions", "", body)
	wantBody, _ := io.ReadAll(direct.Body)
	_ = direct.Body.Close()
	wantEvents := strings.Count(string(wantBody), "data: ")

	// A slow reader (one event per 15ms, slower than the engine's 4ms) gets
	// every event, while a fast client on the same gateway is not held up.
	var wg sync.WaitGroup
	var slowEvents int
	var slowErr error
	wg.Go(func() {
		resp := post(t, &http.Client{}, gw.URL+"/v1/chat/completions", "", body)
		defer func() { _ = resp.Body.Close() }()
		br := bufio.NewReaderSize(resp.Body, 16)
		for {
			line, err := br.ReadString('\n')
			if strings.HasPrefix(line, "data: ") {
				slowEvents++
				time.Sleep(15 * time.Millisecond)
			}
			if err != nil {
				if err != io.EOF {
					slowErr = err
				}
				return
			}
		}
	})
	fastStart := time.Now()
	c := oaiClient(gw.URL)
	for i := range 5 {
		if _, err := c.Chat.Completions.New(context.Background(), simChat("qwen", int64(i), 8)); err != nil {
			t.Fatal(err)
		}
	}
	fastTook := time.Since(fastStart)
	wg.Wait()
	if slowErr != nil || slowEvents != wantEvents {
		t.Errorf("slow client: %d events (want %d), err %v", slowEvents, wantEvents, slowErr)
	}
	if fastTook > 3*time.Second {
		t.Errorf("5 short requests took %s beside a slow client", fastTook)
	}

	// A client that goes away mid-stream: the engine stops generating for it.
	ctx, cancel := context.WithCancel(context.Background())
	stream := c.Chat.Completions.NewStreaming(ctx, simChat("qwen", 9, 3000), option.WithJSONSet("ignore_eos", true))
	for i := 0; i < 3 && stream.Next(); i++ {
	}
	if st := eng.Stats(); st.Running != 1 {
		t.Fatalf("engine running %d mid-stream, want 1", st.Running)
	}
	cancel()
	_ = stream.Close()
	eventually(t, "the engine to drop the abandoned stream", func() bool { return eng.Stats().Running == 0 })
	eventually(t, "in flight back to 0", func() bool {
		r := gw.Metrics.Report(time.Now())
		return len(r.Services) == 1 && r.Services[0].InFlight == 0
	})
}

func TestSimQueueAndKVAwareBalancing(t *testing.T) {
	// Two replicas batching 2 sequences each; another gateway's users (not
	// seen by this one) fill one of them. Only the engines' /metrics tell.
	busy := startSim(t, "h100", 1, "--served-model-name", "qwen", "--max-num-seqs", "2")
	idle := startSim(t, "h100", 1, "--served-model-name", "qwen", "--max-num-seqs", "2")
	gw := startGateway(t, Options{ScrapeInterval: 100 * time.Millisecond}, simService("default", "qwen-chat", "qwen", busy, idle))
	bg, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { stopBG(); wg.Wait() }()
	for i := range 6 {
		wg.Go(func() {
			body := fmt.Sprintf(`{"model":"qwen","prompt":"%s","max_tokens":3000,"ignore_eos":true}`, strings.Repeat("long prompt ", 200+i))
			req, _ := http.NewRequestWithContext(bg, http.MethodPost, "http://"+busy.Addr+"/v1/completions", strings.NewReader(body))
			if resp, err := http.DefaultClient.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
		})
	}
	eventually(t, "the busy engine's queue in the gateway's scraped view", func() bool {
		l, ok := gw.Upstreams.Get(busy.Addr).Load(time.Now(), time.Second)
		return ok && l.Running == 2 && l.Waiting == 4 && l.KVUsage > 0
	})
	if l, ok := gw.Upstreams.Get(idle.Addr).Load(time.Now(), time.Second); !ok || l.Running != 0 || l.KVUsage != 0 {
		t.Fatalf("idle engine's scraped load %+v (%t)", l, ok)
	}
	// Sequential requests: the gateway's own outstanding count is 0 on both
	// each time, so only the scraped queue can steer them.
	c := oaiClient(gw.URL)
	for i := range 10 {
		if _, err := c.Chat.Completions.New(context.Background(), simChat("qwen", int64(i), 2)); err != nil {
			t.Fatal(err)
		}
	}
	if b, i := busy.served(t), idle.served(t); b != 0 || i != 10 {
		t.Errorf("busy replica served %d, idle %d; want 0 and 10", b, i)
	}
}
