package metricsadapter_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/spillway-io/spillway/pkg/metricsadapter/scrape"
	"github.com/spillway-io/spillway/test/integration/framework"
)

// syncBuffer is a bytes.Buffer safe to read while a process writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestBinary runs the spillway-metrics-adapter binary behind the aggregator:
// health and metrics endpoints, a node metric by name through v1beta1, and a
// clean exit on SIGTERM.
func TestBinary(t *testing.T) {
	env := framework.Start(t, framework.WithAggregation(t))
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	root, err := framework.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "spillway-metrics-adapter")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/spillway-metrics-adapter")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	port, err := framework.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	healthPort, err := framework.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	certDir := t.TempDir()
	cmd := exec.Command(bin,
		"--kubeconfig="+env.KubeconfigPath,
		fmt.Sprintf("--secure-port=%d", port),
		"--cert-dir="+certDir,
		"--serving-dns-names="+adapterSvc+"."+adapterNS+".svc",
		fmt.Sprintf("--health-addr=127.0.0.1:%d", healthPort),
		"--scrape-interval=500ms", "--scrape-timeout=400ms", "--staleness=5s", "-v=2")
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var stopped atomic.Bool
	t.Cleanup(func() {
		if !stopped.Load() {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("adapter log:\n%s", logs.String())
		}
	})

	health := fmt.Sprintf("http://127.0.0.1:%d", healthPort)
	waitFor(ctx, t, "/readyz of the binary", func() (bool, string) {
		select {
		case err := <-exited:
			stopped.Store(true)
			t.Fatalf("the adapter exited early (%v); log:\n%s", err, logs.String())
		default:
		}
		body, err := httpGet(ctx, health+"/readyz")
		return err == nil && strings.TrimSpace(body) == "ok", fmt.Sprintf("%q %v", body, err)
	})
	if body, err := httpGet(ctx, health+"/healthz"); err != nil || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %q, %v", body, err)
	}

	ca, err := os.ReadFile(filepath.Join(certDir, "apiserver.crt"))
	if err != nil {
		t.Fatal(err)
	}
	registerAPIService(ctx, t, env, port, ca)

	var util atomic.Int64
	dcgmURL := serveDCGM(t, env.Clientset, &util)
	_, err = env.Clientset.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name: gpuNode, Annotations: map[string]string{scrape.AnnotationDCGMEndpoint: dcgmURL},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the node's DCGM_FI_DEV_GPU_UTIL through v1beta1", func() (bool, string) {
		raw, err := env.Clientset.Discovery().RESTClient().Get().
			AbsPath("/apis/custom.metrics.k8s.io/v1beta1/nodes", gpuNode, "DCGM_FI_DEV_GPU_UTIL").DoRaw(ctx)
		return err == nil && strings.Contains(string(raw), fmt.Sprintf(`"value":"%d"`, idleGPUUtil)), fmt.Sprintf("%s %v", raw, err)
	})
	body, err := httpGet(ctx, health+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`spillway_metrics_adapter_targets{kind="node"} 1`,
		`spillway_metrics_adapter_target_up{target="node/gpu-1"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// SIGTERM: drain and exit 0.
	stopped.Store(true)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		t.Fatal("the adapter did not exit within 30s of SIGTERM")
	}
	if !strings.Contains(logs.String(), `"stopped" logger="spillway-metrics-adapter.metrics-adapter"`) {
		t.Errorf("no structured \"stopped\" line in the log:\n%s", logs.String())
	}
}
