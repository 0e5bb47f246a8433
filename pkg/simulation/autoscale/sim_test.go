package autoscale

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spillway-io/spillway/pkg/bench/trace"
)

// stretch is a span of constant-rate synthetic load (every 0: none).
type stretch struct {
	dur, every     time.Duration
	prompt, output int
}

func synth(phases ...stretch) []trace.Request {
	var out []trace.Request
	var t time.Duration
	for _, p := range phases {
		if p.every > 0 {
			for at := t; at < t+p.dur; at += p.every {
				out = append(out, trace.Request{At: at, PromptTokens: p.prompt, OutputTokens: p.output})
			}
		}
		t += p.dur
	}
	return out
}

// quiet, burst, quiet: 1 request every 10 s; 10 per second for 5 minutes
// (well beyond three V100 replicas); quiet again for 12 minutes.
var stepTrace = synth(
	stretch{dur: 2 * time.Minute, every: 10 * time.Second, prompt: 100, output: 20},
	stretch{dur: 5 * time.Minute, every: 100 * time.Millisecond, prompt: 500, output: 100},
	stretch{dur: 12 * time.Minute, every: 10 * time.Second, prompt: 100, output: 20},
)

func mustConfig(t *testing.T, c Class) Config {
	t.Helper()
	cfg, err := DefaultConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func run(t *testing.T, cfg Config, reqs []trace.Request) *Result {
	t.Helper()
	res, err := Run(cfg, reqs)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// firstAt is the first sample time at which f holds.
func firstAt(r *Result, from time.Duration, f func(Sample) bool) time.Duration {
	for _, p := range r.Timeline {
		if p.T >= from && f(p) {
			return p.T
		}
	}
	return -1
}

func at(r *Result, t time.Duration) Sample {
	for _, p := range r.Timeline {
		if p.T >= t {
			return p
		}
	}
	return r.Timeline[len(r.Timeline)-1]
}

// The burst takes both autoscalers to the maximum, on one IDC and two cloud
// replicas that are ready a provisioning delay plus a model load after the
// scale-up; after the burst both come back to the IDC replica alone (cloud
// replicas removed first) and the cloud nodes go away.
func TestStepReplicaCounts(t *testing.T) {
	burst, quietAgain := 2*time.Minute, 7*time.Minute
	for _, c := range []Class{ClassHPA, ClassLLM} {
		t.Run(string(c), func(t *testing.T) {
			cfg := mustConfig(t, c)
			cfg.SampleInterval = time.Second
			r := run(t, cfg, stepTrace)
			if s := at(r, burst-time.Second); s.Desired != 1 || s.ReadyIDC != 1 || s.ReadyElastic != 0 {
				t.Errorf("before the burst: %+v, want the IDC replica alone", s)
			}
			// llm: panic mode asks for 3 within a few ticks. hpa: the next sync
			// (15 s) after a scrape (5 s) that sees the burst asks for 2 — SM
			// utilisation tops out at 100 %, twice the target, and the
			// replica starting counts as 0 — and for 3 once that replica is
			// ready and busy.
			up := firstAt(r, burst, func(s Sample) bool { return s.Desired == 3 })
			ready := firstAt(r, burst, func(s Sample) bool { return s.ReadyElastic == 2 })
			boot := cfg.ProvisioningDelay + cfg.ModelLoad
			switch c {
			case ClassLLM:
				if up < 0 || up-burst > 10*time.Second {
					t.Fatalf("desired 3 at %s, want within 10s of the burst at %s", up, burst)
				}
				if ready < up+boot || ready > up+boot+5*time.Second {
					t.Errorf("two cloud replicas ready at %s, want %s after the scale-up at %s", ready, boot, up)
				}
			case ClassHPA:
				two := firstAt(r, burst, func(s Sample) bool { return s.Desired == 2 })
				if two < 0 || two-burst > 20*time.Second {
					t.Fatalf("desired 2 at %s, want within 20s of the burst at %s", two, burst)
				}
				first := firstAt(r, burst, func(s Sample) bool { return s.ReadyElastic == 1 })
				if first < two+boot || first > two+boot+5*time.Second {
					t.Errorf("first cloud replica ready at %s, want %s after the scale-up at %s", first, boot, two)
				}
				if up < first || up > first+20*time.Second {
					t.Errorf("desired 3 at %s, want within 20s after the first cloud replica was ready at %s", up, first)
				}
				if ready < up+boot || ready > up+boot+5*time.Second {
					t.Errorf("second cloud replica ready at %s, want %s after the scale-up at %s", ready, boot, up)
				}
			}
			if r.MaxDesired != 3 || r.NodesCreated != 2 {
				t.Errorf("max desired %d, nodes created %d: want 3 and 2", r.MaxDesired, r.NodesCreated)
			}
			// Scale-down waits at least the stabilisation/delay (300 s).
			down := firstAt(r, quietAgain, func(s Sample) bool { return s.Desired < 3 })
			if down < quietAgain+300*time.Second {
				t.Errorf("first scale-down at %s, want no earlier than %s", down, quietAgain+300*time.Second)
			}
			end := r.Timeline[len(r.Timeline)-1]
			if end.Desired != 1 || end.ReadyIDC != 1 || end.ReadyElastic != 0 || end.ElasticNodes != 0 {
				t.Errorf("at the end: %+v, want the IDC replica alone and no cloud node", end)
			}
			if r.Dropped != 0 || r.Completed != len(stepTrace) {
				t.Errorf("completed %d dropped %d of %d, want all completed", r.Completed, r.Dropped, len(stepTrace))
			}
			if want := r.ElasticNodeSeconds / 3600 * cfg.CloudPricePerHour; r.CloudCost != want || r.CloudCost <= 0 {
				t.Errorf("cloud cost %v, want %v > 0", r.CloudCost, want)
			}
			if r.ElasticGPUSeconds > r.ElasticNodeSeconds {
				t.Errorf("cloud replica GPU-seconds %v exceed the nodes' %v", r.ElasticGPUSeconds, r.ElasticNodeSeconds)
			}
		})
	}
}

// A fixed count never changes and needs no scale event.
func TestFixed(t *testing.T) {
	cfg := mustConfig(t, ClassFixed)
	cfg.FixedReplicas = 2
	r := run(t, cfg, stepTrace)
	for _, s := range r.Timeline {
		if s.Desired != 2 || s.ReadyIDC+s.ReadyElastic != 2 {
			t.Fatalf("%+v: want 2 ready replicas throughout", s)
		}
	}
	if r.ScaleUps+r.ScaleDowns != 0 || r.NodesCreated != 0 {
		t.Errorf("scale events %d/%d, nodes created %d: want none", r.ScaleUps, r.ScaleDowns, r.NodesCreated)
	}
	// Both replicas serve: the gateway spreads (no pool preference outside llm).
	if idc, cloud := r.ServedBy(); idc == 0 || cloud == 0 || idc+cloud != r.Completed {
		t.Errorf("served by IDC %d, cloud %d, completed %d", idc, cloud, r.Completed)
	}
}

// Same input, same output, to the last sample.
func TestDeterministic(t *testing.T) {
	for _, c := range []Class{ClassHPA, ClassLLM} {
		cfg := mustConfig(t, c)
		a, b := run(t, cfg, stepTrace), run(t, cfg, stepTrace)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: two runs differ", c)
		}
		var ca, cb bytes.Buffer
		if err := WriteTimelineCSV(&ca, a); err != nil {
			t.Fatal(err)
		}
		_ = WriteTimelineCSV(&cb, b)
		if ca.String() != cb.String() || ca.Len() == 0 {
			t.Errorf("%s: timelines differ", c)
		}
	}
}

// Every request completes or is counted as dropped, for each way of being
// dropped: too long for the context, cut when a drained replica's grace
// ends, unfinished at the end of the run.
func TestConservation(t *testing.T) {
	reqs := append(synth(stretch{dur: 5 * time.Minute, every: 100 * time.Millisecond, prompt: 500, output: 400}),
		trace.Request{At: 5 * time.Minute, PromptTokens: 6000, OutputTokens: 500}) // > max model len 6144
	for _, c := range []Class{ClassHPA, ClassLLM} {
		cfg := mustConfig(t, c)
		cfg.Drain = 0                          // the backlog is not finished
		cfg.TerminationGrace = 0               // cut at once on scale-down
		cfg.LLM.ScaleDownDelay = 0             // the llm scales down early
		cfg.HPA.DownscaleStabilization = 0     // and so does the HPA
		cfg.LLM.StableWindow = 6 * time.Second // ...
		r := run(t, cfg, reqs)
		if r.Completed+r.Dropped != r.Requests || r.Requests != len(reqs) {
			t.Errorf("%s: completed %d + dropped %d != requests %d", c, r.Completed, r.Dropped, r.Requests)
		}
		if r.Rejected != 1 || r.Unfinished == 0 {
			t.Errorf("%s: rejected %d unfinished %d: want 1 and some", c, r.Rejected, r.Unfinished)
		}
		if r.Dropped != r.Rejected+r.Cut+r.Unfinished {
			t.Errorf("%s: dropped %d != %d + %d + %d", c, r.Dropped, r.Rejected, r.Cut, r.Unfinished)
		}
		if r.SLOMet > r.Completed {
			t.Errorf("%s: SLO met by %d of %d completed", c, r.SLOMet, r.Completed)
		}
	}
}

// Replicas removed while they still run requests are cut after the grace
// period and their requests counted as dropped.
func TestCutOnScaleDown(t *testing.T) {
	// Long requests (~40 s each) every 2 s for five minutes, then silence:
	// as the in-flight count falls, the llm autoscaler (no scale-down delay)
	// removes cloud replicas that still decode; with no grace their requests
	// are cut.
	reqs := synth(
		stretch{dur: 5 * time.Minute, every: 2 * time.Second, prompt: 200, output: 1500},
		stretch{dur: 5 * time.Minute},
	)
	cfg := mustConfig(t, ClassLLM)
	cfg.TerminationGrace = 0
	cfg.LLM.ScaleDownDelay = 0
	cfg.LLM.StableWindow = 6 * time.Second
	r := run(t, cfg, reqs)
	if r.Completed+r.Dropped != r.Requests || r.Requests != len(reqs) {
		t.Fatalf("completed %d + dropped %d != %d", r.Completed, r.Dropped, r.Requests)
	}
	if r.Cut == 0 || r.ScaleDowns == 0 || r.Dropped != r.Cut {
		t.Errorf("cut %d, dropped %d, scale-downs %d: want requests cut (and nothing else dropped)", r.Cut, r.Dropped, r.ScaleDowns)
	}
	// With the default grace the same run cuts nothing.
	cfg.TerminationGrace = 300 * time.Second
	if r := run(t, cfg, reqs); r.Cut != 0 || r.Completed != r.Requests {
		t.Errorf("with grace: cut %d, completed %d of %d", r.Cut, r.Completed, r.Requests)
	}
}

func TestValidate(t *testing.T) {
	cfg := mustConfig(t, ClassHPA)
	if err := cfg.Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	cfg.MinReplicas, cfg.MaxReplicas = 0, -1
	cfg.ProvisioningDelay = 1500 * time.Millisecond
	cfg.HPA.SyncPeriod = 0
	cfg.TTFTSLO = 0
	cfg.Class = "kpa"
	err := cfg.Validate()
	if err == nil {
		t.Fatal("want errors")
	}
	for _, w := range []string{"min replicas 0", "max replicas -1", "provisioning delay 1.5s", "TTFT SLO", `unknown autoscaler class "kpa"`} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	if _, err := Run(mustConfig(t, ClassLLM), nil); err == nil {
		t.Error("no requests: want an error")
	}
	if _, err := Run(mustConfig(t, ClassLLM), []trace.Request{{At: time.Second}, {At: 0}}); err == nil {
		t.Error("unsorted requests: want an error")
	}
}

func TestPeakWindow(t *testing.T) {
	at := []time.Duration{0, 10 * time.Second, 100 * time.Second, 101 * time.Second, 102 * time.Second, 300 * time.Second}
	if got := PeakWindow(at, 10*time.Second); got != 100*time.Second {
		t.Errorf("peak at %s, want 1m40s", got)
	}
}

// An hour at the calibrated rate's mean (2.8 requests/s) with the trace's
// mean token counts, under each class: the simulation's speed.
func BenchmarkRunHour(b *testing.B) {
	reqs := synth(stretch{dur: time.Hour, every: 357 * time.Millisecond, prompt: 1155, output: 211})
	for _, c := range []Class{ClassHPA, ClassLLM} {
		b.Run(string(c), func(b *testing.B) {
			cfg, err := DefaultConfig(c)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := Run(cfg, reqs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(reqs)), "requests")
		})
	}
}
