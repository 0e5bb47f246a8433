package llm

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	testingclock "k8s.io/utils/clock/testing"
)

const tick = 2 * time.Second

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// cluster simulates a service under closed-loop load: each replica takes
// BootTime to become ready and then runs up to Batch requests at once; the
// rest wait in the engines' queues (or at the gateway while none is ready).
type cluster struct {
	clock    *testingclock.FakeClock
	spec     Spec
	boot     time.Duration
	batch    float64
	started  []time.Time // per replica, oldest first
	window   Window
	history  []step
	replicas int32
}

type step struct {
	t       time.Duration // since t0
	load    float64
	desired int32
	reason  Reason
	panic   bool
}

func newCluster(spec Spec, replicas int32, boot time.Duration, batch float64) *cluster {
	c := &cluster{clock: testingclock.NewFakeClock(t0), spec: spec, boot: boot, batch: batch}
	for range replicas {
		c.started = append(c.started, t0.Add(-time.Hour)) // ready from the start
	}
	c.replicas = replicas
	return c
}

// run drives load(t) for d, one Decide per tick.
func (c *cluster) run(d time.Duration, load func(t time.Duration) float64) {
	end := c.clock.Now().Add(d)
	for c.clock.Now().Before(end) {
		now := c.clock.Now()
		l := load(now.Sub(t0))
		var ready, starting int32
		for _, s := range c.started {
			if now.Sub(s) >= c.boot {
				ready++
			} else {
				starting++
			}
		}
		running := math.Min(l, float64(ready)*c.batch)
		waiting := 0.0
		if ready > 0 {
			waiting = l - running
		}
		c.window.Add(Sample{
			Time: now, InFlight: l, Running: running, Waiting: waiting,
			KVCache: 0.7 * running / c.batch, Ready: ready, Starting: starting,
		}, c.spec.History())
		dec := Decide(now, Observations{Samples: c.window.Samples(), Replicas: c.replicas}, c.spec)
		c.history = append(c.history, step{t: now.Sub(t0), load: l, desired: dec.Desired, reason: dec.Reason, panic: dec.Panic})
		for c.replicas < dec.Desired {
			c.started = append(c.started, now)
			c.replicas++
		}
		for c.replicas > dec.Desired {
			c.started = c.started[:len(c.started)-1] // newest (cloud) first
			c.replicas--
		}
		c.clock.Step(tick)
	}
}

// changes lists the times the replica count changed, as "t:from->to".
func (c *cluster) changes() []string {
	var out []string
	prev := int32(-1)
	for _, s := range c.history {
		if prev >= 0 && s.desired != prev {
			out = append(out, fmt.Sprintf("%s:%d->%d", s.t, prev, s.desired))
		}
		prev = s.desired
	}
	return out
}

func (c *cluster) at(t time.Duration) step {
	for _, s := range c.history {
		if s.t >= t {
			return s
		}
	}
	return c.history[len(c.history)-1]
}

func (c *cluster) maxDesired() int32 {
	m := int32(0)
	for _, s := range c.history {
		m = max(m, s.desired)
	}
	return m
}

func spec(minR, maxR int32) Spec {
	s := DefaultSpec()
	s.MinReplicas, s.MaxReplicas = minR, maxR
	return s
}

// A step from 4 to 40 requests (5 replicas' worth) is a burst for one
// replica: panic mode asks for 5 within a few seconds, and, while the four
// new replicas boot for two minutes with the queue full, never for more.
func TestStep(t *testing.T) {
	c := newCluster(spec(1, 10), 1, 2*time.Minute, 10)
	c.run(10*time.Minute, func(t time.Duration) float64 {
		if t < 60*time.Second {
			return 4
		}
		return 40
	})
	if s := c.at(66 * time.Second); s.desired != 5 || !s.panic {
		t.Errorf("6 s after the step: desired %d panic %v, want 5 in panic", s.desired, s.panic)
	}
	if got := c.maxDesired(); got != 5 {
		t.Errorf("max desired %d, want 5 (starting replicas count as capacity)", got)
	}
	// Panic-window averages take in the step over a few ticks: the scale-up
	// is done in steps, all upwards, within 4 s.
	if d := cmp.Diff([]string{"1m0s:1->2", "1m2s:2->4", "1m4s:4->5"}, c.changes()); d != "" {
		t.Errorf("changes (-want,+got):\n%s", d)
	}
}

// A ramp from 0 to 48 requests over four minutes is followed without panic
// and without ever scaling down on the way up.
func TestRamp(t *testing.T) {
	c := newCluster(spec(1, 10), 1, 30*time.Second, 10)
	c.run(6*time.Minute, func(t time.Duration) float64 {
		return math.Min(48, 48*t.Seconds()/240)
	})
	prev := int32(0)
	for _, s := range c.history {
		if s.desired < prev {
			t.Fatalf("scaled down during a ramp at %s: %d -> %d", s.t, prev, s.desired)
		}
		prev = s.desired
	}
	if got := c.history[len(c.history)-1].desired; got != 6 {
		t.Errorf("final desired %d, want 6 (48 / 8)", got)
	}
	if got := c.maxDesired(); got > 6 {
		t.Errorf("max desired %d, want at most 6", got)
	}
}

// A 10 s spike to ten times the load scales up within 4 s (panic), holds
// the replicas through panic mode and the scale-down delay, then returns to
// the baseline.
func TestSpike(t *testing.T) {
	c := newCluster(spec(1, 20), 1, 20*time.Second, 10)
	c.run(12*time.Minute, func(t time.Duration) float64 {
		if t >= 100*time.Second && t < 110*time.Second {
			return 80
		}
		return 6
	})
	if s := c.at(106 * time.Second); s.desired != 10 || s.reason != ReasonPanic && s.reason != ReasonSteady {
		t.Errorf("during the spike: %+v, want 10 replicas", s)
	}
	// The last high recommendation is at the spike's end plus the panic
	// window; the replicas stay for ScaleDownDelay after it.
	if s := c.at(110*time.Second + DefaultScaleDownDelay); s.desired != 10 {
		t.Errorf("before the scale-down delay passed: desired %d, want 10", s.desired)
	}
	// Panic mode holds its peak for a stable window after the last burst
	// (1m42s), and the scale-down delay runs from there.
	if d := cmp.Diff([]string{"1m40s:1->4", "1m42s:4->7", "1m44s:7->10", "7m42s:10->2", "7m48s:2->1"}, c.changes()); d != "" {
		t.Errorf("changes (-want,+got):\n%s", d)
	}
}

// Load swinging between 8 and 24 every 40 s scales up to the peak once and
// never flaps down while it lasts.
func TestOscillation(t *testing.T) {
	c := newCluster(spec(1, 10), 1, 20*time.Second, 10)
	c.run(15*time.Minute, func(t time.Duration) float64 {
		if int(t.Seconds()/40)%2 == 1 {
			return 24
		}
		return 8
	})
	// Up to the peak's need within two ticks of the first peak, then no
	// change at all.
	if d := cmp.Diff([]string{"40s:1->2", "42s:2->3"}, c.changes()); d != "" {
		t.Errorf("changes (-want,+got):\n%s", d)
	}
	if s := c.history[len(c.history)-1]; s.desired != 3 {
		t.Errorf("final desired %d, want 3 (the peak's 24 / 8)", s.desired)
	}
}

// With minReplicas 0, a service whose load stops goes to zero after the
// stable window and the scale-down delay, and comes back at once (one tick)
// when requests are held at the gateway.
func TestDropToZeroAndBack(t *testing.T) {
	c := newCluster(spec(0, 5), 2, 30*time.Second, 10)
	c.run(14*time.Minute, func(t time.Duration) float64 {
		switch {
		case t < 2*time.Minute:
			return 16
		case t < 10*time.Minute:
			return 0
		default:
			return 3
		}
	})
	if s := c.at(2*time.Minute + DefaultScaleDownDelay); s.desired != 2 {
		t.Errorf("too early: desired %d at %s, want 2", s.desired, s.t)
	}
	zeroAt := 2*time.Minute + DefaultStableWindow + DefaultScaleDownDelay
	if s := c.at(zeroAt + tick); s.desired != 0 {
		t.Errorf("at %s: desired %d, want 0", s.t, s.desired)
	}
	if s := c.at(10 * time.Minute); s.desired != 1 || s.reason != ReasonScaleFromZero {
		t.Errorf("held requests: %+v, want 1 replica from zero", s)
	}
	if d := cmp.Diff([]string{"7m28s:2->1", "7m58s:1->0", "10m0s:0->1"}, c.changes()); d != "" {
		t.Errorf("changes (-want,+got):\n%s", d)
	}
}

// When the in-flight target is optimistic (replicas run only 4 at once, the
// target says 8), the waiting queue sizes the service on the real batch.
func TestQueueSaturation(t *testing.T) {
	c := newCluster(spec(1, 20), 1, 20*time.Second, 4)
	c.run(3*time.Minute, func(time.Duration) float64 { return 32 })
	if got := c.maxDesired(); got != 8 {
		t.Errorf("max desired %d, want 8 (32 requests / 4 per replica)", got)
	}
}

func TestKVCacheSignal(t *testing.T) {
	s := spec(1, 10)
	var samples []Sample
	for i := range 30 {
		// Few requests but long contexts: 3 replicas at 95 % KV.
		samples = append(samples, Sample{Time: t0.Add(time.Duration(i) * tick), InFlight: 6, Running: 6, KVCache: 2.85, Ready: 3})
	}
	d := Decide(samples[29].Time, Observations{Samples: samples, Replicas: 3}, s)
	if d.Desired != 4 || d.KVReplicas != 4 || d.InFlightReplicas != 1 {
		t.Errorf("decision %+v, want 4 from the KV signal", d)
	}
}

func TestDecideCases(t *testing.T) {
	now := t0.Add(10 * time.Minute)
	flat := func(n int, s Sample) []Sample {
		var out []Sample
		for i := n - 1; i >= 0; i-- {
			s.Time = now.Add(-time.Duration(i) * tick)
			out = append(out, s)
		}
		return out
	}
	full := int(DefaultSpec().History()/tick) - 1
	cases := []struct {
		name        string
		obs         Observations
		spec        Spec
		wantDesired int32
		wantReason  Reason
	}{
		{"no samples keeps the replicas", Observations{Replicas: 3}, spec(1, 5), 3, ReasonNoData},
		{"no samples still honours min", Observations{Replicas: 0}, spec(2, 5), 2, ReasonNoData},
		{"stale samples", Observations{Samples: []Sample{{Time: now.Add(-2 * time.Minute), InFlight: 50}}, Replicas: 1}, spec(1, 5), 1, ReasonNoData},
		{"short history blocks scale-down", Observations{Samples: flat(20, Sample{InFlight: 0, Ready: 3}), Replicas: 3}, spec(0, 5), 3, ReasonStabilizing},
		{"full idle history scales to zero", Observations{Samples: flat(full, Sample{Ready: 3}), Replicas: 3}, spec(0, 5), 0, ReasonScaleToZero},
		{"idle with min 1", Observations{Samples: flat(full, Sample{Ready: 3}), Replicas: 3}, spec(1, 5), 1, ReasonLimited},
		{"capped at max", Observations{Samples: flat(40, Sample{InFlight: 400, Ready: 2}), Replicas: 2}, spec(1, 5), 5, ReasonLimited},
		{"steady", Observations{Samples: flat(40, Sample{InFlight: 16, Ready: 2}), Replicas: 2}, spec(1, 5), 2, ReasonSteady},
		{"engines' figures when the gateway's are unknown", Observations{Samples: flat(40, Sample{InFlight: -1, Running: 20, Waiting: 2, Ready: 3}), Replicas: 3}, spec(1, 5), 3, ReasonSteady},
		{"starting replicas are capacity", Observations{Samples: flat(40, Sample{InFlight: 24, Running: 10, Waiting: 14, Ready: 1, Starting: 2}), Replicas: 3}, spec(1, 10), 3, ReasonSteady},
		{"scale from zero", Observations{Samples: flat(3, Sample{InFlight: 20}), Replicas: 0}, spec(0, 5), 3, ReasonScaleFromZero},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(now, tc.obs, tc.spec)
			if d.Desired != tc.wantDesired || d.Reason != tc.wantReason {
				t.Errorf("got %d %s, want %d %s (%+v)", d.Desired, d.Reason, tc.wantDesired, tc.wantReason, d)
			}
		})
	}
}

// Decide reads samples in any order and does not change them.
func TestDecideUnsortedInput(t *testing.T) {
	var samples []Sample
	for i := range 20 {
		samples = append(samples, Sample{Time: t0.Add(time.Duration(i) * tick), InFlight: float64(i), Ready: 1})
	}
	want := Decide(samples[19].Time, Observations{Samples: samples, Replicas: 1}, spec(1, 10))
	rev := make([]Sample, len(samples))
	for i := range samples {
		rev[len(samples)-1-i] = samples[i]
	}
	before := append([]Sample(nil), rev...)
	got := Decide(samples[19].Time, Observations{Samples: rev, Replicas: 1}, spec(1, 10))
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("decision (-want,+got):\n%s", d)
	}
	if d := cmp.Diff(before, rev); d != "" {
		t.Errorf("input changed (-want,+got):\n%s", d)
	}
}

func TestWindow(t *testing.T) {
	var w Window
	for i := range 10 {
		w.Add(Sample{Time: t0.Add(time.Duration(i) * time.Second)}, 3*time.Second)
	}
	w.Add(Sample{Time: t0}, 3*time.Second) // older than the newest: dropped
	var got []time.Duration
	for _, s := range w.Samples() {
		got = append(got, s.Time.Sub(t0))
	}
	if d := cmp.Diff([]time.Duration{7 * time.Second, 8 * time.Second, 9 * time.Second}, got); d != "" {
		t.Errorf("kept (-want,+got):\n%s", d)
	}
}

func FuzzDecide(f *testing.F) {
	f.Add(int32(0), int32(5), int32(2), 10.0, 3.0, 1.0, 0.5, int32(1), int32(1), int64(2))
	f.Add(int32(3), int32(1), int32(-4), -1.0, math.Inf(1), math.NaN(), 7.0, int32(-1), int32(0), int64(-5))
	f.Fuzz(func(t *testing.T, minR, maxR, replicas int32, inFlight, running, waiting, kv float64, ready, starting int32, stepSec int64) {
		s := spec(minR, maxR)
		var samples []Sample
		for i := range 50 {
			samples = append(samples, Sample{
				Time:     t0.Add(time.Duration(int64(i)*stepSec) * time.Second),
				InFlight: inFlight * float64(i%7), Running: running, Waiting: waiting * float64(i%3), KVCache: kv,
				Ready: ready, Starting: starting,
			})
		}
		now := t0.Add(time.Duration(50*stepSec) * time.Second)
		d := Decide(now, Observations{Samples: samples, Replicas: replicas}, s)
		lo, hi := max(minR, 0), max(maxR, minR, 0)
		if d.Desired < lo || d.Desired > hi {
			t.Fatalf("desired %d outside [%d, %d]: %+v", d.Desired, lo, hi, d)
		}
	})
}

func BenchmarkDecideFullWindow(b *testing.B) {
	s := spec(1, 50)
	var w Window
	for i := range 1000 {
		w.Add(Sample{Time: t0.Add(time.Duration(i) * tick), InFlight: float64(i % 90), Running: 30, Waiting: 5, KVCache: 2, Ready: 4}, s.History())
	}
	now := t0.Add(999 * tick)
	obs := Observations{Samples: w.Samples(), Replicas: 4}
	b.ReportMetric(float64(len(obs.Samples)), "samples")
	for b.Loop() {
		Decide(now, obs, s)
	}
}
