// Package scrape finds the adapter's targets (pods' own /metrics, nodes' GPU
// exporters) and scrapes them on an interval with bounded concurrency and a
// per-request timeout, writing what they serve into the store. Every target's
// failures and last success are Prometheus metrics of the adapter.
package scrape

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/spillway-io/spillway/pkg/metricsadapter/exposition"
	"github.com/spillway-io/spillway/pkg/metricsadapter/store"
)

// Reasons a scrape fails, the `reason` label of the error counter.
const (
	ReasonRequest = "request" // connection refused, timeout, ...
	ReasonStatus  = "status"  // a non-200 answer
	ReasonParse   = "parse"   // not a Prometheus text exposition
)

// sink is where scraped values go (the store).
type sink interface {
	Replace(source string, at time.Time, values []store.Value)
	Forget(source string)
}

// Metrics are the scraper's own Prometheus metrics.
type Metrics struct {
	errors       *prometheus.CounterVec
	lastSuccess  *prometheus.GaugeVec
	up           *prometheus.GaugeVec
	duration     *prometheus.HistogramVec
	targets      *prometheus.GaugeVec
	series       *prometheus.GaugeVec
	configErrors prometheus.Gauge
}

// NewMetrics creates and registers the scraper's metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_metrics_adapter_scrape_errors_total",
			Help: "Failed scrapes per target and reason (request, status, parse).",
		}, []string{"target", "reason"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "spillway_metrics_adapter_last_success_timestamp_seconds",
			Help: "Unix time of the last successful scrape of a target.",
		}, []string{"target"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "spillway_metrics_adapter_target_up",
			Help: "1 if the last scrape of a target succeeded, else 0.",
		}, []string{"target"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "spillway_metrics_adapter_scrape_duration_seconds",
			Help:    "Time to scrape one target.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}, []string{"kind"}),
		targets: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "spillway_metrics_adapter_targets",
			Help: "Targets in the last round, per kind.",
		}, []string{"kind"}),
		series: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "spillway_metrics_adapter_values",
			Help: "Values a target reported in its last successful scrape.",
		}, []string{"target"}),
	}
	m.configErrors = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "spillway_metrics_adapter_target_config_errors",
		Help: "Pods and nodes skipped in the last round because of a wrong annotation (logged once each).",
	})
	reg.MustRegister(m.errors, m.lastSuccess, m.up, m.duration, m.targets, m.series, m.configErrors)
	return m
}

// Scraper scrapes targets into a sink.
type Scraper struct {
	sink        sink
	metrics     *Metrics
	client      *http.Client
	timeout     time.Duration
	concurrency int
	clock       clock.WithTicker
	log         logr.Logger

	mu    sync.Mutex
	known map[string]bool
}

// Option configures a Scraper.
type Option func(*Scraper)

// WithTimeout bounds one scrape (default 2 s).
func WithTimeout(d time.Duration) Option { return func(s *Scraper) { s.timeout = d } }

// WithConcurrency bounds the scrapes in flight (default 16).
func WithConcurrency(n int) Option { return func(s *Scraper) { s.concurrency = n } }

// WithClock sets the clock that timestamps values (default the real one).
func WithClock(c clock.WithTicker) Option { return func(s *Scraper) { s.clock = c } }

// WithHTTPClient sets the HTTP client (default one without a global timeout;
// each request has its own).
func WithHTTPClient(c *http.Client) Option { return func(s *Scraper) { s.client = c } }

// WithLogger sets the logger.
func WithLogger(l logr.Logger) Option { return func(s *Scraper) { s.log = l } }

// New returns a Scraper writing into sink and counting into metrics.
func New(sink sink, metrics *Metrics, opts ...Option) *Scraper {
	s := &Scraper{
		sink:        sink,
		metrics:     metrics,
		client:      &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2, IdleConnTimeout: time.Minute}},
		timeout:     2 * time.Second,
		concurrency: 16,
		clock:       clock.RealClock{},
		log:         logr.Discard(),
		known:       map[string]bool{},
	}
	for _, o := range opts {
		o(s)
	}
	if s.concurrency < 1 {
		s.concurrency = 1
	}
	return s
}

// Result counts the outcome of one round.
type Result struct {
	OK, Failed int
}

// Round scrapes every target once, at most `concurrency` at a time, and
// forgets the targets of the previous round that are gone.
func (s *Scraper) Round(ctx context.Context, targets []Target) Result {
	byKind := map[Kind]int{KindPod: 0, KindNode: 0}
	current := make(map[string]bool, len(targets))
	for _, t := range targets {
		byKind[t.Kind]++
		current[t.Source] = true
	}
	for k, n := range byKind {
		s.metrics.targets.WithLabelValues(string(k)).Set(float64(n))
	}

	sem := make(chan struct{}, s.concurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var res Result
	for _, t := range targets {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return res
		}
		wg.Go(func() {
			defer func() { <-sem }()
			err := s.scrapeOne(ctx, t)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Failed++
			} else {
				res.OK++
			}
		})
	}
	wg.Wait()

	s.mu.Lock()
	defer s.mu.Unlock()
	for src := range s.known {
		if !current[src] {
			s.sink.Forget(src)
			s.metrics.errors.DeletePartialMatch(prometheus.Labels{"target": src})
			s.metrics.lastSuccess.DeleteLabelValues(src)
			s.metrics.up.DeleteLabelValues(src)
			s.metrics.series.DeleteLabelValues(src)
		}
	}
	s.known = current
	return res
}

// scrapeError carries the reason label of a failure.
type scrapeError struct {
	reason string
	err    error
}

func (e *scrapeError) Error() string { return e.err.Error() }
func (e *scrapeError) Unwrap() error { return e.err }

func (s *Scraper) scrapeOne(ctx context.Context, t Target) error {
	start := s.clock.Now()
	values, err := s.fetch(ctx, t)
	s.metrics.duration.WithLabelValues(string(t.Kind)).Observe(s.clock.Since(start).Seconds())
	if err != nil {
		reason := ReasonRequest
		var se *scrapeError
		if errors.As(err, &se) {
			reason = se.reason
		}
		s.metrics.errors.WithLabelValues(t.Source, reason).Inc()
		s.metrics.up.WithLabelValues(t.Source).Set(0)
		s.log.V(1).Info("scrape failed", "target", t.Source, "url", t.URL, "reason", reason, "err", err)
		return err
	}
	at := s.clock.Now()
	s.sink.Replace(t.Source, at, values)
	s.metrics.lastSuccess.WithLabelValues(t.Source).Set(float64(at.UnixNano()) / 1e9)
	s.metrics.up.WithLabelValues(t.Source).Set(1)
	s.metrics.series.WithLabelValues(t.Source).Set(float64(len(values)))
	if s.log.V(4).Enabled() {
		s.log.V(4).Info("scraped", "target", t.Source, "values", len(values))
	}
	return nil
}

func (s *Scraper) fetch(ctx context.Context, t Target) ([]store.Value, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL, nil)
	if err != nil {
		return nil, &scrapeError{ReasonRequest, fmt.Errorf("scraping %s: %w", t.Source, err)}
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, &scrapeError{ReasonRequest, fmt.Errorf("scraping %s: %w", t.Source, err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &scrapeError{ReasonStatus, fmt.Errorf("scraping %s at %s: HTTP %d", t.Source, t.URL, resp.StatusCode)}
	}
	fams, err := exposition.Parse(resp.Body)
	if err != nil {
		// A body cut by the timeout reads as a parse error; report the timeout.
		if ctx.Err() != nil {
			return nil, &scrapeError{ReasonRequest, fmt.Errorf("scraping %s: %w", t.Source, ctx.Err())}
		}
		return nil, &scrapeError{ReasonParse, fmt.Errorf("scraping %s: %w", t.Source, err)}
	}
	if t.Kind == KindNode {
		return exposition.NodeValues(t.Object.Name, fams), nil
	}
	return exposition.PodValues(t.Object, fams), nil
}

// Lister returns the current targets, and errors for objects whose
// annotations are wrong (those are skipped, not fatal).
type Lister func() ([]Target, []error)

// Run scrapes the lister's targets every interval until ctx ends; the first
// round starts at once.
func (s *Scraper) Run(ctx context.Context, interval time.Duration, list Lister) {
	t := s.clock.NewTicker(interval)
	defer t.Stop()
	reported := map[string]bool{} // a wrong annotation is logged once, not every round
	for {
		targets, errs := list()
		now := make(map[string]bool, len(errs))
		for _, err := range errs {
			now[err.Error()] = true
			if !reported[err.Error()] {
				s.log.Error(err, "skipping a scrape target")
			}
		}
		reported = now
		s.metrics.configErrors.Set(float64(len(errs)))
		sort.Slice(targets, func(i, j int) bool { return targets[i].Source < targets[j].Source })
		res := s.Round(ctx, targets)
		s.log.V(2).Info("scrape round", "targets", len(targets), "ok", res.OK, "failed", res.Failed)
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
	}
}
