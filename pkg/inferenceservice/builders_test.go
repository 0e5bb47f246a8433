package inferenceservice

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func readISVC(t *testing.T, path string) *spillwayv1alpha1.InferenceService {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	isvc := &spillwayv1alpha1.InferenceService{}
	if err := yaml.UnmarshalStrict(b, isvc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return isvc
}

// checkGolden compares obj's YAML with the golden file; a nil obj means the
// file must not exist.
func checkGolden(t *testing.T, path string, obj any, isNil bool) {
	t.Helper()
	if isNil {
		if *update {
			_ = os.Remove(path)
		}
		if _, err := os.Stat(path); err == nil {
			t.Errorf("%s exists but the builder returned nothing", path)
		}
		return
	}
	got, err := yaml.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("%s mismatch (-want,+got):\n%s", path, d)
	}
}

// TestGolden builds the children of every testdata/*.isvc.yaml (seed.isvc.yaml
// is what `spillway serve kserve` makes of the seed's arena command line) and
// compares them with the golden files.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "*.isvc.yaml"))
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	for _, in := range inputs {
		base := strings.TrimSuffix(in, ".isvc.yaml")
		t.Run(filepath.Base(base), func(t *testing.T) {
			isvc := readISVC(t, in)
			d, err := MakeDeployment(isvc)
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, base+".deployment.golden.yaml", d, false)
			s, err := MakeService(isvc)
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, base+".service.golden.yaml", s, false)
			h, err := MakeHPA(isvc)
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, base+".hpa.golden.yaml", h, h == nil)
		})
	}
}

// TestSeedContract checks, apart from the golden text, the facts the rest of
// Spillway relies on for the seed service.
func TestSeedContract(t *testing.T) {
	isvc := readISVC(t, filepath.Join("testdata", "seed.isvc.yaml"))
	d, err := MakeDeployment(isvc)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Spec.Template.Labels["app"]; got != "isvc.qwen-chat-predictor" {
		t.Errorf("pod label app = %q, want isvc.qwen-chat-predictor (the seed ResourcePolicy's selector)", got)
	}
	if d.Name != "qwen-chat-predictor" {
		t.Errorf("deployment name %q", d.Name)
	}
	c := d.Spec.Template.Spec.Containers[0]
	if got := c.ReadinessProbe.HTTPGet; got.Path != "/health" || got.Port.IntValue() != 8080 {
		t.Errorf("readiness probe %+v, want GET /health on 8080", got)
	}
	if q := c.Resources.Limits[spillwayv1alpha1.ResourceGPU]; q.Value() != 1 {
		t.Errorf("gpu limit %v", q)
	}
	if diff := cmp.Diff([]corev1.VolumeMount{{Name: "llm-model", MountPath: "/mnt/models/Qwen"}}, c.VolumeMounts); diff != "" {
		t.Errorf("mounts (-want,+got):\n%s", diff)
	}
	h, err := MakeHPA(isvc)
	if err != nil {
		t.Fatal(err)
	}
	if h.Name != "qwen-chat-hpa" || h.Spec.Metrics[0].Pods.Metric.Name != "DCGM_CUSTOM_PROCESS_SM_UTIL" ||
		h.Spec.Metrics[0].Pods.Target.AverageValue.Value() != 50 || *h.Spec.MinReplicas != 1 || h.Spec.MaxReplicas != 3 {
		t.Errorf("hpa %+v", h.Spec)
	}
	if got := URL(isvc, ""); got != "http://qwen-chat-default.example.com" {
		t.Errorf("URL %q", got)
	}
}

func TestPortFromCommandLine(t *testing.T) {
	cases := []struct {
		args   []string
		want   int32
		wantOK bool
	}{
		{[]string{"sh", "-c", "python3 -m vllm.entrypoints.openai.api_server --port 8080 --model m"}, 8080, true},
		{[]string{"vllm", "serve", "--port=9000"}, 9000, true},
		{[]string{"sh", "-c", "x --port 1 --port 2"}, 2, true},
		{[]string{"sh", "-c", "x --port"}, 0, false},
		{[]string{"sh", "-c", "x --port abc"}, 0, false},
		{[]string{"sh", "-c", "x --port 70000"}, 0, false},
		{[]string{"sh", "-c", "x --port='8081'"}, 8081, true},
		{[]string{"x --portal 5"}, 0, false},
		{nil, 0, false},
	}
	for _, tc := range cases {
		got, ok := PortFromCommandLine(tc.args)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("PortFromCommandLine(%q) = %d, %v; want %d, %v", tc.args, got, ok, tc.want, tc.wantOK)
		}
	}
}

func TestServerPort(t *testing.T) {
	cases := []struct {
		name string
		c    corev1.Container
		want int32
	}{
		{"command wins", corev1.Container{Command: []string{"sh", "-c", "s --port 8000"}, Ports: []corev1.ContainerPort{{ContainerPort: 7000}}}, 8000},
		{"declared port", corev1.Container{Ports: []corev1.ContainerPort{{ContainerPort: 7000}}}, 7000},
		{"default", corev1.Container{}, 8080},
	}
	for _, tc := range cases {
		if got := ServerPort(&tc.c); got != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestMakeHPA(t *testing.T) {
	mk := func(class spillwayv1alpha1.AutoscalerClass, metric string, target *int32, minR int32) *spillwayv1alpha1.InferenceService {
		i := &spillwayv1alpha1.InferenceService{}
		i.Name, i.Namespace = "s", "ns"
		i.Spec.Predictor = spillwayv1alpha1.PredictorSpec{
			Containers: []corev1.Container{{Image: "x"}}, AutoscalerClass: class,
			ScaleMetric: metric, ScaleTarget: target, MinReplicas: ptr.To(minR), MaxReplicas: 5,
		}
		return i
	}
	cases := []struct {
		name    string
		isvc    *spillwayv1alpha1.InferenceService
		want    *autoscalingv2.MetricSpec
		wantNil bool
		wantErr string
	}{
		{name: "llm has none", isvc: mk(spillwayv1alpha1.AutoscalerLLM, "", nil, 0), wantNil: true},
		{name: "none has none", isvc: mk(spillwayv1alpha1.AutoscalerNone, "", nil, 1), wantNil: true},
		{name: "memory", isvc: mk("", "memory", ptr.To[int32](70), 1), want: &autoscalingv2.MetricSpec{
			Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
				Name: corev1.ResourceMemory, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr.To[int32](70)}}}},
		{name: "vllm metric name is served with _", isvc: mk("hpa", "vllm:num_requests_waiting", ptr.To[int32](3), 1)},
		{name: "custom without target", isvc: mk("hpa", "rps", nil, 1), wantErr: "needs a scaleTarget"},
		{name: "zero min", isvc: mk("hpa", "", nil, 0), wantErr: "cannot scale to zero"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, err := MakeHPA(tc.isvc)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantNil != (h == nil) {
				t.Fatalf("hpa %v, want nil %v", h, tc.wantNil)
			}
			if tc.want != nil {
				if d := cmp.Diff(*tc.want, h.Spec.Metrics[0]); d != "" {
					t.Errorf("metric (-want,+got):\n%s", d)
				}
			}
			if tc.name == "vllm metric name is served with _" && h.Spec.Metrics[0].Pods.Metric.Name != "vllm_num_requests_waiting" {
				t.Errorf("metric name %q", h.Spec.Metrics[0].Pods.Metric.Name)
			}
		})
	}
}

func TestNoContainer(t *testing.T) {
	isvc := &spillwayv1alpha1.InferenceService{}
	if _, err := MakeDeployment(isvc); !errors.Is(err, ErrNoContainer) {
		t.Errorf("MakeDeployment: %v", err)
	}
	if _, err := MakeService(isvc); !errors.Is(err, ErrNoContainer) {
		t.Errorf("MakeService: %v", err)
	}
}

// TestBuildersDoNotMutate checks the builders leave the InferenceService as
// they found it (the controller passes the cached object).
func TestBuildersDoNotMutate(t *testing.T) {
	isvc := readISVC(t, filepath.Join("testdata", "llm-scale-to-zero.isvc.yaml"))
	before := isvc.DeepCopy()
	var d *appsv1.Deployment
	d, _ = MakeDeployment(isvc)
	d.Spec.Template.Labels["x"] = "y"
	d.Spec.Template.Spec.Containers[0].Args[0] = "changed"
	_, _ = MakeService(isvc)
	_, _ = MakeHPA(isvc)
	if diff := cmp.Diff(before, isvc); diff != "" {
		t.Errorf("builders changed the input (-want,+got):\n%s", diff)
	}
}

func FuzzPortFromCommandLine(f *testing.F) {
	f.Add("python3 -m vllm --port 8080 --model x")
	f.Add("--port=65535")
	f.Add("--port --port=")
	f.Fuzz(func(t *testing.T, s string) {
		p, ok := PortFromCommandLine([]string{"sh", "-c", s})
		if ok && (p < 1 || p > 65535) {
			t.Fatalf("port %d out of range for %q", p, s)
		}
		if !ok && p != 0 {
			t.Fatalf("port %d without ok for %q", p, s)
		}
	})
}

// TestSchedulerName checks the predictor's schedulerName reaches the pods.
func TestSchedulerName(t *testing.T) {
	isvc := readISVC(t, filepath.Join("testdata", "llm-scale-to-zero.isvc.yaml"))
	isvc.Spec.Predictor.SchedulerName = "spillway-scheduler"
	d, err := MakeDeployment(isvc)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Spec.Template.Spec.SchedulerName; got != "spillway-scheduler" {
		t.Errorf("schedulerName %q", got)
	}
}

// TestUndeclaredServerPort checks a command line listening on a port the
// container does not declare adds it under a free name (a Deployment with
// two ports named http is invalid).
func TestUndeclaredServerPort(t *testing.T) {
	isvc := readISVC(t, filepath.Join("testdata", "llm-scale-to-zero.isvc.yaml"))
	c := &isvc.Spec.Predictor.Containers[0]
	c.Command = []string{"sh", "-c", "vllm serve /models/x --port 8000"}
	c.Args = nil
	c.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	d, err := MakeDeployment(isvc)
	if err != nil {
		t.Fatal(err)
	}
	got := d.Spec.Template.Spec.Containers[0].Ports
	if len(got) != 2 || got[1].ContainerPort != 8000 || got[1].Name == got[0].Name {
		t.Errorf("ports %+v", got)
	}
}
