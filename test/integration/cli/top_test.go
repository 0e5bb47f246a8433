// Package cli_test runs `spillway top` against a real kube-apiserver with
// the real spillway-metrics-adapter behind its aggregation layer
// (custom.metrics.k8s.io), node DCGM exporters and per-pod vLLM metrics
// played by small HTTP servers on 127.0.0.1, and the gateway's real metric
// set (pkg/gateway/metrics) served on a loopback port.
package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	aggregator "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"
	"k8s.io/utils/ptr"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/pkg/cli/inspect"
	gwmetrics "github.com/spillway-io/spillway/pkg/gateway/metrics"
	"github.com/spillway-io/spillway/pkg/metricsadapter"
	"github.com/spillway-io/spillway/pkg/metricsadapter/scrape"
	"github.com/spillway-io/spillway/test/integration/framework"
)

const (
	ns         = "default"
	adapterNS  = "spillway-system"
	adapterSvc = "spillway-metrics-adapter"
)

func top(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := &cobra.Command{Use: "spillway", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(inspect.NewCommands()...)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"top", "--once"}, args...))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// dcgm serves a node exporter's per-pod DCGM_CUSTOM_PROCESS_SM_UTIL.
func dcgm(t *testing.T, util map[string]int) string {
	t.Helper()
	return "http://" + serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "# TYPE DCGM_CUSTOM_PROCESS_SM_UTIL gauge")
		gpu := 0
		for pod, v := range util {
			fmt.Fprintf(w, "DCGM_CUSTOM_PROCESS_SM_UTIL{gpu=\"%d\",namespace=%q,pod=%q,container=\"kserve-container\"} %d\n", gpu, ns, pod, v)
			gpu++
		}
	})) + "/metrics"
}

// vllm serves one engine's vllm:num_requests_waiting; returns its port.
func vllm(t *testing.T, waiting int) int32 {
	t.Helper()
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "# TYPE vllm:num_requests_waiting gauge")
		fmt.Fprintf(w, "vllm:num_requests_waiting{model_name=\"qwen\"} %d\n", waiting)
	}))
	_, port, _ := net.SplitHostPort(addr)
	var p int32
	fmt.Sscan(port, &p)
	return p
}

func waitFor(ctx context.Context, t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
		ok, detail := cond()
		last = detail
		return ok, nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v (last: %s)", what, err, last)
	}
}

// row finds the table row starting with name and returns its fields.
func row(out, name string) []string {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == name {
			return f
		}
	}
	return nil
}

func TestTopLiveFigures(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Skip("KUBEBUILDER_ASSETS is not set")
	}
	env := framework.Start(t, framework.WithAggregation(t))
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	c := env.Client
	kc := "--kubeconfig=" + env.KubeconfigPath

	// Pools, nodes (each with its DCGM exporter), the service and its pods.
	for _, p := range []spillwayv1alpha1.NodePool{
		{ObjectMeta: metav1.ObjectMeta{Name: "gpu-v100-edge"}, Spec: spillwayv1alpha1.NodePoolSpec{Type: spillwayv1alpha1.NodePoolStatic, Role: spillwayv1alpha1.RoleIDC}},
		{ObjectMeta: metav1.ObjectMeta{Name: "gpu-v100-elastic"}, Spec: spillwayv1alpha1.NodePoolSpec{Type: spillwayv1alpha1.NodePoolElastic, Role: spillwayv1alpha1.RoleElastic,
			MaxSize: ptr.To[int32](3), Provider: &spillwayv1alpha1.ProviderSpec{Name: "fake"}, PricePerHour: ptr.To(resource.MustParse("2.75"))}},
	} {
		if err := c.Create(ctx, &p); err != nil {
			t.Fatalf("creating NodePool %s: %v", p.Name, err)
		}
	}
	utilByNode := map[string]map[string]int{
		"idc-1":   {"qwen-chat-predictor-a": 80, "qwen-chat-predictor-b": 60},
		"cloud-1": {"qwen-chat-predictor-c": 95},
		"cloud-2": {},
	}
	for name, pool := range map[string]string{"idc-1": "gpu-v100-edge", "cloud-1": "gpu-v100-elastic", "cloud-2": "gpu-v100-elastic"} {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{spillwayv1alpha1.LabelNodePool: pool},
			Annotations: map[string]string{scrape.AnnotationDCGMEndpoint: dcgm(t, utilByNode[name])}}}
		if err := c.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
		n.Status.Allocatable = corev1.ResourceList{spillwayv1alpha1.ResourceGPU: resource.MustParse("2")}
		n.Status.Capacity = n.Status.Allocatable
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
		if err := c.Status().Update(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	isvc := &spillwayv1alpha1.InferenceService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "qwen-chat"},
		Spec: spillwayv1alpha1.InferenceServiceSpec{Predictor: spillwayv1alpha1.PredictorSpec{
			Containers: []corev1.Container{{Name: "kserve-container", Image: "vllm"}}}}}
	if err := c.Create(ctx, isvc); err != nil {
		t.Fatal(err)
	}
	isvc.Status.Replicas, isvc.Status.ReadyReplicas, isvc.Status.DesiredReplicas = 3, 3, 3
	if err := c.Status().Update(ctx, isvc); err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]struct {
		node    string
		waiting int
	}{"qwen-chat-predictor-a": {"idc-1", 3}, "qwen-chat-predictor-b": {"idc-1", 1}, "qwen-chat-predictor-c": {"cloud-1", 5}} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": inspect.PodApp("qwen-chat")}},
			Spec: corev1.PodSpec{NodeName: p.node, Containers: []corev1.Container{{Name: "kserve-container", Image: "vllm",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: vllm(t, p.waiting)}},
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{spillwayv1alpha1.ResourceGPU: resource.MustParse("1")},
					Limits: corev1.ResourceList{spillwayv1alpha1.ResourceGPU: resource.MustParse("1")}}}}},
		}
		if err := c.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		pod.Status.Phase, pod.Status.PodIP = corev1.PodRunning, "127.0.0.1"
		pod.Status.PodIPs = []corev1.PodIP{{IP: "127.0.0.1"}}
		pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		if err := c.Status().Update(ctx, pod); err != nil {
			t.Fatal(err)
		}
	}

	// The gateway's metric set, with 7 requests in flight for the service
	// (4 on the IDC pool, 3 on the elastic one).
	reg := prometheus.NewRegistry()
	gm := gwmetrics.New(reg)
	for range 7 {
		gm.Enter(ns, "qwen-chat")
	}
	gm.PoolInFlight.WithLabelValues(ns, "qwen-chat", "gpu-v100-edge").Set(4)
	gm.PoolInFlight.WithLabelValues(ns, "qwen-chat", "gpu-v100-elastic").Set(3)
	gatewayURL := "http://" + serve(t, promhttp.HandlerFor(reg, promhttp.HandlerOpts{})) + "/metrics"
	deadLn, _ := net.Listen("tcp", "127.0.0.1:0")
	deadURL := "http://" + deadLn.Addr().String() + "/metrics"
	deadLn.Close()

	// Before the adapter: no custom metrics API, gateway down. Every live
	// figure is "-" and the notes say why; the cost is there.
	out, err := top(t, kc, "--gateway-metrics="+deadURL)
	if err != nil {
		t.Fatalf("top: %v\n%s", err, out)
	}
	if got := row(out, "default/qwen-chat"); len(got) != 7 || got[4] != "-" || got[5] != "-" || got[6] != "-" {
		t.Errorf("without sources, service row %q: want GPU UTIL, QUEUE, IN-FLIGHT all -\n%s", got, out)
	}
	if got := row(out, "gpu-v100-elastic"); len(got) != 10 || got[4] != "1" || got[5] != "-" || got[8] != "2.75" || got[9] != "5.50" {
		t.Errorf("without sources, elastic pool row %q: want 1 replica, -, price 2.75, cost 5.50\n%s", got, out)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`note: GPU UTIL, QUEUE: custom.metrics.k8s.io: ` + inspect.MetricGPUUtil),
		regexp.MustCompile(`note: IN-FLIGHT: gateway metrics ` + regexp.QuoteMeta(deadURL) + `: .*connection refused`),
	} {
		if !want.MatchString(out) {
			t.Errorf("top lacks a note matching %s:\n%s", want, out)
		}
	}

	t.Logf("spillway top --once without sources:\n%s", out)

	// The real adapter, registered through the aggregation layer.
	startAdapter(ctx, t, env)
	waitFor(ctx, t, "top to show the adapter's and the gateway's figures", func() (bool, string) {
		out, err = top(t, kc, "--gateway-metrics="+gatewayURL)
		// GPU UTIL mean (80+60+95)/3 = 78%, QUEUE 3+1+5 = 9, IN-FLIGHT 7.
		want := []string{"default/qwen-chat", "3/3", "3", "gpu-v100-edge=2/2,gpu-v100-elastic=1/1", "78%", "9", "7"}
		got := row(out, "default/qwen-chat")
		return err == nil && fmt.Sprint(got) == fmt.Sprint(want), fmt.Sprintf("row %q, err %v\n%s", got, err, out)
	})
	for pool, want := range map[string][]string{
		// POOL ROLE NODES GPUS REPLICAS UTIL QUEUE IN-FLIGHT PRICE/H COST/H
		"gpu-v100-edge":    {"gpu-v100-edge", "idc", "1/1", "2/2", "2", "70%", "4", "4", "0.00", "0.00"},
		"gpu-v100-elastic": {"gpu-v100-elastic", "elastic", "2/2", "1/4", "1", "95%", "5", "3", "2.75", "5.50"},
	} {
		if got := row(out, pool); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("pool row %q, want %q\n%s", got, want, out)
		}
	}
	if got := row(out, "TOTAL"); fmt.Sprint(got) != "[TOTAL 5.50]" {
		t.Errorf("total row %q, want 5.50", got)
	}
	if strings.Contains(out, "note:") {
		t.Errorf("notes while every source answers:\n%s", out)
	}
	t.Logf("spillway top --once:\n%s", out)

	// Bad flags are usage errors.
	for _, args := range [][]string{{"--gateway-metrics=ftp://x"}, {"--metrics-timeout=0s"}, {"--bogus"}} {
		if _, err := top(t, append([]string{kc}, args...)...); err == nil || !strings.Contains(err.Error(), "See 'spillway top --help'") {
			t.Errorf("top %v: error %v, want a usage error", args, err)
		}
	}
}

func startAdapter(ctx context.Context, t *testing.T, env *framework.Env) {
	t.Helper()
	adapterPort, err := framework.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	healthPort, err := framework.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg := metricsadapter.DefaultConfig()
	cfg.Kubeconfig = env.KubeconfigPath
	cfg.Server.SecureServing.BindPort = adapterPort
	cfg.Server.SecureServing.ServerCert.CertDirectory = t.TempDir()
	cfg.ServingDNSNames = []string{adapterSvc + "." + adapterNS + ".svc"}
	cfg.ScrapeInterval = 300 * time.Millisecond
	cfg.ScrapeTimeout = 250 * time.Millisecond
	cfg.HealthAddr = fmt.Sprintf("127.0.0.1:%d", healthPort)
	adapterCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- metricsadapter.Run(adapterCtx, cfg) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("adapter: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("adapter did not stop within 30s of its context ending")
		}
	})
	var caBundle []byte
	waitFor(ctx, t, "the adapter's serving certificate", func() (bool, string) {
		select {
		case err := <-done:
			t.Fatalf("adapter exited: %v", err)
		default:
		}
		b, err := os.ReadFile(metricsadapter.ServingCertFile(cfg.Server))
		caBundle = b
		return err == nil && len(b) > 0, fmt.Sprint(err)
	})
	ag, err := aggregator.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	reg := metricsadapter.Registration{Namespace: adapterNS, Service: adapterSvc, Port: int32(adapterPort), CABundle: caBundle, ExternalName: "localhost"}
	if err := metricsadapter.Register(ctx, env.Clientset, ag, reg); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the custom metrics APIService to be Available", func() (bool, string) {
		ok, reason, err := metricsadapter.Available(ctx, ag)
		return ok, fmt.Sprintf("%s %v", reason, err)
	})
}
