package llmautoscaler

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	testingclock "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/spillway-io/spillway/apis"
	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/pkg/autoscaler/llm"
	isvcbuild "github.com/spillway-io/spillway/pkg/inferenceservice"
)

// fakeGateway is a scriptable in-flight source.
type fakeGateway struct {
	mu    sync.Mutex
	value map[types.NamespacedName]float64
	err   error
	calls int
}

func (g *fakeGateway) InFlight(context.Context) (map[types.NamespacedName]float64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls++
	return g.value, g.err
}

// fakeEngines answers per address; it records the addresses scraped.
type fakeEngines struct {
	mu      sync.Mutex
	metrics map[string]EngineMetrics
	scraped []string
}

func (e *fakeEngines) EngineMetrics(_ context.Context, addr string) (EngineMetrics, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.scraped = append(e.scraped, addr)
	m, ok := e.metrics[addr]
	if !ok {
		return EngineMetrics{}, errors.New("connection refused")
	}
	return m, nil
}

func objects(class spillwayv1alpha1.AutoscalerClass, minR, replicas int32, readyPods, startingPods int) []client.Object {
	isvc := &spillwayv1alpha1.InferenceService{ObjectMeta: metav1.ObjectMeta{Name: "chat", Namespace: "default", UID: "u1"}}
	isvc.Spec.Predictor = spillwayv1alpha1.PredictorSpec{
		AutoscalerClass: class, MinReplicas: ptr.To(minR), MaxReplicas: 6,
		Containers: []corev1.Container{{Image: "x", Command: []string{"sh", "-c", "vllm --port 8000"}}},
	}
	isvc.Annotations = map[string]string{llm.AnnotationScaleDownDelay: "20s", llm.AnnotationStableWindow: "10s"}
	dep, _ := isvcbuild.MakeDeployment(isvc)
	dep.Spec.Replicas = ptr.To(replicas)
	out := []client.Object{isvc, dep}
	for i := range readyPods + startingPods {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "chat-" + string(rune('a'+i)), Namespace: "default",
			Labels: isvcbuild.SelectorLabels("chat")}, Spec: dep.Spec.Template.Spec}
		if i < readyPods {
			p.Status.PodIP = "10.0.0." + string(rune('1'+i))
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		}
		out = append(out, p)
	}
	return out
}

func replicas(t *testing.T, c client.Client) int32 {
	t.Helper()
	d := &appsv1.Deployment{}
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: "default", Name: "chat-predictor"}, d); err != nil {
		t.Fatal(err)
	}
	return *d.Spec.Replicas
}

func TestTickScalesUpOnLoadAndCountsStartingReplicas(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(apis.NewScheme()).WithObjects(objects("llm", 1, 1, 1, 0)...).Build()
	clk := testingclock.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	gw := &fakeGateway{value: map[types.NamespacedName]float64{{Namespace: "default", Name: "chat"}: 40}}
	eng := &fakeEngines{metrics: map[string]EngineMetrics{"10.0.0.1:8000": {Running: 10, Waiting: 30, KVCache: 0.7}}}
	reg := prometheus.NewRegistry()
	a := New(c, WithClock(clk), WithInFlightSource(gw), WithEngineSource(eng), WithRegisterer(reg))
	ctx := context.Background()
	for range 3 {
		if err := a.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		clk.Step(DefaultInterval)
	}
	if got := replicas(t, c); got != 5 {
		t.Fatalf("replicas %d, want 5 (40 in flight / 8)", got)
	}
	if d := testutil.ToFloat64(a.metrics.desired.WithLabelValues("default", "chat")); d != 5 {
		t.Errorf("desired gauge %v", d)
	}
	if eng.scraped[0] != "10.0.0.1:8000" {
		t.Errorf("scraped %v, want the pod IP and the --port of the command line", eng.scraped)
	}
	// More ticks with the same load while the new replicas have not come up
	// (no Deployment controller here, so still one ready pod with a long
	// queue): the recommendation is an absolute count, so no further
	// scale-up.
	for range 10 {
		if err := a.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		clk.Step(DefaultInterval)
	}
	if got := replicas(t, c); got != 5 {
		t.Errorf("replicas %d after more ticks, want still 5", got)
	}
}

func TestTickWithoutGatewayUsesEngines(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(apis.NewScheme()).WithObjects(objects("llm", 1, 2, 2, 0)...).Build()
	clk := testingclock.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	gw := &fakeGateway{err: errors.New("gateway down")}
	eng := &fakeEngines{metrics: map[string]EngineMetrics{
		"10.0.0.1:8000": {Running: 12, Waiting: 0}, "10.0.0.2:8000": {Running: 12, Waiting: 0},
	}}
	a := New(c, WithClock(clk), WithInFlightSource(gw), WithEngineSource(eng), WithRegisterer(prometheus.NewRegistry()))
	for range 8 {
		if err := a.Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
		clk.Step(DefaultInterval)
	}
	if got := replicas(t, c); got != 3 {
		t.Errorf("replicas %d, want 3 (24 running / 8)", got)
	}
	if n := testutil.ToFloat64(a.metrics.scrapeErrors.WithLabelValues("gateway")); n != 8 {
		t.Errorf("gateway scrape errors %v, want 8", n)
	}
}

func TestTickScalesToZeroAndBack(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(apis.NewScheme()).WithObjects(objects("llm", 0, 1, 1, 0)...).Build()
	clk := testingclock.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	key := types.NamespacedName{Namespace: "default", Name: "chat"}
	gw := &fakeGateway{value: map[types.NamespacedName]float64{}}
	eng := &fakeEngines{metrics: map[string]EngineMetrics{"10.0.0.1:8000": {}}}
	a := New(c, WithClock(clk), WithInFlightSource(gw), WithEngineSource(eng), WithRegisterer(prometheus.NewRegistry()))
	ctx := context.Background()
	// Idle: stable window 10 s + scale-down delay 20 s.
	for range 20 {
		if err := a.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		clk.Step(DefaultInterval)
	}
	if got := replicas(t, c); got != 0 {
		t.Fatalf("replicas %d after 40 s idle, want 0", got)
	}
	// Requests held at the gateway: back to one replica on the next tick.
	gw.mu.Lock()
	gw.value[key] = 2
	gw.mu.Unlock()
	if err := a.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if got := replicas(t, c); got != 1 {
		t.Errorf("replicas %d with held requests, want 1", got)
	}
}

func TestTickIgnoresOtherClassesAndForgetsServices(t *testing.T) {
	objs := objects("hpa", 1, 2, 2, 0)
	c := fake.NewClientBuilder().WithScheme(apis.NewScheme()).WithObjects(objs...).Build()
	clk := testingclock.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	gw := &fakeGateway{value: map[types.NamespacedName]float64{{Namespace: "default", Name: "chat"}: 100}}
	a := New(c, WithClock(clk), WithInFlightSource(gw), WithEngineSource(&fakeEngines{}), WithRegisterer(prometheus.NewRegistry()))
	a.windows[types.NamespacedName{Namespace: "default", Name: "gone"}] = &llm.Window{}
	if err := a.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := replicas(t, c); got != 2 {
		t.Errorf("class hpa service scaled to %d", got)
	}
	if len(a.windows) != 0 {
		t.Errorf("windows kept for %v", a.windows)
	}
}

// Start ticks on the injected clock and returns when its context ends.
func TestStartStops(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(apis.NewScheme()).WithObjects(objects("llm", 1, 1, 1, 0)...).Build()
	clk := testingclock.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	gw := &fakeGateway{value: map[types.NamespacedName]float64{}}
	a := New(c, WithClock(clk), WithInFlightSource(gw), WithEngineSource(&fakeEngines{}), WithRegisterer(prometheus.NewRegistry()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Start(ctx) }()
	deadline := time.After(10 * time.Second)
	for {
		gw.mu.Lock()
		calls := gw.calls
		gw.mu.Unlock()
		if calls >= 2 {
			break
		}
		if clk.HasWaiters() {
			clk.Step(DefaultInterval)
		}
		select {
		case <-deadline:
			t.Fatalf("ticks: %d", calls)
		case <-time.After(time.Millisecond):
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Start did not return after cancel")
	}
}

// Without a gateway nothing could bring a service back from zero, so an idle
// service with minReplicas 0 keeps one replica.
func TestNoGatewayNoScaleToZero(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(apis.NewScheme()).WithObjects(objects("llm", 0, 2, 2, 0)...).Build()
	clk := testingclock.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	eng := &fakeEngines{metrics: map[string]EngineMetrics{"10.0.0.1:8000": {}, "10.0.0.2:8000": {}}}
	a := New(c, WithClock(clk), WithEngineSource(eng), WithRegisterer(prometheus.NewRegistry()))
	for range 30 {
		if err := a.Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
		clk.Step(DefaultInterval)
	}
	if got := replicas(t, c); got != 1 {
		t.Errorf("replicas %d after 60 s idle without a gateway, want 1", got)
	}
}
