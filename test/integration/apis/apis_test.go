// Package apis_test checks Spillway's CRDs against a real kube-apiserver: they
// install, the shipped samples (the seed's ACK ResourcePolicy among them) apply
// with kubectl unchanged, bad objects are rejected with a useful message, and
// status subresources behave.
package apis_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	schedulingv1alpha1 "github.com/spillway-io/spillway/apis/scheduling/v1alpha1"
	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/test/integration/framework"
)

var env *framework.Env

func TestMain(m *testing.M) {
	if testingShort() {
		os.Exit(m.Run())
	}
	var err error
	env, err = framework.Launch()
	if err != nil {
		println("starting the control plane:", err.Error())
		os.Exit(1)
	}
	code := m.Run()
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

func kubectl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(env.AssetsDir, "kubectl"), append([]string{"--kubeconfig", env.KubeconfigPath}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestSamplesApplyWithKubectl(t *testing.T) {
	needEnv(t)
	root, err := framework.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	samples, err := filepath.Glob(filepath.Join(root, "config", "samples", "*.yaml"))
	if err != nil || len(samples) == 0 {
		t.Fatalf("no samples found: %v", err)
	}
	for _, s := range samples {
		t.Run(filepath.Base(s), func(t *testing.T) {
			out, err := kubectl(t, "apply", "--server-side", "-f", s)
			if err != nil {
				t.Fatalf("kubectl apply -f %s: %v\n%s", s, err, out)
			}
		})
	}

	// The seed policy reads back as the user wrote it, with the documented defaults.
	var rp schedulingv1alpha1.ResourcePolicy
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: "default", Name: "qwen-chat"}, &rp); err != nil {
		t.Fatal(err)
	}
	want := schedulingv1alpha1.ResourcePolicySpec{
		Selector:             map[string]string{"app": "isvc.qwen-predictor"},
		Strategy:             schedulingv1alpha1.StrategyPrefer,
		PreemptPolicy:        schedulingv1alpha1.PreemptAfterAllUnits,
		IgnoreTerminatingPod: ptr.To(true),
		Units: []schedulingv1alpha1.Unit{
			{Resource: schedulingv1alpha1.ResourceECS, NodeSelector: map[string]string{"alibabacloud.com/nodepool-id": "npxxxxxx"}},
			{Resource: schedulingv1alpha1.ResourceElastic, NodeSelector: map[string]string{"alibabacloud.com/nodepool-id": "npxxxxxy"}},
		},
	}
	if diff := cmp.Diff(want, rp.Spec); diff != "" {
		t.Errorf("seed ResourcePolicy spec (-want,+got):\n%s", diff)
	}

	out, err := kubectl(t, "get", "resourcepolicies.scheduling.alibabacloud.com", "-n", "default")
	if err != nil {
		t.Fatalf("kubectl get: %v\n%s", err, out)
	}
	if !strings.Contains(out, "STRATEGY") || !strings.Contains(out, "qwen-chat") {
		t.Errorf("kubectl get resourcepolicies shows no printer columns:\n%s", out)
	}
}

// TestRejectsBadObjects applies objects a user might get wrong and expects the
// API server's validation error to say what is wrong.
func TestRejectsBadObjects(t *testing.T) {
	needEnv(t)
	const rpHead = "apiVersion: scheduling.alibabacloud.com/v1alpha1\nkind: ResourcePolicy\nmetadata: {name: bad, namespace: default}\n"
	const npHead = "apiVersion: spillway.io/v1alpha1\nkind: NodePool\nmetadata: {name: bad}\n"
	const isHead = "apiVersion: spillway.io/v1alpha1\nkind: InferenceService\nmetadata: {name: bad, namespace: default}\n"
	const unit = "  units: [{resource: ecs, nodeSelector: {a: b}}]\n"
	cases := []struct {
		name, yaml string
		want       []string // substrings of the error message
	}{
		{"rp without units", rpHead + "spec: {selector: {app: x}}\n", []string{"spec.units", "Required value"}},
		{"rp with empty units", rpHead + "spec: {units: []}\n", []string{"spec.units", "at least 1 items"}},
		{"rp unknown strategy", rpHead + "spec:\n  strategy: preferred\n" + unit, []string{"spec.strategy", `Unsupported value: "preferred"`, `"prefer"`, `"required"`}},
		{"rp unknown resource", rpHead + "spec:\n  units: [{resource: gpu}]\n", []string{"spec.units[0].resource", "Unsupported value"}},
		{"rp negative max", rpHead + "spec:\n  units: [{resource: ecs, max: -1}]\n", []string{"spec.units[0].max", "greater than or equal to 0"}},
		{"rp unknown preemptPolicy", rpHead + "spec:\n  preemptPolicy: Never\n" + unit, []string{"spec.preemptPolicy", "Unsupported value"}},
		{"rp unknown tryNext policy", rpHead + "spec:\n  whenTryNextUnits: {policy: Whenever}\n" + unit, []string{"spec.whenTryNextUnits.policy", "Unsupported value"}},
		{"rp bad timeout", rpHead + "spec:\n  whenTryNextUnits: {policy: TimeoutOrExceedMax, timeout: soon}\n" + unit, []string{"spec.whenTryNextUnits.timeout", "should match"}},
		{"rp zero timeout", rpHead + "spec:\n  whenTryNextUnits: {policy: TimeoutOrExceedMax, timeout: 0s}\n" + unit, []string{"timeout must be a positive duration"}},
		{"rp matchLabelKeys without max", rpHead + "spec:\n  matchLabelKeys: [pod-template-hash]\n" + unit, []string{"matchLabelKeys needs max or maxResources"}},
		{"rp ignorePreviousPod without max", rpHead + "spec:\n  ignorePreviousPod: true\n" + unit, []string{"ignorePreviousPod needs max or maxResources"}},
		{"np min > max", npHead + "spec: {type: Elastic, role: elastic, minSize: 3, maxSize: 1, provider: {name: sim}}\n", []string{"minSize must not be greater than maxSize"}},
		{"np elastic without provider", npHead + "spec: {type: Elastic, role: elastic, maxSize: 3}\n", []string{"an Elastic pool needs a provider"}},
		{"np elastic without max", npHead + "spec: {type: Elastic, role: elastic, provider: {name: sim}}\n", []string{"an Elastic pool needs maxSize"}},
		{"np unknown type", npHead + "spec: {type: Dynamic, role: idc}\n", []string{"spec.type", "Unsupported value"}},
		{"np negative gpus", npHead + "spec: {type: Static, role: idc, template: {gpus: -1}}\n", []string{"spec.template.gpus", "greater than or equal to 0"}},
		{"isvc without containers", isHead + "spec: {predictor: {minReplicas: 1}}\n", []string{"spec.predictor.containers", "Required value"}},
		{"isvc min > max", isHead + "spec: {predictor: {minReplicas: 3, maxReplicas: 1, containers: [{name: c, image: i}]}}\n", []string{"minReplicas must not be greater than maxReplicas"}},
		{"isvc hpa to zero", isHead + "spec: {predictor: {minReplicas: 0, autoscalerClass: hpa, containers: [{name: c, image: i}]}}\n", []string{"autoscalerClass hpa cannot scale to zero"}},
		{"isvc unknown class", isHead + "spec: {predictor: {autoscalerClass: kpa, containers: [{name: c, image: i}]}}\n", []string{"spec.predictor.autoscalerClass", "Unsupported value"}},
		{"isvc relative mount", isHead + "spec: {predictor: {data: [{claimName: m, mountPath: models}], containers: [{name: c, image: i}]}}\n", []string{"spec.predictor.data[0].mountPath", "should match"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := &unstructured.Unstructured{}
			if err := yaml.Unmarshal([]byte(tc.yaml), &obj.Object); err != nil {
				t.Fatalf("test case YAML: %v", err)
			}
			err := env.Client.Create(context.Background(), obj)
			if err == nil {
				_ = env.Client.Delete(context.Background(), obj)
				t.Fatalf("the API server accepted %s", tc.name)
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want an Invalid error, got %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err.Error(), w)
				}
			}
		})
	}
}

// TestStatusSubresources checks that status is written only through /status
// and that spec writes do not touch it.
func TestStatusSubresources(t *testing.T) {
	needEnv(t)
	ctx := context.Background()
	np := &spillwayv1alpha1.NodePool{
		ObjectMeta: metav1.ObjectMeta{Name: "gpu-v100-elastic"},
		Spec: spillwayv1alpha1.NodePoolSpec{
			Type: spillwayv1alpha1.NodePoolElastic, Role: spillwayv1alpha1.RoleElastic,
			MaxSize: ptr.To[int32](3), Provider: &spillwayv1alpha1.ProviderSpec{Name: "sim"},
			Template: spillwayv1alpha1.NodeTemplate{GPUs: 1, GPUModel: "V100"},
		},
	}
	if err := env.Client.Create(ctx, np); err != nil {
		t.Fatal(err)
	}
	// A status set on the main resource is dropped.
	np.Status.Size = 7
	if err := env.Client.Update(ctx, np); err != nil {
		t.Fatal(err)
	}
	got := &spillwayv1alpha1.NodePool{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(np), got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Size != 0 {
		t.Errorf("status.size written through the main resource: %d", got.Status.Size)
	}
	// Through /status it sticks, and the spec is left alone.
	got.Status = spillwayv1alpha1.NodePoolStatus{Size: 2, Desired: 3, InFlight: 1}
	got.Spec.MaxSize = ptr.To[int32](9)
	if err := env.Client.Status().Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	again := &spillwayv1alpha1.NodePool{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(np), again); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(spillwayv1alpha1.NodePoolStatus{Size: 2, Desired: 3, InFlight: 1}, again.Status); diff != "" {
		t.Errorf("status after /status update (-want,+got):\n%s", diff)
	}
	if *again.Spec.MaxSize != 3 {
		t.Errorf("spec.maxSize changed through /status: %d", *again.Spec.MaxSize)
	}

	// The same for a ResourcePolicy's per-unit counts.
	rp := &schedulingv1alpha1.ResourcePolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "status", Namespace: "default"},
		Spec: schedulingv1alpha1.ResourcePolicySpec{Units: []schedulingv1alpha1.Unit{
			{Resource: schedulingv1alpha1.ResourceECS, Max: ptr.To[int32](1)},
		}},
	}
	if err := env.Client.Create(ctx, rp); err != nil {
		t.Fatal(err)
	}
	rp.Status.Units = []schedulingv1alpha1.UnitStatus{{Index: 0, Resource: schedulingv1alpha1.ResourceECS, Pods: 1, Max: ptr.To[int32](1)}}
	if err := env.Client.Status().Update(ctx, rp); err != nil {
		t.Fatal(err)
	}
	gotRP := &schedulingv1alpha1.ResourcePolicy{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(rp), gotRP); err != nil {
		t.Fatal(err)
	}
	if len(gotRP.Status.Units) != 1 || gotRP.Status.Units[0].Pods != 1 {
		t.Errorf("ResourcePolicy status not stored: %+v", gotRP.Status)
	}
}
