// Package metrics holds the gateway's Prometheus metrics, per service and node
// pool: requests, errors, in flight (including held requests), time to first
// token, inter-token time, end-to-end latency and tokens. The in-flight count
// per service is also kept in plain counters so the llm autoscaler can read it
// as JSON (InFlight).
package metrics

import (
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "spillway_gateway"

// Metrics is the gateway's metric set.
type Metrics struct {
	Requests     *prometheus.CounterVec
	Errors       *prometheus.CounterVec
	InFlight     *prometheus.GaugeVec
	PoolInFlight *prometheus.GaugeVec
	Held         *prometheus.GaugeVec
	TTFT         *prometheus.HistogramVec
	InterToken   *prometheus.HistogramVec
	E2E          *prometheus.HistogramVec
	Tokens       *prometheus.CounterVec
	Retries      *prometheus.CounterVec
	Ejections    *prometheus.CounterVec

	mu       sync.Mutex
	inflight map[svcKey]*counts
	poolsMu  sync.RWMutex
	pools    map[poolKey]*PoolMetrics
}

type poolKey struct{ namespace, name, pool string }

type svcKey struct{ namespace, name string }

type counts struct {
	inFlight, held int64
	// the gauges' children, resolved once
	gInFlight, gHeld prometheus.Gauge
}

var latencyBuckets = []float64{.005, .01, .025, .05, .1, .2, .3, .5, .75, 1, 1.5, 2, 3, 5, 7.5, 10, 20, 30, 60, 120}

// New creates the metrics and registers them with reg.
func New(reg prometheus.Registerer) *Metrics {
	svc := []string{"namespace", "service"}
	pool := []string{"namespace", "service", "pool"}
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "requests_total",
			Help: "Requests answered, by service, pool (empty when none was used) and HTTP status code."}, append(pool, "code")),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "errors_total",
			Help: "Failed requests by service, pool and reason."}, append(pool, "reason")),
		InFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "in_flight_requests",
			Help: "Requests in flight per service, held ones included (the llm autoscaler's signal)."}, svc),
		PoolInFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "pool_in_flight_requests",
			Help: "Requests in flight per service and pool, sent to a replica."}, pool),
		Held: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "held_requests",
			Help: "Requests held while the service has no ready replica."}, svc),
		TTFT: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "time_to_first_token_seconds",
			Help: "Time from the request's arrival to the first byte of the answer.", Buckets: latencyBuckets}, pool),
		InterToken: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "inter_token_latency_seconds",
			Help:    "Time between streamed events carrying tokens.",
			Buckets: []float64{.001, .0025, .005, .01, .015, .02, .03, .05, .075, .1, .2, .5, 1, 2.5}}, pool),
		E2E: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "e2e_request_latency_seconds",
			Help: "Time from the request's arrival to the answer's end.", Buckets: latencyBuckets}, pool),
		Tokens: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "tokens_total",
			Help: "Tokens by kind (prompt, completion) as reported by the engines' usage."}, append(pool, "kind")),
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "retries_total",
			Help: "Requests retried on another replica before their first byte."}, svc),
		Ejections: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "outlier_ejections_total",
			Help: "Replicas ejected after consecutive failures."}, pool),
		inflight: map[svcKey]*counts{},
	}
	reg.MustRegister(m.Requests, m.Errors, m.InFlight, m.PoolInFlight, m.Held, m.TTFT, m.InterToken, m.E2E,
		m.Tokens, m.Retries, m.Ejections)
	return m
}

func (m *Metrics) add(ns, name string, inFlight, held int64) {
	m.mu.Lock()
	k := svcKey{ns, name}
	c := m.inflight[k]
	if c == nil {
		c = &counts{gInFlight: m.InFlight.WithLabelValues(ns, name), gHeld: m.Held.WithLabelValues(ns, name)}
		m.inflight[k] = c
	}
	c.inFlight += inFlight
	c.held += held
	m.mu.Unlock()
	if inFlight != 0 {
		c.gInFlight.Add(float64(inFlight))
	}
	if held != 0 {
		c.gHeld.Add(float64(held))
	}
}

// Enter counts a request of a service in flight until Leave.
func (m *Metrics) Enter(ns, name string) { m.add(ns, name, 1, 0) }

// Leave ends a request counted by Enter.
func (m *Metrics) Leave(ns, name string) { m.add(ns, name, -1, 0) }

// Begin counts a request of a service in flight; the returned func ends it.
func (m *Metrics) Begin(ns, name string) (end func()) {
	m.add(ns, name, 1, 0)
	var once sync.Once
	return func() { once.Do(func() { m.add(ns, name, -1, 0) }) }
}

// BeginHold counts a held request; the returned func ends the hold.
func (m *Metrics) BeginHold(ns, name string) (end func()) {
	m.add(ns, name, 0, 1)
	var once sync.Once
	return func() { once.Do(func() { m.add(ns, name, 0, -1) }) }
}

// ServiceInFlight is one service's in-flight figures.
type ServiceInFlight struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// InFlight counts the service's requests in the gateway, held ones included.
	InFlight int64 `json:"inFlight"`
	// Held counts those waiting for a ready replica.
	Held int64 `json:"held"`
}

// InFlightReport is the body of GET /debug/inflight.
type InFlightReport struct {
	// Time is when the figures were read.
	Time     time.Time         `json:"time"`
	Services []ServiceInFlight `json:"services"`
}

// Report reads the in-flight counts of every service seen, sorted.
func (m *Metrics) Report(now time.Time) InFlightReport {
	m.mu.Lock()
	out := InFlightReport{Time: now, Services: make([]ServiceInFlight, 0, len(m.inflight))}
	for k, c := range m.inflight {
		out.Services = append(out.Services, ServiceInFlight{Namespace: k.namespace, Name: k.name, InFlight: c.inFlight, Held: c.held})
	}
	m.mu.Unlock()
	sort.Slice(out.Services, func(i, j int) bool {
		a, b := out.Services[i], out.Services[j]
		return a.Namespace < b.Namespace || (a.Namespace == b.Namespace && a.Name < b.Name)
	})
	return out
}

// PoolMetrics are one (service, pool)'s metric children, resolved once.
type PoolMetrics struct {
	TTFT, InterToken, E2E prometheus.Observer
	InFlight              prometheus.Gauge
	Prompt, Completion    prometheus.Counter
	OK                    prometheus.Counter // requests_total{code="200"}
}

// Pool returns the children of (namespace, service, pool), cached.
func (m *Metrics) Pool(ns, name, pool string) *PoolMetrics {
	key := poolKey{ns, name, pool} // a struct key: the lookup allocates nothing
	m.poolsMu.RLock()
	p, ok := m.pools[key]
	m.poolsMu.RUnlock()
	if ok {
		return p
	}
	p = &PoolMetrics{
		TTFT:       m.TTFT.WithLabelValues(ns, name, pool),
		InterToken: m.InterToken.WithLabelValues(ns, name, pool),
		E2E:        m.E2E.WithLabelValues(ns, name, pool),
		InFlight:   m.PoolInFlight.WithLabelValues(ns, name, pool),
		Prompt:     m.Tokens.WithLabelValues(ns, name, pool, "prompt"),
		Completion: m.Tokens.WithLabelValues(ns, name, pool, "completion"),
		OK:         m.Requests.WithLabelValues(ns, name, pool, "200"),
	}
	m.poolsMu.Lock()
	defer m.poolsMu.Unlock()
	if prior, ok := m.pools[key]; ok {
		return prior
	}
	if m.pools == nil {
		m.pools = map[poolKey]*PoolMetrics{}
	}
	m.pools[key] = p
	return p
}
