package perf

import (
	"container/list"
	"errors"
	"fmt"
	"math"
	"time"
)

// Config sizes an engine.
type Config struct {
	GPU   GPU
	Model Model
	// GPUMemoryUtilization is vLLM's --gpu-memory-utilization (0..1].
	GPUMemoryUtilization float64
	// MaxNumSeqs bounds the running batch (vLLM --max-num-seqs, default 256).
	MaxNumSeqs int
	// MaxNumBatchedTokens bounds the prompt tokens admitted per step; the first
	// request of a step is always admitted.
	MaxNumBatchedTokens int
	// MaxModelLen bounds prompt plus output tokens of one request.
	MaxModelLen int
	// BlockSize is the KV-cache block in tokens (vLLM default 16).
	BlockSize int
	// PrefixCaching enables prefix-cache hits on repeated prompt prefixes.
	PrefixCaching bool
}

// Request is one sequence to generate.
type Request struct {
	ID           uint64
	PromptTokens int
	// OutputTokens is how many tokens the request will produce (>= 1).
	OutputTokens int
	// PrefixHashes are chained hashes of the prompt's full KV blocks, in order.
	PrefixHashes []uint64
}

// Progress reports a request that produced a token (or finished) at the end of a step.
type Progress struct {
	ID uint64
	// Generated is the number of output tokens produced so far.
	Generated int
	Done      bool
	// At is the simulated time of the token.
	At time.Time
	// First is set on the first token; QueueTime and PrefixHitTokens are set with it.
	First           bool
	QueueTime       time.Duration
	PrefixHitTokens int
}

// Stats is a snapshot of the engine.
type Stats struct {
	Running, Waiting int
	// KVCacheUsage is the fraction of KV blocks in use (0..1).
	KVCacheUsage float64
	// SMUtilPercent is the SM activity averaged over about a second (0..100).
	SMUtilPercent float64
	TotalBlocks   int
}

// ErrTooLong is returned when a request can never fit in the KV cache.
var ErrTooLong = errors.New("request does not fit in the KV cache")

type seq struct {
	Request
	arrived   time.Time
	admitted  time.Time
	blocks    int
	hit       int
	generated int
	started   bool // took part in a step already
	aborted   bool
}

// Engine is a continuous-batching scheduler in the style of vLLM: FCFS
// admission into a running batch bounded by MaxNumSeqs, KV blocks and a prompt
// token budget; one step at a time; every running sequence gains a token per step.
// It is not safe for concurrent use.
type Engine struct {
	cfg         Config
	totalBlocks int
	freeBlocks  int

	waiting []*seq
	running []*seq
	byID    map[uint64]*seq

	inStep        bool
	stepStart     time.Time
	stepEnd       time.Time
	stepActivity  float64
	smEWMA        float64
	smUpdated     time.Time
	prefixLRU     *list.List
	prefixEntries map[uint64]*list.Element
}

// smTau is the time constant of the SM utilisation average.
const smTau = time.Second

// New validates cfg and sizes the KV cache like vLLM: device memory times
// utilisation, minus weights and an activation reserve.
func New(cfg Config) (*Engine, error) {
	if cfg.GPUMemoryUtilization <= 0 || cfg.GPUMemoryUtilization > 1 {
		return nil, fmt.Errorf("gpu memory utilization %v must be in (0, 1]", cfg.GPUMemoryUtilization)
	}
	if cfg.MaxNumSeqs <= 0 {
		cfg.MaxNumSeqs = 256
	}
	if cfg.BlockSize <= 0 {
		cfg.BlockSize = 16
	}
	if cfg.MaxModelLen <= 0 {
		cfg.MaxModelLen = 4096
	}
	if cfg.MaxNumBatchedTokens <= 0 {
		cfg.MaxNumBatchedTokens = max(cfg.MaxModelLen, 2048)
	}
	if cfg.GPU.SaturationBatch <= 0 {
		cfg.GPU.SaturationBatch = 8
	}
	if cfg.GPU.PrefillTokensPerSec <= 0 || cfg.GPU.BandwidthBytesPerSec <= 0 {
		return nil, fmt.Errorf("GPU profile %q needs prefill rate and bandwidth", cfg.GPU.Name)
	}
	kvPerToken := cfg.Model.KVBytesPerToken()
	if kvPerToken <= 0 {
		return nil, fmt.Errorf("model shape gives no KV cache per token")
	}
	budget := int64(float64(cfg.GPU.MemoryBytes)*cfg.GPUMemoryUtilization) - cfg.Model.WeightBytes() - activationReserve
	blocks := int(budget / (kvPerToken * int64(cfg.BlockSize)))
	if blocks*cfg.BlockSize < cfg.MaxModelLen {
		return nil, fmt.Errorf("KV cache holds %d tokens (%s, %.1fB params, utilization %v), less than max model len %d",
			max(blocks, 0)*cfg.BlockSize, cfg.GPU.Name, cfg.Model.ParamsBillions, cfg.GPUMemoryUtilization, cfg.MaxModelLen)
	}
	return &Engine{
		cfg:           cfg,
		totalBlocks:   blocks,
		freeBlocks:    blocks,
		byID:          make(map[uint64]*seq),
		prefixLRU:     list.New(),
		prefixEntries: make(map[uint64]*list.Element),
	}, nil
}

// Config returns the effective configuration (defaults filled in).
func (e *Engine) Config() Config { return e.cfg }

// TotalBlocks is the KV-cache capacity in blocks.
func (e *Engine) TotalBlocks() int { return e.totalBlocks }

// Add queues a request arriving at now. Call Advance(now) first so that time
// never goes backwards.
func (e *Engine) Add(now time.Time, r Request) error {
	if r.OutputTokens < 1 {
		r.OutputTokens = 1
	}
	blocks := ceilDiv(r.PromptTokens+r.OutputTokens, e.cfg.BlockSize)
	if blocks > e.totalBlocks {
		return fmt.Errorf("%w: %d tokens need %d blocks, cache has %d", ErrTooLong, r.PromptTokens+r.OutputTokens, blocks, e.totalBlocks)
	}
	if _, dup := e.byID[r.ID]; dup {
		return fmt.Errorf("duplicate request id %d", r.ID)
	}
	s := &seq{Request: r, arrived: now, blocks: blocks}
	e.byID[r.ID] = s
	e.waiting = append(e.waiting, s)
	if !e.inStep {
		e.startStep(now)
	}
	return nil
}

// Abort drops a request (client gone). Its blocks are freed at once.
func (e *Engine) Abort(id uint64) {
	s, ok := e.byID[id]
	if !ok {
		return
	}
	delete(e.byID, id)
	s.aborted = true
	if s.admitted.IsZero() {
		return // still waiting; skipped at admission
	}
	e.freeBlocks += s.blocks
}

// NextEvent is when the current step ends; ok is false when idle.
func (e *Engine) NextEvent() (time.Time, bool) { return e.stepEnd, e.inStep }

// Advance completes every step that ends at or before now, reporting each
// token through emit, and starts the following steps back to back.
func (e *Engine) Advance(now time.Time, emit func(Progress)) {
	for e.inStep && !e.stepEnd.After(now) {
		end := e.stepEnd
		e.finishStep(end, emit)
		e.inStep = false
		if len(e.running) > 0 || len(e.waiting) > 0 {
			e.startStep(end)
		}
	}
}

func (e *Engine) finishStep(end time.Time, emit func(Progress)) {
	e.smEWMA = ewma(e.smEWMA, e.stepActivity, end.Sub(e.stepStart))
	e.smUpdated = end
	kept := e.running[:0]
	for _, s := range e.running {
		if s.aborted {
			continue
		}
		s.generated++
		p := Progress{ID: s.ID, Generated: s.generated, At: end}
		if !s.started {
			s.started = true
			p.First = true
			p.QueueTime = s.admitted.Sub(s.arrived)
			p.PrefixHitTokens = s.hit
		}
		if s.generated >= s.OutputTokens {
			p.Done = true
			e.freeBlocks += s.blocks
			delete(e.byID, s.ID)
		} else {
			kept = append(kept, s)
		}
		emit(p)
	}
	clear(e.running[len(kept):])
	e.running = kept
}

// startStep admits waiting requests and computes the step's duration.
func (e *Engine) startStep(now time.Time) {
	// Fast-forward the SM average over the idle gap.
	if !e.smUpdated.IsZero() && now.After(e.smUpdated) {
		e.smEWMA = ewma(e.smEWMA, 0, now.Sub(e.smUpdated))
	}
	e.smUpdated = now
	prefill := 0
	admitted := 0
	for len(e.waiting) > 0 {
		s := e.waiting[0]
		if s.aborted {
			e.waiting[0] = nil
			e.waiting = e.waiting[1:]
			continue
		}
		if len(e.running) >= e.cfg.MaxNumSeqs || s.blocks > e.freeBlocks {
			break
		}
		hit := e.prefixHit(s)
		if admitted > 0 && prefill+s.PromptTokens-hit > e.cfg.MaxNumBatchedTokens {
			break
		}
		e.waiting[0] = nil
		e.waiting = e.waiting[1:]
		s.hit = hit
		s.admitted = now
		e.freeBlocks -= s.blocks
		e.running = append(e.running, s)
		prefill += s.PromptTokens - hit
		admitted++
	}
	if len(e.waiting) == 0 {
		e.waiting = nil // let the backing array go
	}
	if len(e.running) == 0 {
		return
	}
	decode, ctx := 0, 0
	for _, s := range e.running {
		if s.started {
			decode++
			ctx += s.PromptTokens + s.generated
		}
	}
	g, m := e.cfg.GPU, e.cfg.Model
	sizeFactor := m.ParamsBillions / 7
	prefillDur := time.Duration(float64(prefill) / g.PrefillTokensPerSec * sizeFactor * float64(time.Second))
	decodeDur := g.StepOverhead +
		time.Duration(float64(m.WeightBytes())/g.BandwidthBytesPerSec*float64(time.Second)) +
		time.Duration(float64(int64(ctx)*m.KVBytesPerToken())/g.BandwidthBytesPerSec*float64(time.Second)) +
		time.Duration(decode)*g.PerSeqOverhead
	dur := prefillDur + decodeDur
	// A decode step streams every weight through every SM, so warps are
	// resident (DCGM counts the SM active) even for one sequence; a larger
	// batch fills the remaining issue slots up to the saturating batch.
	occupancy := 0.6 + 0.4*math.Min(1, float64(max(decode, admitted))/float64(g.SaturationBatch))
	e.stepActivity = (prefillDur.Seconds() + decodeDur.Seconds()*occupancy) / dur.Seconds()
	e.inStep, e.stepStart, e.stepEnd = true, now, now.Add(dur)
}

// prefixHit counts the prompt tokens served from the prefix cache and records
// the request's blocks in it. At least one prompt token is always computed.
func (e *Engine) prefixHit(s *seq) int {
	if !e.cfg.PrefixCaching {
		return 0
	}
	hit := 0
	matching := true
	for _, h := range s.PrefixHashes {
		if el, ok := e.prefixEntries[h]; ok {
			e.prefixLRU.MoveToFront(el)
			if matching {
				hit += e.cfg.BlockSize
			}
			continue
		}
		matching = false
		e.prefixEntries[h] = e.prefixLRU.PushFront(h)
		if e.prefixLRU.Len() > e.totalBlocks {
			old := e.prefixLRU.Back()
			e.prefixLRU.Remove(old)
			delete(e.prefixEntries, old.Value.(uint64))
		}
	}
	return min(hit, s.PromptTokens-1)
}

// Stats reports the engine at now without changing it.
func (e *Engine) Stats(now time.Time) Stats {
	waiting := 0
	for _, s := range e.waiting {
		if !s.aborted {
			waiting++
		}
	}
	running := 0
	for _, s := range e.running {
		if !s.aborted {
			running++
		}
	}
	sm := e.smEWMA
	if !e.smUpdated.IsZero() && now.After(e.smUpdated) {
		v := 0.0
		if e.inStep {
			v = e.stepActivity
		}
		sm = ewma(sm, v, now.Sub(e.smUpdated))
	}
	return Stats{
		Running:       running,
		Waiting:       waiting,
		KVCacheUsage:  float64(e.totalBlocks-e.freeBlocks) / float64(e.totalBlocks),
		SMUtilPercent: 100 * sm,
		TotalBlocks:   e.totalBlocks,
	}
}

func ewma(old, v float64, d time.Duration) float64 {
	if d <= 0 {
		return old
	}
	a := math.Exp(-d.Seconds() / smTau.Seconds())
	return v + (old-v)*a
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }
