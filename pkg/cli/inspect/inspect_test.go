package inspect_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/pkg/cli/inspect"
	"github.com/spillway-io/spillway/pkg/cli/serve"
	"github.com/spillway-io/spillway/test/integration/framework"
)

// run runs fresh commands (a cobra command keeps its flag values and
// context from one execution to the next).
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := &cobra.Command{Use: "spillway", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(append(inspect.NewCommands(), serve.NewCommand())...)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

func node(name, pool string, gpus int64) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{spillwayv1alpha1.LabelNodePool: pool}}}
}

// TestCommandsAgainstAPIServer runs serve kserve, list, get, top --once and
// delete against a real kube-apiserver.
func TestCommandsAgainstAPIServer(t *testing.T) {
	env := framework.Start(t)
	ctx := context.Background()
	c := env.Client
	kc := "--kubeconfig=" + env.KubeconfigPath

	// Pools and nodes: one IDC GPU node, one elastic GPU node.
	for _, p := range []spillwayv1alpha1.NodePool{
		{ObjectMeta: metav1.ObjectMeta{Name: "gpu-v100-edge"}, Spec: spillwayv1alpha1.NodePoolSpec{Type: spillwayv1alpha1.NodePoolStatic, Role: spillwayv1alpha1.RoleIDC}},
		{ObjectMeta: metav1.ObjectMeta{Name: "gpu-v100-elastic"}, Spec: spillwayv1alpha1.NodePoolSpec{Type: spillwayv1alpha1.NodePoolElastic, Role: spillwayv1alpha1.RoleElastic,
			MaxSize: ptr.To[int32](3), Provider: &spillwayv1alpha1.ProviderSpec{Name: "fake"}, PricePerHour: ptr.To(resource.MustParse("2.5"))}},
	} {
		if err := c.Create(ctx, &p); err != nil {
			t.Fatalf("creating NodePool %s: %v", p.Name, err)
		}
	}
	for _, n := range []*corev1.Node{node("idc-1", "gpu-v100-edge", 1), node("cloud-1", "gpu-v100-elastic", 1)} {
		if err := c.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
		n.Status.Allocatable = corev1.ResourceList{spillwayv1alpha1.ResourceGPU: resource.MustParse("1")}
		n.Status.Capacity = n.Status.Allocatable
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
		if err := c.Status().Update(ctx, n); err != nil {
			t.Fatal(err)
		}
	}

	// serve kserve creates the InferenceService in the kubeconfig's namespace.
	out, err := run(t, "serve", "kserve", kc, "--name=qwen-chat", "--image=vllm:0.4.1", "--gpus=1",
		"--scale-metric=DCGM_CUSTOM_PROCESS_SM_UTIL", "--scale-target=50", "--min-replicas=1", "--max-replicas=3",
		"python3 -m vllm.entrypoints.openai.api_server --port 8080")
	if err != nil {
		t.Fatalf("serve kserve: %v\n%s", err, out)
	}
	var isvc spillwayv1alpha1.InferenceService
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "qwen-chat"}, &isvc); err != nil {
		t.Fatalf("the InferenceService was not created: %v", err)
	}
	if _, err := run(t, "serve", "kserve", kc, "--name=qwen-chat", "--image=i", "run"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second serve: error %v, want already exists", err)
	}
	isvc.Status.URL = "http://qwen-chat-default.example.com"
	isvc.Status.Replicas, isvc.Status.ReadyReplicas, isvc.Status.DesiredReplicas = 3, 2, 3
	if err := c.Status().Update(ctx, &isvc); err != nil {
		t.Fatal(err)
	}
	// Three replicas: one ready on the IDC node, one ready on the cloud node, one pending.
	for i, nodeName := range []string{"idc-1", "cloud-1", ""} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "qwen-chat-predictor-" + string(rune('a'+i)), Labels: map[string]string{"app": inspect.PodApp("qwen-chat")}},
			Spec: corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "kserve-container", Image: "vllm",
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{spillwayv1alpha1.ResourceGPU: resource.MustParse("1")},
					Limits: corev1.ResourceList{spillwayv1alpha1.ResourceGPU: resource.MustParse("1")}}}}},
		}
		if err := c.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		if nodeName != "" {
			pod.Status.Phase = corev1.PodRunning
			pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
			if err := c.Status().Update(ctx, pod); err != nil {
				t.Fatal(err)
			}
		}
	}
	ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "qwen-chat-predictor-c.1"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "qwen-chat-predictor-c"},
		Reason:         "FailedScheduling", Message: "0/2 nodes are available: 2 Insufficient nvidia.com/gpu", Type: "Warning",
		LastTimestamp: metav1.Now()}
	if err := c.Create(ctx, ev); err != nil {
		t.Fatal(err)
	}

	out, err = run(t, "list", kc)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	for _, want := range []string{"qwen-chat", "http://qwen-chat-default.example.com", "gpu-v100-edge=1/1,gpu-v100-elastic=1/1,pending=0/1"} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
	out, err = run(t, "get", "qwen-chat", kc)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	for _, want := range []string{"http://qwen-chat-default.example.com", "gpu-v100-edge", "pending", "Class:", "hpa",
		"DCGM_CUSTOM_PROCESS_SM_UTIL target 50", "FailedScheduling", "Insufficient nvidia.com/gpu"} {
		if !strings.Contains(out, want) {
			t.Errorf("get lacks %q:\n%s", want, out)
		}
	}
	out, err = run(t, "top", "--once", "--gateway-metrics=none", kc)
	if err != nil {
		t.Fatalf("top: %v", err)
	}
	for _, want := range []string{"default/qwen-chat", "2/3", "gpu-v100-elastic", "elastic", "1/1", "2.50", "TOTAL",
		"note: GPU UTIL, QUEUE: custom.metrics.k8s.io"} {
		if !strings.Contains(out, want) {
			t.Errorf("top lacks %q:\n%s", want, out)
		}
	}
	if _, err := run(t, "get", "nope", kc); err == nil || !strings.Contains(err.Error(), `"nope" not found`) {
		t.Errorf("get nope: %v", err)
	}
	if _, err := run(t, "get", kc); err == nil {
		t.Error("get without a name: no error")
	}
	if _, err := run(t, "top", "--interval=1ms", "--once", kc); err == nil || !strings.Contains(err.Error(), "--interval") {
		t.Errorf("top --interval=1ms: %v", err)
	}
	out, err = run(t, "delete", "qwen-chat", kc)
	if err != nil {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	err = c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "qwen-chat"}, &isvc)
	if err == nil && isvc.DeletionTimestamp == nil {
		t.Error("the InferenceService is still there after delete")
	}
	if _, err := run(t, "delete", "qwen-chat", kc); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("second delete: %v", err)
	}
}
