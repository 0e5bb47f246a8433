// Package llm is the `llm` autoscaler class: a pure, deterministic decision
// of how many replicas an LLM service needs, from the signals that track LLM
// load rather than GPU duty cycle — the requests in flight at the gateway
// (held ones included, so it scales from zero), the engines' waiting queue
// (vllm:num_requests_waiting) and their KV-cache use
// (vllm:kv_cache_usage_perc).
//
// It works like Knative's KPA: a stable window (60 s) averages the load, a
// panic window (6 s) catches bursts, and panic mode (the burst needs twice the
// current capacity) scales up at once. Scale-down is slow: the result is the
// highest recommendation of the last ScaleDownDelay (300 s, the HPA's
// stabilisation), so load that oscillates faster than that never makes it
// flap. Replicas still starting count as capacity: every recommendation is an
// absolute replica count computed from the load, never a ratio applied to the
// ready replicas, so a service waiting minutes for cloud GPU nodes is not
// scaled again for the same load.
//
// Decide has no state and reads no clock: the caller passes the time and the
// window of samples it keeps (Window), so tests step a fake clock through
// scripted load.
package llm

import (
	"math"
	"slices"
	"time"
)

// Sample is one observation of a service's load.
type Sample struct {
	// Time is when the figures were read.
	Time time.Time
	// InFlight is the gateway's count of the service's requests in flight,
	// held ones included; negative when unknown.
	InFlight float64
	// Running and Waiting sum vllm:num_requests_running and
	// vllm:num_requests_waiting over the ready replicas.
	Running, Waiting float64
	// KVCache sums vllm:kv_cache_usage_perc (0..1 each) over the ready
	// replicas.
	KVCache float64
	// Ready counts ready replicas; Starting those that exist but are not
	// ready yet (pending on a node being created, or loading the model).
	Ready, Starting int32
}

// demand is the number of requests the service holds: the gateway's figure,
// or the engines' own when that is unknown or lower (traffic not through the
// gateway).
func (s Sample) demand() float64 {
	return max(s.InFlight, s.Running+s.Waiting, 0)
}

// Spec is the autoscaling configuration of one service.
type Spec struct {
	// MinReplicas and MaxReplicas bound the result; MinReplicas 0 allows
	// scale to zero.
	MinReplicas, MaxReplicas int32
	// TargetInFlight is the requests in flight one replica should carry.
	TargetInFlight float64
	// TargetWaiting is the average waiting queue per ready replica above
	// which replicas are taken as saturated; the service is then sized on the
	// batch the replicas really run. 0 turns the signal off.
	TargetWaiting float64
	// TargetKVCache is the KV-cache use (0..1) to keep per replica; 0 turns
	// the signal off.
	TargetKVCache float64
	// StableWindow and PanicWindow are the averaging windows.
	StableWindow, PanicWindow time.Duration
	// PanicThreshold is the ratio of panic-window recommendation to capacity
	// (ready + starting replicas) that starts panic mode.
	PanicThreshold float64
	// ScaleDownDelay is how long a lower recommendation must hold before
	// replicas are removed (also the time an idle service waits before going
	// to zero).
	ScaleDownDelay time.Duration
}

// Defaults of Spec (Knative's windows, the HPA's scale-down stabilisation).
const (
	DefaultTargetInFlight = 8
	DefaultTargetWaiting  = 1
	DefaultTargetKVCache  = 0.8
	DefaultStableWindow   = 60 * time.Second
	DefaultPanicWindow    = 6 * time.Second
	DefaultPanicThreshold = 2.0
	DefaultScaleDownDelay = 300 * time.Second
)

// DefaultSpec is a Spec with every default, replicas 1..1.
func DefaultSpec() Spec {
	return Spec{
		MinReplicas: 1, MaxReplicas: 1,
		TargetInFlight: DefaultTargetInFlight, TargetWaiting: DefaultTargetWaiting, TargetKVCache: DefaultTargetKVCache,
		StableWindow: DefaultStableWindow, PanicWindow: DefaultPanicWindow, PanicThreshold: DefaultPanicThreshold,
		ScaleDownDelay: DefaultScaleDownDelay,
	}
}

// withDefaults fills the fields Decide cannot work without.
func (s Spec) withDefaults() Spec {
	if !(s.TargetInFlight > 0) {
		s.TargetInFlight = DefaultTargetInFlight
	}
	if s.StableWindow <= 0 {
		s.StableWindow = DefaultStableWindow
	}
	if s.PanicWindow <= 0 || s.PanicWindow > s.StableWindow {
		s.PanicWindow = min(DefaultPanicWindow, s.StableWindow)
	}
	if !(s.PanicThreshold > 1) {
		s.PanicThreshold = DefaultPanicThreshold
	}
	if s.ScaleDownDelay < 0 {
		s.ScaleDownDelay = 0
	}
	s.MinReplicas = max(s.MinReplicas, 0)
	s.MaxReplicas = max(s.MaxReplicas, s.MinReplicas)
	return s
}

// History is how far back Decide reads samples; older ones can be dropped.
func (s Spec) History() time.Duration {
	s = s.withDefaults()
	return s.ScaleDownDelay + s.StableWindow
}

// Observations are Decide's input besides the time and the spec.
type Observations struct {
	// Samples, oldest first (Decide sorts a copy otherwise).
	Samples []Sample
	// Replicas is the replica count the service has now (the Deployment's
	// spec.replicas: ready and starting replicas alike).
	Replicas int32
}

// Reason says why Decide chose its result.
type Reason string

// Reasons.
const (
	ReasonNoData        Reason = "NoData"
	ReasonScaleFromZero Reason = "ScaleFromZero"
	ReasonScaleUp       Reason = "ScaleUp"
	ReasonPanic         Reason = "PanicScaleUp"
	ReasonSteady        Reason = "Steady"
	ReasonStabilizing   Reason = "ScaleDownStabilizing"
	ReasonScaleDown     Reason = "ScaleDown"
	ReasonScaleToZero   Reason = "ScaleToZero"
	ReasonLimited       Reason = "LimitedByMinMax"
)

// Decision is Decide's result.
type Decision struct {
	// Desired is the replica count to have.
	Desired int32
	Reason  Reason
	// Panic is true when panic mode is on.
	Panic bool
	// StableLoad and PanicLoad are the average requests in flight over the
	// two windows.
	StableLoad, PanicLoad float64
	// Recommendation is the unstabilised replica count for now, and
	// InFlightReplicas, QueueReplicas, KVReplicas, PanicReplicas what each
	// signal asks for on its own.
	Recommendation                                             int32
	InFlightReplicas, QueueReplicas, KVReplicas, PanicReplicas int32
}

// ceilReplicas rounds a replica count up, forgiving float noise.
func ceilReplicas(x float64) int32 {
	if !(x > 0) {
		return 0
	}
	c := math.Ceil(x - 1e-9)
	if c > math.MaxInt32 {
		return math.MaxInt32
	}
	return int32(c)
}

// windowSums are running sums of a window of samples.
type windowSums struct {
	n                                        int
	demand, running, waiting, kvCache, ready float64
}

func (w *windowSums) add(s Sample, sign float64) {
	w.n += int(sign)
	w.demand += sign * s.demand()
	w.running += sign * s.Running
	w.waiting += sign * s.Waiting
	w.kvCache += sign * s.KVCache
	w.ready += sign * float64(s.Ready)
}

func (w *windowSums) mean(v float64) float64 {
	if w.n == 0 {
		return 0
	}
	return v / float64(w.n)
}

// point is the recommendation at one sample's time.
type point struct {
	t                                  time.Time
	rec, inFlight, queue, kv, panicRec int32
	panicking                          bool
	stableLoad, panicLoad              float64
}

// Decide returns the replica count the service should have at now.
func Decide(now time.Time, obs Observations, spec Spec) Decision {
	spec = spec.withDefaults()
	samples := window(now, obs.Samples, spec)
	current := max(obs.Replicas, 0)
	if len(samples) == 0 || now.Sub(samples[len(samples)-1].Time) > spec.StableWindow {
		return limit(Decision{Desired: current, Reason: ReasonNoData}, spec)
	}
	points := recommend(samples, spec)
	last := points[len(points)-1]
	d := Decision{
		Panic: last.panicking, StableLoad: last.stableLoad, PanicLoad: last.panicLoad,
		Recommendation: last.rec, InFlightReplicas: last.inFlight, QueueReplicas: last.queue,
		KVReplicas: last.kv, PanicReplicas: last.panicRec,
	}
	latest := samples[len(samples)-1].demand()
	switch {
	case current == 0 && latest > 0:
		// Requests are held at the gateway: start replicas now, enough for
		// what is waiting.
		d.Desired = max(last.rec, ceilReplicas(latest/spec.TargetInFlight), 1)
		d.Reason = ReasonScaleFromZero
	case last.rec > current:
		d.Desired = last.rec
		d.Reason = ReasonScaleUp
		if last.panicking {
			d.Reason = ReasonPanic
		}
	case last.rec == current:
		d.Desired, d.Reason = current, ReasonSteady
	case samples[0].Time.After(now.Add(-spec.ScaleDownDelay)):
		// Not seen long enough (e.g. just after a restart) to know the
		// lower recommendation holds.
		d.Desired, d.Reason = current, ReasonStabilizing
	default:
		highest := int32(0)
		for _, p := range points {
			if !p.t.Before(now.Add(-spec.ScaleDownDelay)) {
				highest = max(highest, p.rec)
			}
		}
		d.Desired = min(highest, current)
		switch {
		case d.Desired == current:
			d.Reason = ReasonStabilizing
		case d.Desired == 0:
			d.Reason = ReasonScaleToZero
		default:
			d.Reason = ReasonScaleDown
		}
	}
	return limit(d, spec)
}

func limit(d Decision, spec Spec) Decision {
	if c := min(max(d.Desired, spec.MinReplicas), spec.MaxReplicas); c != d.Desired {
		d.Desired = c
		if d.Reason != ReasonNoData {
			d.Reason = ReasonLimited
		}
	}
	return d
}

// window returns the samples Decide reads, oldest first, without changing
// the caller's slice.
func window(now time.Time, in []Sample, spec Spec) []Sample {
	from := now.Add(-spec.History())
	out := make([]Sample, 0, len(in))
	for _, s := range in {
		if s.Time.After(from) && !s.Time.After(now) {
			out = append(out, s)
		}
	}
	if !slices.IsSortedFunc(out, func(a, b Sample) int { return a.Time.Compare(b.Time) }) {
		slices.SortStableFunc(out, func(a, b Sample) int { return a.Time.Compare(b.Time) })
	}
	return out
}

// recommend computes the recommendation at every sample's time, with
// running window sums (linear in the number of samples).
func recommend(samples []Sample, spec Spec) []point {
	points := make([]point, len(samples))
	var stable, panicW windowSums
	si, pi := 0, 0
	var lastPanic time.Time
	havePanic := false
	peak := int32(0)
	for i, s := range samples {
		stable.add(s, 1)
		panicW.add(s, 1)
		for ; !samples[si].Time.After(s.Time.Add(-spec.StableWindow)); si++ {
			stable.add(samples[si], -1)
		}
		for ; !samples[pi].Time.After(s.Time.Add(-spec.PanicWindow)); pi++ {
			panicW.add(samples[pi], -1)
		}
		p := point{t: s.Time, stableLoad: stable.mean(stable.demand), panicLoad: panicW.mean(panicW.demand)}
		p.inFlight = ceilReplicas(p.stableLoad / spec.TargetInFlight)
		// Saturation is judged on the recent (panic-window) samples only, so
		// a burst that has passed does not mix its queue with the batch of
		// the replicas started for it.
		ready, running, waiting := panicW.ready, panicW.running, panicW.waiting
		if spec.TargetWaiting > 0 && ready > 0 && running > 0 && waiting/ready > spec.TargetWaiting {
			// Saturated replicas: size the service on the batch they
			// really run per replica.
			p.queue = ceilReplicas(p.stableLoad / (running / ready))
		}
		if spec.TargetKVCache > 0 {
			p.kv = ceilReplicas(stable.mean(stable.kvCache) / spec.TargetKVCache)
		}
		p.panicRec = ceilReplicas(p.panicLoad / spec.TargetInFlight)
		capacity := s.Ready + s.Starting
		burst := (capacity == 0 && p.panicLoad > 0) ||
			(capacity > 0 && float64(p.panicRec)/float64(capacity) >= spec.PanicThreshold)
		if burst {
			lastPanic, havePanic = s.Time, true
		}
		// Panic mode lasts a stable window after the last burst; while it
		// lasts the recommendation never goes below its peak (KPA).
		wasPanicking := i > 0 && points[i-1].panicking
		p.panicking = havePanic && s.Time.Sub(lastPanic) < spec.StableWindow
		p.rec = max(p.inFlight, p.queue, p.kv)
		if p.panicking {
			if !wasPanicking {
				peak = 0
			}
			peak = max(peak, p.rec, p.panicRec)
			p.rec = peak
		}
		points[i] = p
	}
	return points
}
