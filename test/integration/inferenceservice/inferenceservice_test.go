// Package inferenceservice_test runs the InferenceService controller and the
// llm autoscaler against a real kube-apiserver with the real
// kube-controller-manager (Deployments make ReplicaSets make pods): children
// are created, updated only on change, owned and recreated; status reports
// URL, replicas per node pool and conditions; the llm autoscaler writes the
// Deployment's scale subresource.
package inferenceservice_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	testingclock "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	"github.com/spillway-io/spillway/apis"
	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	isvcctrl "github.com/spillway-io/spillway/pkg/controllers/inferenceservice"
	"github.com/spillway-io/spillway/pkg/controllers/llmautoscaler"
	isvcbuild "github.com/spillway-io/spillway/pkg/inferenceservice"
	"github.com/spillway-io/spillway/test/integration/framework"
)

var env *framework.Env

func TestMain(m *testing.M) {
	if testingShort() {
		os.Exit(m.Run())
	}
	var err error
	// The real Deployment and ReplicaSet controllers, and the HPA controller
	// (which leaves replicas alone without metrics).
	env, err = framework.Launch(framework.WithControllerManager())
	if err != nil {
		println("starting the control plane:", err.Error())
		os.Exit(1)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done, err := startManager(ctx)
	if err != nil {
		println("starting the manager:", err.Error())
		_ = env.Stop()
		os.Exit(1)
	}
	code := m.Run()
	cancel()
	<-done
	if err := env.Stop(); err != nil {
		println("stopping the control plane:", err.Error())
	}
	os.Exit(code)
}

func testingShort() bool {
	for _, a := range os.Args {
		if a == "-test.short=true" || a == "-test.short" {
			return true
		}
	}
	return false
}

func needEnv(t *testing.T) {
	t.Helper()
	if env == nil {
		t.Skip("integration test: needs a control plane (run without -short)")
	}
}

func startManager(ctx context.Context) (<-chan struct{}, error) {
	ctrl.SetLogger(klog.NewKlogr())
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:  apis.NewScheme(),
		Metrics: metricsserver.Options{BindAddress: "0"},
	})
	if err != nil {
		return nil, err
	}
	if err := isvcctrl.New(mgr.GetClient(), isvcctrl.WithDomain("spillway.test"), isvcctrl.WithSchedulerName("spillway-scheduler")).SetupWithManager(mgr); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			println("manager:", err.Error())
		}
	}()
	return done, nil
}

const (
	poll    = 100 * time.Millisecond
	timeout = 30 * time.Second
)

// eventually polls f until it returns nil or the timeout passes.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(poll)
	}
	t.Fatalf("%s: not within %s: %v", what, timeout, err)
}

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "isvc-"}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// seed reads the seed's InferenceService (what `spillway serve kserve`
// makes of the seed's arena command line) into namespace ns.
func seed(t *testing.T, ns string) *spillwayv1alpha1.InferenceService {
	t.Helper()
	root, err := framework.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "pkg", "inferenceservice", "testdata", "seed.isvc.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	isvc := &spillwayv1alpha1.InferenceService{}
	if err := yaml.UnmarshalStrict(b, isvc); err != nil {
		t.Fatal(err)
	}
	isvc.Namespace, isvc.UID = ns, ""
	return isvc
}

func get[T client.Object](t *testing.T, ns, name string, obj T) (T, error) {
	t.Helper()
	err := env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, obj)
	return obj, err
}

func condition(isvc *spillwayv1alpha1.InferenceService, typ string) string {
	c := meta.FindStatusCondition(isvc.Status.Conditions, typ)
	if c == nil {
		return "<none>"
	}
	return string(c.Status) + "/" + c.Reason
}

// makeNode registers a kubelet-less node of a pool.
func makeNode(t *testing.T, name, pool string) {
	t.Helper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{spillwayv1alpha1.LabelNodePool: pool}}}
	if err := env.Client.Create(context.Background(), n); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// placeAndReady binds a pod to a node (as the scheduler would) and marks it
// ready (as the kubelet would).
func placeAndReady(t *testing.T, pod *corev1.Pod, node string) {
	t.Helper()
	ctx := context.Background()
	b := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace}, Target: corev1.ObjectReference{Kind: "Node", Name: node}}
	if err := env.Clientset.CoreV1().Pods(pod.Namespace).Bind(ctx, b, metav1.CreateOptions{}); err != nil {
		t.Fatalf("binding %s: %v", pod.Name, err)
	}
	p, err := env.Clientset.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP = "10.1.0.1"
	p.Status.PodIPs = []corev1.PodIP{{IP: "10.1.0.1"}}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}
	if _, err := env.Clientset.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("pod status: %v", err)
	}
}

func podsOf(t *testing.T, ns, name string) []corev1.Pod {
	t.Helper()
	l := &corev1.PodList{}
	if err := env.Client.List(context.Background(), l, client.InNamespace(ns), client.MatchingLabels(isvcbuild.SelectorLabels(name))); err != nil {
		t.Fatal(err)
	}
	return l.Items
}

// TestSeedService follows the seed's service: children, status with pools,
// spec updates applied, replicas left to the HPA, no writes without change,
// deleted children recreated.
func TestSeedService(t *testing.T) {
	needEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	isvc := seed(t, ns)
	if err := env.Client.Create(ctx, isvc); err != nil {
		t.Fatal(err)
	}
	name := isvc.Name

	// Children, owned by the InferenceService, as the builders make them.
	var dep *appsv1.Deployment
	eventually(t, "children created", func() error {
		var err error
		if dep, err = get(t, ns, "qwen-chat-predictor", &appsv1.Deployment{}); err != nil {
			return err
		}
		if _, err := get(t, ns, "qwen-chat-predictor", &corev1.Service{}); err != nil {
			return err
		}
		_, err = get(t, ns, "qwen-chat-hpa", &autoscalingv2.HorizontalPodAutoscaler{})
		return err
	})
	if !metav1.IsControlledBy(dep, isvc) {
		t.Errorf("deployment owners %v", dep.OwnerReferences)
	}
	if got := dep.Spec.Template.Labels["app"]; got != "isvc.qwen-chat-predictor" {
		t.Errorf("pod label app=%q", got)
	}
	if got := dep.Spec.Template.Spec.SchedulerName; got != "spillway-scheduler" {
		t.Errorf("schedulerName %q, want the manager's --scheduler-name", got)
	}

	// One pod from the real Deployment controller; not placed yet.
	eventually(t, "status before any replica is ready", func() error {
		got, err := get(t, ns, name, &spillwayv1alpha1.InferenceService{})
		if err != nil {
			return err
		}
		if got.Status.URL != "http://qwen-chat-"+ns+".spillway.test" || got.Status.Replicas != 1 ||
			condition(got, "PredictorReady") != "False/NoReadyReplica" || condition(got, "Ready") != "False/PredictorNotReady" ||
			condition(got, "AutoscalerReady") == "<none>" {
			return fmt.Errorf("status %+v", got.Status)
		}
		return nil
	})

	// The pod lands on the IDC node and becomes ready.
	makeNode(t, "idc-0", "GPU-V100-Edge")
	pods := podsOf(t, ns, name)
	if len(pods) != 1 {
		t.Fatalf("%d pods", len(pods))
	}
	placeAndReady(t, &pods[0], "idc-0")
	eventually(t, "ready with pools", func() error {
		got, err := get(t, ns, name, &spillwayv1alpha1.InferenceService{})
		if err != nil {
			return err
		}
		want := []spillwayv1alpha1.PoolReplicas{{Pool: "GPU-V100-Edge", Replicas: 1, Ready: 1}}
		if d := cmp.Diff(want, got.Status.Pools); d != "" {
			return fmt.Errorf("pools (-want,+got):\n%s", d)
		}
		if got.Status.ReadyReplicas != 1 || condition(got, "Ready") != "True/Serving" || got.Status.ObservedGeneration != got.Generation {
			return fmt.Errorf("status %+v", got.Status)
		}
		return nil
	})

	// The HPA (here: by hand) scales to 2; the second replica spills to a
	// cloud node.
	dep, _ = get(t, ns, "qwen-chat-predictor", &appsv1.Deployment{})
	scale := dep.DeepCopy()
	scale.Spec.Replicas = ptr.To[int32](2)
	if err := env.Client.Patch(ctx, scale, client.MergeFrom(dep)); err != nil {
		t.Fatal(err)
	}
	makeNode(t, "cloud-0", "GPU-V100-Elastic")
	eventually(t, "second pod created", func() error {
		if n := len(podsOf(t, ns, name)); n != 2 {
			return fmt.Errorf("%d pods", n)
		}
		return nil
	})
	for _, p := range podsOf(t, ns, name) {
		if p.Spec.NodeName == "" {
			placeAndReady(t, &p, "cloud-0")
		}
	}
	eventually(t, "replicas per pool", func() error {
		got, err := get(t, ns, name, &spillwayv1alpha1.InferenceService{})
		if err != nil {
			return err
		}
		want := []spillwayv1alpha1.PoolReplicas{{Pool: "GPU-V100-Edge", Replicas: 1, Ready: 1}, {Pool: "GPU-V100-Elastic", Replicas: 1, Ready: 1}}
		if d := cmp.Diff(want, got.Status.Pools); d != "" {
			return fmt.Errorf("pools (-want,+got):\n%s", d)
		}
		if got.Status.DesiredReplicas != 2 || got.Status.ReadyReplicas != 2 {
			return fmt.Errorf("status %+v", got.Status)
		}
		return nil
	})

	// No change, no write: a spec field the children do not carry
	// (timeoutSeconds, the gateway's) is reconciled — observedGeneration
	// follows — without writing the children.
	d0, _ := get(t, ns, "qwen-chat-predictor", &appsv1.Deployment{})
	h0, _ := get(t, ns, "qwen-chat-hpa", &autoscalingv2.HorizontalPodAutoscaler{})
	s0, _ := get(t, ns, "qwen-chat-predictor", &corev1.Service{})
	cur, _ := get(t, ns, name, &spillwayv1alpha1.InferenceService{})
	upd := cur.DeepCopy()
	upd.Spec.Predictor.TimeoutSeconds = ptr.To[int64](600)
	if err := env.Client.Patch(ctx, upd, client.MergeFrom(cur)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "timeout change reconciled", func() error {
		got, err := get(t, ns, name, &spillwayv1alpha1.InferenceService{})
		if err != nil {
			return err
		}
		if got.Generation == cur.Generation || got.Status.ObservedGeneration != got.Generation {
			return fmt.Errorf("generation %d (was %d), observedGeneration %d", got.Generation, cur.Generation, got.Status.ObservedGeneration)
		}
		return nil
	})
	d1, _ := get(t, ns, "qwen-chat-predictor", &appsv1.Deployment{})
	h1, _ := get(t, ns, "qwen-chat-hpa", &autoscalingv2.HorizontalPodAutoscaler{})
	s1, _ := get(t, ns, "qwen-chat-predictor", &corev1.Service{})
	if d0.Generation != d1.Generation || h0.Generation != h1.Generation || s0.ResourceVersion != s1.ResourceVersion {
		t.Errorf("children written without a change: deployment gen %d->%d, hpa gen %d->%d, service rv %s->%s",
			d0.Generation, d1.Generation, h0.Generation, h1.Generation, s0.ResourceVersion, s1.ResourceVersion)
	}

	// A spec change reaches the children; the replicas stay the HPA's.
	cur, _ = get(t, ns, name, &spillwayv1alpha1.InferenceService{})
	upd = cur.DeepCopy()
	upd.Spec.Predictor.ScaleTarget = ptr.To[int32](70)
	upd.Spec.Predictor.Containers[0].Image = "registry.example/vllm:0.4.2"
	if err := env.Client.Patch(ctx, upd, client.MergeFrom(cur)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "spec change applied", func() error {
		h, err := get(t, ns, "qwen-chat-hpa", &autoscalingv2.HorizontalPodAutoscaler{})
		if err != nil {
			return err
		}
		if v := h.Spec.Metrics[0].Pods.Target.AverageValue.Value(); v != 70 {
			return fmt.Errorf("hpa target %d", v)
		}
		d, err := get(t, ns, "qwen-chat-predictor", &appsv1.Deployment{})
		if err != nil {
			return err
		}
		if img := d.Spec.Template.Spec.Containers[0].Image; img != "registry.example/vllm:0.4.2" {
			return fmt.Errorf("image %s", img)
		}
		if *d.Spec.Replicas != 2 {
			return fmt.Errorf("replicas %d, want the HPA's 2 kept", *d.Spec.Replicas)
		}
		return nil
	})

	// Deleted children come back.
	if err := env.Client.Delete(ctx, s1); err != nil {
		t.Fatal(err)
	}
	eventually(t, "service recreated", func() error {
		s, err := get(t, ns, "qwen-chat-predictor", &corev1.Service{})
		if err != nil {
			return err
		}
		if s.UID == s1.UID {
			return fmt.Errorf("still the old service")
		}
		return nil
	})
}

// TestClassChanges: hpa -> llm deletes the HPA; none pins the replicas at
// minReplicas; a bad spec is reported, not retried forever.
func TestClassChanges(t *testing.T) {
	needEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	isvc := seed(t, ns)
	isvc.Name = "switch"
	if err := env.Client.Create(ctx, isvc); err != nil {
		t.Fatal(err)
	}
	eventually(t, "hpa created", func() error {
		_, err := get(t, ns, "switch-hpa", &autoscalingv2.HorizontalPodAutoscaler{})
		return err
	})
	cur, _ := get(t, ns, "switch", &spillwayv1alpha1.InferenceService{})
	upd := cur.DeepCopy()
	upd.Spec.Predictor.AutoscalerClass = spillwayv1alpha1.AutoscalerLLM
	upd.Annotations = map[string]string{"autoscaling.spillway.io/stable-window": "soon"}
	if err := env.Client.Patch(ctx, upd, client.MergeFrom(cur)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "hpa deleted, bad annotation reported", func() error {
		if _, err := get(t, ns, "switch-hpa", &autoscalingv2.HorizontalPodAutoscaler{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("hpa still there (%v)", err)
		}
		got, err := get(t, ns, "switch", &spillwayv1alpha1.InferenceService{})
		if err != nil {
			return err
		}
		if c := condition(got, "AutoscalerReady"); c != "False/InvalidAutoscalingAnnotations" {
			return fmt.Errorf("AutoscalerReady %s", c)
		}
		return nil
	})

	cur, _ = get(t, ns, "switch", &spillwayv1alpha1.InferenceService{})
	upd = cur.DeepCopy()
	upd.Spec.Predictor.AutoscalerClass = spillwayv1alpha1.AutoscalerNone
	upd.Spec.Predictor.MinReplicas = ptr.To[int32](2)
	upd.Annotations = nil
	if err := env.Client.Patch(ctx, upd, client.MergeFrom(cur)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "replicas pinned at minReplicas", func() error {
		d, err := get(t, ns, "switch-predictor", &appsv1.Deployment{})
		if err != nil {
			return err
		}
		if *d.Spec.Replicas != 2 {
			return fmt.Errorf("replicas %d", *d.Spec.Replicas)
		}
		got, _ := get(t, ns, "switch", &spillwayv1alpha1.InferenceService{})
		if c := condition(got, "AutoscalerReady"); c != "True/FixedReplicas" {
			return fmt.Errorf("AutoscalerReady %s", c)
		}
		return nil
	})

	// Back to hpa from zero replicas (as class llm leaves an idle service):
	// the HPA would not scale a Deployment at zero, so the controller gives
	// it its minimum.
	d, _ := get(t, ns, "switch-predictor", &appsv1.Deployment{})
	zero := d.DeepCopy()
	zero.Spec.Replicas = ptr.To[int32](0)
	cur, _ = get(t, ns, "switch", &spillwayv1alpha1.InferenceService{})
	upd = cur.DeepCopy()
	upd.Spec.Predictor.AutoscalerClass = spillwayv1alpha1.AutoscalerLLM
	upd.Spec.Predictor.MinReplicas = ptr.To[int32](0)
	if err := env.Client.Patch(ctx, upd, client.MergeFrom(cur)); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Patch(ctx, zero, client.MergeFrom(d)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "scaled to zero with class llm", func() error {
		got, err := get(t, ns, "switch", &spillwayv1alpha1.InferenceService{})
		if err != nil {
			return err
		}
		if c := condition(got, "PredictorReady"); c != "True/ScaledToZero" || got.Status.ObservedGeneration != got.Generation {
			return fmt.Errorf("PredictorReady %s", c)
		}
		return nil
	})
	cur, _ = get(t, ns, "switch", &spillwayv1alpha1.InferenceService{})
	upd = cur.DeepCopy()
	upd.Spec.Predictor.AutoscalerClass = spillwayv1alpha1.AutoscalerHPA
	upd.Spec.Predictor.MinReplicas = ptr.To[int32](1)
	if err := env.Client.Patch(ctx, upd, client.MergeFrom(cur)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "hpa class restarts from zero", func() error {
		d, err := get(t, ns, "switch-predictor", &appsv1.Deployment{})
		if err != nil {
			return err
		}
		if *d.Spec.Replicas != 1 {
			return fmt.Errorf("replicas %d", *d.Spec.Replicas)
		}
		_, err = get(t, ns, "switch-hpa", &autoscalingv2.HorizontalPodAutoscaler{})
		return err
	})

	// A custom metric without a target cannot make an HPA.
	bad := seed(t, ns)
	bad.Name = "no-target"
	bad.Spec.Predictor.ScaleTarget = nil
	if err := env.Client.Create(ctx, bad); err != nil {
		t.Fatal(err)
	}
	eventually(t, "invalid spec reported", func() error {
		got, err := get(t, ns, "no-target", &spillwayv1alpha1.InferenceService{})
		if err != nil {
			return err
		}
		if c := condition(got, "PredictorReady"); c != "False/InvalidSpec" {
			return fmt.Errorf("PredictorReady %s", c)
		}
		return nil
	})
}

// fixedGateway reports a fixed in-flight count.
type fixedGateway map[types.NamespacedName]float64

func (g fixedGateway) InFlight(context.Context) (map[types.NamespacedName]float64, error) {
	return g, nil
}

type noEngines struct{}

func (noEngines) EngineMetrics(context.Context, string) (llmautoscaler.EngineMetrics, error) {
	return llmautoscaler.EngineMetrics{}, fmt.Errorf("no engine in this test")
}

// TestLLMAutoscalerScalesTheDeployment ticks the llm autoscaler (fake clock)
// against the real apiserver: 24 requests in flight at target 8 make the
// scale subresource 3, and the real Deployment controller makes 3 pods.
func TestLLMAutoscalerScalesTheDeployment(t *testing.T) {
	needEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	isvc := seed(t, ns)
	isvc.Name = "chat"
	isvc.Spec.Predictor.AutoscalerClass = spillwayv1alpha1.AutoscalerLLM
	isvc.Spec.Predictor.MaxReplicas = 5
	isvc.Spec.Predictor.ScaleMetric, isvc.Spec.Predictor.ScaleTarget = "concurrency", ptr.To[int32](8)
	if err := env.Client.Create(ctx, isvc); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deployment created", func() error {
		_, err := get(t, ns, "chat-predictor", &appsv1.Deployment{})
		return err
	})
	clk := testingclock.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	a := llmautoscaler.New(env.Client, llmautoscaler.WithClock(clk), llmautoscaler.WithRegisterer(prometheus.NewRegistry()),
		llmautoscaler.WithInFlightSource(fixedGateway{{Namespace: ns, Name: "chat"}: 24}), llmautoscaler.WithEngineSource(noEngines{}))
	for range 5 {
		if err := a.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		clk.Step(llmautoscaler.DefaultInterval)
	}
	d, _ := get(t, ns, "chat-predictor", &appsv1.Deployment{})
	if *d.Spec.Replicas != 3 {
		t.Fatalf("replicas %d, want 3", *d.Spec.Replicas)
	}
	eventually(t, "three pods", func() error {
		if n := len(podsOf(t, ns, "chat")); n != 3 {
			return fmt.Errorf("%d pods", n)
		}
		got, _ := get(t, ns, "chat", &spillwayv1alpha1.InferenceService{})
		if got.Status.DesiredReplicas != 3 || condition(got, "AutoscalerReady") != "True/LLMAutoscaler" {
			return fmt.Errorf("status %+v", got.Status)
		}
		return nil
	})
}

// TestNameTaken: a Service of the predictor's name that the InferenceService
// does not own is left alone and the conflict is reported.
func TestNameTaken(t *testing.T) {
	needEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	other := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "taken-predictor", Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "someone-else"}, Ports: []corev1.ServicePort{{Port: 9999}}}}
	if err := env.Client.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	isvc := seed(t, ns)
	isvc.Name = "taken"
	if err := env.Client.Create(ctx, isvc); err != nil {
		t.Fatal(err)
	}
	eventually(t, "conflict reported", func() error {
		got, err := get(t, ns, "taken", &spillwayv1alpha1.InferenceService{})
		if err != nil {
			return err
		}
		if c := condition(got, "PredictorReady"); c != "False/ChildConflict" {
			return fmt.Errorf("PredictorReady %s", c)
		}
		return nil
	})
	s, _ := get(t, ns, "taken-predictor", &corev1.Service{})
	if s.Spec.Selector["app"] != "someone-else" || s.Spec.Ports[0].Port != 9999 {
		t.Errorf("someone else's service was changed: %+v", s.Spec)
	}
}

// TestNodeChangesPool: relabelling a node moves its replica in
// status.pools.
func TestNodeChangesPool(t *testing.T) {
	needEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	isvc := seed(t, ns)
	isvc.Name = "moving"
	isvc.Spec.Predictor.AutoscalerClass = spillwayv1alpha1.AutoscalerNone
	if err := env.Client.Create(ctx, isvc); err != nil {
		t.Fatal(err)
	}
	makeNode(t, "move-0", "pool-a")
	eventually(t, "pod created", func() error {
		if n := len(podsOf(t, ns, "moving")); n != 1 {
			return fmt.Errorf("%d pods", n)
		}
		return nil
	})
	placeAndReady(t, &podsOf(t, ns, "moving")[0], "move-0")
	pools := func(want string) func() error {
		return func() error {
			got, err := get(t, ns, "moving", &spillwayv1alpha1.InferenceService{})
			if err != nil {
				return err
			}
			if len(got.Status.Pools) != 1 || got.Status.Pools[0].Pool != want {
				return fmt.Errorf("pools %+v", got.Status.Pools)
			}
			return nil
		}
	}
	eventually(t, "on pool-a", pools("pool-a"))
	node := &corev1.Node{}
	if err := env.Client.Get(ctx, types.NamespacedName{Name: "move-0"}, node); err != nil {
		t.Fatal(err)
	}
	moved := node.DeepCopy()
	moved.Labels[spillwayv1alpha1.LabelNodePool] = "pool-b"
	if err := env.Client.Patch(ctx, moved, client.MergeFrom(node)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "on pool-b", pools("pool-b"))
}
