package simlet

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/pkg/engine/enginesim"
)

// seedCommand is the seed's container command line, as KServe runs it.
func seedCommand(port int) []string {
	return []string{"sh", "-c", fmt.Sprintf("python3 -m vllm.entrypoints.openai.api_server --port %d --trust-remote-code "+
		"--served-model-name qwen --model /mnt/models/Qwen --gpu-memory-utilization 0.95 --quantization gptq --max-model-len=6144", port)}
}

// podAddr picks a pod address on loopback and a free port on it.
func podAddr(t *testing.T, ip string) int {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func enginePod(name string, command []string, loadDelay string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name),
			Annotations: map[string]string{AnnotationLoadDelay: loadDelay}},
		Spec: corev1.PodSpec{NodeName: "gpu-0", Containers: []corev1.Container{{Name: "kserve-container", Image: "vllm/vllm-openai", Command: command}}},
	}
}

func testSettings() enginesim.Settings {
	s := enginesim.DefaultSettings()
	s.GPU = "h100" // replaced by the node's V100
	return s
}

func stopRunner(t *testing.T, r Runner) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = r.Stop(ctx)
}

func chat(ctx context.Context, base string, body string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
}

func TestEngineRuntimeServesChatOnPodIPAfterLoad(t *testing.T) {
	const ip = "127.9.0.2"
	port := podAddr(t, ip)
	pod := enginePod("chat", seedCommand(port), "400ms")
	started := time.Now()
	r, err := EngineRuntime{Settings: testSettings()}.Start(context.Background(), pod, ip, GPU{Model: "V100", Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer stopRunner(t, r)
	if g := r.(*engineRunner).srv.Config().Engine.GPU.Name; g != "V100-32GB" {
		t.Errorf("engine GPU profile %q, want the node's V100-32GB", g)
	}
	base := "http://" + net.JoinHostPort(ip, strconv.Itoa(port))

	// Loading: not Ready, /health 503.
	if r.Ready() {
		t.Error("Ready before the load delay")
	}
	resp, err := http.Get(base + "/health")
	if err != nil {
		t.Fatalf("the engine does not listen on the pod's address: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/health while loading: %s, want 503", resp.Status)
	}
	for !r.Ready() {
		if time.Since(started) > 10*time.Second {
			t.Fatal("not Ready 10s after a 400ms load delay")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d := time.Since(started); d < 400*time.Millisecond {
		t.Errorf("Ready after %s, before the 400ms load delay", d)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err = chat(ctx, base, `{"model":"qwen","messages":[{"role":"user","content":"Hello"}],"max_tokens":8}`)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Model   string `json:"model"`
		Choices []struct {
			Message      struct{ Content string } `json:"message"`
			FinishReason string                   `json:"finish_reason"`
		} `json:"choices"`
		Usage struct {
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("chat completion: %s %s", resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if out.Model != "qwen" || len(out.Choices) != 1 || out.Choices[0].Message.Content == "" || out.Usage.CompletionTokens != 8 {
		t.Errorf("answer %+v", out)
	}
	if sm := r.SMUtil(); !(sm > 0 && sm <= 100) {
		t.Errorf("SM utilisation right after a request: %v, want in (0,100]", sm)
	}
	select {
	case <-r.Done():
		t.Fatalf("the run ended: %v", r.Err())
	default:
	}
}

// stream starts a streaming chat completion and returns its reader once the
// first token arrived.
func stream(t *testing.T, ctx context.Context, base string, tokens int) *bufio.Reader {
	t.Helper()
	resp, err := chat(ctx, base, fmt.Sprintf(`{"model":"qwen","messages":[{"role":"user","content":"Tell me"}],"max_tokens":%d,"ignore_eos":true,"stream":true}`, tokens))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream: %s %s", resp.Status, b)
	}
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		if strings.Contains(line, `"content":"`) && !strings.Contains(line, `"content":""`) {
			return br
		}
	}
}

// rest reads a stream to its end: content chunks seen and whether [DONE] came.
func rest(br *bufio.Reader) (chunks int, done bool, err error) {
	for {
		line, err := br.ReadString('\n')
		if strings.HasPrefix(line, "data: [DONE]") {
			return chunks, true, nil
		}
		if strings.Contains(line, `"content":"`) {
			chunks++
		}
		if err != nil {
			return chunks, false, err
		}
	}
}

func readyEngine(t *testing.T, name, ip string) (Runner, string) {
	t.Helper()
	port := podAddr(t, ip)
	r, err := EngineRuntime{Settings: testSettings()}.Start(context.Background(), enginePod(name, seedCommand(port), "0s"), ip, GPU{Model: "V100", Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !r.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("engine not Ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return r, "http://" + net.JoinHostPort(ip, strconv.Itoa(port))
}

func TestEngineRunnerStopLetsStreamsFinish(t *testing.T) {
	r, base := readyEngine(t, "drain", "127.9.0.3")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// 40 tokens on the V100 model: about half a second.
	br := stream(t, ctx, base, 40)
	stopped := make(chan error, 1)
	go func() {
		sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer scancel()
		stopped <- r.Stop(sctx)
	}()
	// New connections are refused once the stop began.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections 5s after Stop")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if r.Ready() {
		t.Error("Ready while stopping")
	}
	chunks, done, err := rest(br)
	if !done || chunks != 39 {
		t.Errorf("in-flight stream: %d more chunks, [DONE] %v, err %v; want 39 and [DONE]", chunks, done, err)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Stop after the stream finished: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not return after the stream finished")
	}
	select {
	case <-r.Done():
	default:
		t.Error("Done not closed after Stop")
	}
	if err := r.Err(); err != nil {
		t.Errorf("Err after a graceful stop: %v", err)
	}
}

func TestEngineRunnerStopCutsStreamsAtGraceEnd(t *testing.T) {
	r, base := readyEngine(t, "cut", "127.9.0.4")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// 3000 tokens: far longer than the 300ms grace period.
	br := stream(t, ctx, base, 3000)
	sctx, scancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer scancel()
	began := time.Now()
	err := r.Stop(sctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stop past the grace period: %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("Stop took %s with a 300ms grace period", d)
	}
	if _, done, _ := rest(br); done {
		t.Error("a stream longer than the grace period finished")
	}
}

func TestEngineRuntimeBadCommandCrashes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		command []string
		code    int32
		msg     string
	}{
		{"flag value vLLM refuses", []string{"vllm", "serve", "m", "--gpu-memory-utilization", "1.5"}, 2, "--gpu-memory-utilization"},
		{"context that does not fit the GPU", []string{"vllm", "serve", "m", "--port=0", "--max-model-len=100000000"}, 1, "less than max model len"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := EngineRuntime{Settings: testSettings()}.Start(context.Background(), enginePod("bad", tc.command, "0s"), "127.9.0.5", GPU{Model: "V100", Count: 1})
			if err != nil {
				t.Fatalf("Start: %v (a refused command line is a run that exits, not a start error)", err)
			}
			select {
			case <-r.Done():
			case <-time.After(time.Second):
				t.Fatal("run did not exit")
			}
			var ee *ExitError
			if !errors.As(r.Err(), &ee) || ee.Code != tc.code || ee.Reason != "Error" || !strings.Contains(ee.Message, tc.msg) {
				t.Errorf("exit %v, want code %d reason Error mentioning %q", r.Err(), tc.code, tc.msg)
			}
			if r.Ready() || r.SMUtil() != 0 {
				t.Error("a crashed run is Ready or busy")
			}
		})
	}
}

func TestEngineRuntimeNonVLLMPodsUsePortRuntime(t *testing.T) {
	pod := enginePod("web", []string{"nginx"}, "0s")
	pod.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: int32(podAddr(t, "127.9.0.6"))}}
	r, err := EngineRuntime{Settings: testSettings()}.Start(context.Background(), pod, "127.9.0.6", GPU{})
	if err != nil {
		t.Fatal(err)
	}
	defer stopRunner(t, r)
	if _, ok := r.(*portRunner); !ok {
		t.Errorf("runner %T, want the builtin port runtime", r)
	}
}

func TestGPUProfile(t *testing.T) {
	for model, want := range map[string]string{
		"V100": "v100", "v100": "v100", "Tesla-V100": "v100", "V100-16GB": "v100-16gb", "V100-32GB": "v100",
		"A100": "a100", "A100-80GB": "a100", "NVIDIA-H100": "h100", "A10": "a10", "T4": "", "": "",
	} {
		got, ok := GPUProfile(model)
		if got != want || ok != (want != "") {
			t.Errorf("GPUProfile(%q) = %q, %v; want %q", model, got, ok, want)
		}
	}
}

func TestCrashLoopDelay(t *testing.T) {
	base, max := 10*time.Second, 5*time.Minute
	for crashes, want := range []time.Duration{0, 0, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second,
		160 * time.Second, 300 * time.Second, 300 * time.Second} {
		if got := CrashLoopDelay(crashes, base, max); got != want {
			t.Errorf("CrashLoopDelay(%d) = %s, want %s", crashes, got, want)
		}
	}
	if got := CrashLoopDelay(1000, base, max); got != max {
		t.Errorf("CrashLoopDelay(1000) = %s, want the cap", got)
	}
}

// A pod whose vLLM command line the engine refuses: terminated with the exit
// code and the parser's message, restarted at once the first time, then in
// CrashLoopBackOff with the restart count growing as back-offs pass.
func TestReconcileCrashLoop(t *testing.T) {
	pod := enginePod("bad", []string{"vllm", "serve", "m", "--gpu-memory-utilization", "1.5"}, "0s")
	s, cl, _, clk := newTestSimlet(t, pod)
	s.runtime = EngineRuntime{Settings: testSettings()}
	ctx := context.Background()
	req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "default", Name: "bad"}}
	status := func() corev1.ContainerStatus {
		t.Helper()
		if _, err := s.Reconcile(ctx, req); err != nil {
			t.Fatal(err)
		}
		p := &corev1.Pod{}
		if err := cl.Get(ctx, req.NamespacedName, p); err != nil {
			t.Fatal(err)
		}
		if p.Status.Phase != corev1.PodRunning || condStatus(p.Status)[corev1.PodReady] != corev1.ConditionFalse {
			t.Errorf("phase %s ready %s, want Running and not Ready", p.Status.Phase, condStatus(p.Status)[corev1.PodReady])
		}
		return p.Status.ContainerStatuses[0]
	}
	cs := status()
	if cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 2 || cs.State.Terminated.Reason != "Error" ||
		!strings.Contains(cs.State.Terminated.Message, "gpu-memory-utilization") || cs.RestartCount != 0 {
		t.Fatalf("after the first run: %+v", cs)
	}
	// The first exit restarts at once; the second waits 10s.
	cs = status()
	if cs.RestartCount != 1 || cs.State.Waiting == nil || cs.State.Waiting.Reason != "CrashLoopBackOff" ||
		!strings.HasPrefix(cs.State.Waiting.Message, "back-off 10s restarting failed container=kserve-container pod=bad_default") ||
		cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ExitCode != 2 {
		t.Fatalf("after the second run: %+v", cs)
	}
	clk.Step(9 * time.Second)
	if cs = status(); cs.RestartCount != 1 || cs.State.Waiting == nil || cs.State.Waiting.Reason != "CrashLoopBackOff" {
		t.Fatalf("restarted during the back-off: %+v", cs)
	}
	clk.Step(time.Second)
	if cs = status(); cs.RestartCount != 2 || !strings.HasPrefix(cs.State.Waiting.Message, "back-off 20s") {
		t.Fatalf("after the 10s back-off: %+v", cs)
	}
}

// blockingRuntime's runners stop only when released (a long drain).
type blockingRuntime struct{ release chan struct{} }

func (b blockingRuntime) Start(context.Context, *corev1.Pod, string, GPU) (Runner, error) {
	return &blockingRunner{release: b.release, done: make(chan struct{})}, nil
}

type blockingRunner struct {
	release, done chan struct{}
	once          sync.Once
}

func (r *blockingRunner) Ready() bool           { return true }
func (r *blockingRunner) Done() <-chan struct{} { return r.done }
func (r *blockingRunner) Err() error            { return nil }
func (r *blockingRunner) SMUtil() float64       { return 0 }
func (r *blockingRunner) Stop(ctx context.Context) error {
	select {
	case <-r.release:
	case <-ctx.Done():
	}
	r.once.Do(func() { close(r.done) })
	return nil
}

// A deleted pod drains aside: its reconcile returns at once, so other pods
// are not held up for the grace period.
func TestReconcileDoesNotWaitForDrain(t *testing.T) {
	pod := testPod()
	pod.Finalizers = []string{"test/keep"} // keeps the object once deleted
	s, cl, _, _ := newTestSimlet(t, pod)
	release := make(chan struct{})
	s.runtime = blockingRuntime{release: release}
	ctx := context.Background()
	req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "default", Name: "p"}}
	if _, err := s.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	r := s.pods[pod.UID].runner.(*blockingRunner)
	s.mu.Unlock()
	if err := cl.Delete(ctx, pod, client.GracePeriodSeconds(30)); err != nil {
		t.Fatal(err)
	}
	returned := make(chan error, 1)
	go func() {
		var err error
		for range 3 {
			if _, err = s.Reconcile(ctx, req); err != nil {
				break
			}
		}
		returned <- err
	}()
	select {
	case err := <-returned:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("reconciling a draining pod waits for the drain")
	}
	select {
	case <-r.done:
		t.Fatal("stopped before the drain ended")
	default:
	}
	close(release)
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		t.Fatal("runner not stopped after the drain")
	}
}

// With WithFreeAddresses a node whose address another process holds (another
// local cluster's simlet) takes the next ordinal; its pods follow.
func TestFreeAddressesSkipsAddressesInUse(t *testing.T) {
	// Hold the first free node address (others may be held by a local
	// cluster running on this machine).
	f := 1
	var held net.Listener
	for ; f < 100; f++ {
		var err error
		if held, err = net.Listen("tcp", fmt.Sprintf("%s:%d", nodeIP(f), DCGMPort)); err == nil {
			break
		}
	}
	if held == nil {
		t.Fatal("no free node address among the first 100")
	}
	defer held.Close()
	s := New(nil, []spillwayv1alpha1.NodePool{gpuPool()}, WithFreeAddresses())
	s.nextN = f - 1 // the next node would take the held address
	defer func() { _ = s.shutdown(time.Second) }()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "gpu-0", Labels: map[string]string{spillwayv1alpha1.LabelNodePool: "gpu"}}}
	ns := s.trackNode(node)
	if ns.n <= f || ns.ip != nodeIP(ns.n) {
		t.Fatalf("node got ordinal %d address %s; want one past the held %s", ns.n, ns.ip, nodeIP(f))
	}
	if err := s.ServeDCGM(); err != nil {
		t.Fatalf("serving DCGM on the chosen address: %v", err)
	}
	ip, _ := s.podIP(ns)
	if want := fmt.Sprintf("127.%d.%d.2", 2+ns.n/250, ns.n%250); ip != want {
		t.Errorf("pod IP %s, want %s (the node's block)", ip, want)
	}
}
