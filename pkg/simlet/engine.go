package simlet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"

	"github.com/spillway-io/spillway/pkg/engine/enginesim"
	"github.com/spillway-io/spillway/pkg/engine/perf"
	"github.com/spillway-io/spillway/pkg/engine/server"
	"github.com/spillway-io/spillway/pkg/engine/vllmargs"
)

// ExitError is how a container run ended when it did not end cleanly: the
// exit code and reason a kubelet reports in a terminated container state.
type ExitError struct {
	Code    int32
	Reason  string
	Message string
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("exit code %d (%s): %s", e.Code, e.Reason, e.Message)
}

// EngineRuntime runs the vLLM engine simulator (pkg/engine/server) in-process
// for every container whose command line is vLLM's: it listens on the pod's
// own IP at the command line's --port, with the GPU profile of the node's GPU
// model. The pod is Ready once the simulated model load (Settings.StartupDelay,
// or the pod annotation simlet.spillway.io/load-delay) has passed and GET
// /health answers 200 on the pod's address. A command line the engine refuses
// (bad flag value, a --max-model-len that does not fit the GPU) makes the run
// exit at once with an ExitError (code 2 for a command line vLLM's parser
// would refuse, 1 otherwise), as the real process would.
//
// Pods without a vLLM container run on Fallback; the other containers of a
// vLLM pod that declare ports run on Fallback too.
type EngineRuntime struct {
	// Settings are the simulator's settings; Settings.GPU is the profile used
	// when the node's GPU model has none (see GPUProfile).
	Settings enginesim.Settings
	// Fallback runs pods and containers that are not vLLM (default:
	// PortRuntime with Settings.StartupDelay).
	Fallback Runtime
	// Logger receives the engines' logs (default: discarded).
	Logger logr.Logger
	// ProbeTimeout bounds the readiness probe of GET /health (default 1s).
	ProbeTimeout time.Duration
}

// GPUProfile maps a node's GPU model (the spillway.io/gpu-model label, e.g.
// "V100", "A100", "NVIDIA-H100") to a perf GPU profile name; ok is false when
// no profile matches.
func GPUProfile(model string) (string, bool) {
	m := strings.ToLower(strings.TrimSpace(model))
	for _, p := range []string{"nvidia-", "nvidia ", "tesla-", "tesla "} {
		m = strings.TrimPrefix(m, p)
	}
	if _, err := perf.LookupGPU(m); err == nil {
		return m, true
	}
	// "A100-80GB", "H100-SXM", "V100-32GB": the family's profile.
	fam, rest, _ := strings.Cut(m, "-")
	if fam == "v100" && strings.HasPrefix(rest, "16") {
		return "v100-16gb", true
	}
	if _, err := perf.LookupGPU(fam); err == nil {
		return fam, true
	}
	return "", false
}

// VLLMArgv is a container's command line (command then args) when it runs
// vLLM's OpenAI server, else nil.
func VLLMArgv(c *corev1.Container) []string {
	argv := append(append([]string(nil), c.Command...), c.Args...)
	if !IsVLLM(argv) {
		return nil
	}
	// sh -c "exec python3 -m vllm…": the shell's exec changes nothing here.
	if len(argv) >= 3 && (path.Base(argv[0]) == "sh" || path.Base(argv[0]) == "bash") && argv[1] == "-c" {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(argv[2]), "exec "); ok {
			argv = append([]string{argv[0], "-c", rest}, argv[3:]...)
		}
	}
	return argv
}

// Start implements Runtime.
func (r EngineRuntime) Start(ctx context.Context, pod *corev1.Pod, ip string, gpu GPU) (Runner, error) {
	fallback := r.Fallback
	if fallback == nil {
		fallback = PortRuntime{LoadDelay: r.Settings.StartupDelay}
	}
	var engineC *corev1.Container
	var others []corev1.Container
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		if engineC == nil && VLLMArgv(c) != nil {
			engineC = c
			continue
		}
		if len(c.Ports) > 0 {
			others = append(others, *c)
		}
	}
	if engineC == nil {
		return fallback.Start(ctx, pod, ip, gpu)
	}
	settings := r.Settings
	if s, ok := pod.Annotations[AnnotationLoadDelay]; ok {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("annotation %s: %q is not a duration", AnnotationLoadDelay, s)
		}
		settings.StartupDelay = d
	}
	if p, ok := GPUProfile(gpu.Model); ok {
		settings.GPU = p
	}
	// In-flight work ends when Stop's context does; the server's own grace
	// period is only a backstop.
	settings.GracePeriod = 24 * time.Hour
	log := r.Logger
	if log.GetSink() == nil {
		log = logr.Discard()
	}
	log = log.WithValues("pod", pod.Namespace+"/"+pod.Name, "container", engineC.Name)
	argv := VLLMArgv(engineC)
	args, _, err := vllmargs.Parse(argv)
	if err != nil {
		// vLLM's argument parser exits with 2.
		return exited(&ExitError{Code: 2, Reason: "Error", Message: err.Error()}), nil
	}
	cfg, warns, err := enginesim.BuildConfig(argv, settings)
	for _, w := range warns {
		log.V(1).Info("vLLM command line", "warning", string(w))
	}
	if err != nil {
		return exited(&ExitError{Code: 1, Reason: "Error", Message: err.Error()}), nil
	}
	srv, err := server.New(cfg, server.WithLogger(log))
	if err != nil {
		return exited(&ExitError{Code: 1, Reason: "Error", Message: err.Error()}), nil
	}
	addr := net.JoinHostPort(ip, strconv.Itoa(args.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("container %s: listening on %s: %w", engineC.Name, addr, err)
	}
	er := &engineRunner{
		srv: srv, ln: &trackingListener{Listener: ln, conns: map[net.Conn]struct{}{}},
		health: "http://" + addr + "/health", done: make(chan struct{}),
		probe: &http.Client{Timeout: r.ProbeTimeout, Transport: &http.Transport{DisableKeepAlives: true}},
	}
	if er.probe.Timeout <= 0 {
		er.probe.Timeout = time.Second
	}
	if len(others) > 0 {
		side := pod.DeepCopy()
		side.Spec.Containers = others
		sr, err := fallback.Start(ctx, side, ip, gpu)
		if err != nil {
			_ = ln.Close()
			return nil, err
		}
		er.sidecar = sr
	}
	serveCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	er.cancel = cancel
	go func() {
		err := srv.Serve(serveCtx, er.ln)
		if err != nil && !er.stopping.Load() {
			er.err = &ExitError{Code: 1, Reason: "Error", Message: err.Error()}
		}
		close(er.done)
	}()
	return er, nil
}

// exited is a run that ended as soon as it started.
func exited(err error) Runner {
	d := make(chan struct{})
	close(d)
	return &engineRunner{done: d, err: err}
}

type engineRunner struct {
	srv     *server.Server
	ln      *trackingListener
	health  string
	probe   *http.Client
	sidecar Runner
	cancel  context.CancelFunc

	done     chan struct{}
	err      error // set before done is closed
	stopping atomic.Bool
	once     sync.Once
	stopErr  error
}

// Ready is a readiness probe: the model has loaded and GET /health on the
// pod's address answers 200 (and every sidecar is ready).
func (e *engineRunner) Ready() bool {
	if e.srv == nil || e.stopping.Load() || !e.srv.Ready() {
		return false
	}
	select {
	case <-e.done:
		return false
	default:
	}
	if e.sidecar != nil && !e.sidecar.Ready() {
		return false
	}
	resp, err := e.probe.Get(e.health)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (e *engineRunner) Done() <-chan struct{} { return e.done }

func (e *engineRunner) Err() error {
	select {
	case <-e.done:
		return e.err
	default:
		return nil
	}
}

// SMUtil is the engine's SM utilisation (perf.Stats.SMUtilPercent).
func (e *engineRunner) SMUtil() float64 {
	if e.srv == nil {
		return 0
	}
	return e.srv.Stats().SMUtilPercent
}

// Stop stops accepting connections and lets requests in flight (streams
// included) finish until ctx ends; then their connections are closed.
func (e *engineRunner) Stop(ctx context.Context) error {
	e.once.Do(func() {
		if e.srv == nil {
			return
		}
		e.stopping.Store(true)
		var side chan error
		if e.sidecar != nil {
			side = make(chan error, 1)
			go func() { side <- e.sidecar.Stop(ctx) }()
		}
		e.cancel()
		select {
		case <-e.done:
		case <-ctx.Done():
			e.ln.closeConns()
			<-e.done
			e.stopErr = ctx.Err()
		}
		if side != nil {
			if err := <-side; err != nil && e.stopErr == nil {
				e.stopErr = err
			}
		}
	})
	return e.stopErr
}

// trackingListener remembers its open connections so that a stop whose grace
// period ended can cut them.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[tc] = struct{}{}
	l.mu.Unlock()
	return tc, nil
}

func (l *trackingListener) closeConns() {
	l.mu.Lock()
	conns := make([]net.Conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

type trackedConn struct {
	net.Conn
	l    *trackingListener
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	err := c.Conn.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
