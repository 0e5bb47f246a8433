package autoscale

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/spillway-io/spillway/pkg/autoscaler/llm"
	"github.com/spillway-io/spillway/pkg/bench/trace"
	"github.com/spillway-io/spillway/pkg/engine/perf"
	"github.com/spillway-io/spillway/pkg/gateway/balancer"
	"github.com/spillway-io/spillway/pkg/simulation/hpa"
)

// epoch is the simulated time of the first request.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type phase int

const (
	pending  phase = iota // no node yet
	loading               // on a node, loading the model
	ready                 // serving
	draining              // deleted: finishing its requests, gets none new
	gone
)

type node struct {
	id         int
	pool       Pool
	created    time.Time
	readyAt    time.Time
	pod        *replica
	emptySince time.Time
	removed    bool
}

func (n *node) isReady(now time.Time) bool { return !n.readyAt.After(now) }

type replica struct {
	id       int
	phase    phase
	created  time.Time
	loadedAt time.Time
	deleted  time.Time
	node     *node
	eng      *perf.Engine
	// outstanding are the requests routed here and not finished.
	outstanding map[uint64]struct{}
	// sm is the last scraped DCGM_CUSTOM_PROCESS_SM_UTIL; scraped says one
	// scrape happened since the pod started on its node.
	sm      float64
	scraped bool
}

func (r *replica) pool() Pool {
	if r.node == nil {
		return ""
	}
	return r.node.pool
}

// Request outcomes.
const (
	statusPending = iota
	statusDone
	statusRejected // longer than the model's context: refused at once
	statusCut      // cut at the end of a drained replica's grace period
	statusUnfinished
)

type sim struct {
	cfg    Config
	reqs   []trace.Request
	policy balancer.Policy
	rnd    *rand.Rand

	status  []uint8
	first   []time.Duration // TTFT, -1 until the first token
	pool    []Pool
	nextReq int
	held    []int // requests at the gateway while no replica is ready

	replicas []*replica // live (not gone), in creation order
	nodes    []*node    // live nodes, in creation order
	nextID   int
	desired  int32

	hpaState hpa.State
	window   llm.Window

	res        Result
	lastDesire time.Time
	arrivedIn  int // arrivals since the last timeline sample
}

// Run simulates reqs (sorted by At, as trace.Parse returns them) under cfg.
func Run(cfg Config, reqs []trace.Request) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(reqs) == 0 {
		return nil, fmt.Errorf("no requests to replay")
	}
	if !slices.IsSortedFunc(reqs, func(a, b trace.Request) int { return int(a.At - b.At) }) {
		return nil, fmt.Errorf("requests must be sorted by arrival time")
	}
	if reqs[0].At < 0 {
		return nil, fmt.Errorf("request 0 arrives at %s, before the start", reqs[0].At)
	}
	s := &sim{
		cfg:    cfg,
		reqs:   reqs,
		policy: gatewayPolicy(cfg.Class),
		rnd:    rand.New(rand.NewPCG(cfg.Seed, 0x5b111a4)),
		status: make([]uint8, len(reqs)),
		first:  make([]time.Duration, len(reqs)),
		pool:   make([]Pool, len(reqs)),
	}
	for i := range s.first {
		s.first[i] = -1
	}
	s.res = Result{Class: cfg.Class, Requests: len(reqs), SLO: cfg.TTFTSLO, arrivals: make([]time.Duration, len(reqs))}
	for i, r := range reqs {
		s.res.arrivals[i] = r.At
	}
	if err := s.start(); err != nil {
		return nil, err
	}
	end := epoch.Add(reqs[len(reqs)-1].At.Truncate(Tick) + Tick + cfg.Drain)
	if err := s.loop(end); err != nil {
		return nil, err
	}
	s.finish(end)
	return &s.res, nil
}

// start places the initial replicas, ready, IDC nodes first.
func (s *sim) start() error {
	initial := s.cfg.MinReplicas
	if s.cfg.Class == ClassFixed {
		initial = s.cfg.FixedReplicas
	}
	if int(initial) > s.cfg.IDCNodes+s.cfg.ElasticMaxNodes {
		return fmt.Errorf("%d initial replicas do not fit on %d IDC and %d elastic nodes", initial, s.cfg.IDCNodes, s.cfg.ElasticMaxNodes)
	}
	for range s.cfg.IDCNodes {
		s.nodes = append(s.nodes, &node{id: len(s.nodes), pool: PoolIDC, created: epoch, readyAt: epoch, emptySince: epoch})
	}
	s.desired = initial
	s.res.MaxDesired = initial
	for i := range int(initial) {
		r, err := s.newReplica(epoch)
		if err != nil {
			return err
		}
		var n *node
		if i < s.cfg.IDCNodes {
			n = s.nodes[i]
		} else {
			n = &node{id: len(s.nodes), pool: PoolElastic, created: epoch, readyAt: epoch}
			s.nodes = append(s.nodes, n)
		}
		n.pod, r.node, r.phase, r.loadedAt = r, n, ready, epoch
	}
	return nil
}

func (s *sim) newReplica(now time.Time) (*replica, error) {
	eng, err := perf.New(s.cfg.Engine)
	if err != nil {
		return nil, err
	}
	r := &replica{id: s.nextID, phase: pending, created: now, eng: eng, outstanding: map[uint64]struct{}{}}
	s.nextID++
	s.replicas = append(s.replicas, r)
	return r, nil
}

// loop runs events (engine steps, arrivals) and ticks until end.
func (s *sim) loop(end time.Time) error {
	nextTick := epoch
	for !nextTick.After(end) {
		t := nextTick
		if s.nextReq < len(s.reqs) {
			if at := epoch.Add(s.reqs[s.nextReq].At); at.Before(t) {
				t = at
			}
		}
		for _, r := range s.replicas {
			if e, ok := r.eng.NextEvent(); ok && e.Before(t) {
				t = e
			}
		}
		s.advance(t)
		for s.nextReq < len(s.reqs) && !epoch.Add(s.reqs[s.nextReq].At).After(t) {
			if err := s.arrive(t, s.nextReq); err != nil {
				return err
			}
			s.nextReq++
		}
		if t.Equal(nextTick) {
			if err := s.tick(t); err != nil {
				return err
			}
			nextTick = nextTick.Add(Tick)
		}
	}
	return nil
}

// advance completes the engine steps that end by now.
func (s *sim) advance(now time.Time) {
	for _, r := range s.replicas {
		r.eng.Advance(now, func(p perf.Progress) {
			i := int(p.ID)
			if p.First {
				s.first[i] = p.At.Sub(epoch) - s.reqs[i].At
			}
			if p.Done {
				s.status[i] = statusDone
				delete(r.outstanding, p.ID)
			}
		})
	}
}

// arrive routes request i, holds it while no replica is ready, or refuses
// it when it cannot fit the model's context (vLLM's 400).
func (s *sim) arrive(now time.Time, i int) error {
	s.arrivedIn++
	q := s.reqs[i]
	if q.PromptTokens+max(q.OutputTokens, 1) > s.cfg.Engine.MaxModelLen {
		s.status[i] = statusRejected
		return nil
	}
	r := s.pick(now)
	if r == nil {
		s.held = append(s.held, i)
		return nil
	}
	return s.send(now, r, i)
}

func (s *sim) send(now time.Time, r *replica, i int) error {
	q := s.reqs[i]
	if err := r.eng.Add(now, perf.Request{ID: uint64(i), PromptTokens: q.PromptTokens, OutputTokens: q.OutputTokens}); err != nil {
		return fmt.Errorf("request %d: %w", i, err)
	}
	r.outstanding[uint64(i)] = struct{}{}
	s.pool[i] = r.pool()
	return nil
}

// pick is the gateway's choice among the ready replicas (nil: none).
func (s *sim) pick(now time.Time) *replica {
	var cands []*replica
	var eps []balancer.Endpoint
	for _, r := range s.replicas {
		if r.phase != ready {
			continue
		}
		st := r.eng.Stats(now)
		rank := 0
		if r.pool() != PoolIDC {
			rank = 1
		}
		cands = append(cands, r)
		eps = append(eps, balancer.Endpoint{
			Address: fmt.Sprint(r.id), Pool: string(r.pool()), PoolRank: rank,
			Outstanding: len(r.outstanding), Scraped: true,
			Waiting: float64(st.Waiting), Running: float64(st.Running), KVUsage: st.KVCacheUsage,
			// The engines' figures are read now and all their traffic is
			// this gateway's: no other clients' requests to add.
			OutstandingAtScrape: len(r.outstanding),
		})
	}
	if len(cands) == 0 {
		return nil
	}
	i := balancer.Pick(s.policy, eps, balancer.Request{}, s.rnd)
	if i < 0 {
		return nil
	}
	return cands[i]
}

// tick runs the cluster and the control loops for one second.
func (s *sim) tick(now time.Time) error {
	elapsed := now.Sub(epoch)
	s.lifecycle(now)
	switch s.cfg.Class {
	case ClassHPA:
		if elapsed%s.cfg.HPA.ScrapeInterval == 0 {
			s.scrapeSM(now)
		}
		if elapsed%s.cfg.HPA.SyncPeriod == 0 {
			s.syncHPA(now)
		}
	case ClassLLM:
		if elapsed%s.cfg.LLMInterval == 0 {
			s.tickLLM(now)
		}
	}
	if err := s.reconcileDeployment(now); err != nil {
		return err
	}
	s.schedule(now)
	s.account()
	if elapsed%s.cfg.SampleInterval == 0 {
		s.sample(now)
	}
	return nil
}

// lifecycle moves replicas and nodes through their states.
func (s *sim) lifecycle(now time.Time) {
	for _, r := range s.replicas {
		switch r.phase {
		case loading:
			if !r.loadedAt.After(now) {
				r.phase = ready
			}
		case draining:
			if len(r.outstanding) == 0 {
				s.remove(now, r)
			} else if now.Sub(r.deleted) >= s.cfg.TerminationGrace {
				for id := range r.outstanding {
					r.eng.Abort(id)
					s.status[id] = statusCut
				}
				clear(r.outstanding)
				s.remove(now, r)
			}
		}
	}
	s.replicas = slices.DeleteFunc(s.replicas, func(r *replica) bool { return r.phase == gone })
	// Held requests go out as soon as a replica is ready.
	for len(s.held) > 0 {
		r := s.pick(now)
		if r == nil {
			break
		}
		i := s.held[0]
		s.held = s.held[1:]
		_ = s.send(now, r, i) // fits: checked at arrival
	}
	// Elastic nodes without a replica for the unneeded time go away.
	for _, n := range s.nodes {
		if n.pool == PoolElastic && n.pod == nil && n.isReady(now) && now.Sub(n.emptySince) >= s.cfg.NodeUnneededTime {
			n.removed = true
			s.res.ElasticNodeSeconds += now.Sub(n.created).Seconds()
		}
	}
	s.nodes = slices.DeleteFunc(s.nodes, func(n *node) bool { return n.removed })
}

func (s *sim) remove(now time.Time, r *replica) {
	r.phase = gone
	if r.node != nil {
		r.node.pod = nil
		r.node.emptySince = now
	}
}

// scrapeSM is the metrics adapter reading each running pod's SM utilisation
// (the node simulator's DCGM_CUSTOM_PROCESS_SM_UTIL: the engine's figure, 0
// while the model loads).
func (s *sim) scrapeSM(now time.Time) {
	for _, r := range s.replicas {
		if r.node != nil {
			r.sm, r.scraped = r.eng.Stats(now).SMUtilPercent, true
		}
	}
}

// syncHPA is one HPA sync on the last scraped values.
func (s *sim) syncHPA(now time.Time) {
	pods := make([]hpa.Pod, 0, len(s.replicas))
	for _, r := range s.replicas {
		p := hpa.Pod{Name: fmt.Sprint(r.id)}
		switch {
		case r.phase == draining:
			p.Phase = hpa.PodDeleting
		case r.phase == pending:
			p.Phase = hpa.PodPending
		default:
			p.Phase = hpa.PodRunning
			p.HasMetric = r.scraped
			p.MilliValue = int64(math.Round(r.sm * 1000))
		}
		pods = append(pods, p)
	}
	var res hpa.Result
	res, s.hpaState = hpa.Reconcile(now, s.desired, pods, s.cfg.hpaSpec(), s.hpaState)
	s.setDesired(now, res.Desired)
}

// tickLLM is one tick of the llm autoscaler controller: the same sample it
// builds (gateway in-flight, engines' gauges summed over ready replicas,
// ready and starting replicas), the same window, llm.Decide.
func (s *sim) tickLLM(now time.Time) {
	spec := s.cfg.llmSpec()
	sample := llm.Sample{Time: now, InFlight: float64(len(s.held))}
	for _, r := range s.replicas {
		sample.InFlight += float64(len(r.outstanding))
		switch r.phase {
		case pending, loading:
			sample.Starting++
		case ready:
			sample.Ready++
			st := r.eng.Stats(now)
			sample.Running += float64(st.Running)
			sample.Waiting += float64(st.Waiting)
			sample.KVCache += st.KVCacheUsage
		}
	}
	s.window.Add(sample, spec.History())
	d := llm.Decide(now, llm.Observations{Samples: s.window.Samples(), Replicas: s.desired}, spec)
	s.setDesired(now, d.Desired)
}

func (s *sim) setDesired(now time.Time, n int32) {
	switch {
	case n > s.desired:
		s.res.ScaleUps++
	case n < s.desired:
		s.res.ScaleDowns++
	default:
		return
	}
	s.desired = n
	s.res.MaxDesired = max(s.res.MaxDesired, n)
}

// reconcileDeployment is the Deployment controller: create pods up to the
// desired count, or delete the surplus — pods without a node first, then
// those loading, then ready cloud replicas, the IDC ones last, newest first
// within each group.
func (s *sim) reconcileDeployment(now time.Time) error {
	var live []*replica
	for _, r := range s.replicas {
		if r.phase != draining {
			live = append(live, r)
		}
	}
	for n := int32(len(live)); n < s.desired; n++ {
		if _, err := s.newReplica(now); err != nil {
			return err
		}
	}
	surplus := len(live) - int(s.desired)
	if surplus <= 0 {
		return nil
	}
	rank := func(r *replica) int {
		switch {
		case r.phase == pending:
			return 0
		case r.phase == loading:
			return 1
		case r.pool() != PoolIDC:
			return 2
		}
		return 3
	}
	slices.SortStableFunc(live, func(a, b *replica) int {
		if d := rank(a) - rank(b); d != 0 {
			return d
		}
		return b.id - a.id
	})
	for _, r := range live[:surplus] {
		switch r.phase {
		case pending, loading:
			s.remove(now, r)
		case ready:
			r.phase, r.deleted = draining, now
		}
	}
	s.replicas = slices.DeleteFunc(s.replicas, func(r *replica) bool { return r.phase == gone })
	return nil
}

// schedule binds pending replicas to free ready nodes (IDC first, as the
// seed's ResourcePolicy orders its units) and creates elastic nodes for the
// rest (the cluster autoscaler), up to the pool's maximum.
func (s *sim) schedule(now time.Time) {
	var waiting []*replica
	for _, r := range s.replicas {
		if r.phase == pending {
			waiting = append(waiting, r)
		}
	}
	for _, pool := range []Pool{PoolIDC, PoolElastic} {
		for _, n := range s.nodes {
			if len(waiting) == 0 {
				break
			}
			if n.pool != pool || n.pod != nil || !n.isReady(now) {
				continue
			}
			r := waiting[0]
			waiting = waiting[1:]
			n.pod, r.node, r.phase, r.loadedAt = r, n, loading, now.Add(s.cfg.ModelLoad)
			if s.cfg.ModelLoad == 0 {
				r.phase = ready
			}
		}
	}
	coming, elastic := 0, 0
	for _, n := range s.nodes {
		if n.pool == PoolElastic {
			elastic++
			if !n.isReady(now) {
				coming++
			}
		}
	}
	for need := len(waiting) - coming; need > 0 && elastic < s.cfg.ElasticMaxNodes; need-- {
		n := &node{id: len(s.nodes), pool: PoolElastic, created: now, readyAt: now.Add(s.cfg.ProvisioningDelay)}
		n.emptySince = n.readyAt
		s.nodes = append(s.nodes, n)
		elastic++
		s.res.NodesCreated++
	}
}

// account adds one tick of GPU time.
func (s *sim) account() {
	for _, r := range s.replicas {
		switch r.pool() {
		case PoolIDC:
			s.res.IDCGPUSeconds += Tick.Seconds()
		case PoolElastic:
			s.res.ElasticGPUSeconds += Tick.Seconds()
		}
	}
	s.res.duration += Tick
}

func (s *sim) sample(now time.Time) {
	p := Sample{T: now.Sub(epoch), Desired: s.desired, Held: len(s.held)}
	var sm float64
	for _, r := range s.replicas {
		p.InFlight += len(r.outstanding)
		switch r.phase {
		case pending, loading:
			p.Starting++
		case draining:
			p.Draining++
		case ready:
			st := r.eng.Stats(now)
			p.Waiting += st.Waiting
			sm += st.SMUtilPercent
			if r.pool() == PoolIDC {
				p.ReadyIDC++
			} else {
				p.ReadyElastic++
			}
		}
	}
	p.InFlight += len(s.held)
	if n := p.ReadyIDC + p.ReadyElastic; n > 0 {
		p.MeanSMUtil = sm / float64(n)
	}
	for _, n := range s.nodes {
		if n.pool == PoolElastic {
			p.ElasticNodes++
		}
	}
	p.ArrivalRate = float64(s.arrivedIn) / s.cfg.SampleInterval.Seconds()
	s.arrivedIn = 0
	s.res.Timeline = append(s.res.Timeline, p)
}

// finish closes the books at end.
func (s *sim) finish(end time.Time) {
	for _, n := range s.nodes {
		if n.pool == PoolElastic {
			s.res.ElasticNodeSeconds += end.Add(Tick).Sub(n.created).Seconds()
		}
	}
	s.res.CloudCost = s.res.ElasticNodeSeconds / 3600 * s.cfg.CloudPricePerHour
	for i := range s.status {
		if s.status[i] == statusPending {
			s.status[i] = statusUnfinished
		}
	}
	s.res.ttft = s.first
	s.res.status = s.status
	s.res.pools = s.pool
	s.res.summarise()
}
