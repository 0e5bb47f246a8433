package simlet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/spillway-io/spillway/pkg/engine/vllmargs"
)

// Runtime starts the containers of a pod.
type Runtime interface {
	// Start runs pod on ip. It returns once the pod's listeners are open; the
	// pod becomes Ready later (simulated model load).
	Start(ctx context.Context, pod *corev1.Pod, ip string, gpu GPU) (Runner, error)
}

// GPU is the GPU profile of the node a pod runs on.
type GPU struct {
	Model string
	Count int
}

// Runner is a running pod.
type Runner interface {
	// Ready reports whether the pod serves (its model is loaded).
	Ready() bool
	// Done is closed when the pod exited; Err tells why (nil: clean exit).
	Done() <-chan struct{}
	Err() error
	// Stop ends the pod gracefully: in-flight work may finish until ctx ends.
	Stop(ctx context.Context) error
	// SMUtil is the pod's current GPU SM utilisation in percent.
	SMUtil() float64
}

// IsVLLM reports whether a container's command line starts vLLM's OpenAI
// server (vllm serve, python -m vllm.entrypoints.openai.api_server, or either
// behind sh -c).
func IsVLLM(argv []string) bool {
	for _, a := range argv {
		if strings.Contains(a, "vllm") {
			return true
		}
	}
	return false
}

// AnnotationLoadDelay sets a pod's simulated model-load time (a Go duration)
// in the builtin runtime.
const AnnotationLoadDelay = "simlet.spillway.io/load-delay"

// PortRuntime is the builtin runtime: it listens on the pod IP at every
// declared container port (for a vLLM command line without declared ports,
// at its --port; a vLLM command line that does not parse fails to start) and answers GET /health (200 once loaded, 503
// before) and /metrics, so probes, Services and scrapes see a live endpoint.
// It is what pods without an engine command run on; the vLLM engine
// simulator plugs in as another Runtime.
type PortRuntime struct {
	// LoadDelay is the default simulated load time.
	LoadDelay time.Duration
}

// Start implements Runtime.
func (r PortRuntime) Start(ctx context.Context, pod *corev1.Pod, ip string, _ GPU) (Runner, error) {
	delay := r.LoadDelay
	if s, ok := pod.Annotations[AnnotationLoadDelay]; ok {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("annotation %s: %q is not a duration", AnnotationLoadDelay, s)
		}
		delay = d
	}
	pr := &portRunner{done: make(chan struct{}), loadedAt: time.Now().Add(delay)}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) {
		if !pr.Ready() {
			http.Error(w, "loading", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintf(w, "# TYPE simlet_pod_ready gauge\nsimlet_pod_ready %d\n", boolInt(pr.Ready()))
	})
	pr.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	var ports []int
	for _, c := range pod.Spec.Containers {
		declared := len(c.Ports) > 0
		for _, p := range c.Ports {
			ports = append(ports, int(p.ContainerPort))
		}
		if argv := append(append([]string(nil), c.Command...), c.Args...); IsVLLM(argv) {
			cfg, _, err := vllmargs.Parse(argv)
			if err != nil {
				return nil, fmt.Errorf("container %s: %w", c.Name, err)
			}
			if !declared {
				ports = append(ports, cfg.Port)
			}
		}
	}
	var lns []net.Listener
	for _, p := range ports {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
		if err != nil {
			for _, l := range lns {
				_ = l.Close()
			}
			return nil, fmt.Errorf("listening on %s:%d: %w", ip, p, err)
		}
		lns = append(lns, ln)
	}
	var wg sync.WaitGroup
	for _, ln := range lns {
		wg.Add(1)
		go func() { defer wg.Done(); _ = pr.srv.Serve(ln) }()
	}
	go func() { wg.Wait(); close(pr.done) }()
	if len(lns) == 0 {
		pr.noPorts = make(chan struct{})
		wg.Add(1)
		go func() { defer wg.Done(); <-pr.noPorts }()
	}
	return pr, nil
}

type portRunner struct {
	srv      *http.Server
	done     chan struct{}
	noPorts  chan struct{}
	loadedAt time.Time
	once     sync.Once
}

func (p *portRunner) Ready() bool           { return !time.Now().Before(p.loadedAt) }
func (p *portRunner) Done() <-chan struct{} { return p.done }
func (p *portRunner) Err() error            { return nil }
func (p *portRunner) SMUtil() float64       { return 0 }

func (p *portRunner) Stop(ctx context.Context) error {
	var err error
	p.once.Do(func() {
		if p.noPorts != nil {
			close(p.noPorts)
		}
		err = p.srv.Shutdown(ctx)
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			err = p.srv.Close()
		}
	})
	return err
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
