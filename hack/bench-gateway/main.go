// Command bench-gateway measures spillway-gateway against a direct
// connection to the engine and against nginx as a reverse proxy to the same
// engine, all on 127.0.0.1, in one run: requests/s and added p50/p99
// latency at saturation (closed loop), and added latency at an equal offered
// load (open loop), non-streaming and streaming; CPU per stream and added
// latency of paced streams (events apart, as an engine sends tokens); the
// gateway's RSS with 1,000 concurrent streams; and routing quality (TTFT p99
// of Spillway's balancing against round robin on engines with unequal load). It prints ratios and
// the goals next to them. Every phase has a fixed duration: it stops by itself.
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/spillway-io/spillway/internal/procstat"
	"github.com/spillway-io/spillway/pkg/engine/enginesim"
	"github.com/spillway-io/spillway/pkg/engine/server"
	"github.com/spillway-io/spillway/pkg/gateway"
	"github.com/spillway-io/spillway/pkg/gateway/balancer"
	"github.com/spillway-io/spillway/pkg/gateway/enginetest"
	"github.com/spillway-io/spillway/pkg/gateway/routing"
)

type options struct {
	gatewayBin  string
	baseline    string // another gateway binary, a further target (same-run A/B)
	netHTTP     bool
	nginxBin    string
	duration    time.Duration
	concurrency int
	streams     int
	quality     time.Duration
	skipNginx   bool
	rounds      int
	// load is the offered rate of the equal-load latency measurement, as a
	// fraction of the slowest proxy's saturated throughput (0: skipped);
	// conns its client connections.
	load  float64
	conns int
	// proxyCPUs pins the proxies (gateway, nginx) to these CPUs (a taskset
	// list; empty: no pinning); workers is then GOMAXPROCS of the gateway
	// and worker_processes of nginx.
	proxyCPUs string
	workers   int
	// profile, when set, receives a CPU profile of the gateway over the
	// throughput phases (from its /debug/pprof on a private admin port).
	profile string
	// phases to run: plain, stream, paced, memory, quality.
	phases map[string]bool
	// itl is the time between the paced phase's events.
	itl time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.gatewayBin, "gateway", "bin/spillway-gateway", "spillway-gateway binary")
	flag.StringVar(&o.nginxBin, "nginx", "nginx", "nginx binary")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of each throughput phase per target")
	flag.IntVar(&o.concurrency, "c", 32, "concurrent clients in the throughput phases")
	flag.IntVar(&o.streams, "streams", 1000, "concurrent streams of the memory phase")
	flag.DurationVar(&o.quality, "quality-duration", 20*time.Second, "length of each routing-quality phase")
	flag.BoolVar(&o.skipNginx, "skip-nginx", false, "do not compare with nginx")
	flag.StringVar(&o.baseline, "baseline", "", "another spillway-gateway binary (say, a build of the previous commit) run as a further target: a same-run A/B of a gateway change")
	flag.BoolVar(&o.netHTTP, "net-http", false, "also run the gateway with --http-server=net/http (the baseline of its own HTTP server)")
	flag.IntVar(&o.rounds, "rounds", 10, "rounds the throughput phases are cut into (targets take turns)")
	flag.Float64Var(&o.load, "latency-load", 0.3, "offered load of the equal-load latency measurement (open loop, Poisson arrivals), as a fraction of the slowest proxy's saturated req/s (0: skip it)")
	flag.IntVar(&o.conns, "latency-conns", 64, "client connections of the equal-load latency measurement")
	flag.StringVar(&o.proxyCPUs, "proxy-cpus", "", "taskset CPU list for the proxies (empty: not pinned); run this program on the others")
	flag.IntVar(&o.workers, "workers", 0, "GOMAXPROCS of the gateway and worker_processes of nginx (0: number of -proxy-cpus, else all CPUs)")
	flag.StringVar(&o.profile, "cpuprofile", "", "write a CPU profile of the gateway during the throughput phases to this file")
	flag.DurationVar(&o.itl, "paced-itl", time.Millisecond, "time between the events of the paced phase's streams")
	phases := flag.String("phases", "plain,stream,paced,memory,quality", "phases to run, comma-separated: plain, stream (throughput and latency), paced (streams with -paced-itl between events: CPU per stream and added latency), memory, quality")
	flag.Parse()
	o.phases = map[string]bool{}
	for _, p := range strings.Split(*phases, ",") {
		switch p = strings.TrimSpace(p); p {
		case "plain", "stream", "paced", "memory", "quality":
			o.phases[p] = true
		default:
			fmt.Fprintf(os.Stderr, "bench-gateway: unknown phase %q in -phases (want plain, stream, paced, memory, quality)\n", p)
			flag.Usage()
			os.Exit(2)
		}
	}
	if o.workers <= 0 {
		o.workers = runtime.NumCPU()
		if o.proxyCPUs != "" {
			o.workers = countCPUs(o.proxyCPUs)
		}
	}
	if o.rounds < 1 || o.concurrency < 1 || o.streams < 1 || o.duration <= 0 || o.quality <= 0 || o.conns < 1 || o.load < 0 || o.load >= 1 || o.itl <= 0 {
		fmt.Fprintln(os.Stderr, "bench-gateway: -rounds, -c, -streams, -duration, -quality-duration, -latency-conns and -paced-itl must be positive, -latency-load in [0, 1)")
		flag.Usage()
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // hard bound
	defer cancel()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-gateway:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	dir, err := os.MkdirTemp("", "bench-gateway-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()

	// One engine answering at once: the proxies' cost is all there is to
	// see. Lean, as the load generator (see lean.go).
	engine, err := startLeanEngine("bench", 16, o.itl)
	if err != nil {
		return err
	}
	defer engine.Close()
	defer closeIdle()
	engineAddr := engine.Addr()

	// A second engine streaming one event per 100ms, for the memory phase.
	_, slowAddr, stopSlow, err := enginetest.Start(enginetest.Config{Model: "slow", ITL: 100 * time.Millisecond})
	if err != nil {
		return err
	}
	defer stopSlow()

	gwAddr, adminAddr, gwPID, stopGW, err := startGateway(ctx, o, o.gatewayBin, dir, engineAddr, slowAddr, o.profile != "")
	if err != nil {
		return err
	}
	defer stopGW()
	targets := []target{{"direct", "http://" + engineAddr, nil}, {"spillway", "http://" + gwAddr, func() []int { return []int{gwPID} }}}
	if o.netHTTP {
		// The same gateway on net/http's server: the baseline of h1.Server's gain, in the same run.
		addr, _, pid, stop, err := startGateway(ctx, o, o.gatewayBin, dir, engineAddr, slowAddr, false, "--http-server", "net/http")
		if err != nil {
			return err
		}
		defer stop()
		targets = append(targets, target{"net/http", "http://" + addr, func() []int { return []int{pid} }})
	}
	if o.baseline != "" {
		addr, _, pid, stop, err := startGateway(ctx, o, o.baseline, dir, engineAddr, slowAddr, false)
		if err != nil {
			return err
		}
		defer stop()
		targets = append(targets, target{"baseline", "http://" + addr, func() []int { return []int{pid} }})
	}
	var nginxPIDs func() []int
	var ngSlowAddr string
	if !o.skipNginx {
		ngAddr, ngSlow, pids, stopNG, err := startNginx(ctx, o, dir, engineAddr, slowAddr)
		if err != nil {
			return err
		}
		defer stopNG()
		nginxPIDs, ngSlowAddr = pids, ngSlow
		targets = append(targets, target{"nginx", "http://" + ngAddr, pids})
	}

	fmt.Printf("bench-gateway: %d clients, %s per target and phase in %d rounds, engine on %s\n",
		o.concurrency, o.duration, o.rounds, engineAddr)
	pin := "not pinned"
	if o.proxyCPUs != "" {
		pin = "pinned to CPUs " + o.proxyCPUs
	}
	fmt.Printf("CPUs: %d visible to the load generator and engine (this process); proxies %s, gateway GOMAXPROCS=%d, nginx worker_processes %d\n",
		runtime.NumCPU(), pin, o.workers, o.workers)
	var profileDone chan error
	if o.profile != "" {
		profileDone = make(chan error, 1)
		n := 0
		for _, p := range []string{"plain", "stream"} {
			if o.phases[p] {
				n++
			}
		}
		if o.load > 0 {
			n *= 2 // saturated, then at equal load
		}
		if o.phases["paced"] {
			n++
		}
		secs := int((time.Duration(n)*(o.duration+500*time.Millisecond)*time.Duration(len(targets)) + time.Second).Seconds())
		go func() {
			profileDone <- fetchProfile(ctx, "http://"+adminAddr+"/debug/pprof/profile?seconds="+strconv.Itoa(secs), o.profile)
		}()
	}
	for _, k := range []traffic{plain, stream, paced} {
		if !o.phases[k.String()] {
			continue
		}
		fmt.Printf("\n== %s ==\n", k.describe(o.itl))
		// The machine is shared: targets take turns in short rounds so that a
		// change of background load hits them alike.
		for _, t := range targets {
			_ = load(ctx, t.url, k, o.concurrency, 500*time.Millisecond) // warm-up
		}
		slice := o.duration / time.Duration(o.rounds)
		acc := takeTurns(targets, o.rounds, func(t target, s *samples) {
			runLoad(ctx, t.url, k, o.concurrency, slice, s)
		})
		res := map[string]result{}
		for _, t := range targets {
			r := acc[t.name].result()
			cpu := ""
			if t.pids != nil && len(acc[t.name].lat) > 0 {
				// CPU time of the proxy's processes per request: robust to
				// other load on a shared machine, unlike req/s.
				r.cpuPerReq = time.Duration(float64(acc[t.name].cpuTicks) * float64(time.Second) / procstat.ClockTicks / float64(len(acc[t.name].lat)))
				busy := float64(acc[t.name].cpuTicks) / procstat.ClockTicks / acc[t.name].elapsed.Seconds() / float64(o.workers)
				cpu = fmt.Sprintf("  proxy CPU/request %s (busy %.0f%% of %d CPU)", r.cpuPerReq.Round(100*time.Nanosecond), 100*busy, o.workers)
			}
			res[t.name] = r
			fmt.Printf("%-9s %9.0f req/s  p50 %8s  p99 %8s  errors %d%s\n", t.name, r.rps, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.errors, cpu)
			if err := acc[t.name].firstErr; err != nil {
				fmt.Printf("%-9s first error: %v\n", "", err)
			}
		}
		d := res["direct"]
		s := res["spillway"]
		fmt.Printf("spillway added latency: p50 %s  p99 %s;  throughput vs direct %.2f\n",
			(s.p50 - d.p50).Round(time.Microsecond), (s.p99 - d.p99).Round(time.Microsecond), s.rps/d.rps)
		if n, ok := res["nginx"]; ok {
			fmt.Printf("nginx    added latency: p50 %s  p99 %s;  throughput vs direct %.2f\n",
				(n.p50 - d.p50).Round(time.Microsecond), (n.p99 - d.p99).Round(time.Microsecond), n.rps/d.rps)
			if k != paced { // paced: req/s is the pacing's
				fmt.Printf("RATIO throughput spillway/nginx = %.2f (goal >= 1.00)\n", s.rps/n.rps)
			}
			if n.cpuPerReq > 0 {
				fmt.Printf("RATIO proxy CPU per request nginx/spillway = %.2f (capacity ratio at equal CPU; goal >= 1.00%s)\n",
					float64(n.cpuPerReq)/float64(s.cpuPerReq), spreadNote(acc["nginx"], acc["spillway"]))
			}
			loop := "closed loop at saturation"
			if k == paced {
				loop = "closed loop, paced streams"
			}
			fmt.Printf("RATIO p99 added spillway/nginx = %s / %s (goal spillway <= nginx; %s)\n",
				(s.p99 - d.p99).Round(time.Microsecond), (n.p99 - d.p99).Round(time.Microsecond), loop)
		}
		if b, ok := res["baseline"]; ok && b.cpuPerReq > 0 {
			fmt.Printf("RATIO proxy CPU per request baseline/spillway = %.2f (above 1: the change saves CPU%s)\n",
				float64(b.cpuPerReq)/float64(s.cpuPerReq), spreadNote(acc["baseline"], acc["spillway"]))
		}
		if n, ok := res["net/http"]; ok && n.cpuPerReq > 0 {
			fmt.Printf("RATIO proxy CPU per request spillway/net-http-server = %.2f (the saving of the gateway's own HTTP servers)\n",
				float64(s.cpuPerReq)/float64(n.cpuPerReq))
		}
		if o.load > 0 && k != paced {
			slowest := 0.0
			for _, t := range targets[1:] {
				if r := res[t.name].rps; slowest == 0 || r < slowest {
					slowest = r
				}
			}
			equalLoad(ctx, o, targets, k, o.load*slowest)
		}
	}

	if profileDone != nil {
		if err := <-profileDone; err != nil {
			return err
		}
		fmt.Printf("\ngateway CPU profile written to %s (go tool pprof -top bin/spillway-gateway %s)\n", o.profile, o.profile)
	}

	if o.phases["memory"] {
		memory(ctx, o, gwAddr, gwPID, ngSlowAddr, nginxPIDs)
	}
	if !o.phases["quality"] {
		return nil
	}
	fmt.Printf("\n== routing quality: unequal load, %s per policy ==\n", o.quality)
	return quality(ctx, o.quality)
}

// equalLoad measures the latency of every target at the same offered rate:
// Poisson arrivals from a fixed seed (the same schedule for every target and
// round), open loop, so each target sees the same traffic whatever its speed.
// A closed loop at saturation compares latencies poorly: with c clients the
// mean latency is c/throughput there, and its tail is the queue in front of
// the busiest CPU (here the load generator's and engine's).
func equalLoad(ctx context.Context, o options, targets []target, k traffic, rate float64) {
	if rate < 1 {
		fmt.Printf("-- equal load: skipped, a target served %.1f req/s at saturation --\n", rate/o.load)
		return
	}
	slice := o.duration / time.Duration(o.rounds)
	schedule := poisson(rate, slice, 1)
	fmt.Printf("-- equal load: %.0f req/s offered to every target (%.2f of the slowest proxy's saturated req/s), Poisson arrivals, open loop, %d connections --\n",
		rate, o.load, o.conns)
	for _, t := range targets {
		warm := poisson(rate, 300*time.Millisecond, 2)
		runRate(ctx, t.url, k, warm, o.conns, &samples{})
	}
	acc := takeTurns(targets, o.rounds, func(t target, s *samples) {
		runRate(ctx, t.url, k, schedule, o.conns, s)
	})
	res := map[string]result{}
	for _, t := range targets {
		a := acc[t.name]
		r := a.result()
		res[t.name] = r
		cpu := ""
		if t.pids != nil && len(a.lat) > 0 {
			busy := float64(a.cpuTicks) / procstat.ClockTicks / a.elapsed.Seconds() / float64(o.workers)
			cpu = fmt.Sprintf("  proxy busy %.0f%% of %d CPU", 100*busy, o.workers)
		}
		fmt.Printf("%-9s %9.0f req/s  p50 %8s  p99 %8s  errors %d%s\n", t.name, r.rps, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.errors, cpu)
		if a.firstErr != nil {
			fmt.Printf("%-9s first error: %v\n", "", a.firstErr)
		}
	}
	d := res["direct"]
	for _, t := range targets[1:] {
		r := res[t.name]
		fmt.Printf("%-9s added latency: p50 %s  p99 %s\n", t.name, (r.p50 - d.p50).Round(time.Microsecond), (r.p99 - d.p99).Round(time.Microsecond))
	}
	if n, ok := res["nginx"]; ok {
		s := res["spillway"]
		fmt.Printf("equal-load p99 added spillway/nginx = %s / %s (the load generator's own tail is in both: compare with direct's)\n",
			(s.p99 - d.p99).Round(time.Microsecond), (n.p99 - d.p99).Round(time.Microsecond))
	}
}

// takeTurns runs every target in turn, rounds times, adding each run's
// samples and the proxy's CPU time to the target's.
func takeTurns(targets []target, rounds int, run func(target, *samples)) map[string]*samples {
	acc := map[string]*samples{}
	for _, t := range targets {
		acc[t.name] = &samples{}
	}
	for r := range rounds {
		// Each round starts with the next target: none always follows the
		// same one (the load generator's garbage, the engine's state).
		for i := range targets {
			t := targets[(r+i)%len(targets)]
			s := acc[t.name]
			before, n := cpuTicks(t.pids), len(s.lat)
			run(t, s)
			ticks := cpuTicks(t.pids) - before
			s.cpuTicks += ticks
			s.rounds = append(s.rounds, round{requests: len(s.lat) - n, ticks: ticks})
		}
	}
	return acc
}

// round is one target's turn: requests answered, CPU ticks of its processes.
type round struct {
	requests int
	ticks    int64
}

// spread is the median, least and greatest of the per-round ratios of a's
// CPU per request to b's (rounds in which either answered nothing or used
// no CPU are left out): how far a run's ratio is from noise.
func spread(a, b *samples) (median, lo, hi float64, ok bool) {
	var rs []float64
	for i := range min(len(a.rounds), len(b.rounds)) {
		x, y := a.rounds[i], b.rounds[i]
		if x.requests == 0 || y.requests == 0 || x.ticks == 0 || y.ticks == 0 {
			continue
		}
		rs = append(rs, (float64(x.ticks)/float64(x.requests))/(float64(y.ticks)/float64(y.requests)))
	}
	if len(rs) == 0 {
		return 0, 0, 0, false
	}
	sort.Float64s(rs)
	return rs[len(rs)/2], rs[0], rs[len(rs)-1], true
}

// spreadNote prints spread's figures for a ratio line.
func spreadNote(a, b *samples) string {
	m, lo, hi, ok := spread(a, b)
	if !ok {
		return ""
	}
	return fmt.Sprintf("; rounds: median %.2f, %.2f–%.2f", m, lo, hi)
}

// poisson is the send times, from the start, of Poisson arrivals at rate
// per second for d, from a fixed seed.
func poisson(rate float64, d time.Duration, seed uint64) []time.Duration {
	rng := rand.New(rand.NewPCG(seed, 0x5b111))
	var out []time.Duration
	for t := 0.0; ; {
		t += rng.ExpFloat64() / rate
		at := time.Duration(t * float64(time.Second))
		if at >= d {
			return out
		}
		out = append(out, at)
	}
}

// runRate sends requests at the times of schedule over conns connections
// and adds to acc. Open loop: a request's latency counts from its release,
// including any wait for a free connection, so a slow answer does not hold
// the next ones back unseen (no coordinated omission).
func runRate(ctx context.Context, url string, k traffic, schedule []time.Duration, conns int, acc *samples) {
	addr, req := leanTarget(url, k)
	released := make(chan time.Time, len(schedule))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			var mine []time.Duration
			var bad int
			var first error
			for at := range released {
				if err := leanPost(ctx, addr, req); err != nil {
					bad++
					first = cmp.Or(first, err)
					continue
				}
				mine = append(mine, time.Since(at))
			}
			mu.Lock()
			acc.lat = append(acc.lat, mine...)
			acc.errors += bad
			acc.firstErr = cmp.Or(acc.firstErr, first)
			mu.Unlock()
		})
	}
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
send:
	for _, at := range schedule {
		if wait := time.Until(start.Add(at)); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				break send
			}
		}
		released <- time.Now()
	}
	close(released)
	wg.Wait()
	acc.elapsed += time.Since(start)
}

// memory opens o.streams slow streams through the gateway (and nginx) and
// reports the RSS.
func memory(ctx context.Context, o options, gwAddr string, gwPID int, ngSlowAddr string, nginxPIDs func() []int) {
	fmt.Printf("\n== memory: %d concurrent streams ==\n", o.streams)
	base := rssKB(gwPID)
	peak, ok := holdStreams(ctx, "http://"+gwAddr, o.streams, func() int { return rssKB(gwPID) })
	fmt.Printf("spillway RSS idle %.1f MB, peak with %d/%d streams open %.1f MB (goal <= 100 MB)\n",
		float64(base)/1024, ok, o.streams, float64(peak)/1024)
	if nginxPIDs != nil {
		sum := func() int {
			t := 0
			for _, p := range nginxPIDs() {
				t += rssKB(p)
			}
			return t
		}
		nbase := sum()
		npeak, nok := holdStreams(ctx, "http://"+ngSlowAddr, o.streams, sum)
		fmt.Printf("nginx    RSS idle %.1f MB, peak with %d/%d streams open %.1f MB (all processes)\n",
			float64(nbase)/1024, nok, o.streams, float64(npeak)/1024)
	}
}

type target struct {
	name, url string
	// pids of the proxy's processes (nil: not measured)
	pids func() []int
}

type result struct {
	rps       float64
	p50, p99  time.Duration
	errors    int
	cpuPerReq time.Duration
}

var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4096, MaxIdleConns: 4096, DisableCompression: true}}

const (
	plainBody  = `{"model":"bench","messages":[{"role":"user","content":"hello"}],"max_tokens":16}`
	streamBody = `{"model":"bench","messages":[{"role":"user","content":"hello"}],"max_tokens":16,"stream":true}`
	// pacedBody asks the lean engine (by OpenAI's end-user field, passed
	// through by both proxies) to space its events.
	pacedBody = `{"model":"bench","messages":[{"role":"user","content":"hello"}],"max_tokens":16,"stream":true,"user":"paced"}`
)

// traffic is a throughput phase's kind of request.
type traffic int

const (
	plain  traffic = iota // a chat completion, whole
	stream                // 16 events, written back to back
	paced                 // 16 events, -paced-itl apart: a token stream as an engine sends it
)

func (k traffic) String() string { return [...]string{"plain", "stream", "paced"}[k] }

func (k traffic) body() string { return [...]string{plainBody, streamBody, pacedBody}[k] }

// describe is the phase's heading.
func (k traffic) describe(itl time.Duration) string {
	switch k {
	case stream:
		return "streaming (16 events)"
	case paced:
		return fmt.Sprintf("streaming, paced (16 events %s apart, as an engine sends tokens: the per-event cost; req/s is the pacing's)", itl)
	}
	return "non-streaming"
}

// leanTarget is the host:port of url (http://host:port) and the request
// the throughput phases send it.
func leanTarget(url string, k traffic) (string, []byte) {
	addr := strings.TrimPrefix(url, "http://")
	return addr, leanRequest(addr, k.body())
}

// one sends a request and reads the whole answer.
func one(ctx context.Context, url string, body string) (time.Duration, time.Duration, error) {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	br := bufio.NewReader(resp.Body)
	_, err = br.ReadByte()
	ttft := time.Since(start)
	if err != nil {
		return 0, 0, err
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return 0, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	return ttft, time.Since(start), nil
}

// samples accumulates the latencies of several load slices.
type samples struct {
	lat      []time.Duration
	errors   int
	firstErr error // the first error, for the report
	elapsed  time.Duration
	cpuTicks int64
	rounds   []round // per turn, when taken in turns
}

func (s *samples) result() result {
	r := result{errors: s.errors}
	if s.elapsed > 0 {
		r.rps = float64(len(s.lat)) / s.elapsed.Seconds()
	}
	r.p50, r.p99 = pct(s.lat, 0.50), pct(s.lat, 0.99)
	return r
}

// load runs c clients in a closed loop for d.
func load(ctx context.Context, url string, k traffic, c int, d time.Duration) result {
	var s samples
	runLoad(ctx, url, k, c, d, &s)
	return s.result()
}

// runLoad runs c clients in a closed loop for d and adds to acc.
func runLoad(ctx context.Context, url string, k traffic, c int, d time.Duration, acc *samples) {
	addr, req := leanTarget(url, k)
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for range c {
		wg.Go(func() {
			var mine []time.Duration
			var bad int
			var first error
			deadline, _ := ctx.Deadline()
			for ctx.Err() == nil {
				start := time.Now()
				if err := leanPost(ctx, addr, req); err != nil {
					// Cut by the end of the slice (the context's timer may
					// fire after the connection's deadline): not an error.
					if ctx.Err() == nil && time.Until(deadline) > time.Millisecond {
						bad++
						first = cmp.Or(first, err)
					}
					continue
				}
				mine = append(mine, time.Since(start))
			}
			mu.Lock()
			acc.lat = append(acc.lat, mine...)
			acc.errors += bad
			acc.firstErr = cmp.Or(acc.firstErr, first)
			mu.Unlock()
		})
	}
	wg.Wait()
	acc.elapsed += time.Since(start)
}

func pct(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

// holdStreams opens n slow streams at once and samples rss while they are
// all open; it returns the peak and how many streams got their first event.
func holdStreams(ctx context.Context, url string, n int, rss func() int) (int, int) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	body := `{"model":"slow","messages":[{"role":"user","content":"hello"}],"max_tokens":60,"stream":true}`
	var opened atomic.Int64
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions", strings.NewReader(body))
			resp, err := client.Do(req)
			if err != nil {
				return
			}
			defer func() { _ = resp.Body.Close() }()
			br := bufio.NewReader(resp.Body)
			if _, err := br.ReadString('\n'); err != nil {
				return
			}
			opened.Add(1)
			<-release
			_, _ = io.Copy(io.Discard, br)
		})
	}
	peak := 0
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && opened.Load() < int64(n) {
		peak = max(peak, rss())
		time.Sleep(50 * time.Millisecond)
	}
	for range 10 { // all open: sample a little longer
		peak = max(peak, rss())
		time.Sleep(50 * time.Millisecond)
	}
	close(release)
	wg.Wait()
	return peak, int(opened.Load())
}

// cpuTicks sums user+system time of the processes.
func cpuTicks(pids func() []int) int64 {
	if pids == nil {
		return 0
	}
	var total int64
	for _, pid := range pids() {
		if t, err := procstat.CPUTicks(strconv.Itoa(pid)); err == nil {
			total += t
		}
	}
	return total
}

func rssKB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.Atoi(f[0])
				return n
			}
		}
	}
	return 0
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String(), nil
}

func waitUp(ctx context.Context, url string) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if resp, err := http.Get(url); err == nil {
			_ = resp.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not come up", url)
}

// startGateway runs the real binary with a static config: the bench service
// on the engine, and a "slow" service (for the memory phase) on slowAddr.
func startGateway(ctx context.Context, o options, bin, dir, engineAddr, slowAddr string, withAdmin bool, extra ...string) (string, string, int, func(), error) {
	svcs := []routing.Service{
		{Namespace: "default", Name: "bench", Model: "bench", Endpoints: []routing.Endpoint{{Address: engineAddr, Pool: "idc"}}},
		{Namespace: "default", Name: "slow", Model: "slow", Endpoints: []routing.Endpoint{{Address: slowAddr, Pool: "idc"}}},
	}
	cfg := filepath.Join(dir, "gateway.json")
	b, _ := json.Marshal(svcs)
	if err := os.WriteFile(cfg, b, 0o600); err != nil {
		return "", "", 0, nil, err
	}
	addr, err := freePort()
	if err != nil {
		return "", "", 0, nil, err
	}
	admin := ""
	if withAdmin {
		if admin, err = freePort(); err != nil {
			return "", "", 0, nil, err
		}
	}
	cmd := pinned(ctx, o.proxyCPUs, bin, append([]string{"--static-config", cfg, "--listen", addr, "--admin-listen", admin, "--seed", "1", "-v", "0"}, extra...)...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(o.workers))
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return "", "", 0, nil, fmt.Errorf("starting %s (build it with: go build -o bin/ ./cmd/spillway-gateway): %w", bin, err)
	}
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}
	if err := waitUp(ctx, "http://"+addr+"/healthz"); err != nil {
		stop()
		return "", "", 0, nil, err
	}
	return addr, admin, cmd.Process.Pid, stop, nil
}

// fetchProfile saves the answer of a /debug/pprof/profile URL.
func fetchProfile(ctx context.Context, url, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("CPU profile: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("CPU profile: %s", resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("CPU profile: %w", err)
	}
	return os.WriteFile(file, b, 0o644)
}

// pinned runs bin on the CPUs given (a taskset list), or anywhere if empty.
// taskset execs the program: the process id is the program's.
func pinned(ctx context.Context, cpus, bin string, args ...string) *exec.Cmd {
	if cpus == "" {
		return exec.CommandContext(ctx, bin, args...)
	}
	return exec.CommandContext(ctx, "taskset", append([]string{"-c", cpus, bin}, args...)...)
}

// countCPUs counts the CPUs of a taskset list ("1", "0,2", "2-3").
func countCPUs(list string) int {
	n := 0
	for _, part := range strings.Split(list, ",") {
		lo, hi, found := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(strings.TrimSpace(lo))
		b := a
		var err2 error
		if found {
			b, err2 = strconv.Atoi(strings.TrimSpace(hi))
		}
		if err1 == nil && err2 == nil && b >= a {
			n += b - a + 1
		}
	}
	return max(n, 1)
}

const nginxConf = `worker_processes %[6]d;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_buffering off;
  proxy_read_timeout 600s;
  upstream engine { server %[2]s; keepalive 512; }
  upstream slow { server %[4]s; keepalive 512; }
  server { listen %[3]s; location / { proxy_pass http://engine; } }
  server { listen %[5]s; location / { proxy_pass http://slow; } }
}
`

// startNginx runs nginx on 127.0.0.1 in front of the engine (addr) and of
// the slow engine (slowProxy), with keep-alive upstreams and no buffering.
func startNginx(ctx context.Context, o options, dir, engineAddr, slowAddr string) (addr, slowProxy string, pids func() []int, stop func(), err error) {
	if addr, err = freePort(); err != nil {
		return
	}
	if slowProxy, err = freePort(); err != nil {
		return
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err = os.WriteFile(conf, []byte(fmt.Sprintf(nginxConf, dir, engineAddr, addr, slowAddr, slowProxy, o.workers)), 0o600); err != nil {
		return
	}
	cmd := pinned(ctx, o.proxyCPUs, o.nginxBin, "-c", conf, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-g", "daemon off;")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err = cmd.Start(); err != nil {
		err = fmt.Errorf("starting nginx (hack/bench-gateway/bench.sh installs it): %w", err)
		return
	}
	stop = func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}
	if err = waitUp(ctx, "http://"+addr+"/health"); err != nil {
		stop()
		err = errors.Join(err, errors.New(stderr.String()))
		return
	}
	pids = func() []int {
		out := []int{cmd.Process.Pid}
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
		for _, f := range strings.Fields(string(b)) {
			if p, err := strconv.Atoi(f); err == nil {
				out = append(out, p)
			}
		}
		return out
	}
	return addr, slowProxy, pids, stop, nil
}

// quality compares Spillway's balancing with round robin on four engine
// simulators (pkg/engine/server, the vLLM performance model) of unequal
// load: three A100s serving a 7B model with batches of 8, and one V100
// serving a 20B (gptq) model with batches of 4 (an older, smaller replica,
// about 1/5 of an A100's capacity); two of the A100s carry background
// traffic that does not pass through this gateway (seen only through the
// engines' scraped queue and KV use). Arrivals are open-loop at a fixed
// rate, about 3/4 of what the engines can take.
func quality(ctx context.Context, d time.Duration) error {
	type eng struct {
		addr string
	}
	specs := []struct {
		gpu    string
		params float64
		argv   []string
	}{
		{"a100", 7, []string{"--max-num-seqs", "8"}},
		{"v100", 20, []string{"--max-num-seqs", "4", "--quantization", "gptq"}},
		{"a100", 7, []string{"--max-num-seqs", "8"}},
		{"a100", 7, []string{"--max-num-seqs", "8"}},
	}
	var engines []eng
	for _, sp := range specs {
		settings := enginesim.DefaultSettings()
		settings.GPU, settings.ModelParamsBillions, settings.StartupDelay, settings.GracePeriod = sp.gpu, sp.params, 0, time.Second
		cfg, _, err := enginesim.BuildConfig(append([]string{"vllm", "serve", "m", "--served-model-name", "q"}, sp.argv...), settings)
		if err != nil {
			return err
		}
		s, err := server.New(cfg, server.WithLogger(logr.Discard()))
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		sctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { _ = s.Serve(sctx, ln); close(done) }()
		defer func() { stop(); <-done }()
		engines = append(engines, eng{ln.Addr().String()})
	}
	var eps []routing.Endpoint
	for _, e := range engines {
		eps = append(eps, routing.Endpoint{Address: e.addr, Pool: "idc"})
	}
	ttfts := map[balancer.Algorithm]time.Duration{}
	for _, alg := range []balancer.Algorithm{balancer.RoundRobin, balancer.LeastRequest} {
		time.Sleep(time.Second) // the previous phase's cancelled requests leave the engines
		g := gateway.New(gateway.Options{Domain: "example.com", ScrapeInterval: 200 * time.Millisecond, Log: logr.Discard()})
		g.Update([]routing.Service{{Namespace: "default", Name: "q", Model: "q", Endpoints: eps, Policy: balancer.Policy{Algorithm: alg}}})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		gctx, stopGW := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { _ = g.Serve(gctx, ln, nil, 5*time.Second); close(done) }()
		url := "http://" + ln.Addr().String()

		pctx, cancel := context.WithTimeout(ctx, d)
		var wg sync.WaitGroup
		// Background load straight at engines 2 and 3 (another gateway's users).
		for _, e := range engines[2:] {
			for range 4 {
				wg.Go(func() {
					for pctx.Err() == nil {
						_, _, _ = one(pctx, "http://"+e.addr, `{"model":"q","messages":[{"role":"user","content":"background"}],"max_tokens":20,"ignore_eos":true}`)
					}
				})
			}
		}
		// Open-loop arrivals through the gateway at a fixed rate.
		var mu sync.Mutex
		var lat []time.Duration
		var errs atomic.Int64
		rate := 50.0 // req/s
		tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	loop:
		for {
			select {
			case <-pctx.Done():
				break loop
			case <-tick.C:
				wg.Go(func() {
					ttft, _, err := one(pctx, url, `{"model":"q","messages":[{"role":"user","content":"hello"}],"max_tokens":20,"ignore_eos":true,"stream":true}`)
					if err != nil {
						if pctx.Err() == nil {
							errs.Add(1)
						}
						return
					}
					mu.Lock()
					lat = append(lat, ttft)
					mu.Unlock()
				})
			}
		}
		tick.Stop()
		wg.Wait()
		cancel()
		stopGW()
		<-done
		ttfts[alg] = pct(lat, 0.99)
		fmt.Printf("%-14s requests %5d  TTFT p50 %8s  p99 %8s  errors %d\n", alg, len(lat),
			pct(lat, 0.5).Round(time.Millisecond), ttfts[alg].Round(time.Millisecond), errs.Load())
	}
	rr, sp := ttfts[balancer.RoundRobin], ttfts[balancer.LeastRequest]
	if rr > 0 {
		fmt.Printf("RATIO TTFT p99 spillway/round-robin = %.2f (goal <= 0.33)\n", float64(sp)/float64(rr))
	}
	return nil
}
