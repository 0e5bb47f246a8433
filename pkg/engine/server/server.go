// Package server is the engine simulator's HTTP face: the OpenAI API as vLLM
// serves it (/v1/models, /v1/chat/completions, /v1/completions, streaming and
// not), /health, and /metrics with vLLM's metric names, driven by the
// performance model of package perf through one event loop per server.
// Many servers can live in one process: each has its own registry and loop.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/spillway-io/spillway/pkg/engine/perf"
)

// Config configures one simulated vLLM server.
type Config struct {
	// ServedModelNames are the names clients use in "model"; the first labels the metrics.
	ServedModelNames []string
	// ModelPath is vLLM's --model, shown as the models' root.
	ModelPath string
	// Engine sizes the performance model; Engine.MaxModelLen bounds prompt + max_tokens.
	Engine perf.Config
	// StartupDelay is how long the simulated model takes to load; /health is 503 until then.
	StartupDelay time.Duration
	// Seed makes the outputs of requests without a seed reproducible per process.
	Seed int64
	// APIKey, when set, is required as "Authorization: Bearer <key>" on /v1 endpoints.
	APIKey string
	// GracePeriod bounds how long Serve waits for in-flight requests after its context ends (default 30s).
	GracePeriod time.Duration
}

// Stats is a snapshot of the engine for the node simulator (DCGM export) and autoscalers.
type Stats = perf.Stats

// Option customises a Server.
type Option func(*Server)

// WithClock sets the clock (default: the real clock).
func WithClock(c clock.WithTicker) Option { return func(s *Server) { s.clock = c } }

// WithLogger sets the logger (default: klog's).
func WithLogger(l logr.Logger) Option { return func(s *Server) { s.log = l } }

// Server is one simulated vLLM engine.
type Server struct {
	cfg     Config
	clock   clock.WithTicker
	log     logr.Logger
	started time.Time
	metrics *metrics
	created int64

	mu      sync.Mutex
	eng     *perf.Engine
	streams map[uint64]*stream

	kick     chan struct{}
	nextID   atomic.Uint64
	draining atomic.Bool
}

// New builds a server; it does not listen until Serve.
func New(cfg Config, opts ...Option) (*Server, error) {
	if len(cfg.ServedModelNames) == 0 {
		return nil, errors.New("server: at least one served model name is required")
	}
	if cfg.GracePeriod <= 0 {
		cfg.GracePeriod = 30 * time.Second
	}
	if cfg.StartupDelay < 0 {
		return nil, fmt.Errorf("server: negative start-up delay %v", cfg.StartupDelay)
	}
	eng, err := perf.New(cfg.Engine)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	cfg.Engine = eng.Config()
	s := &Server{
		cfg:     cfg,
		clock:   clock.RealClock{},
		log:     klog.Background(),
		eng:     eng,
		streams: make(map[uint64]*stream),
		kick:    make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(s)
	}
	s.started = s.clock.Now()
	s.created = s.started.Unix()
	s.metrics = newMetrics(cfg.ServedModelNames[0], s.Stats)
	return s, nil
}

// Config returns the effective configuration.
func (s *Server) Config() Config { return s.cfg }

// Ready reports whether the simulated model has loaded.
func (s *Server) Ready() bool { return s.clock.Since(s.started) >= s.cfg.StartupDelay }

// Stats reports running and waiting requests, KV-cache use and SM utilisation now.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.eng.Stats(s.clock.Now())
}

// Serve answers HTTP on ln until ctx ends, then stops accepting requests and
// waits up to the grace period for in-flight ones (streams included) to finish.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
	}
	loopCtx, stopLoop := context.WithCancel(context.WithoutCancel(ctx))
	var loopDone sync.WaitGroup
	loopDone.Go(func() { s.loop(loopCtx) })
	defer func() {
		stopLoop()
		loopDone.Wait()
	}()
	s.log.Info("engine simulator serving", "address", ln.Addr().String(), "models", s.cfg.ServedModelNames,
		"gpu", s.cfg.Engine.GPU.Name, "kvBlocks", s.eng.TotalBlocks(), "startupDelay", s.cfg.StartupDelay)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving engine simulator: %w", err)
	case <-ctx.Done():
	}
	s.draining.Store(true)
	s.log.Info("engine simulator draining", "inFlight", s.inFlight(), "grace", s.cfg.GracePeriod)
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.GracePeriod)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		s.log.Info("grace period over, closing remaining connections", "inFlight", s.inFlight())
		_ = hs.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving engine simulator: %w", err)
	}
	s.log.Info("engine simulator stopped")
	return nil
}

func (s *Server) inFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}

// loop runs the engine: it advances the model to the clock at every step end
// and whenever an idle engine receives work.
func (s *Server) loop(ctx context.Context) {
	for {
		s.mu.Lock()
		now := s.clock.Now()
		s.eng.Advance(now, s.emit)
		next, busy := s.eng.NextEvent()
		s.mu.Unlock()
		var timer clock.Timer
		var fire <-chan time.Time
		if busy {
			timer = s.clock.NewTimer(next.Sub(now))
			fire = timer.C()
		}
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return
		case <-s.kick:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// stream is one request in flight; its fields after plan are guarded by Server.mu.
type stream struct {
	id        uint64
	plan      plan
	arrived   time.Time
	notify    chan struct{}
	generated int
	done      bool
	lastAt    time.Time
}

// emit takes a token from the engine (under s.mu).
func (s *Server) emit(p perf.Progress) {
	st := s.streams[p.ID]
	if st == nil {
		return
	}
	m := s.metrics
	m.generationTokens.Inc()
	if p.First {
		m.ttft.Observe(p.At.Sub(st.arrived).Seconds())
		m.queue.Observe(p.QueueTime.Seconds())
		if p.PrefixHitTokens > 0 {
			m.prefixHits.Add(float64(p.PrefixHitTokens))
		}
	} else {
		m.itl.Observe(p.At.Sub(st.lastAt).Seconds())
	}
	st.generated, st.lastAt = p.Generated, p.At
	if p.Done {
		st.done = true
		m.e2e.Observe(p.At.Sub(st.arrived).Seconds())
		m.success.WithLabelValues(st.plan.finish).Inc()
		delete(s.streams, p.ID)
	}
	select {
	case st.notify <- struct{}{}:
	default:
	}
}

// submit queues a planned request in the engine.
func (s *Server) submit(promptTokens int, hashes []uint64, pl plan) (*stream, *apiError) {
	id := s.nextID.Add(1)
	s.mu.Lock()
	now := s.clock.Now()
	s.eng.Advance(now, s.emit)
	_, busy := s.eng.NextEvent()
	err := s.eng.Add(now, perf.Request{ID: id, PromptTokens: promptTokens, OutputTokens: pl.tokens(), PrefixHashes: hashes})
	var st *stream
	if err == nil {
		st = &stream{id: id, plan: pl, arrived: now, notify: make(chan struct{}, 1)}
		s.streams[id] = st
		s.metrics.promptTokens.Add(float64(promptTokens))
		if s.cfg.Engine.PrefixCaching {
			s.metrics.prefixQueries.Add(float64(promptTokens))
		}
	}
	s.mu.Unlock()
	if err != nil {
		return nil, badRequest("", "%v", err)
	}
	if !busy {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	return st, nil
}

// progress reads a stream's state.
func (s *Server) progress(st *stream) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return st.generated, st.done
}

// abort drops a request whose client went away.
func (s *Server) abort(st *stream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st.done {
		return
	}
	s.eng.Abort(st.id)
	delete(s.streams, st.id)
}
