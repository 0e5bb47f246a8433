package scrape

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/spillway-io/spillway/pkg/gateway/upstream"
)

func TestParse(t *testing.T) {
	cases := []struct {
		name, text string
		want       upstream.Load
	}{
		{
			name: "vllm",
			text: `# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="qwen"} 3.0
vllm:num_requests_waiting{engine="0",model_name="qwen"} 2
vllm:num_requests_waiting{engine="1",model_name="qwen"} 1 1700000000000
vllm:kv_cache_usage_perc{engine="0",model_name="qwen"} 0.25
vllm:num_requests_running_total 99
vllm:prompt_tokens_total{model_name="qwen"} 1234
`,
			want: upstream.Load{Running: 3, Waiting: 3, KVUsage: 0.25},
		},
		{
			name: "old kv name, labels with braces and spaces",
			text: "vllm:gpu_cache_usage_perc{model_name=\"a} b\"} 0.5\nvllm:num_requests_running 1\n",
			want: upstream.Load{Running: 1, KVUsage: 0.5},
		},
		{
			name: "new name wins over old",
			text: "vllm:gpu_cache_usage_perc 0.9\nvllm:kv_cache_usage_perc 0.1\n",
			want: upstream.Load{KVUsage: 0.1},
		},
		{name: "garbage ignored", text: "vllm:num_requests_running{\nvllm:num_requests_waiting x\n{}\n vllm:num_requests_waiting NaN\n", want: upstream.Load{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(strings.NewReader(tc.text))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got, cmpopts.IgnoreFields(upstream.Load{}, "At")); d != "" {
				t.Errorf("Parse (-want,+got):\n%s", d)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add("vllm:num_requests_running{a=\"b\"} 3\nvllm:kv_cache_usage_perc 0.5\n")
	f.Add("{ }\n#\n x 1")
	f.Fuzz(func(t *testing.T, text string) {
		l, err := Parse(strings.NewReader(text))
		if err == nil && (l.Waiting != l.Waiting || l.Running != l.Running || l.KVUsage != l.KVUsage) {
			t.Fatalf("NaN in %+v", l)
		}
	})
}
