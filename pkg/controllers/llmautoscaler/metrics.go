package llmautoscaler

import (
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"

	"github.com/spillway-io/spillway/pkg/autoscaler/llm"
)

type metrics struct {
	desired, panic, stableLoad, inFlight, waiting *prometheus.GaugeVec
	scalings, scrapeErrors                        *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	const ns, sub = "spillway", "llm_autoscaler"
	svc := []string{"namespace", "service"}
	g := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}, svc)
	}
	m := &metrics{
		desired:    g("desired_replicas", "Replicas the llm autoscaler asks for."),
		panic:      g("panic_mode", "1 while the service is in panic mode."),
		stableLoad: g("stable_load", "Requests in flight averaged over the stable window."),
		inFlight:   g("in_flight_requests", "Requests in flight in the last sample (-1: unknown)."),
		waiting:    g("waiting_requests", "Requests waiting in the engines' queues in the last sample."),
		scalings: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "scalings_total",
			Help: "Replica changes written, by reason."}, append(svc, "reason")),
		scrapeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "scrape_errors_total",
			Help: "Failed reads of the gateway's or an engine's metrics."}, []string{"source"}),
	}
	if reg != nil {
		reg.MustRegister(m.desired, m.panic, m.stableLoad, m.inFlight, m.waiting, m.scalings, m.scrapeErrors)
	}
	return m
}

func (m *metrics) observe(k types.NamespacedName, s llm.Sample, d llm.Decision) {
	m.desired.WithLabelValues(k.Namespace, k.Name).Set(float64(d.Desired))
	p := 0.0
	if d.Panic {
		p = 1
	}
	m.panic.WithLabelValues(k.Namespace, k.Name).Set(p)
	m.stableLoad.WithLabelValues(k.Namespace, k.Name).Set(d.StableLoad)
	m.inFlight.WithLabelValues(k.Namespace, k.Name).Set(s.InFlight)
	m.waiting.WithLabelValues(k.Namespace, k.Name).Set(s.Waiting)
}

func (m *metrics) forget(k types.NamespacedName) {
	for _, g := range []*prometheus.GaugeVec{m.desired, m.panic, m.stableLoad, m.inFlight, m.waiting} {
		g.DeleteLabelValues(k.Namespace, k.Name)
	}
	m.scalings.DeletePartialMatch(prometheus.Labels{"namespace": k.Namespace, "service": k.Name})
}
