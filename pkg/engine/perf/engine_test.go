package perf

import (
	"testing"
	"time"
)

func testEngine(t *testing.T, mutate func(*Config)) *Engine {
	t.Helper()
	g, err := LookupGPU("v100")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{GPU: g, Model: ModelForParams(7, "gptq"), GPUMemoryUtilization: 0.95, MaxNumSeqs: 16, MaxModelLen: 6144, PrefixCaching: true}
	if mutate != nil {
		mutate(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

type result struct {
	ttft, e2e map[uint64]time.Duration
	tokens    int
	last      time.Time
}

// run feeds n requests arriving every gap and steps the engine to completion.
func run(e *Engine, n int, gap time.Duration, prompt, output int, hashes func(i int) []uint64) result {
	t0 := time.Unix(1000, 0)
	r := result{ttft: map[uint64]time.Duration{}, e2e: map[uint64]time.Duration{}}
	arrive := map[uint64]time.Time{}
	emit := func(p Progress) {
		r.tokens++
		if p.First {
			r.ttft[p.ID] = p.At.Sub(arrive[p.ID])
		}
		if p.Done {
			r.e2e[p.ID] = p.At.Sub(arrive[p.ID])
			r.last = p.At
		}
	}
	for i := range n {
		now := t0.Add(time.Duration(i) * gap)
		e.Advance(now, emit)
		id := uint64(i + 1)
		arrive[id] = now
		var h []uint64
		if hashes != nil {
			h = hashes(i)
		}
		if err := e.Add(now, Request{ID: id, PromptTokens: prompt, OutputTokens: output, PrefixHashes: h}); err != nil {
			panic(err)
		}
	}
	for {
		next, ok := e.NextEvent()
		if !ok {
			break
		}
		e.Advance(next, emit)
	}
	return r
}

func meanOf(m map[uint64]time.Duration) time.Duration {
	var s time.Duration
	for _, v := range m {
		s += v
	}
	return s / time.Duration(len(m))
}

func TestTTFTFlatUnderCapacityRisingPast(t *testing.T) {
	// 200 requests of 100 output tokens; the arrival gap sets the load.
	light := run(testEngine(t, nil), 200, time.Second, 200, 100, nil)
	medium := run(testEngine(t, nil), 200, 400*time.Millisecond, 200, 100, nil)
	heavy := run(testEngine(t, nil), 200, 5*time.Millisecond, 200, 100, nil)
	l, m, h := meanOf(light.ttft), meanOf(medium.ttft), meanOf(heavy.ttft)
	t.Logf("mean TTFT light=%v medium=%v heavy=%v", l, m, h)
	if m > 2*l {
		t.Errorf("TTFT under capacity should stay flat: light %v, medium %v", l, m)
	}
	if h < 10*l {
		t.Errorf("TTFT past capacity should grow: light %v, heavy %v", l, h)
	}
}

func TestThroughputSaturatesAtBatchLimit(t *testing.T) {
	tput := func(seqs int) float64 {
		e := testEngine(t, func(c *Config) { c.MaxNumSeqs = seqs })
		r := run(e, 256, 0, 100, 200, nil)
		return float64(r.tokens) / r.last.Sub(time.Unix(1000, 0)).Seconds()
	}
	t4, t16, t64 := tput(4), tput(16), tput(64)
	t.Logf("tokens/s: max-num-seqs 4=%.0f 16=%.0f 64=%.0f", t4, t16, t64)
	if !(t16 > 1.5*t4 && t64 > 1.5*t16) {
		t.Errorf("throughput should grow with the batch limit: %.0f %.0f %.0f", t4, t16, t64)
	}
	// With the batch at its limit, offered load beyond it does not add throughput.
	e := testEngine(t, func(c *Config) { c.MaxNumSeqs = 16 })
	r := run(e, 512, 0, 100, 200, nil)
	t512 := float64(r.tokens) / r.last.Sub(time.Unix(1000, 0)).Seconds()
	if diff := t512 / t16; diff < 0.9 || diff > 1.1 {
		t.Errorf("saturated throughput should stay at the batch limit: 256 reqs %.0f, 512 reqs %.0f", t16, t512)
	}
}

func TestKVExhaustionQueues(t *testing.T) {
	e := testEngine(t, func(c *Config) { c.MaxNumSeqs = 1024; c.MaxNumBatchedTokens = 1 << 20 })
	perReq := 6000
	fit := e.TotalBlocks() * e.Config().BlockSize / perReq
	now := time.Unix(1000, 0)
	for i := range fit + 3 {
		if err := e.Add(now, Request{ID: uint64(i + 1), PromptTokens: 5000, OutputTokens: perReq - 5000}); err != nil {
			t.Fatal(err)
		}
	}
	next, _ := e.NextEvent()
	e.Advance(next, func(Progress) {})
	st := e.Stats(next)
	if st.Running != fit || st.Waiting != 3 {
		t.Errorf("with room for %d requests: running=%d waiting=%d, want %d and 3", fit, st.Running, st.Waiting, fit)
	}
	if st.KVCacheUsage < 0.8 {
		t.Errorf("KV usage %v, want nearly full", st.KVCacheUsage)
	}
}

func TestPrefixHitLowersTTFT(t *testing.T) {
	shared := []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}
	same := func(int) []uint64 { return shared }
	distinct := func(i int) []uint64 {
		h := make([]uint64, len(shared))
		for j := range h {
			h[j] = uint64(i*1000 + j)
		}
		return h
	}
	hit := run(testEngine(t, nil), 20, time.Second, 330, 10, same)
	miss := run(testEngine(t, nil), 20, time.Second, 330, 10, distinct)
	if hm, mm := meanOf(hit.ttft), meanOf(miss.ttft); hm >= mm*3/4 {
		t.Errorf("prefix hits should lower TTFT: hit %v, miss %v", hm, mm)
	}
	e := testEngine(t, func(c *Config) { c.PrefixCaching = false })
	off := run(e, 20, time.Second, 330, 10, same)
	if meanOf(off.ttft) != meanOf(miss.ttft) {
		t.Errorf("without prefix caching repeated prompts should cost the same: %v vs %v", meanOf(off.ttft), meanOf(miss.ttft))
	}
}

func TestSMUtilisationFollowsBatch(t *testing.T) {
	sm := func(n int) float64 {
		e := testEngine(t, func(c *Config) { c.MaxNumSeqs = 64 })
		now := time.Unix(1000, 0)
		for i := range n {
			_ = e.Add(now, Request{ID: uint64(i + 1), PromptTokens: 50, OutputTokens: 100000 / 16})
		}
		e.Advance(now.Add(5*time.Second), func(Progress) {})
		return e.Stats(now.Add(5 * time.Second)).SMUtilPercent
	}
	one, full := sm(1), sm(32)
	t.Logf("SM util: 1 stream %.1f%%, 32 streams %.1f%%", one, full)
	if one < 45 || one > 80 || full < 95 || full-one < 15 {
		t.Errorf("SM util: one stream %.1f%% (want above half: a memory-bound decode keeps every SM active), full batch %.1f%% (want ~100)", one, full)
	}
}

func TestKVTooSmall(t *testing.T) {
	g, _ := LookupGPU("v100-16gb")
	if _, err := New(Config{GPU: g, Model: ModelForParams(7, ""), GPUMemoryUtilization: 0.95, MaxModelLen: 32768}); err == nil {
		t.Error("a 7B fp16 model with 32k context on 16 GB should not fit")
	}
}

// BenchmarkStep measures one engine step of a 2 000-sequence batch (the
// model's own cost per token is this divided by 2 000).
func BenchmarkStep(b *testing.B) {
	g, _ := LookupGPU("h100")
	e, err := New(Config{GPU: g, Model: ModelForParams(1, ""), GPUMemoryUtilization: 0.9, MaxNumSeqs: 4096, MaxModelLen: 2048})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Unix(1000, 0)
	id := uint64(0)
	add := func(now time.Time) {
		id++
		if err := e.Add(now, Request{ID: id, PromptTokens: 16, OutputTokens: 100}); err != nil {
			b.Fatal(err)
		}
	}
	for range 2000 {
		add(now)
	}
	tokens, finished := 0, 0
	emit := func(p Progress) {
		tokens++
		if p.Done {
			finished++
		}
	}
	for b.Loop() {
		next, _ := e.NextEvent()
		e.Advance(next, emit)
		for ; finished > 0; finished-- {
			add(next)
		}
	}
	b.ReportMetric(float64(tokens)/float64(b.N), "tokens/step")
}
