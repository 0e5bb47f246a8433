// Package gateway tests spillway-gateway's endpoint watcher against a real
// kube-apiserver: InferenceServices, NodePools, Nodes and EndpointSlices
// created through the API become routes, and a request held while the
// service has no ready replica is answered once an EndpointSlice marks one
// ready.
package gateway

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/spillway-io/spillway/apis"
	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/pkg/gateway"
	"github.com/spillway-io/spillway/pkg/gateway/auth"
	"github.com/spillway-io/spillway/pkg/gateway/endpoints"
	"github.com/spillway-io/spillway/pkg/gateway/enginetest"
	"github.com/spillway-io/spillway/pkg/gateway/h1"
	"github.com/spillway-io/spillway/test/integration/framework"
)

func TestWatchRoutesAndHolds(t *testing.T) {
	env := framework.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := env.Client

	_, engineAddr, stopEngine, err := enginetest.Start(enginetest.Config{Model: "qwen"})
	if err != nil {
		t.Fatal(err)
	}
	defer stopEngine()
	// The apiserver refuses loopback addresses in EndpointSlices: the slice
	// names a pod address, and the gateway's dialer maps it to the engine.
	const podIP, podPort = "10.244.0.5", 8080
	dialer := &net.Dialer{}
	transport := &h1.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr != net.JoinHostPort(podIP, "8080") {
			return nil, fmt.Errorf("unexpected upstream %s", addr)
		}
		return dialer.DialContext(ctx, network, engineAddr)
	}}

	price := resource.MustParse("3")
	for _, p := range []*spillwayv1alpha1.NodePool{
		{ObjectMeta: metav1.ObjectMeta{Name: "gpu-idc"}, Spec: spillwayv1alpha1.NodePoolSpec{Type: spillwayv1alpha1.NodePoolStatic, Role: spillwayv1alpha1.RoleIDC}},
		{ObjectMeta: metav1.ObjectMeta{Name: "gpu-elastic"}, Spec: spillwayv1alpha1.NodePoolSpec{Type: spillwayv1alpha1.NodePoolElastic,
			Role: spillwayv1alpha1.RoleElastic, MaxSize: ptr.To[int32](3), PricePerHour: &price,
			Provider: &spillwayv1alpha1.ProviderSpec{Name: "fake"}}},
	} {
		if err := c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "idc-1", Labels: map[string]string{spillwayv1alpha1.LabelNodePool: "gpu-idc"}}}
	if err := c.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	isvc := &spillwayv1alpha1.InferenceService{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "qwen-chat"},
		Spec: spillwayv1alpha1.InferenceServiceSpec{Predictor: spillwayv1alpha1.PredictorSpec{
			Containers: []corev1.Container{{Name: "kserve-container", Image: "vllm", Command: []string{"sh", "-c",
				"python3 -m vllm.entrypoints.openai.api_server --port 8080 --served-model-name qwen --model /mnt/models/Qwen"}}},
		}},
	}
	if err := c.Create(ctx, isvc); err != nil {
		t.Fatal(err)
	}

	gw := gateway.New(gateway.Options{Domain: "example.com", HoldTimeout: 30 * time.Second,
		Transport: transport, Log: testr.New(t)})
	w, err := endpoints.NewWatcher(env.Config, apis.NewScheme(), "", gw, testr.New(t))
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = w.Run(ctx) }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = gw.Serve(ctx, ln, nil, 5*time.Second); close(done) }()
	defer func() { cancel(); <-done }()
	url := "http://" + ln.Addr().String()

	// The service is routed (by model) but has no replica yet.
	deadline := time.Now().Add(20 * time.Second)
	for gw.Router.Table().ByKey("default/qwen-chat") == nil {
		if time.Now().After(deadline) {
			t.Fatal("the InferenceService never reached the routing table")
		}
		time.Sleep(20 * time.Millisecond)
	}
	type answer struct {
		status int
		body   string
	}
	answers := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, url+"/v1/chat/completions",
			strings.NewReader(`{"model":"qwen","messages":[{"role":"user","content":"你好"}],"max_tokens":3}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answers <- answer{body: err.Error()}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		answers <- answer{resp.StatusCode, string(b)}
	}()
	held := func() int64 {
		for _, s := range gw.Metrics.Report(time.Now()).Services {
			if s.Namespace == "default" && s.Name == "qwen-chat" {
				return s.Held
			}
		}
		return 0
	}
	for held() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the request was not held")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A replica becomes ready on the IDC node: the held request goes through.
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "qwen-chat-predictor-1",
			Labels: map[string]string{discoveryv1.LabelServiceName: endpoints.PredictorService("qwen-chat")}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](podPort), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{podIP}, NodeName: ptr.To("idc-1"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
			{Addresses: []string{"10.244.0.6"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
		},
	}
	if err := c.Create(ctx, slice); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-answers:
		if a.status != 200 || !strings.Contains(a.body, `"model":"qwen"`) {
			t.Fatalf("held request answered %d %s", a.status, a.body)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the held request was not answered")
	}
	svc := gw.Router.Table().ByKey("default/qwen-chat")
	if len(svc.Endpoints) != 1 || svc.Endpoints[0].Pool != "gpu-idc" || svc.Endpoints[0].PoolRank != 0 || svc.Model != "qwen" {
		t.Errorf("route = %+v; want the one ready endpoint on pool gpu-idc, rank 0, model qwen", svc)
	}
}

// TestWatchFromPods routes to ready pods on loopback addresses, as the local
// cluster runs them (the apiserver accepts them in pod status, not in
// EndpointSlices).
func TestWatchFromPods(t *testing.T) {
	env := framework.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := env.Client
	eng, engineAddr, stopEngine, err := enginetest.Start(enginetest.Config{Model: "qwen"})
	if err != nil {
		t.Fatal(err)
	}
	defer stopEngine()
	ip, port, _ := net.SplitHostPort(engineAddr)

	isvc := &spillwayv1alpha1.InferenceService{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "qwen-chat"},
		Spec: spillwayv1alpha1.InferenceServiceSpec{Predictor: spillwayv1alpha1.PredictorSpec{
			Containers: []corev1.Container{{Name: "kserve-container", Image: "vllm", Command: []string{"sh", "-c",
				"python3 -m vllm.entrypoints.openai.api_server --port " + port + " --served-model-name qwen"}}},
		}},
	}
	if err := c.Create(ctx, isvc); err != nil {
		t.Fatal(err)
	}
	k, v := endpoints.PodLabel("qwen-chat")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "qwen-chat-predictor-abc", Labels: map[string]string{k: v}},
		Spec:       corev1.PodSpec{NodeName: "idc-1", Containers: []corev1.Container{{Name: "kserve-container", Image: "vllm"}}},
	}
	if err := c.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	if err := c.Status().Update(ctx, pod); err != nil {
		t.Fatalf("setting a loopback pod IP: %v", err)
	}

	gw := gateway.New(gateway.Options{Domain: "example.com", Log: testr.New(t)})
	w, err := endpoints.NewWatcher(env.Config, apis.NewScheme(), "default", gw, testr.New(t))
	if err != nil {
		t.Fatal(err)
	}
	w.FromPods = true
	go func() { _ = w.Run(ctx) }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = gw.Serve(ctx, ln, nil, 5*time.Second); close(done) }()
	defer func() { cancel(); <-done }()

	deadline := time.Now().Add(20 * time.Second)
	for {
		s := gw.Router.Table().ByKey("default/qwen-chat")
		if s != nil && len(s.Endpoints) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ready pod never reached the routing table: %+v", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+ln.Addr().String()+"/v1/chat/completions",
		strings.NewReader(`{"model":"qwen","messages":[{"role":"user","content":"hi"}]}`))
	req.Host = "qwen-chat-default.example.com"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || eng.Completed.Load() != 1 {
		t.Fatalf("status %d, engine completed %d", resp.StatusCode, eng.Completed.Load())
	}
}

func TestAPIKeysFromSecret(t *testing.T) {
	env := framework.Start(t)
	ctx := context.Background()
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "gateway-keys"},
		Data: map[string][]byte{"team-a": []byte("sk-a 2 4\n"), "team-b": []byte("# comment\nsk-b\n")}}
	if _, err := env.Clientset.CoreV1().Secrets("default").Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	keys, err := auth.SecretSource(env.Clientset, "default", "gateway-keys")(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []auth.Key{{Secret: "sk-a", RPS: 2, Burst: 4}, {Secret: "sk-b"}}
	if d := cmp.Diff(want, keys); d != "" {
		t.Errorf("keys from the Secret (-want,+got):\n%s", d)
	}
	if _, err := auth.SecretSource(env.Clientset, "default", "missing")(ctx); err == nil {
		t.Error("a missing Secret gave no error")
	}
}
