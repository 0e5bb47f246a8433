package exposition

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spillway-io/spillway/pkg/metricsadapter/store"
)

const vllmText = `# HELP vllm:num_requests_waiting Number of requests waiting.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="qwen"} 4
vllm:num_requests_waiting{model_name="qwen-lora"} 1
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="qwen"} 2
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{model_name="qwen"} 0.25
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{model_name="qwen"} 1234
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{model_name="qwen",le="1"} 3
vllm:e2e_request_latency_seconds_bucket{model_name="qwen",le="+Inf"} 4
vllm:e2e_request_latency_seconds_sum{model_name="qwen"} 5.5
vllm:e2e_request_latency_seconds_count{model_name="qwen"} 4
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12
`

const dcgmText = `# TYPE DCGM_CUSTOM_PROCESS_SM_UTIL gauge
DCGM_CUSTOM_PROCESS_SM_UTIL{gpu="0",namespace="default",pod="qwen-a",container="kserve-container"} 80
DCGM_CUSTOM_PROCESS_SM_UTIL{gpu="1",namespace="default",pod="qwen-a",container="kserve-container"} 60
DCGM_CUSTOM_PROCESS_SM_UTIL{gpu="2",namespace="other",pod="qwen-a",container="kserve-container"} 10
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{gpu="0",namespace="default",pod="qwen-a"} 100
DCGM_FI_DEV_GPU_UTIL{gpu="1",namespace="default",pod="qwen-a"} 90
DCGM_FI_DEV_GPU_UTIL{gpu="2",namespace="other",pod="qwen-a"} 20
DCGM_FI_DEV_GPU_UTIL{gpu="3"} 0
# TYPE node_load1 gauge
node_load1 3
`

func TestPodValues(t *testing.T) {
	fams, err := Parse(strings.NewReader(vllmText))
	if err != nil {
		t.Fatal(err)
	}
	pod := store.Object{Resource: store.Pods, Namespace: "default", Name: "qwen-a"}
	want := []store.Value{
		{Object: pod, Metric: "vllm_kv_cache_usage_perc", Value: 0.25},
		{Object: pod, Metric: "vllm_num_requests_running", Value: 2},
		{Object: pod, Metric: "vllm_num_requests_waiting", Value: 5},
		{Object: pod, Metric: "vllm_prompt_tokens_total", Value: 1234},
	}
	if diff := cmp.Diff(want, PodValues(pod, fams)); diff != "" {
		t.Errorf("PodValues (-want,+got):\n%s", diff)
	}
}

func TestNodeValues(t *testing.T) {
	fams, err := Parse(strings.NewReader(dcgmText))
	if err != nil {
		t.Fatal(err)
	}
	a := store.Object{Resource: store.Pods, Namespace: "default", Name: "qwen-a"}
	other := store.Object{Resource: store.Pods, Namespace: "other", Name: "qwen-a"}
	node := store.Object{Resource: store.Nodes, Name: "gpu-1"}
	want := []store.Value{
		{Object: node, Metric: "DCGM_FI_DEV_GPU_UTIL", Value: 0},
		{Object: a, Metric: "DCGM_CUSTOM_PROCESS_SM_UTIL", Value: 70},
		{Object: a, Metric: "DCGM_FI_DEV_GPU_UTIL", Value: 95},
		{Object: other, Metric: "DCGM_CUSTOM_PROCESS_SM_UTIL", Value: 10},
		{Object: other, Metric: "DCGM_FI_DEV_GPU_UTIL", Value: 20},
	}
	if diff := cmp.Diff(want, NodeValues("gpu-1", fams)); diff != "" {
		t.Errorf("NodeValues (-want,+got):\n%s", diff)
	}
}

func TestMetricName(t *testing.T) {
	for in, want := range map[string]string{
		"vllm:num_requests_waiting":   "vllm_num_requests_waiting",
		"DCGM_CUSTOM_PROCESS_SM_UTIL": "DCGM_CUSTOM_PROCESS_SM_UTIL",
		"a:b:c":                       "a_b_c",
	} {
		if got := MetricName(in); got != want {
			t.Errorf("MetricName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	cases := map[string]struct {
		in      string
		wantErr error
	}{
		"garbage":   {in: "this is { not prometheus\n"},
		"bad value": {in: "vllm:num_requests_waiting abc\n"},
		"too large": {in: strings.Repeat("# comment line that is padding\n", MaxBytes/30+10), wantErr: ErrTooLarge},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tc.in))
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("Parse error = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add(vllmText)
	f.Add(dcgmText)
	f.Add("x{a=\"\"} NaN\n")
	f.Fuzz(func(t *testing.T, in string) {
		fams, err := Parse(strings.NewReader(in))
		if err != nil {
			return
		}
		pod := store.Object{Resource: store.Pods, Namespace: "ns", Name: "p"}
		for _, v := range append(PodValues(pod, fams), NodeValues("n", fams)...) {
			if strings.Contains(v.Metric, ":") {
				t.Fatalf("served name %q contains ':'", v.Metric)
			}
			if v.Value != v.Value {
				t.Fatalf("NaN served for %s", v.Metric)
			}
		}
	})
}

func BenchmarkParseAndExtract(b *testing.B) {
	text := vllmText + strings.Repeat("# TYPE other_metric gauge\n", 1)
	pod := store.Object{Resource: store.Pods, Namespace: "default", Name: "p"}
	for b.Loop() {
		fams, err := Parse(strings.NewReader(text))
		if err != nil {
			b.Fatal(err)
		}
		_ = PodValues(pod, fams)
	}
}
