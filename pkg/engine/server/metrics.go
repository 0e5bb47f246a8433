package server

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are vLLM's metrics, on the server's own registry.
type metrics struct {
	reg              *prometheus.Registry
	promptTokens     prometheus.Counter
	generationTokens prometheus.Counter
	success          *prometheus.CounterVec
	prefixQueries    prometheus.Counter
	prefixHits       prometheus.Counter
	ttft             prometheus.Histogram
	itl              prometheus.Histogram
	e2e              prometheus.Histogram
	queue            prometheus.Histogram
}

var (
	ttftBuckets = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560}
	itlBuckets  = []float64{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80}
	e2eBuckets  = []float64{0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680}
)

func newMetrics(model string, stats func() Stats) *metrics {
	labels := prometheus.Labels{"model_name": model}
	reg := prometheus.NewRegistry()
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels})
	}
	hist := func(name, help string, b []float64) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, ConstLabels: labels, Buckets: b})
	}
	gauge := func(name, help string, f func(Stats) float64) prometheus.GaugeFunc {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, func() float64 { return f(stats()) })
	}
	m := &metrics{
		reg:              reg,
		promptTokens:     counter("vllm:prompt_tokens_total", "Number of prefill tokens processed."),
		generationTokens: counter("vllm:generation_tokens_total", "Number of generation tokens processed."),
		success: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vllm:request_success_total",
			Help: "Count of successfully processed requests.", ConstLabels: labels}, []string{"finished_reason"}),
		prefixQueries: counter("vllm:prefix_cache_queries_total", "Prefix cache queries, in terms of number of queried tokens."),
		prefixHits:    counter("vllm:prefix_cache_hits_total", "Prefix cache hits, in terms of number of cached tokens."),
		ttft:          hist("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", ttftBuckets),
		itl:           hist("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", itlBuckets),
		e2e:           hist("vllm:e2e_request_latency_seconds", "Histogram of end to end request latency in seconds.", e2eBuckets),
		queue:         hist("vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", e2eBuckets),
	}
	reg.MustRegister(m.promptTokens, m.generationTokens, m.success, m.prefixQueries, m.prefixHits, m.ttft, m.itl, m.e2e, m.queue,
		gauge("vllm:num_requests_running", "Number of requests in model execution batches.", func(s Stats) float64 { return float64(s.Running) }),
		gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", func(s Stats) float64 { return float64(s.Waiting) }),
		gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", func(s Stats) float64 { return s.KVCacheUsage }),
		gauge("vllm:gpu_cache_usage_perc", "GPU KV-cache usage (vLLM 0.4 name). 1 means 100 percent usage.", func(s Stats) float64 { return s.KVCacheUsage }),
		gauge("spillway_engine_sm_utilization_percent", "Simulated SM utilisation of this engine's GPU (0-100), exported by the node simulator as DCGM_CUSTOM_PROCESS_SM_UTIL.",
			func(s Stats) float64 { return s.SMUtilPercent }),
	)
	return m
}
