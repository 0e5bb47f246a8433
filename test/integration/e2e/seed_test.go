// Package e2e runs the seed walkthrough end to end, as a user types it, on the
// local hybrid cluster: `spillway up` (real etcd, kube-apiserver,
// kube-controller-manager with the HPA, spillway-scheduler, spillway-manager,
// spillway-metrics-adapter, spillway-gateway and the node simulator running
// the vLLM engine simulator), kubectl apply of the seed's ResourcePolicy,
// `spillway serve kserve` with the seed's flags, a chat completion through
// the gateway with the seed's Host header, `spillway bench` with the seed's
// hey flags, the spill-over to two elastic nodes, and the scale-in that
// removes the cloud replicas and nodes first.
//
// The delays are short (a cluster file with seconds-long provisioning and
// unneeded times, a short HPA sync period and downscale stabilisation) so
// the whole walkthrough runs in a few minutes.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// The seed's manifests and command lines, verbatim except for the
// ResourcePolicy's selector (see TestSeedWalkthrough) and the gateway address.
const (
	seedServe = `serve kserve --name=qwen-chat --image=registry.example.com/vllm:0.4.1 --scale-metric=DCGM_CUSTOM_PROCESS_SM_UTIL --scale-target=50 ` +
		`--min-replicas=1 --max-replicas=3 --gpus=1 --cpu=4 --memory=12Gi --data=llm-model:/mnt/models/Qwen`
	seedVLLM = `python3 -m vllm.entrypoints.openai.api_server --port 8080 --trust-remote-code --served-model-name qwen ` +
		`--model /mnt/models/Qwen --gpu-memory-utilization 0.95 --quantization gptq --max-model-len=6144`
	seedChat = `{"model":"qwen","messages":[{"role":"user","content":"你好"}],"max_tokens":512,"temperature":0.7,"top_p":0.9,"seed":10,"stop":["<|endoftext|>","<|im_end|>","<|im_start|>"]}`
	seedLoad = `{"model":"qwen","messages":[{"role":"user","content":"Tell me a story about the sea."}],"max_tokens":10,"temperature":0.7,"top_p":0.9,"seed":10}`
	seedHost = "qwen-chat-default.example.com"
	appLabel = "app=isvc.qwen-chat-predictor"
)

// portFlags are the port flags of `spillway up`; each gets a free port.
var portFlags = []string{"etcd-port", "etcd-peer-port", "apiserver-port", "kcm-port", "scheduler-port", "simlet-port",
	"manager-metrics-port", "manager-probe-port", "gateway-port", "gateway-admin-port", "metrics-adapter-port", "metrics-adapter-health-port"}

// cluster is one local cluster started by the test through the spillway CLI.
type cluster struct {
	t           *testing.T
	root        string
	stateDir    string
	clusterFile string
	ports       map[string]int
	cs          kubernetes.Interface
	start       time.Time
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// step logs a step of the walkthrough with the time since the start.
func (c *cluster) step(format string, args ...any) {
	c.t.Helper()
	c.t.Logf("[%6.1fs] %s", time.Since(c.start).Seconds(), fmt.Sprintf(format, args...))
}

// run runs a binary of the checkout (bin/spillway, bin/k8s-v1.37.2/kubectl)
// with the cluster's kubeconfig and returns its combined output.
func (c *cluster) run(timeout time.Duration, stdin string, bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.root, bin), args...)
	cmd.Dir = c.root
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.kubeconfig())
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *cluster) mustRun(timeout time.Duration, stdin string, bin string, args ...string) string {
	c.t.Helper()
	out, err := c.run(timeout, stdin, bin, args...)
	if err != nil {
		c.t.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, out)
	}
	return out
}

func (c *cluster) kubeconfig() string { return filepath.Join(c.stateDir, "kubeconfig") }

func (c *cluster) portArgs() []string {
	var args []string
	for _, name := range portFlags {
		args = append(args, "--"+name+"="+strconv.Itoa(c.ports[name]))
	}
	return args
}

// up runs `spillway up` with the test's state folder, ports and cluster file.
func (c *cluster) up() {
	c.t.Helper()
	args := append([]string{"up", "--no-build", "--state-dir=" + c.stateDir,
		"--cluster-file=" + c.clusterFile,
		"--hpa-sync-period=5s", "--hpa-downscale-stabilization=20s"}, c.portArgs()...)
	out := c.mustRun(4*time.Minute, "", "bin/spillway", args...)
	c.t.Logf("spillway up:\n%s", out)
	rc, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig())
	if err != nil {
		c.t.Fatal(err)
	}
	c.cs = kubernetes.NewForConfigOrDie(rc)
}

// down runs `spillway down` and reports processes left running.
func (c *cluster) down(wipe bool) {
	c.t.Helper()
	args := []string{"down", "--state-dir=" + c.stateDir, "--grace=20s"}
	if wipe {
		args = append(args, "--wipe")
	}
	out, err := c.run(3*time.Minute, "", "bin/spillway", args...)
	if err != nil {
		c.t.Errorf("spillway down: %v\n%s", err, out)
	}
}

// dumpLogs prints the tail of every process log when the test failed.
func (c *cluster) dumpLogs() {
	if !c.t.Failed() {
		return
	}
	logs, _ := filepath.Glob(filepath.Join(c.stateDir, "logs", "*.log"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		c.t.Logf("--- %s (tail)\n%s", filepath.Base(l), b)
	}
}

// eventually polls f every 500ms until it returns nil or timeout passes.
func (c *cluster) eventually(timeout time.Duration, what string, f func() error) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	began := time.Now()
	for {
		err := f()
		if err == nil {
			c.step("%s (%.1fs)", what, time.Since(began).Seconds())
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// placement is where a service's replicas are: pool id → pods, running and
// ready counts, and the elastic nodes.
type placement struct {
	byPool  map[string][]string // nodepool-id → pod names (bound pods)
	pending int
	ready   int
	total   int
}

func (p placement) String() string {
	return fmt.Sprintf("%d pods (%d ready, %d pending) %v", p.total, p.ready, p.pending, p.byPool)
}

const poolIDLabel = "alibabacloud.com/nodepool-id"

func (c *cluster) placement(ns, selector string) (placement, error) {
	ctx := context.Background()
	pods, err := c.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return placement{}, err
	}
	nodes, err := c.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return placement{}, err
	}
	pool := map[string]string{}
	for _, n := range nodes.Items {
		pool[n.Name] = n.Labels[poolIDLabel]
	}
	p := placement{byPool: map[string][]string{}}
	for _, pod := range pods.Items {
		if pod.DeletionTimestamp != nil {
			continue
		}
		p.total++
		if pod.Spec.NodeName == "" {
			p.pending++
			continue
		}
		p.byPool[pool[pod.Spec.NodeName]] = append(p.byPool[pool[pod.Spec.NodeName]], pod.Name)
		if podReady(&pod) {
			p.ready++
		}
	}
	return p, nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// elasticNodes lists the nodes of the elastic pool (id npxxxxxy).
func (c *cluster) elasticNodes() ([]string, error) {
	nodes, err := c.cs.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{LabelSelector: poolIDLabel + "=npxxxxxy"})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, n := range nodes.Items {
		names = append(names, n.Name)
	}
	slices.Sort(names)
	return names, nil
}

// chat sends the seed's request through the gateway with a Host header and
// returns the status and the parsed body.
func (c *cluster) chat(host, body string) (int, map[string]any, error) {
	req, err := http.NewRequest(http.MethodPost, "http://127.0.0.1:"+strconv.Itoa(c.ports["gateway-port"])+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Host = host
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Timeout: 60 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("body %q: %w", b, err)
	}
	return resp.StatusCode, v, nil
}

// completionText checks an OpenAI chat completion and returns its text.
func completionText(v map[string]any) (string, error) {
	choices, _ := v["choices"].([]any)
	if len(choices) != 1 {
		return "", fmt.Errorf("choices %v", v["choices"])
	}
	msg, _ := choices[0].(map[string]any)["message"].(map[string]any)
	text, _ := msg["content"].(string)
	if text == "" {
		return "", fmt.Errorf("empty message in %v", v)
	}
	usage, _ := v["usage"].(map[string]any)
	if n, _ := usage["completion_tokens"].(float64); n < 1 {
		return "", fmt.Errorf("usage %v", v["usage"])
	}
	return text, nil
}

func newCluster(t *testing.T) *cluster {
	if testing.Short() {
		t.Skip("starts the local cluster")
	}
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "bin", "k8s-v1.37.2", "kube-apiserver")); err != nil {
		t.Fatal("control plane not built: run `make k8s`")
	}
	// The binaries a user gets from `make build`.
	build := exec.Command("go", "build", "-o", filepath.Join(root, "bin")+"/", "./cmd/...")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/...: %v\n%s", err, out)
	}
	// The state folder (logs of every process) is kept when the test fails.
	stateDir, err := os.MkdirTemp("", "spillway-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("state and logs kept in %s", stateDir)
			return
		}
		os.RemoveAll(stateDir)
	})
	c := &cluster{t: t, root: root, stateDir: stateDir, clusterFile: shortDelays(t, root), ports: map[string]int{}, start: time.Now()}
	for _, name := range portFlags {
		c.ports[name] = freePort(t)
	}
	return c
}

// shortDelays writes the default cluster file (the seed's three pools) with
// the elastic pool's delays cut to seconds, and returns its path.
func shortDelays(t *testing.T, root string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "config", "clusters", "default.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	y := string(b)
	for _, r := range [][2]string{
		{"provisioningDelay: 8s", "provisioningDelay: 3s"},
		{"gpuDelay: 2s", "gpuDelay: 1s"},
		{"unneededTime: 1m", "unneededTime: 10s"},
		{"delayAfterScaleUp: 1m", "delayAfterScaleUp: 10s"},
	} {
		if !strings.Contains(y, r[0]) {
			t.Fatalf("config/clusters/default.yaml no longer says %q; update the e2e test's delays", r[0])
		}
		y = strings.Replace(y, r[0], r[1], 1)
	}
	path := filepath.Join(t.TempDir(), "cluster.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSeedWalkthrough is the seed scenario of the README, step by step.
func TestSeedWalkthrough(t *testing.T) {
	c := newCluster(t)
	t.Cleanup(func() {
		c.dumpLogs()
		c.down(!t.Failed()) // a failed run keeps its logs
	})
	c.up()
	c.step("cluster up")

	// The seed's ResourcePolicy. Its selector, app=isvc.qwen-predictor, does
	// not match the pods of a service named qwen-chat (KServe names them
	// isvc.qwen-chat-predictor); `spillway serve kserve` warns about it, and
	// the user fixes the selector.
	seedRP, err := os.ReadFile(filepath.Join(c.root, "config", "samples", "resourcepolicy-seed.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c.mustRun(time.Minute, string(seedRP), "bin/k8s-v1.37.2/kubectl", "apply", "-f", "-")
	c.step("seed ResourcePolicy applied verbatim")

	pvc, err := os.ReadFile(filepath.Join(c.root, "config", "samples", "model-pvc.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c.mustRun(time.Minute, string(pvc), "bin/k8s-v1.37.2/kubectl", "apply", "-f", "-")

	out := c.mustRun(time.Minute, "", "bin/spillway", append(strings.Fields(seedServe), seedVLLM)...)
	c.step("spillway serve kserve:\n%s", out)
	if !strings.Contains(out, "isvc.qwen-predictor") {
		t.Errorf("serve kserve did not warn that the ResourcePolicy qwen-chat selects no pod of the service:\n%s", out)
	}
	fixed := strings.Replace(string(seedRP), "app: isvc.qwen-predictor", "app: isvc.qwen-chat-predictor", 1)
	c.mustRun(time.Minute, fixed, "bin/k8s-v1.37.2/kubectl", "apply", "-f", "-")
	c.step("ResourcePolicy selector fixed to app=isvc.qwen-chat-predictor")

	// One replica, on the IDC node, ready.
	c.eventually(3*time.Minute, "1 replica ready on the IDC pool", func() error {
		p, err := c.placement("default", appLabel)
		if err != nil {
			return err
		}
		if p.total != 1 || p.ready != 1 || len(p.byPool["npxxxxxx"]) != 1 {
			return fmt.Errorf("placement %s", p)
		}
		return nil
	})

	// The seed's curl.
	c.eventually(time.Minute, "completion through the gateway with Host "+seedHost, func() error {
		code, v, err := c.chat(seedHost, seedChat)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("status %d: %v", code, v)
		}
		_, err = completionText(v)
		return err
	})

	// A second service in another namespace, on CPU (the control pool's
	// node): it is routed by its own Host and by its model name, and takes
	// no GPU from the seed's service.
	c.mustRun(time.Minute, "", "bin/k8s-v1.37.2/kubectl", "create", "namespace", "team-b")
	c.mustRun(time.Minute, "", "bin/spillway", "serve", "kserve", "-n", "team-b", "--name=llama", "--image=vllm/vllm-openai:latest",
		"--cpu=2", "--memory=4Gi", "--replicas=1", "--selector=alibabacloud.com/nodepool-id=npdefault",
		"vllm serve /models/llama --served-model-name llama-small --port 8000 --max-model-len 4096")
	c.eventually(3*time.Minute, "team-b/llama ready and answering by Host and by model", func() error {
		p, err := c.placement("team-b", "app=isvc.llama-predictor")
		if err != nil {
			return err
		}
		if p.ready != 1 || len(p.byPool["npdefault"]) != 1 {
			return fmt.Errorf("placement %s", p)
		}
		code, v, err := c.chat("llama-team-b.example.com", strings.Replace(seedChat, `"qwen"`, `"llama-small"`, 1))
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("by host: %d %v %v", code, v, err)
		}
		code, v, err = c.chat("127.0.0.1", strings.Replace(seedChat, `"qwen"`, `"llama-small"`, 1))
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("by model on the bare gateway host: %d %v %v", code, v, err)
		}
		return nil
	})

	// The seed's load: hey -z 2m -c 5 ... with spillway bench, here with 20
	// clients: the seed saw -c 5 push real V100s past 50% SM utilisation;
	// on a shared 2-core machine the simulated replicas idle between a
	// response and the next request, and -c 20 keeps three of them above
	// target. It runs in the background while the test watches the
	// spill-over; it stops by itself.
	benchOut := &bytes.Buffer{}
	benchCtx, stopBench := context.WithCancel(context.Background())
	bench := exec.CommandContext(benchCtx, filepath.Join(c.root, "bin", "spillway"), "bench", "-z", "2m", "-c", "20", "-m", "POST",
		"-host", seedHost, "-H", "Content-Type: application/json", "-d", seedLoad,
		"http://127.0.0.1:"+strconv.Itoa(c.ports["gateway-port"])+"/v1/chat/completions")
	bench.Cancel = func() error { return bench.Process.Signal(os.Interrupt) }
	bench.WaitDelay = 30 * time.Second
	bench.Stdout, bench.Stderr = benchOut, benchOut
	if err := bench.Start(); err != nil {
		t.Fatal(err)
	}
	benchDone := make(chan error, 1)
	go func() { benchDone <- bench.Wait() }()
	defer stopBench()
	c.step("spillway bench -z 2m -c 20 started")

	last := ""
	c.eventually(4*time.Minute, "3 replicas ready: 1 on the IDC node, 2 on 2 new elastic nodes", func() error {
		p, err := c.placement("default", appLabel)
		if err != nil {
			return err
		}
		nodes, err := c.elasticNodes()
		if err != nil {
			return err
		}
		if now := fmt.Sprintf("%s, elastic nodes %v", p, nodes); now != last {
			c.step("placement: %s", now)
			last = now
		}
		if p.total != 3 || p.ready != 3 || len(p.byPool["npxxxxxx"]) != 1 || len(p.byPool["npxxxxxy"]) != 2 || len(nodes) != 2 {
			return fmt.Errorf("placement %s, elastic nodes %v", p, nodes)
		}
		return nil
	})
	peakNodes, _ := c.elasticNodes()
	// The two cloud replicas are on two different nodes.
	p, _ := c.placement("default", appLabel)
	cloudPods := p.byPool["npxxxxxy"]
	onNode := map[string]bool{}
	for _, name := range cloudPods {
		pod, err := c.cs.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		onNode[pod.Spec.NodeName] = true
	}
	if len(onNode) != 2 {
		t.Errorf("cloud replicas share a node: %v", onNode)
	}
	idcPod := p.byPool["npxxxxxx"][0]

	// The IDC pool's cloud-edge link is cut while the load runs: its node
	// stops heartbeating, goes NotReady after the node monitor grace period
	// (20s here), its replica is marked not ready and the gateway sends the
	// load to the cloud replicas; no request fails. When the link is back,
	// the node and the replica are Ready again and take traffic.
	simlet := "http://127.0.0.1:" + strconv.Itoa(c.ports["simlet-port"])
	post := func(path string) {
		resp, err := http.Post(simlet+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s: %s", path, resp.Status)
		}
	}
	post("/faults/cut-pool?pool=gpu-v100-edge")
	c.step("IDC link cut")
	c.eventually(90*time.Second, "IDC node NotReady and its replica not ready", func() error {
		if c.nodeReady("gpu-v100-edge-0") {
			return fmt.Errorf("node still Ready")
		}
		pod, err := c.cs.CoreV1().Pods("default").Get(context.Background(), idcPod, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if podReady(pod) {
			return fmt.Errorf("pod %s still ready", idcPod)
		}
		return nil
	})
	time.Sleep(5 * time.Second) // traffic flows on the cloud replicas only
	post("/faults/restore-pool?pool=gpu-v100-edge")
	c.eventually(90*time.Second, "IDC link restored: node Ready and its replica ready", func() error {
		if !c.nodeReady("gpu-v100-edge-0") {
			return fmt.Errorf("node not Ready")
		}
		pod, err := c.cs.CoreV1().Pods("default").Get(context.Background(), idcPod, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !podReady(pod) {
			return fmt.Errorf("pod %s not ready", idcPod)
		}
		return nil
	})

	// The load stops.
	stopBench()
	select {
	case err := <-benchDone:
		c.step("bench stopped (%v):\n%s", err, benchOut.String())
	case <-time.After(45 * time.Second):
		t.Fatalf("bench did not stop on interrupt:\n%s", benchOut.String())
	}
	if !strings.Contains(benchOut.String(), "Summary:") || !strings.Contains(benchOut.String(), "[200]") {
		t.Errorf("bench output lacks hey's summary or 200 responses:\n%s", benchOut.String())
	}
	// Every request succeeded, through the spill-over and the cut link; the
	// only errors are the requests in flight when the bench was interrupted.
	report := benchOut.String()
	codes := report[strings.Index(report, "Status code distribution:"):]
	codes, _, _ = strings.Cut(codes, "\n\n")
	_, errs, _ := strings.Cut(report, "Error distribution:")
	for _, line := range strings.Split(strings.TrimSpace(errs), "\n") {
		if line != "" && !strings.Contains(line, "interrupt signal received") {
			t.Errorf("a request failed during the load: %s", line)
		}
	}
	if strings.Count(codes, "[") != 1 || !strings.Contains(codes, "[200]") {
		t.Errorf("responses other than 200 during the load:\n%s", codes)
	}

	// Scale-in: the cloud replicas leave first, the IDC replica stays.
	c.eventually(4*time.Minute, "scaled in to the IDC replica", func() error {
		p, err := c.placement("default", appLabel)
		if err != nil {
			return err
		}
		if p.total != 1 {
			return fmt.Errorf("placement %s", p)
		}
		if got := p.byPool["npxxxxxx"]; len(got) != 1 || got[0] != idcPod {
			return fmt.Errorf("the replica left is not the IDC one (%s): %s", idcPod, p)
		}
		return nil
	})
	// Then the cloud nodes.
	c.eventually(4*time.Minute, "elastic nodes removed", func() error {
		nodes, err := c.elasticNodes()
		if err != nil {
			return err
		}
		if len(nodes) != 0 {
			return fmt.Errorf("elastic nodes %v (peak %v)", nodes, peakNodes)
		}
		return nil
	})
	// The IDC replica still answers.
	code, v, err := c.chat(seedHost, seedChat)
	if err != nil || code != http.StatusOK {
		t.Fatalf("after the peak: %d %v %v", code, v, err)
	}
	if _, err := completionText(v); err != nil {
		t.Error(err)
	}
	c.step("the IDC replica still answers")

	// `spillway down` then `spillway up`: etcd's data is kept, so the
	// services, the policy and the node pools come back and serve again.
	c.down(false)
	c.step("cluster down (state kept)")
	c.up()
	c.step("cluster up again")
	c.eventually(3*time.Minute, "qwen-chat ready again on the IDC node after the restart", func() error {
		p, err := c.placement("default", appLabel)
		if err != nil {
			return err
		}
		if p.total != 1 || p.ready != 1 || len(p.byPool["npxxxxxx"]) != 1 {
			return fmt.Errorf("placement %s", p)
		}
		code, v, err := c.chat(seedHost, seedChat)
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("chat: %d %v %v", code, v, err)
		}
		return nil
	})
	out = c.mustRun(time.Minute, "", "bin/spillway", "list", "-A")
	for _, want := range []string{"qwen-chat", "llama", "team-b"} {
		if !strings.Contains(out, want) {
			t.Errorf("spillway list -A after the restart lacks %q:\n%s", want, out)
		}
	}
}

func (c *cluster) nodeReady(name string) bool {
	n, err := c.cs.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return false
	}
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}
