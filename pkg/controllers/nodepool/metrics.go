package nodepool

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the controller's Prometheus series.
type metrics struct {
	nodes          *prometheus.GaugeVec
	scaleUps       *prometheus.CounterVec
	scaleDowns     *prometheus.CounterVec
	providerErrors *prometheus.CounterVec
	lastScaleUp    *prometheus.GaugeVec
	lastScaleDown  *prometheus.GaugeVec
	reaction       prometheus.Histogram
	unhelped       prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		nodes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "spillway_nodepool_nodes",
			Help: "Nodes of a pool by state: size (registered), ready (usable), in_flight (asked for, not usable), desired.",
		}, []string{"pool", "state"}),
		scaleUps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_nodepool_scale_up_nodes_total",
			Help: "Nodes asked of the provider, by pool and reason (pending-pods, min-size, replace).",
		}, []string{"pool", "reason"}),
		scaleDowns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_nodepool_scale_down_nodes_total",
			Help: "Nodes removed, by pool and reason (unneeded, provision-timeout).",
		}, []string{"pool", "reason"}),
		providerErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_nodepool_provider_errors_total",
			Help: "Failed provider calls, by pool, operation and reason (QuotaExceeded, OutOfStock, Transient, ProviderError).",
		}, []string{"pool", "op", "reason"}),
		lastScaleUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "spillway_nodepool_last_scale_up_timestamp_seconds",
			Help: "When the pool last grew (Unix seconds).",
		}, []string{"pool"}),
		lastScaleDown: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "spillway_nodepool_last_scale_down_timestamp_seconds",
			Help: "When the pool last shrank (Unix seconds).",
		}, []string{"pool"}),
		reaction: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "spillway_nodeautoscaler_reaction_seconds",
			Help:    "From a pod seen unschedulable to the provider call that buys its node.",
			Buckets: []float64{0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30},
		}),
		unhelped: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spillway_nodeautoscaler_unhelped_pods",
			Help: "Unschedulable pods no new node would help, at the last pass.",
		}),
	}
	m.nodes = register(reg, m.nodes)
	m.scaleUps = register(reg, m.scaleUps)
	m.scaleDowns = register(reg, m.scaleDowns)
	m.providerErrors = register(reg, m.providerErrors)
	m.lastScaleUp = register(reg, m.lastScaleUp)
	m.lastScaleDown = register(reg, m.lastScaleDown)
	m.reaction = register(reg, m.reaction)
	m.unhelped = register(reg, m.unhelped)
	return m
}

// register registers c, or returns the collector already registered under
// its name (a controller set up twice in one process shares its series).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}
