// Package store keeps the metric values the adapter scraped, in memory, per
// object (pod or node) and per source (the target that reported them), and
// refuses to serve a value older than the staleness bound. Time is always a
// parameter: the store never reads the clock.
package store

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Resources the store knows (the custom metrics API's resource names).
const (
	Pods  = "pods"
	Nodes = "nodes"
)

// ErrNotFound is returned when no source ever reported the metric for the
// object (or the value was pruned).
var ErrNotFound = errors.New("metric not found")

// ErrStale is returned when the newest value is older than the staleness bound.
var ErrStale = errors.New("metric value is stale")

// Object identifies what a value describes.
type Object struct {
	// Resource is Pods or Nodes.
	Resource string
	// Namespace is empty for nodes.
	Namespace string
	Name      string
}

func (o Object) String() string {
	if o.Namespace == "" {
		return o.Resource + "/" + o.Name
	}
	return o.Resource + "/" + o.Namespace + "/" + o.Name
}

// Value is one metric value of one object, as a source reports it.
type Value struct {
	Object Object
	Metric string
	Value  float64
}

// Sample is a value with the time it was scraped.
type Sample struct {
	Value     float64
	Timestamp time.Time
}

// MetricInfo names a metric served for a resource.
type MetricInfo struct {
	Resource string
	Metric   string
}

type key struct {
	obj    Object
	metric string
}

// Store holds the newest values of every source. It is safe for concurrent
// use.
type Store struct {
	maxAge time.Duration

	mu sync.RWMutex
	// values[key][source] is the sample that source reported last.
	values map[key]map[string]Sample
	// bySource remembers the keys a source reported, to replace them.
	bySource map[string][]key
}

// New returns an empty store serving values at most maxAge old.
func New(maxAge time.Duration) *Store {
	return &Store{maxAge: maxAge, values: map[key]map[string]Sample{}, bySource: map[string][]key{}}
}

// MaxAge is the staleness bound.
func (s *Store) MaxAge() time.Duration { return s.maxAge }

// Replace records the values a source reported at a time, replacing all it
// reported before (a series the source stopped reporting disappears).
func (s *Store) Replace(source string, at time.Time, values []Value) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forgetLocked(source)
	keys := make([]key, 0, len(values))
	for _, v := range values {
		k := key{obj: v.Object, metric: v.Metric}
		bySrc := s.values[k]
		if bySrc == nil {
			bySrc = map[string]Sample{}
			s.values[k] = bySrc
		}
		if _, dup := bySrc[source]; !dup {
			keys = append(keys, k)
		}
		bySrc[source] = Sample{Value: v.Value, Timestamp: at}
	}
	s.bySource[source] = keys
}

// Forget drops everything a source reported (the target went away).
func (s *Store) Forget(source string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forgetLocked(source)
}

func (s *Store) forgetLocked(source string) {
	for _, k := range s.bySource[source] {
		bySrc := s.values[k]
		delete(bySrc, source)
		if len(bySrc) == 0 {
			delete(s.values, k)
		}
	}
	delete(s.bySource, source)
}

// Sources lists the sources that have values, sorted.
func (s *Store) Sources() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.bySource))
	for src := range s.bySource {
		out = append(out, src)
	}
	sort.Strings(out)
	return out
}

// Get returns the newest value of a metric of an object, if it is fresh at
// now. Errors wrap ErrNotFound or ErrStale.
func (s *Store) Get(obj Object, metric string, now time.Time) (Sample, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	newest, ok := s.newestLocked(key{obj: obj, metric: metric})
	if !ok {
		return Sample{}, fmt.Errorf("%s of %s: %w", metric, obj, ErrNotFound)
	}
	if age := now.Sub(newest.Timestamp); age > s.maxAge {
		return Sample{}, fmt.Errorf("%s of %s is %s old (bound %s): %w", metric, obj, age.Round(time.Millisecond), s.maxAge, ErrStale)
	}
	return newest, nil
}

func (s *Store) newestLocked(k key) (Sample, bool) {
	var newest Sample
	found := false
	for _, smp := range s.values[k] {
		if !found || smp.Timestamp.After(newest.Timestamp) {
			newest, found = smp, true
		}
	}
	return newest, found
}

// Metrics lists the metrics that have at least one fresh value at now,
// sorted by resource then name.
func (s *Store) Metrics(now time.Time) []MetricInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	seen := map[MetricInfo]bool{}
	for k := range s.values {
		mi := MetricInfo{Resource: k.obj.Resource, Metric: k.metric}
		if seen[mi] {
			continue
		}
		if newest, _ := s.newestLocked(k); now.Sub(newest.Timestamp) <= s.maxAge {
			seen[mi] = true
		}
	}
	out := make([]MetricInfo, 0, len(seen))
	for mi := range seen {
		out = append(out, mi)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Resource != out[j].Resource {
			return out[i].Resource < out[j].Resource
		}
		return out[i].Metric < out[j].Metric
	})
	return out
}

// Len is the number of (object, metric) pairs held, fresh or not.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.values)
}
