// Package metricsadapter_test runs Spillway's custom-metrics adapter behind a
// real kube-apiserver's aggregation layer and lets the REAL HPA controller in
// kube-controller-manager scale a Deployment on a metric the adapter serves.
// No kubelet runs: the test plays kubelet (binds pods to a GPU node, gives each
// its own 127.x address and starts a small vLLM-metrics server there) and the
// node's DCGM exporter (per-pod DCGM_CUSTOM_PROCESS_SM_UTIL).
package metricsadapter_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	aggregator "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"
	cmv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"
	"k8s.io/utils/ptr"

	"github.com/spillway-io/spillway/pkg/metricsadapter"
	"github.com/spillway-io/spillway/pkg/metricsadapter/scrape"
	"github.com/spillway-io/spillway/test/integration/framework"
)

const (
	ns         = "default"
	adapterNS  = "spillway-system"
	adapterSvc = "spillway-metrics-adapter"
	app        = "isvc.qwen-chat-predictor"
	gpuNode    = "gpu-1"
	metric     = "DCGM_CUSTOM_PROCESS_SM_UTIL"
	// idleGPUUtil is what the node's exporter reports for its GPU that no
	// pod holds (a node-level series).
	idleGPUUtil = 37
)

func TestRealHPAScalesOnAdapterMetric(t *testing.T) {
	env := framework.Start(t, framework.WithAggregation(t),
		framework.WithControllerManager("--horizontal-pod-autoscaler-sync-period=1s"))
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	cs := env.Clientset

	// The adapter, in this process, on 127.0.0.1 with a self-signed cert.
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
	cfg.Staleness = 2 * time.Second
	cfg.PodSelector = "app=" + app
	cfg.HealthAddr = fmt.Sprintf("127.0.0.1:%d", healthPort)
	adapterCtx, stopAdapter := context.WithCancel(ctx)
	adapterDone := make(chan error, 1)
	go func() { adapterDone <- metricsadapter.Run(adapterCtx, cfg) }()
	t.Cleanup(func() {
		stopAdapter()
		select {
		case err := <-adapterDone:
			if err != nil {
				t.Errorf("adapter: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("adapter did not stop within 30s of its context ending")
		}
	})
	caBundle := waitForFile(ctx, t, metricsadapter.ServingCertFile(cfg.Server), adapterDone)

	registerAPIService(ctx, t, env, adapterPort, caBundle)

	// A GPU node whose DCGM exporter is served by the test.
	var util atomic.Int64
	util.Store(20)
	dcgmURL := serveDCGM(t, cs, &util)
	_, err = cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:        gpuNode,
		Annotations: map[string]string{scrape.AnnotationDCGMEndpoint: dcgmURL},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	kl := newKubelet(t, cs)
	kubeletDone := make(chan struct{})
	go func() { kl.run(ctx); close(kubeletDone) }()
	t.Cleanup(func() { cancel(); <-kubeletDone })

	_, err = cs.AppsV1().Deployments(ns).Create(ctx, deployment(kl.port), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, hpa(), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// Low utilisation: one replica, and the HPA reads the adapter's value.
	waitFor(ctx, t, "the HPA to read DCGM_CUSTOM_PROCESS_SM_UTIL=20 from the adapter", func() (bool, string) {
		h, err := cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "qwen-chat-hpa", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, m := range h.Status.CurrentMetrics {
			if m.Pods != nil && m.Pods.Metric.Name == metric && m.Pods.Current.AverageValue != nil {
				got := m.Pods.Current.AverageValue.MilliValue()
				return got == 20000 && h.Status.DesiredReplicas == 1, fmt.Sprintf("average %dm, desired %d, conditions %s", got, h.Status.DesiredReplicas, conditions(h))
			}
		}
		return false, "no current metric yet; conditions " + conditions(h)
	})

	// GPU utilisation passes the target: the HPA scales to its maximum.
	util.Store(90)
	start := time.Now()
	waitReplicas(ctx, t, cs, 3)
	t.Logf("utilisation 20%% -> 90%%: the HPA asked for 3 replicas after %s", time.Since(start).Round(10*time.Millisecond))

	// Every replica's vLLM metric is served under its sanitized name, through
	// the aggregation layer.
	waitFor(ctx, t, "vllm_num_requests_waiting of 3 pods through the aggregator", func() (bool, string) {
		vals, err := queryPods(ctx, cs, "vllm_num_requests_waiting")
		return err == nil && len(vals) == 3, fmt.Sprintf("%v %v", vals, err)
	})
	vals, _ := queryPods(ctx, cs, "vllm_num_requests_waiting")
	for pod, v := range vals {
		if want := kl.waiting(pod); v != want {
			t.Errorf("vllm_num_requests_waiting of %s = %dm, want %dm", pod, v, want)
		}
	}

	// A replica's metrics server dies: its value goes stale and is no longer
	// served, and the adapter's own metrics show the failing target.
	victim := kl.stopOne()
	start = time.Now()
	waitFor(ctx, t, "the dead pod's value to go stale", func() (bool, string) {
		vals, err := queryPods(ctx, cs, "vllm_num_requests_waiting")
		_, present := vals[victim]
		return err == nil && len(vals) == 2 && !present, fmt.Sprintf("%v %v", vals, err)
	})
	t.Logf("a dead pod's value stopped being served after %s (staleness %s)", time.Since(start).Round(10*time.Millisecond), cfg.Staleness)
	waitFor(ctx, t, "scrape errors of the dead pod on /metrics", func() (bool, string) {
		body, err := httpGet(ctx, fmt.Sprintf("http://127.0.0.1:%d/metrics", healthPort))
		want := fmt.Sprintf(`spillway_metrics_adapter_scrape_errors_total{reason="request",target="pod/%s/%s"}`, ns, victim)
		return err == nil && strings.Contains(body, want), fmt.Sprintf("looking for %s (err %v)", want, err)
	})
	if body, err := httpGet(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", healthPort)); err != nil || !strings.Contains(body, "ok") {
		t.Errorf("/readyz = %q, %v", body, err)
	}

	// Load is gone: the HPA scales back to one replica.
	util.Store(10)
	start = time.Now()
	waitReplicas(ctx, t, cs, 1)
	t.Logf("utilisation 90%% -> 10%%: the HPA asked for 1 replica after %s", time.Since(start).Round(10*time.Millisecond))
}

func registerAPIService(ctx context.Context, t *testing.T, env *framework.Env, port int, caBundle []byte) {
	t.Helper()
	ag, err := aggregator.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	// Endpoints and EndpointSlices cannot hold loopback addresses, so the
	// Service is an ExternalName of localhost: the aggregator's default
	// (non-endpoint) routing dials localhost:<APIService port>, and verifies
	// the certificate for <service>.<namespace>.svc.
	reg := metricsadapter.Registration{Namespace: adapterNS, Service: adapterSvc, Port: int32(port), CABundle: caBundle, ExternalName: "localhost"}
	if err := metricsadapter.Register(ctx, env.Clientset, ag, reg); err != nil {
		t.Fatal(err)
	}
	// Registering twice is harmless (spillway up re-runs it).
	if err := metricsadapter.Register(ctx, env.Clientset, ag, reg); err != nil {
		t.Fatalf("registering again: %v", err)
	}
	waitFor(ctx, t, "APIService v1beta2.custom.metrics.k8s.io to be Available", func() (bool, string) {
		ok, reason, err := metricsadapter.Available(ctx, ag)
		return ok, fmt.Sprintf("%s %v", reason, err)
	})
}

func deployment(port int32) *appsv1.Deployment {
	labels := map[string]string{"app": app}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "qwen-chat-predictor", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name:  "kserve-container",
					Image: "vllm/vllm-openai:test",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: port}},
				}}},
			},
		},
	}
}

func hpa() *autoscalingv2.HorizontalPodAutoscaler {
	return &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "qwen-chat-hpa", Namespace: ns},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "qwen-chat-predictor"},
			MinReplicas:    ptr.To[int32](1),
			MaxReplicas:    3,
			Metrics: []autoscalingv2.MetricSpec{{
				Type: autoscalingv2.PodsMetricSourceType,
				Pods: &autoscalingv2.PodsMetricSource{
					Metric: autoscalingv2.MetricIdentifier{Name: metric},
					Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: ptr.To(resource.MustParse("50"))},
				},
			}},
			// No scale-down stabilisation, so the test need not wait 5 minutes.
			Behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{
				ScaleDown: &autoscalingv2.HPAScalingRules{
					StabilizationWindowSeconds: ptr.To[int32](0),
					Policies:                   []autoscalingv2.HPAScalingPolicy{{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 1}},
				},
			},
		},
	}
}

func waitReplicas(ctx context.Context, t *testing.T, cs kubernetes.Interface, want int32) {
	t.Helper()
	waitFor(ctx, t, fmt.Sprintf("the HPA to set the Deployment to %d replicas", want), func() (bool, string) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "qwen-chat-predictor", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		h, _ := cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "qwen-chat-hpa", metav1.GetOptions{})
		return *d.Spec.Replicas == want, fmt.Sprintf("replicas %d; HPA %s", *d.Spec.Replicas, conditions(h))
	})
}

func conditions(h *autoscalingv2.HorizontalPodAutoscaler) string {
	if h == nil {
		return "<none>"
	}
	var parts []string
	for _, c := range h.Status.Conditions {
		parts = append(parts, fmt.Sprintf("%s=%s(%s: %s)", c.Type, c.Status, c.Reason, c.Message))
	}
	return strings.Join(parts, "; ")
}

// queryPods asks the aggregated custom metrics API for a metric of the
// app's pods: pod name -> milli-value.
func queryPods(ctx context.Context, cs kubernetes.Interface, name string) (map[string]int64, error) {
	raw, err := cs.Discovery().RESTClient().Get().
		AbsPath("/apis/custom.metrics.k8s.io/v1beta2/namespaces", ns, "pods", "*", name).
		Param("labelSelector", "app="+app).DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	var list cmv1beta2.MetricValueList
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, it := range list.Items {
		out[it.DescribedObject.Name] = it.Value.MilliValue()
	}
	return out, nil
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

func waitForFile(ctx context.Context, t *testing.T, path string, adapterDone <-chan error) []byte {
	t.Helper()
	for {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return b
		}
		select {
		case err := <-adapterDone:
			t.Fatalf("adapter exited before writing its certificate: %v", err)
		case <-ctx.Done():
			t.Fatalf("no serving certificate at %s", path)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func httpGet(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// serveDCGM is the GPU node's exporter: one GPU per pod bound to the node,
// each at the current utilisation.
func serveDCGM(t *testing.T, cs kubernetes.Interface, util *atomic.Int64) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pods, err := cs.CoreV1().Pods(ns).List(r.Context(), metav1.ListOptions{FieldSelector: "spec.nodeName=" + gpuNode})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "# TYPE DCGM_CUSTOM_PROCESS_SM_UTIL gauge")
		gpu := 0
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil {
				continue
			}
			fmt.Fprintf(w, "DCGM_CUSTOM_PROCESS_SM_UTIL{gpu=\"%d\",namespace=%q,pod=%q,container=\"kserve-container\"} %d\n", gpu, p.Namespace, p.Name, util.Load())
			gpu++
		}
		fmt.Fprintln(w, "# TYPE DCGM_FI_DEV_GPU_UTIL gauge")
		fmt.Fprintf(w, "DCGM_FI_DEV_GPU_UTIL{gpu=\"%d\"} %d\n", gpu, idleGPUUtil)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + l.Addr().String() + "/metrics"
}

// kubelet plays the kubelet of gpu-1 for the app's pods: binds them, gives
// each its own loopback address with a vLLM-metrics server on the model
// port, and reports them Running and Ready; it removes deleted pods.
type kubelet struct {
	t    *testing.T
	cs   kubernetes.Interface
	port int32

	mu      sync.Mutex
	next    int
	servers map[string]*http.Server
	wait    map[string]int64
}

// addr is the i-th pod address: 127.77.0.<i+2>, away from 127.0.0.1.
func addr(i int) string { return fmt.Sprintf("127.77.0.%d", i+2) }

func newKubelet(t *testing.T, cs kubernetes.Interface) *kubelet {
	l, err := net.Listen("tcp", addr(0)+":0")
	if err != nil {
		t.Fatalf("listening on %s (Linux routes all of 127/8 to loopback): %v", addr(0), err)
	}
	port := int32(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	k := &kubelet{t: t, cs: cs, port: port, servers: map[string]*http.Server{}, wait: map[string]int64{}}
	t.Cleanup(func() {
		k.mu.Lock()
		defer k.mu.Unlock()
		for _, s := range k.servers {
			_ = s.Close()
		}
	})
	return k
}

func (k *kubelet) waiting(pod string) int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.wait[pod] * 1000
}

// stopOne stops the metrics server of one running pod and returns its name.
func (k *kubelet) stopOne() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	names := make([]string, 0, len(k.servers))
	for n := range k.servers {
		names = append(names, n)
	}
	sort.Strings(names)
	_ = k.servers[names[0]].Close()
	delete(k.servers, names[0])
	return names[0]
}

func (k *kubelet) run(ctx context.Context) {
	for ctx.Err() == nil {
		pods, err := k.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		if err == nil {
			for i := range pods.Items {
				if err := k.sync(ctx, &pods.Items[i]); err != nil && ctx.Err() == nil {
					k.t.Logf("kubelet: pod %s: %v", pods.Items[i].Name, err)
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (k *kubelet) sync(ctx context.Context, pod *corev1.Pod) error {
	pods := k.cs.CoreV1().Pods(ns)
	if pod.DeletionTimestamp != nil {
		k.mu.Lock()
		if s := k.servers[pod.Name]; s != nil {
			_ = s.Close()
			delete(k.servers, pod.Name)
		}
		k.mu.Unlock()
		return pods.Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	}
	if pod.Spec.NodeName == "" {
		return pods.Bind(ctx, &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: pod.Name},
			Target:     corev1.ObjectReference{Kind: "Node", Name: gpuNode},
		}, metav1.CreateOptions{})
	}
	if pod.Status.PodIP != "" {
		return nil
	}
	k.mu.Lock()
	i := k.next
	k.next++
	waiting := int64(i + 1)
	k.wait[pod.Name] = waiting
	k.mu.Unlock()
	ip := addr(i)
	l, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(k.port)))
	if err != nil {
		return err
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name=\"qwen\"} %d\n", waiting)
		fmt.Fprintf(w, "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name=\"qwen\"} 1\n")
	})}
	go func() { _ = srv.Serve(l) }()
	k.mu.Lock()
	k.servers[pod.Name] = srv
	k.mu.Unlock()
	defer func() {
		if err != nil { // the next sync starts over on a new address
			k.mu.Lock()
			_ = srv.Close()
			delete(k.servers, pod.Name)
			k.mu.Unlock()
		}
	}()

	now := metav1.Now()
	pod = pod.DeepCopy()
	pod.Status = corev1.PodStatus{
		Phase:     corev1.PodRunning,
		PodIP:     ip,
		PodIPs:    []corev1.PodIP{{IP: ip}},
		StartTime: &now,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		},
		ContainerStatuses: []corev1.ContainerStatus{{
			Name: "kserve-container", Ready: true, Image: "vllm/vllm-openai:test",
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		}},
	}
	_, err = pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	return err
}
