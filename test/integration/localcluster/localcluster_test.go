// Package localcluster_test starts the local hybrid cluster for real (etcd,
// kube-apiserver, kube-controller-manager, the node simulator, the metrics
// adapter, spillway-scheduler, spillway-gateway and spillway-manager) in a
// temporary state folder on free ports, runs a pod on a simulated node, runs
// the seed's vLLM command line on the engine simulator and reaches it on its
// pod IP, through the custom metrics API and through the gateway, cuts a
// pool's heartbeats and stops everything.
package localcluster_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/spillway-io/spillway/pkg/localcluster"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func eventually(t *testing.T, timeout time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func TestUpRunPodDown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	root, _ := filepath.Abs(filepath.Join("..", "..", ".."))
	k8sBin := filepath.Join(root, "bin", "k8s-v1.37.2")
	if _, err := os.Stat(filepath.Join(k8sBin, "kube-apiserver")); err != nil {
		t.Skip("control plane not built (make k8s)")
	}
	binDir := t.TempDir()
	build := exec.Command("go", "build", "-o", binDir+"/", "./cmd/spillway-simlet", "./cmd/spillway-metrics-adapter",
		"./cmd/spillway-scheduler", "./cmd/spillway-gateway", "./cmd/spillway-manager")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building Spillway's binaries: %v\n%s", err, out)
	}
	c := localcluster.Config{
		StateDir: t.TempDir(), K8sBinDir: k8sBin, SpillwayBinDir: binDir,
		ClusterFile:     filepath.Join(root, "config", "clusters", "default.yaml"),
		CRDDir:          filepath.Join(root, "config", "crd", "bases"),
		SchedulerConfig: filepath.Join(root, "config", "scheduler", "scheduler-config.yaml"),
		Ports: localcluster.Ports{
			EtcdClient: freePort(t), EtcdPeer: freePort(t), APIServer: freePort(t), KCM: freePort(t), Scheduler: freePort(t),
			ManagerMetrics: freePort(t), ManagerProbe: freePort(t), GatewayHTTP: freePort(t), GatewayAdmin: freePort(t),
			SimletMetrics: freePort(t), MetricsAdapter: freePort(t), MetricsAdapterHealth: freePort(t),
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	defer func() {
		var dout bytes.Buffer
		if err := localcluster.Down(c, &dout, 20*time.Second, false); err != nil {
			t.Errorf("down: %v\n%s", err, dout.String())
		}
		for _, s := range localcluster.Status(context.Background(), c) {
			if s.Running {
				t.Errorf("%s still running after down", s.Name)
			}
		}
		if t.Failed() {
			for _, comp := range localcluster.Components(c) {
				n := comp.Name
				b, _ := os.ReadFile(filepath.Join(c.LogDir(), n+".log"))
				if len(b) > 4000 {
					b = b[len(b)-4000:]
				}
				t.Logf("--- %s.log (tail)\n%s", n, b)
			}
		}
	}()
	began := time.Now()
	if err := localcluster.Up(ctx, c, &out, time.Now()); err != nil {
		t.Fatalf("up: %v\n%s", err, out.String())
	}
	t.Logf("up in %s:\n%s", time.Since(began).Round(time.Millisecond), out.String())
	for _, s := range localcluster.Status(ctx, c) {
		if !s.Running || !s.Healthy {
			t.Errorf("after up, %s: running %v healthy %v", s.Name, s.Running, s.Healthy)
		}
	}

	rc, err := clientcmd.BuildConfigFromFlags("", c.KubeconfigPath())
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(rc)
	ready := func(name string) bool {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status == corev1.ConditionTrue
			}
		}
		return false
	}
	for _, n := range []string{"default-nodepool-0", "gpu-v100-edge-0"} {
		eventually(t, 30*time.Second, "node "+n+" Ready", func() bool { return ready(n) })
	}
	node, _ := cs.CoreV1().Nodes().Get(ctx, "gpu-v100-edge-0", metav1.GetOptions{})
	if g := node.Status.Allocatable["nvidia.com/gpu"]; g.Value() != 1 || node.Labels["alibabacloud.com/nodepool-id"] != "npxxxxxx" {
		t.Errorf("edge node: gpus %s labels %v", g.String(), node.Labels)
	}

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "engine", Namespace: "default",
			Annotations: map[string]string{"simlet.spillway.io/load-delay": "1s"}},
		Spec: corev1.PodSpec{NodeName: "gpu-v100-edge-0", Containers: []corev1.Container{{
			Name: "c", Image: "vllm", Ports: []corev1.ContainerPort{{ContainerPort: 8000}},
		}}},
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var ip string
	eventually(t, 30*time.Second, "pod Ready", func() bool {
		p, err := cs.CoreV1().Pods("default").Get(ctx, "engine", metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				ip = p.Status.PodIP
				return true
			}
		}
		return false
	})
	resp, err := http.Get("http://" + net.JoinHostPort(ip, "8000") + "/health")
	if err != nil {
		t.Fatalf("pod endpoint: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("pod /health: %s", resp.Status)
	}

	// Deleting the pod: the simlet stops it and removes the object.
	if err := cs.CoreV1().Pods("default").Delete(ctx, "engine", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "pod gone", func() bool {
		_, err := cs.CoreV1().Pods("default").Get(ctx, "engine", metav1.GetOptions{})
		return err != nil
	})

	seedEngine(ctx, t, c, cs, rc)

	// Cutting the edge pool's heartbeats: the node lifecycle controller marks
	// its node not Ready (grace period 20s) while the control node stays Ready.
	r, err := http.Post("http://127.0.0.1:"+strconv.Itoa(c.Ports.SimletMetrics)+"/faults/cut-pool?pool=gpu-v100-edge", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	eventually(t, 60*time.Second, "edge node not Ready", func() bool { return !ready("gpu-v100-edge-0") })
	if !ready("default-nodepool-0") {
		t.Error("control node lost Ready too")
	}
}
