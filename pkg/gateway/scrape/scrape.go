// Package scrape reads the engines' load from their Prometheus endpoint
// (vLLM's vllm:num_requests_waiting, vllm:num_requests_running and
// vllm:kv_cache_usage_perc, summed over label sets) at a fixed interval, for
// queue- and KV-aware balancing.
package scrape

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	"github.com/spillway-io/spillway/pkg/gateway/upstream"
)

// Metric names read from the engines.
const (
	MetricWaiting = "vllm:num_requests_waiting"
	MetricRunning = "vllm:num_requests_running"
	MetricKVUsage = "vllm:kv_cache_usage_perc"
	// metricKVUsageOld is vLLM < 0.10's name of the KV-cache gauge.
	metricKVUsageOld = "vllm:gpu_cache_usage_perc"
)

// Parse reads the load gauges from a Prometheus text exposition.
func Parse(r io.Reader) (upstream.Load, error) {
	var l upstream.Load
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var kvSeen bool
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		name, value, ok := sample(line)
		if !ok {
			continue
		}
		switch name {
		case MetricWaiting:
			l.Waiting += value
		case MetricRunning:
			l.Running += value
		case MetricKVUsage:
			if !kvSeen {
				l.KVUsage = 0
			}
			kvSeen = true
			l.KVUsage = max(l.KVUsage, value)
		case metricKVUsageOld:
			if !kvSeen {
				l.KVUsage = max(l.KVUsage, value)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return upstream.Load{}, fmt.Errorf("reading metrics: %w", err)
	}
	return l, nil
}

// sample splits `name{labels} value [timestamp]`.
func sample(line []byte) (string, float64, bool) {
	end := bytes.IndexAny(line, "{ \t")
	if end <= 0 {
		return "", 0, false
	}
	name := line[:end]
	rest := line[end:]
	if rest[0] == '{' {
		close := bytes.LastIndexByte(rest, '}')
		if close < 0 {
			return "", 0, false
		}
		rest = rest[close+1:]
	}
	fields := bytes.Fields(rest)
	if len(fields) == 0 {
		return "", 0, false
	}
	v, err := strconv.ParseFloat(string(fields[0]), 64)
	if err != nil || v != v {
		return "", 0, false
	}
	return string(name), v, true
}

// Targets lists the addresses to scrape.
type Targets interface{ Addresses() []string }

// Store keeps results.
type Store interface {
	Get(addr string) *upstream.Upstream
}

// Scraper polls every target's /metrics.
type Scraper struct {
	Interval time.Duration
	Timeout  time.Duration
	Client   *http.Client
	Clock    clock.WithTicker
	Targets  Targets
	Store    Store
	Log      logr.Logger
}

// Run scrapes until ctx ends.
func (s *Scraper) Run(ctx context.Context) {
	t := s.Clock.NewTicker(s.Interval)
	defer t.Stop()
	for {
		s.Once(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
	}
}

// Once scrapes every target once, concurrently.
func (s *Scraper) Once(ctx context.Context) {
	var wg sync.WaitGroup
	for _, a := range s.Targets.Addresses() {
		wg.Go(func() {
			l, err := s.scrape(ctx, a)
			if err != nil {
				s.Log.V(4).Info("scrape failed", "address", a, "err", err)
				return
			}
			l.At = s.Clock.Now()
			s.Store.Get(a).SetLoad(l)
		})
	}
	wg.Wait()
}

func (s *Scraper) scrape(ctx context.Context, addr string) (upstream.Load, error) {
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return upstream.Load{}, err
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		return upstream.Load{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return upstream.Load{}, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return Parse(io.LimitReader(resp.Body, 8<<20))
}
