package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/spillway-io/spillway/pkg/gateway/auth"
	"github.com/spillway-io/spillway/pkg/gateway/enginetest"
	"github.com/spillway-io/spillway/pkg/gateway/proxy"
	"github.com/spillway-io/spillway/pkg/gateway/routing"
)

const chatBody = `{"model":"qwen","messages":[{"role":"user","content":"hi"}],"max_tokens":4}`

func TestRoutingAndErrors(t *testing.T) {
	engA, addrA := startEngine(t, enginetest.Config{Model: "qwen"})
	engB, addrB := startEngine(t, enginetest.Config{Model: "llama"})
	gw := startGateway(t, Options{Proxy: proxy.Config{MaxBodyBytes: 1024}},
		service("qwen-chat", "qwen", addrA), service("llama", "llama", addrB))
	c := &http.Client{}

	// By host: the body's model does not matter.
	resp := post(t, c, gw.URL+"/v1/chat/completions", "qwen-chat-default.example.com",
		`{"model":"whatever","messages":[]}`)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"model":"qwen"`) {
		t.Fatalf("host route: %d %s", resp.StatusCode, body)
	}
	// By model on the bare host.
	resp = post(t, c, gw.URL+"/v1/completions", "", `{"model":"llama","prompt":"x"}`)
	body, _ = io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"model":"llama"`) {
		t.Fatalf("model route: %d %s", resp.StatusCode, body)
	}
	resp = post(t, c, gw.URL+"/v1/embeddings", "llama-default.example.com:80", `{"model":"llama","input":"x"}`)
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("embeddings: %d", resp.StatusCode)
	}
	if engA.Requests.Load() != 1 || engB.Requests.Load() != 2 {
		t.Errorf("engine requests = %d, %d; want 1, 2", engA.Requests.Load(), engB.Requests.Load())
	}

	cases := []struct {
		name, method, path, host, body string
		status                         int
		code                           string
	}{
		{"unknown host", "POST", "/v1/chat/completions", "nope-default.example.com", chatBody, 404, "host_not_found"},
		{"unknown model", "POST", "/v1/chat/completions", "", `{"model":"gpt-4"}`, 404, "model_not_found"},
		{"malformed json", "POST", "/v1/chat/completions", "", `{"model":`, 400, "invalid_json"},
		{"model not a string", "POST", "/v1/chat/completions", "", `{"model":3}`, 400, "invalid_json"},
		{"body too large", "POST", "/v1/chat/completions", "", `{"model":"qwen","prompt":"` + strings.Repeat("x", 2000) + `"}`, 413, "request_too_large"},
		{"wrong method", "GET", "/v1/chat/completions", "", "", 405, "method_not_allowed"},
		{"unknown path", "POST", "/v1/other", "", chatBody, 404, "unknown_url"},
		{"models on unknown host", "GET", "/v1/models", "x-y.example.com", "", 404, "host_not_found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, gw.URL+tc.path, strings.NewReader(tc.body))
			if tc.host != "" {
				req.Host = tc.host
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			e := readError(t, resp, tc.status)
			if e.Error.Code == nil || *e.Error.Code != tc.code {
				t.Errorf("code = %v, want %q (%s)", e.Error.Code, tc.code, e.Error.Message)
			}
		})
	}

	// /v1/models: aggregated on the bare host, one model on a service host.
	models := func(host string) []string {
		req, _ := http.NewRequest("GET", gw.URL+"/v1/models", nil)
		req.Host = host
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		var list struct {
			Object string
			Data   []struct{ ID, Object string }
		}
		if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || list.Object != "list" {
			t.Fatalf("models: %v %+v", err, list)
		}
		var ids []string
		for _, m := range list.Data {
			ids = append(ids, m.ID)
		}
		return ids
	}
	if d := cmp.Diff([]string{"llama", "qwen"}, models("")); d != "" {
		t.Errorf("aggregated models (-want,+got):\n%s", d)
	}
	if d := cmp.Diff([]string{"qwen"}, models("qwen-chat-default.example.com")); d != "" {
		t.Errorf("service models (-want,+got):\n%s", d)
	}
}

func TestNoOpenProxy(t *testing.T) {
	// A request in absolute form naming another server goes to the service's
	// replica only, never to the named server.
	eng, addr := startEngine(t, enginetest.Config{Model: "qwen"})
	other, otherAddr := startEngine(t, enginetest.Config{Model: "qwen"})
	gw := startGateway(t, Options{}, service("qwen-chat", "qwen", addr))
	conn, err := net.Dial("tcp", strings.TrimPrefix(gw.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	fmt.Fprintf(conn, "POST http://%s/v1/chat/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		otherAddr, otherAddr, len(chatBody), chatBody)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 || eng.Requests.Load() != 1 || other.Requests.Load() != 0 {
		t.Errorf("status %d, service replica got %d, other server got %d; want 200, 1, 0",
			resp.StatusCode, eng.Requests.Load(), other.Requests.Load())
	}
}

func TestForwardedFields(t *testing.T) {
	// What reaches the engine: the client's end-to-end fields (all values),
	// not the hop-by-hop ones nor those Connection names, X-Forwarded-*
	// set anew, the target as sent (absolute form made origin form), the
	// replica's address as Host.
	for _, target := range []string{"/v1/chat/completions?trace=1", "http://gw.example/v1/chat/completions?trace=1"} {
		eng, addr := startEngine(t, enginetest.Config{Model: "qwen"})
		gw := startGateway(t, Options{}, service("qwen-chat", "qwen", addr))
		conn, err := net.Dial("tcp", strings.TrimPrefix(gw.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: gw.example\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"+
			"Connection: close, X-Private\r\nX-Private: secret\r\nKeep-Alive: timeout=5\r\nTe: trailers\r\nUpgrade: h2c\r\n"+
			"X-Request-Id: a\r\nX-Request-Id: b\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Host: spoofed\r\nX-Forwarded-Proto: https\r\n"+
			"Authorization: Bearer engine-key\r\n\r\n%s", target, len(chatBody), chatBody)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = conn.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d", target, resp.StatusCode)
		}
		got := eng.LastHeaders()
		want := http.Header{
			"Content-Type":      {"application/json"},
			"Content-Length":    {strconv.Itoa(len(chatBody))},
			"X-Request-Id":      {"a", "b"},
			"X-Forwarded-For":   {"10.0.0.1, 127.0.0.1"},
			"X-Forwarded-Host":  {"gw.example"},
			"X-Forwarded-Proto": {"http"},
			"Authorization":     {"Bearer engine-key"}, // no API keys configured: the client's own
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: engine got fields\n%v\nwant\n%v", target, got, want)
		}
		if tg := eng.LastTarget(); tg != "/v1/chat/completions?trace=1" {
			t.Errorf("%s: engine got target %q", target, tg)
		}
	}
}

func TestOpenAIClient(t *testing.T) {
	_, addr := startEngine(t, enginetest.Config{Model: "qwen", ITL: time.Millisecond})
	gw := startGateway(t, Options{}, service("qwen-chat", "qwen", addr))
	client := openai.NewClient(option.WithBaseURL(gw.URL+"/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
	ctx := context.Background()
	params := openai.ChatCompletionNewParams{
		Model:     "qwen",
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("你好")},
		MaxTokens: openai.Int(5),
	}
	res, err := client.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if res.Model != "qwen" || len(res.Choices) != 1 || res.Choices[0].Message.Content != "tok0tok1tok2tok3tok4" || res.Usage.CompletionTokens != 5 {
		t.Errorf("unexpected answer %+v", res)
	}

	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := client.Chat.Completions.NewStreaming(ctx, params)
	var text strings.Builder
	var usage int64
	for stream.Next() {
		ch := stream.Current()
		for _, c := range ch.Choices {
			text.WriteString(c.Delta.Content)
		}
		if ch.Usage.CompletionTokens > 0 {
			usage = ch.Usage.CompletionTokens
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if text.String() != "tok0tok1tok2tok3tok4" || usage != 5 {
		t.Errorf("streamed %q usage %d", text.String(), usage)
	}

	comp, err := client.Completions.New(ctx, openai.CompletionNewParams{
		Model: "qwen", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("x")}, MaxTokens: openai.Int(2)})
	if err != nil || comp.Choices[0].Text != "tok0tok1" {
		t.Fatalf("completion: %v %+v", err, comp)
	}

	_, err = client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "nope",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("x")}})
	var apiErr *openai.Error
	if !errorsAs(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" {
		t.Errorf("unknown model through the client: %v", err)
	}

	// Token and latency metrics were recorded for the service.
	metrics := get(t, gw.URL+"/metrics")
	for _, want := range []string{
		`spillway_gateway_tokens_total{kind="completion",namespace="default",pool="idc",service="qwen-chat"} 12`,
		`spillway_gateway_requests_total{code="200",namespace="default",pool="idc",service="qwen-chat"} 3`,
		`spillway_gateway_time_to_first_token_seconds_count{namespace="default",pool="idc",service="qwen-chat"} 3`,
		`spillway_gateway_inter_token_latency_seconds_count{namespace="default",pool="idc",service="qwen-chat"} 4`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s in\n%s", want, metrics)
		}
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestRetryBeforeFirstByte(t *testing.T) {
	cases := []struct {
		name  string
		fault enginetest.Fault
	}{
		{"connection refused", -1},
		{"reset before answer", enginetest.FaultResetBeforeAnswer},
		{"503", enginetest.FaultUnavailable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			good, goodAddr := startEngine(t, enginetest.Config{Model: "qwen"})
			badAddr := deadAddress(t)
			var bad *enginetest.Engine
			if tc.fault >= 0 {
				bad, badAddr = startEngine(t, enginetest.Config{Model: "qwen"})
				bad.SetFault(tc.fault)
			}
			gw := startGateway(t, Options{}, service("qwen-chat", "qwen", badAddr, goodAddr))
			c := &http.Client{}
			for i := range 6 {
				for _, stream := range []bool{false, true} {
					body := fmt.Sprintf(`{"model":"qwen","stream":%t,"max_tokens":3}`, stream)
					resp := post(t, c, gw.URL+"/v1/chat/completions", "", body)
					b, _ := io.ReadAll(resp.Body)
					_ = resp.Body.Close()
					if resp.StatusCode != 200 || (stream && !strings.HasSuffix(string(b), "data: [DONE]\n\n")) {
						t.Fatalf("request %d stream=%t: %d %s", i, stream, resp.StatusCode, b)
					}
				}
			}
			if good.Completed.Load() != 12 {
				t.Errorf("good replica completed %d, want 12", good.Completed.Load())
			}
			// The failing replica was ejected after 3 failures: it saw at most 3.
			if bad != nil && bad.Requests.Load() > 3 {
				t.Errorf("failing replica got %d requests; outlier ejection should stop at 3", bad.Requests.Load())
			}
			if m := get(t, gw.URL+"/metrics"); !strings.Contains(m, "spillway_gateway_outlier_ejections_total") {
				t.Error("no ejection recorded")
			}
		})
	}
}

func TestAllReplicasFail(t *testing.T) {
	gw := startGateway(t, Options{}, service("qwen-chat", "qwen", deadAddress(t), deadAddress(t)))
	e := readError(t, post(t, &http.Client{}, gw.URL+"/v1/chat/completions", "", chatBody), 502)
	if !strings.Contains(e.Error.Message, "connection refused") {
		t.Errorf("message does not say why: %s", e.Error.Message)
	}
}

func TestDieMidStream(t *testing.T) {
	eng, addr := startEngine(t, enginetest.Config{Model: "qwen", DieAfter: 2, ITL: time.Millisecond})
	eng.SetFault(enginetest.FaultDieMidStream)
	_, addr2 := startEngine(t, enginetest.Config{Model: "qwen"})
	svc := service("qwen-chat", "qwen", addr, addr2)
	// Only the dying replica is picked first: make it the cheaper pool.
	svc.Endpoints[1].PoolRank = 1
	svc.Policy.PoolPreference = true
	gw := startGateway(t, Options{}, svc)
	resp := post(t, &http.Client{Timeout: 10 * time.Second}, gw.URL+"/v1/chat/completions", "",
		`{"model":"qwen","stream":true,"max_tokens":10}`)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("stream did not end cleanly: %v", err)
	}
	events := strings.Split(strings.TrimSpace(string(b)), "\n\n")
	if len(events) != 4 || !strings.Contains(events[2], `"error"`) || events[3] != "data: [DONE]" {
		t.Fatalf("want 2 token events, an error event and [DONE]; got %q", events)
	}
	var ev struct{ Error struct{ Code string } }
	if err := json.Unmarshal([]byte(strings.TrimPrefix(events[2], "data: ")), &ev); err != nil || ev.Error.Code != "upstream_stream_broken" {
		t.Errorf("error event %q: %v", events[2], err)
	}
}

func TestClientDisconnectCancelsUpstream(t *testing.T) {
	eng, addr := startEngine(t, enginetest.Config{Model: "qwen", ITL: 50 * time.Millisecond})
	gw := startGateway(t, Options{}, service("qwen-chat", "qwen", addr))
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", gw.URL+"/v1/chat/completions",
		strings.NewReader(`{"model":"qwen","stream":true,"max_tokens":1000}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	cancel()
	_ = resp.Body.Close()
	eventually(t, "the engine to see the cancel", func() bool { return eng.Cancelled.Load() == 1 })
	eventually(t, "in flight back to 0", func() bool {
		r := gw.Metrics.Report(time.Now())
		return len(r.Services) == 1 && r.Services[0].InFlight == 0
	})
}

func TestClientDisconnectBeforeTheFirstByte(t *testing.T) {
	// The engine has not answered yet (long prefill): the client's hang-up
	// must cut the engine connection at once, not when the answer comes.
	eng, addr := startEngine(t, enginetest.Config{Model: "qwen", TTFT: time.Minute})
	gw := startGateway(t, Options{}, service("qwen-chat", "qwen", addr))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", gw.URL+"/v1/chat/completions", strings.NewReader(chatBody))
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
		}
		done <- err
	}()
	eventually(t, "the engine to get the request", func() bool { return eng.Requests.Load() == 1 })
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the request succeeded")
	}
	eventually(t, "the engine to see the cancel", func() bool { return eng.Cancelled.Load() == 1 })
	eventually(t, "in flight back to 0", func() bool {
		r := gw.Metrics.Report(time.Now())
		return len(r.Services) == 1 && r.Services[0].InFlight == 0
	})
}

func TestSlowClientIsCutOff(t *testing.T) {
	// A stream far larger than the socket buffers, to a client that never reads.
	eng, addr := startEngine(t, enginetest.Config{Model: "qwen"})
	gw := startGateway(t, Options{Proxy: proxy.Config{WriteTimeout: 300 * time.Millisecond}}, service("qwen-chat", "qwen", addr))
	conn, err := net.Dial("tcp", strings.TrimPrefix(gw.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	_ = conn.(*net.TCPConn).SetReadBuffer(4096)
	body := `{"model":"qwen","stream":true,"max_tokens":2000000}`
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	eventually(t, "the engine to see the cancel", func() bool { return eng.Cancelled.Load() == 1 })
	eventually(t, "in flight back to 0", func() bool { return gw.Metrics.Report(time.Now()).Services[0].InFlight == 0 })
	if !strings.Contains(get(t, gw.URL+"/metrics"), `spillway_gateway_errors_total{namespace="default",pool="idc",reason="client_gone",service="qwen-chat"} 1`) {
		t.Error("slow client not recorded as gone")
	}
}

func TestSlowReplicaTimesOut(t *testing.T) {
	eng, addr := startEngine(t, enginetest.Config{Model: "qwen"})
	eng.SetExtraTTFT(5 * time.Second)
	svc := service("qwen-chat", "qwen", addr)
	svc.Timeout = 200 * time.Millisecond
	gw := startGateway(t, Options{}, svc)
	start := time.Now()
	readError(t, post(t, &http.Client{}, gw.URL+"/v1/chat/completions", "", chatBody), 504)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("timed out after %s, want ~200ms", d)
	}
	eventually(t, "the engine to see the cancel", func() bool { return eng.Cancelled.Load() == 1 })
}

func TestSlowReplicaAvoided(t *testing.T) {
	// With least-request balancing, a replica answering slowly accumulates
	// outstanding requests and gets fewer new ones.
	slow, slowAddr := startEngine(t, enginetest.Config{Model: "qwen", TTFT: 200 * time.Millisecond})
	fast, fastAddr := startEngine(t, enginetest.Config{Model: "qwen", TTFT: 5 * time.Millisecond})
	gw := startGateway(t, Options{}, service("qwen-chat", "qwen", slowAddr, fastAddr))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 10 {
				resp := post(t, &http.Client{}, gw.URL+"/v1/chat/completions", "", chatBody)
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
		})
	}
	wg.Wait()
	if s, f := slow.Requests.Load(), fast.Requests.Load(); s*3 > f {
		t.Errorf("slow replica got %d requests, fast %d; want the fast one to get 3x more", s, f)
	}
}

func TestHold(t *testing.T) {
	_, addr := startEngine(t, enginetest.Config{Model: "qwen"})
	gw := startGateway(t, Options{HoldTimeout: 10 * time.Second, HoldQueue: 2}, service("qwen-chat", "qwen"))
	c := &http.Client{}
	results := make(chan *http.Response, 2)
	for range 2 {
		go func() { results <- post(t, c, gw.URL+"/v1/chat/completions", "", chatBody) }()
	}
	eventually(t, "two held requests", func() bool {
		r := gw.Metrics.Report(time.Now())
		return len(r.Services) == 1 && r.Services[0].Held == 2 && r.Services[0].InFlight == 2
	})
	// The autoscaler reads the demand as JSON.
	var report struct {
		Services []struct {
			Name           string
			InFlight, Held int
		}
	}
	if err := json.Unmarshal([]byte(get(t, gw.URL+"/debug/inflight")), &report); err != nil ||
		len(report.Services) != 1 || report.Services[0].InFlight != 2 {
		t.Errorf("/debug/inflight: %v %+v", err, report)
	}
	// The queue is full: the third is refused.
	e := readError(t, post(t, c, gw.URL+"/v1/chat/completions", "", chatBody), 429)
	if *e.Error.Code != "queue_full" {
		t.Errorf("code %s", *e.Error.Code)
	}
	// A replica becomes ready: both held requests are answered.
	gw.Update([]routing.Service{service("qwen-chat", "qwen", addr)})
	for range 2 {
		resp := <-results
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("held request answered %d", resp.StatusCode)
		}
	}
}

func TestHoldTimeout(t *testing.T) {
	gw := startGateway(t, Options{HoldTimeout: 100 * time.Millisecond}, service("qwen-chat", "qwen"))
	resp := post(t, &http.Client{}, gw.URL+"/v1/chat/completions", "qwen-chat-default.example.com", chatBody)
	if ra := resp.Header.Get("Retry-After"); ra != "5" {
		t.Errorf("Retry-After = %q, want 5", ra)
	}
	readError(t, resp, 503)
}

func TestAPIKeys(t *testing.T) {
	eng, addr := startEngine(t, enginetest.Config{Model: "qwen"})
	keys, err := auth.ParseKeys("test", "sk-good 0.001 2\n")
	if err != nil {
		t.Fatal(err)
	}
	gw := startGateway(t, Options{Auth: auth.New(keys)}, service("qwen-chat", "qwen", addr))
	c := &http.Client{}
	readError(t, post(t, c, gw.URL+"/v1/chat/completions", "", chatBody), 401)
	readError(t, post(t, c, gw.URL+"/v1/chat/completions", "", chatBody, "Authorization", "Bearer sk-bad"), 401)
	for range 2 {
		resp := post(t, c, gw.URL+"/v1/chat/completions", "", chatBody, "Authorization", "Bearer sk-good")
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("good key: %d", resp.StatusCode)
		}
	}
	readError(t, post(t, c, gw.URL+"/v1/chat/completions", "", chatBody, "Authorization", "Bearer sk-good"), 429)
	if h := eng.LastHeaders().Get("Authorization"); h != "" {
		t.Errorf("the gateway's key leaked to the engine: %q", h)
	}
}

func TestGracefulShutdownFinishesStreams(t *testing.T) {
	eng, addr := startEngine(t, enginetest.Config{Model: "qwen", ITL: 20 * time.Millisecond})
	gw := startGateway(t, Options{}, service("qwen-chat", "qwen", addr))
	resp := post(t, &http.Client{}, gw.URL+"/v1/chat/completions", "", `{"model":"qwen","stream":true,"max_tokens":30}`)
	r := bufio.NewReader(resp.Body)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	gw.cancel() // SIGTERM
	eventually(t, "new connections refused", func() bool {
		_, err := http.Get(gw.URL + "/healthz")
		return err != nil
	})
	rest, err := io.ReadAll(r)
	if err != nil || !strings.HasSuffix(string(rest), "data: [DONE]\n\n") || strings.Count(string(rest), "data: ") != 30 {
		t.Fatalf("stream cut at shutdown: %v, %d events", err, strings.Count(string(rest), "data: "))
	}
	if err := <-gw.done; err != nil {
		t.Errorf("Serve = %v", err)
	}
	gw.done <- nil // for the cleanup
	if eng.Completed.Load() != 1 {
		t.Errorf("engine completed %d", eng.Completed.Load())
	}
}

func TestAdminPathsOnTheAPIListener(t *testing.T) {
	// Without an admin listener the admin paths share the API's; anything
	// else is the API's (an OpenAI-style 404 for unknown paths).
	_, addr := startEngine(t, enginetest.Config{Model: "qwen"})
	gw := startGateway(t, Options{}, service("qwen-chat", "qwen", addr))
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200, "/debug/pprof/": 200,
		"/healthz/x": 404, "/debugger": 404, "/v1/unknown": 404} {
		resp, err := http.Get(gw.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
		if want == 404 && !strings.Contains(string(b), `"code":"unknown_url"`) {
			t.Errorf("GET %s: body %s, want an OpenAI-style error", path, b)
		}
	}
}
