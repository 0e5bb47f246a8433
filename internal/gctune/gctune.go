// Package gctune sets the garbage collector's percent (GOGC) from the live
// heap, so that the heap may always grow by at least a given headroom before
// the next collection.
//
// A proxy's live heap is small (a few MB: routing tables, metrics, buffers)
// while it allocates fast (a few KB per request). With GOGC=100 the heap goal
// sits near the runtime's 4 MB minimum and the gateway collects about 16
// times a second at 13,000 requests/s, each time marking the whole live heap
// (~5 % of its CPU). With a 32 MB headroom it collects about once a second. A
// large live heap (thousands of open streams) keeps GOGC's own growth ratio,
// so the heap peaks at max(live x (1 + base/100), live + headroom): memory
// stays bounded by what is live, unlike GOGC=off with a memory limit.
package gctune

import (
	"context"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/go-logr/logr"
)

// Percent is the GC percent that leaves at least headroom bytes of growth
// above live bytes, never below base (the GOGC it replaces) nor above
// ceiling; base while nothing is known (live 0, before the first
// collection).
func Percent(live, headroom uint64, base, ceiling int) int {
	if live == 0 { // no collection yet: nothing known
		return base
	}
	p := int(min(float64(headroom)/float64(live)*100, float64(ceiling)))
	return max(p, base)
}

// Tuner adjusts the GC percent every Interval.
type Tuner struct {
	// Headroom is the least growth of the heap between collections.
	Headroom uint64
	// Base is the least percent (default 100, Go's).
	Base int
	// Ceiling is the greatest percent (default 1000).
	Ceiling int
	// Interval between adjustments (default 1s).
	Interval time.Duration
	// Log reports changes at V(2).
	Log logr.Logger

	current int
	sample  []metrics.Sample
}

// Step reads the live heap once and sets the percent when it moved by more
// than a tenth; it returns the percent in force.
func (t *Tuner) Step() int {
	if t.sample == nil {
		t.sample = []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		t.current = 100
	}
	metrics.Read(t.sample)
	if t.sample[0].Value.Kind() != metrics.KindUint64 {
		return t.current
	}
	live := t.sample[0].Value.Uint64()
	p := Percent(live, t.Headroom, t.base(), t.ceiling())
	if math.Abs(float64(p-t.current)) > float64(t.current)/10 {
		debug.SetGCPercent(p)
		t.Log.V(2).Info("GC percent set", "percent", p, "liveHeapBytes", live, "headroomBytes", t.Headroom)
		t.current = p
	}
	return t.current
}

// Run adjusts the percent until ctx ends, then restores base.
func (t *Tuner) Run(ctx context.Context) {
	interval := t.Interval
	if interval <= 0 {
		interval = time.Second
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		t.Step()
		select {
		case <-ctx.Done():
			debug.SetGCPercent(t.base())
			return
		case <-tick.C:
		}
	}
}

func (t *Tuner) base() int {
	if t.Base > 0 {
		return t.Base
	}
	return 100
}

func (t *Tuner) ceiling() int {
	if t.Ceiling > 0 {
		return t.Ceiling
	}
	return 1000
}
