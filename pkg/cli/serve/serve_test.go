package serve

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// seedArgs is the seed scenario's arena command line (reference.md), with the
// image the documentation elides filled in, as the shell passes it: the
// line continuation inside the quoted vLLM command leaves four spaces
// (TestSeedCommandLineExactly splits the line itself).
var seedArgs = []string{
	"--name=qwen-chat", "--image=kube-ai-registry.cn-shanghai.cr.aliyuncs.com/kube-ai/vllm:0.4.1",
	"--scale-metric=DCGM_CUSTOM_PROCESS_SM_UTIL", "--scale-target=50",
	"--min-replicas=1", "--max-replicas=3", "--gpus=1", "--cpu=4", "--memory=12Gi",
	"--data=llm-model:/mnt/models/Qwen",
	"python3 -m vllm.entrypoints.openai.api_server --port 8080 --trust-remote-code --served-model-name qwen " +
		"   --model /mnt/models/Qwen --gpu-memory-utilization 0.95 --quantization gptq --max-model-len=6144",
}

// runDry runs `serve kserve --dry-run` with args and returns its output.
func runDry(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := NewCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	// No kubeconfig is read in a dry run with --namespace.
	cmd.SetArgs(append([]string{"kserve", "--dry-run", "--namespace=default", "--kubeconfig=" + filepath.Join(t.TempDir(), "none")}, args...))
	err := cmd.Execute()
	return out.String(), err
}

func TestGolden(t *testing.T) {
	cases := []struct {
		name string
		args []string
	}{
		{"seed", seedArgs},
		{"every-flag", []string{
			"--name=chat", "--version=v2", "--image=img:1", "--image-pull-policy=Always", "--image-pull-secret=regcred",
			"--gpus=2", "--cpu=8", "--memory=32Gi", "--share-memory=4Gi",
			"-e", "HF_HOME=/cache", "--env=VLLM_LOGGING_LEVEL=DEBUG", "--env-from-secret=HF_TOKEN=hf",
			"-d", "models:/mnt/models:ro", "--data=cache:/cache",
			"-a", "team=llm", "-l", "tier=gold", "--toleration=gpu=true:NoSchedule", "--toleration=all",
			"--selector=spillway.io/gpu-model=V100", "--shell=bash", "--port=8000",
			"--min-replicas=0", "--max-replicas=5", "--scale-metric=vllm:num_requests_waiting", "--scale-target=4",
			"--autoscaler-class=llm", "--container-concurrency=16", "--timeout=600",
			"--enable-prometheus", "--metrics-port=9090",
			"vllm", "serve", "/mnt/models",
		}},
		{"fixed-replicas", []string{"--name=small", "--image=img:1", "--replicas=2", "--command=python3 -m server"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := runDry(t, tc.args...)
			if err != nil {
				t.Fatalf("serve kserve: %v", err)
			}
			path := filepath.Join("testdata", tc.name+".golden.yaml")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("InferenceService differs from %s (-want,+got):\n%s", path, diff)
			}
			// The golden YAML decodes back into the type (no stray fields).
			var back spillwayv1alpha1.InferenceService
			if err := yaml.UnmarshalStrict(want, &back); err != nil {
				t.Errorf("golden file does not decode strictly: %v", err)
			}
		})
	}
}

// TestFlagMapping checks each flag's effect on its own field.
func TestFlagMapping(t *testing.T) {
	base := Options{Namespace: "ns", Name: "svc", Image: "img", Command: "run", Port: 8080}
	gpu := resource.MustParse("1")
	cases := []struct {
		name  string
		apply func(*Options)
		get   func(*spillwayv1alpha1.InferenceService) any
		want  any
	}{
		{"gpus", func(o *Options) { o.GPUs = 1 }, func(i *spillwayv1alpha1.InferenceService) any {
			return i.Spec.Predictor.Containers[0].Resources.Limits[spillwayv1alpha1.ResourceGPU]
		}, gpu},
		{"command runs under the shell", func(o *Options) { o.Shell = "bash"; o.Command = "a b 'c'" }, func(i *spillwayv1alpha1.InferenceService) any {
			return i.Spec.Predictor.Containers[0].Command
		}, []string{"bash", "-c", "a b 'c'"}},
		{"namespace", func(o *Options) {}, func(i *spillwayv1alpha1.InferenceService) any { return i.Namespace }, "ns"},
		{"data", func(o *Options) { o.Data = []string{"llm-model:/mnt/models/Qwen"} }, func(i *spillwayv1alpha1.InferenceService) any {
			return i.Spec.Predictor.Data
		}, []spillwayv1alpha1.DataVolume{{ClaimName: "llm-model", MountPath: "/mnt/models/Qwen"}}},
		{"selector", func(o *Options) { o.Selectors = []string{"a=b", "c=d"} }, func(i *spillwayv1alpha1.InferenceService) any {
			return i.Spec.Predictor.NodeSelector
		}, map[string]string{"a": "b", "c": "d"}},
		{"labels on service and pods", func(o *Options) { o.Labels = []string{"x=y"} }, func(i *spillwayv1alpha1.InferenceService) any {
			return []map[string]string{i.Labels, i.Spec.Predictor.Labels}
		}, []map[string]string{{"x": "y"}, {"x": "y"}}},
		{"annotations on service and pods", func(o *Options) { o.Annotations = []string{"x=y z"} }, func(i *spillwayv1alpha1.InferenceService) any {
			return []map[string]string{i.Annotations, i.Spec.Predictor.Annotations}
		}, []map[string]string{{"x": "y z"}, {"x": "y z"}}},
		{"scale metric makes an hpa", func(o *Options) {
			o.ScaleMetric = "cpu"
			o.ScaleTarget = ptr.To[int32](70)
			o.MaxReplicas = ptr.To[int32](2)
		},
			func(i *spillwayv1alpha1.InferenceService) any {
				p := i.Spec.Predictor
				return []any{p.ScaleMetric, *p.ScaleTarget, *p.MinReplicas, p.MaxReplicas, p.AutoscalerClass}
			}, []any{"cpu", int32(70), int32(1), int32(2), spillwayv1alpha1.AutoscalerHPA}},
		{"no autoscaling by default", func(o *Options) {}, func(i *spillwayv1alpha1.InferenceService) any {
			p := i.Spec.Predictor
			return []any{*p.MinReplicas, p.MaxReplicas, p.AutoscalerClass}
		}, []any{int32(1), int32(0), spillwayv1alpha1.AutoscalerNone}},
		{"env from secret", func(o *Options) { o.EnvFromSecret = []string{"TOKEN=s"} }, func(i *spillwayv1alpha1.InferenceService) any {
			return i.Spec.Predictor.Containers[0].Env
		}, []corev1.EnvVar{{Name: "TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "s"}, Key: "TOKEN"}}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			tc.apply(&o)
			isvc, err := Build(o)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if diff := cmp.Diff(tc.want, tc.get(isvc)); diff != "" {
				t.Errorf("(-want,+got):\n%s", diff)
			}
		})
	}
}

func TestParseToleration(t *testing.T) {
	cases := []struct {
		in      string
		want    corev1.Toleration
		wantErr string
	}{
		{in: "all", want: corev1.Toleration{Operator: corev1.TolerationOpExists}},
		{in: "gpu", want: corev1.Toleration{Key: "gpu", Operator: corev1.TolerationOpExists}},
		{in: "gpu=v100", want: corev1.Toleration{Key: "gpu", Value: "v100", Operator: corev1.TolerationOpEqual}},
		{in: "gpu=v100:NoSchedule", want: corev1.Toleration{Key: "gpu", Value: "v100", Operator: corev1.TolerationOpEqual, Effect: corev1.TaintEffectNoSchedule}},
		{in: "gpu:NoExecute,Exists", want: corev1.Toleration{Key: "gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}},
		{in: "gpu=x:Sometimes", wantErr: `effect "Sometimes"`},
		{in: "gpu=x,Exists", wantErr: "operator Exists takes no value"},
		{in: "gpu,Maybe", wantErr: `operator "Maybe"`},
		{in: "=x", wantErr: "want \"all\""},
	}
	for _, tc := range cases {
		got, err := ParseToleration(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseToleration(%q) error = %v, want one containing %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseToleration(%q): %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseToleration(%q) (-want,+got):\n%s", tc.in, diff)
		}
	}
}

func TestBadFlags(t *testing.T) {
	ok := []string{"--name=x", "--image=i", "run"}
	cases := []struct {
		name string
		args []string
		want []string // substrings of the error
	}{
		{"unsupported flags are named", append([]string{"--gpumemory=4", "--enable-istio", "--storage-uri=s3://m"}, ok...),
			[]string{"--gpumemory", "--enable-istio", "--storage-uri", "does not support"}},
		{"unknown flag", append([]string{"--no-such-flag"}, ok...), []string{"unknown flag: --no-such-flag", "--help"}},
		{"missing name", []string{"--image=i", "run"}, []string{"--name is required"}},
		{"bad name", []string{"--name=Qwen_Chat", "--image=i", "run"}, []string{`--name "Qwen_Chat"`}},
		{"long name", []string{"--name=" + strings.Repeat("a", 54), "--image=i", "run"}, []string{"at most 53 characters"}},
		{"missing image", []string{"--name=x", "run"}, []string{"--image is required"}},
		{"missing command", []string{"--name=x", "--image=i"}, []string{"command is missing"}},
		{"both commands", append([]string{"--command=a"}, ok...), []string{"not both"}},
		{"bad memory", append([]string{"--memory=12GB"}, ok...), []string{`--memory "12GB": not a quantity`}},
		{"negative gpus", append([]string{"--gpus=-1"}, ok...), []string{"--gpus -1"}},
		{"gpus not a number", append([]string{"--gpus=one"}, ok...), []string{"--gpus"}},
		{"bad data", append([]string{"--data=models"}, ok...), []string{`--data "models": want PVC_NAME:/mount/path`}},
		{"relative data path", append([]string{"--data=m:mnt"}, ok...), []string{"want PVC_NAME:/mount/path"}},
		{"bad env", append([]string{"-e", "NOVALUE"}, ok...), []string{`--env "NOVALUE": want NAME=VALUE`}},
		{"bad label", append([]string{"-l", "a=b c"}, ok...), []string{`--label "a=b c": value`}},
		{"bad selector", append([]string{"--selector=x"}, ok...), []string{`--selector "x": want KEY=VALUE`}},
		{"min above max", append([]string{"--min-replicas=3", "--max-replicas=1"}, ok...), []string{"--max-replicas 1 is less than --min-replicas 3"}},
		{"metric without target", append([]string{"--scale-metric=cpu"}, ok...), []string{"needs --scale-target"}},
		{"target without metric", append([]string{"--scale-target=5"}, ok...), []string{"--scale-target needs --scale-metric"}},
		{"replicas with autoscaling", append([]string{"--replicas=2", "--max-replicas=3"}, ok...), []string{"--replicas sets a fixed number"}},
		{"scale to zero with hpa", append([]string{"--min-replicas=0", "--max-replicas=2"}, ok...), []string{"needs --autoscaler-class llm"}},
		{"bad class", append([]string{"--autoscaler-class=kpa"}, ok...), []string{`--autoscaler-class "kpa"`}},
		{"bad pull policy", append([]string{"--image-pull-policy=Sometimes"}, ok...), []string{"--image-pull-policy"}},
		{"bad port", append([]string{"--port=70000"}, ok...), []string{"--port 70000"}},
		{"several at once", []string{"--cpu=lots", "--memory=much", "run"}, []string{"--name is required", "--image is required", "--cpu", "--memory"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runDry(t, tc.args...)
			if err == nil {
				t.Fatalf("serve kserve %v: no error", tc.args)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestHelpExplainsEveryFlag(t *testing.T) {
	cmd := NewCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"kserve", "--help"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	arena := strings.Fields(`name version image image-pull-policy gpus gpumemory gpucore cpu memory replicas
	share-memory image-pull-secret env env-from-secret enable-istio expose-service data data-dir annotation label
	toleration selector config-file shell command model-name model-version model-format runtime storage-uri port
	runtime-version protocol-version min-replicas max-replicas scale-target scale-metric container-concurrency timeout
	canary-traffic-percent security-context affinity-policy affinity-constraint enable-prometheus metrics-port
	kubeconfig context namespace`)
	for _, f := range arena {
		if !strings.Contains(out.String(), "--"+f+" ") {
			t.Errorf("--help does not explain --%s", f)
		}
	}
}

// TestPortFromCommandLine checks --port follows the command line's --port
// when not given, and that the two may not disagree.
func TestPortFromCommandLine(t *testing.T) {
	out, err := runDry(t, "--name=llama", "--image=vllm", "vllm serve /models/llama --port 8000")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "containerPort: 8000") || strings.Contains(out, "containerPort: 8080") {
		t.Errorf("want the container port of the command line (8000):\n%s", out)
	}
	_, err = runDry(t, "--name=llama", "--image=vllm", "--port=8080", "vllm serve /models/llama --port 8000")
	if err == nil || !strings.Contains(err.Error(), "--port 8080, but the command line listens on --port 8000") {
		t.Errorf("mismatched ports: %v", err)
	}
}
