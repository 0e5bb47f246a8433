package llmautoscaler

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/types"
)

const gatewayText = `# HELP spillway_gateway_in_flight_requests Requests in flight per service.
# TYPE spillway_gateway_in_flight_requests gauge
spillway_gateway_in_flight_requests{namespace="default",service="qwen-chat"} 7
spillway_gateway_in_flight_requests{namespace="team-a",service="llama"} 0
spillway_gateway_in_flight_requests{namespace="team-a",service="bad"} NaN
# TYPE spillway_gateway_requests_total counter
spillway_gateway_requests_total{namespace="default",service="qwen-chat",pool="",code="200"} 12
`

// vLLM 0.4 names the KV gauge gpu_cache_usage_perc; two model_name series
// are summed.
const engineTextOld = `# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="qwen"} 5
vllm:num_requests_running{model_name="qwen-lora"} 1
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="qwen"} 3
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="qwen"} 0.42
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="+Inf"} 3
vllm:time_to_first_token_seconds_sum 1.2
vllm:time_to_first_token_seconds_count 3
`

const engineTextNew = `# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} 2
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{model_name="m"} 0.9
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="m"} 0.1
`

func serve(t *testing.T, status int, body string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}))
	t.Cleanup(s.Close)
	return s
}

func TestGatewayScraper(t *testing.T) {
	s := serve(t, 200, gatewayText)
	got, err := (&GatewayScraper{URL: s.URL + "/metrics", Client: s.Client()}).InFlight(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[types.NamespacedName]float64{{Namespace: "default", Name: "qwen-chat"}: 7, {Namespace: "team-a", Name: "llama"}: 0}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("in flight (-want,+got):\n%s", d)
	}
}

func TestEngineScraper(t *testing.T) {
	cases := []struct {
		name string
		body string
		want EngineMetrics
	}{
		{"vllm 0.4 names", engineTextOld, EngineMetrics{Running: 6, Waiting: 3, KVCache: 0.42}},
		{"kv_cache_usage_perc wins", engineTextNew, EngineMetrics{Running: 2, KVCache: 0.9}},
		{"no vllm metrics", "# TYPE go_goroutines gauge\ngo_goroutines 8\n", EngineMetrics{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := serve(t, 200, tc.body)
			got, err := (&EngineScraper{Client: s.Client()}).EngineMetrics(context.Background(), strings.TrimPrefix(s.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("metrics (-want,+got):\n%s", d)
			}
		})
	}
}

func TestScrapeErrors(t *testing.T) {
	cases := []struct {
		name    string
		status  int
		body    string
		wantErr string
	}{
		{"http error", 503, "unavailable", "HTTP 503"},
		{"not an exposition", 200, "this is { not prometheus", "parsing the exposition"},
		{"too large", 200, "# TYPE x gauge\n" + strings.Repeat("x 1\n", maxExpositionBytes/4+10), "larger than the limit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := serve(t, tc.status, tc.body)
			_, err := (&EngineScraper{Client: s.Client()}).EngineMetrics(context.Background(), strings.TrimPrefix(s.URL, "http://"))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
		})
	}
	// Nothing listening.
	s := serve(t, 200, "")
	addr := strings.TrimPrefix(s.URL, "http://")
	s.Close()
	if _, err := (&EngineScraper{}).EngineMetrics(context.Background(), addr); err == nil || !strings.Contains(err.Error(), "scraping http://"+addr) {
		t.Fatalf("err %v, want a scrape error naming the target", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(engineTextOld)
	f.Add(gatewayText)
	f.Add("vllm:num_requests_waiting{model_name=\"x\"} -Inf\n")
	f.Fuzz(func(t *testing.T, s string) {
		fams, err := parse(strings.NewReader(s))
		if err != nil {
			return
		}
		m := engineMetrics(fams)
		if m.Running < 0 || m.Waiting < 0 || m.KVCache < 0 || m.KVCache > 1 {
			t.Fatalf("metrics %+v from %q", m, s)
		}
	})
}
