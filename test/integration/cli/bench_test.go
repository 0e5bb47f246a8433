package cli_test

import (
	"bytes"
	"context"
	"image/png"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/pkg/bench"
	"github.com/spillway-io/spillway/pkg/cli/inspect"
	"github.com/spillway-io/spillway/pkg/engine/enginesim"
	"github.com/spillway-io/spillway/pkg/engine/server"
	"github.com/spillway-io/spillway/test/integration/framework"
)

// TestBenchPlotReadsTheCluster: while `spillway bench -plot` loads an
// engine simulator, it reads the service's replicas per node pool and the
// nodes per pool from a real kube-apiserver; the timeline then has its
// four panels (300 pixels each).
func TestBenchPlotReadsTheCluster(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Skip("KUBEBUILDER_ASSETS is not set")
	}
	env := framework.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := env.Client

	for name, pool := range map[string]string{"idc-1": "gpu-v100-edge", "cloud-1": "gpu-v100-elastic"} {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{spillwayv1alpha1.LabelNodePool: pool}}}
		if err := c.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	for name, node := range map[string]string{"qwen-chat-predictor-a": "idc-1", "qwen-chat-predictor-b": "cloud-1", "qwen-chat-predictor-c": ""} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": inspect.PodApp("qwen-chat")}},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "kserve-container", Image: "vllm"}}}}
		if err := c.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
	}
	// Another service's pod is not counted.
	other := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "embed-predictor-a", Labels: map[string]string{"app": inspect.PodApp("embed")}},
		Spec: corev1.PodSpec{NodeName: "idc-1", Containers: []corev1.Container{{Name: "kserve-container", Image: "e"}}}}
	if err := c.Create(ctx, other); err != nil {
		t.Fatal(err)
	}

	// What the sampler reads, from the real apiserver.
	s, err := bench.SampleCluster(ctx, c, ns, "qwen-chat")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Replicas; len(got) != 3 || got["gpu-v100-edge"] != 1 || got["gpu-v100-elastic"] != 1 || got["pending"] != 1 {
		t.Errorf("replicas per pool %v, want edge 1, elastic 1, pending 1", got)
	}
	if got := s.Nodes; len(got) != 2 || got["gpu-v100-edge"] != 1 || got["gpu-v100-elastic"] != 1 {
		t.Errorf("nodes per pool %v, want one each", got)
	}

	// The bench itself, against an engine simulator, service from -host.
	url := startSim(t)
	plot := filepath.Join(t.TempDir(), "timeline.png")
	cfg, err := bench.Parse([]string{"-z", "1s", "-c", "2", "-m", "POST", "-host", "qwen-chat-default.example.com", "-plot", plot,
		"-sample-every", "200ms", "-kubeconfig", env.KubeconfigPath, "-progress", "0",
		"-d", `{"model":"qwen","prompt":"hi","max_tokens":4}`, url + "/v1/completions"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var out, stderr bytes.Buffer
	if err := bench.Main(ctx, cfg, &out, &stderr); err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr.String())
	}
	if strings.Contains(stderr.String(), "not reading the cluster") || !strings.Contains(out.String(), "[200]") {
		t.Errorf("bench output:\n%s\nstderr:\n%s", out.String(), stderr.String())
	}
	f, err := os.Open(plot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dy() != 4*300 {
		t.Errorf("timeline %v: want 4 panels of 300 pixels (load, TTFT, replicas per pool, nodes per pool)", b)
	}
}

// startSim runs an engine simulator serving "qwen" on 127.0.0.1.
func startSim(t *testing.T) string {
	t.Helper()
	settings := enginesim.DefaultSettings()
	settings.GPU, settings.ModelParamsBillions, settings.StartupDelay, settings.GracePeriod = "h100", 1, 0, time.Second
	cfg, _, err := enginesim.BuildConfig([]string{"vllm", "serve", "/m", "--served-model-name", "qwen"}, settings)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, server.WithLogger(testr.New(t)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(sctx, ln); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	return "http://" + ln.Addr().String()
}
