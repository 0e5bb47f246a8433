package llmautoscaler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/types"
)

// Metric names the scrapers read.
const (
	// GatewayInFlightMetric is the gateway's per-service in-flight gauge
	// (labels namespace, service), held requests included.
	GatewayInFlightMetric = "spillway_gateway_in_flight_requests"
	// vLLM's per-engine gauges (summed over their model_name series).
	VLLMRunning = "vllm:num_requests_running"
	VLLMWaiting = "vllm:num_requests_waiting"
	VLLMKVCache = "vllm:kv_cache_usage_perc"
	// VLLMGPUCache is the name vLLM before v0.7 gave the KV-cache use.
	VLLMGPUCache = "vllm:gpu_cache_usage_perc"
)

// maxExpositionBytes bounds what a scraper reads from one target.
const maxExpositionBytes = 4 << 20

// ErrTooLarge is returned for an exposition over the size limit.
var ErrTooLarge = errors.New("metrics exposition larger than the limit")

// EngineMetrics are one replica's load figures.
type EngineMetrics struct {
	Running, Waiting float64
	// KVCache is the KV-cache use, 0..1.
	KVCache float64
}

// GatewayScraper reads the in-flight requests per service from the
// gateway's Prometheus /metrics.
type GatewayScraper struct {
	// URL is the gateway's metrics URL, e.g. http://127.0.0.1:9090/metrics.
	URL    string
	Client *http.Client
}

// InFlight returns the in-flight requests of every service the gateway
// reports.
func (g *GatewayScraper) InFlight(ctx context.Context) (map[types.NamespacedName]float64, error) {
	fams, err := scrape(ctx, g.Client, g.URL)
	if err != nil {
		return nil, err
	}
	out := map[types.NamespacedName]float64{}
	for _, m := range fams[GatewayInFlightMetric].GetMetric() {
		var key types.NamespacedName
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "namespace":
				key.Namespace = l.GetValue()
			case "service":
				key.Name = l.GetValue()
			}
		}
		if key.Name == "" {
			continue
		}
		if v := value(m); v >= 0 {
			out[key] += v
		}
	}
	return out, nil
}

// EngineScraper reads vLLM's gauges from a replica's /metrics.
type EngineScraper struct {
	Client *http.Client
}

// EngineMetrics scrapes http://<addr>/metrics.
func (e *EngineScraper) EngineMetrics(ctx context.Context, addr string) (EngineMetrics, error) {
	fams, err := scrape(ctx, e.Client, "http://"+addr+"/metrics")
	if err != nil {
		return EngineMetrics{}, err
	}
	return engineMetrics(fams), nil
}

func engineMetrics(fams map[string]*dto.MetricFamily) EngineMetrics {
	sum := func(name string) (float64, bool) {
		f, ok := fams[name]
		if !ok {
			return 0, false
		}
		s := 0.0
		for _, m := range f.GetMetric() {
			if v := value(m); v >= 0 {
				s += v
			}
		}
		return s, true
	}
	var em EngineMetrics
	em.Running, _ = sum(VLLMRunning)
	em.Waiting, _ = sum(VLLMWaiting)
	kv, ok := sum(VLLMKVCache)
	if !ok {
		kv, _ = sum(VLLMGPUCache)
	}
	em.KVCache = min(kv, 1)
	return em
}

// value is a gauge's or untyped metric's value; -1 for anything else or a
// value that is not a finite number.
func value(m *dto.Metric) float64 {
	var v float64
	switch {
	case m.GetGauge() != nil:
		v = m.GetGauge().GetValue()
	case m.GetUntyped() != nil:
		v = m.GetUntyped().GetValue()
	case m.GetCounter() != nil:
		v = m.GetCounter().GetValue()
	default:
		return -1
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return -1
	}
	return v
}

func scrape(ctx context.Context, c *http.Client, url string) (map[string]*dto.MetricFamily, error) {
	if c == nil {
		c = &http.Client{Timeout: 2 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("scraping %s: HTTP %d", url, resp.StatusCode)
	}
	fams, err := parse(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	return fams, nil
}

// parse reads a Prometheus text exposition of at most maxExpositionBytes.
func parse(r io.Reader) (map[string]*dto.MetricFamily, error) {
	lr := &io.LimitedReader{R: r, N: maxExpositionBytes + 1}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(lr)
	if lr.N <= 0 {
		return nil, fmt.Errorf("%w (%d bytes)", ErrTooLarge, maxExpositionBytes)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing the exposition: %s", strings.TrimSpace(err.Error()))
	}
	return fams, nil
}
