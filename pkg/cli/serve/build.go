// Package serve is `spillway serve kserve`: arena's flags turned into an
// InferenceService. Build is pure (Options in, object out) so every flag's
// mapping is tested without a cluster; the cobra command only parses flags,
// calls Build and creates the object.
package serve

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	isvcbuild "github.com/spillway-io/spillway/pkg/inferenceservice"
)

// ContainerName is the name KServe gives the model server's container.
const ContainerName = "kserve-container"

// LabelVersion carries arena's --version on the InferenceService.
const LabelVersion = "spillway.io/serving-version"

// predictorSuffix is what the InferenceService controller appends to the
// name for the Deployment and Service; the name must leave room for it.
const predictorSuffix = "-predictor"

// Options are the values of `serve kserve`'s flags. Optional numbers are
// pointers: nil means the flag was not given.
type Options struct {
	Namespace string

	Name             string
	Version          string
	Image            string
	ImagePullPolicy  string
	ImagePullSecrets []string

	GPUs        int
	CPU         string
	Memory      string
	ShareMemory string

	Env           []string
	EnvFromSecret []string
	Data          []string
	Annotations   []string
	Labels        []string
	Tolerations   []string
	Selectors     []string

	// Shell runs Command as `Shell -c Command`.
	Shell   string
	Command string
	Port    int32

	Replicas             *int32
	MinReplicas          *int32
	MaxReplicas          *int32
	ScaleMetric          string
	ScaleTarget          *int32
	AutoscalerClass      string
	ContainerConcurrency int64
	Timeout              int64

	EnablePrometheus bool
	MetricsPort      int32
}

// Build turns the options into the InferenceService to create. It reports
// every bad value at once, each naming its flag.
func Build(o Options) (*spillwayv1alpha1.InferenceService, error) {
	b := &builder{}
	isvc := &spillwayv1alpha1.InferenceService{
		TypeMeta: metav1.TypeMeta{APIVersion: spillwayv1alpha1.GroupVersion.String(), Kind: "InferenceService"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      o.Name,
			Namespace: o.Namespace,
		},
	}
	b.name(o.Name)
	if o.Namespace == "" {
		b.errf("the namespace is empty")
	}
	p := &isvc.Spec.Predictor
	c := corev1.Container{Name: ContainerName, Image: o.Image}
	if o.Image == "" {
		b.errf("--image is required")
	}
	switch corev1.PullPolicy(o.ImagePullPolicy) {
	case "":
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
		c.ImagePullPolicy = corev1.PullPolicy(o.ImagePullPolicy)
	default:
		b.errf("--image-pull-policy %q: want Always, IfNotPresent or Never", o.ImagePullPolicy)
	}
	for _, s := range o.ImagePullSecrets {
		if errs := validation.IsDNS1123Subdomain(s); len(errs) > 0 {
			b.errf("--image-pull-secret %q: %s", s, strings.Join(errs, "; "))
			continue
		}
		p.ImagePullSecrets = append(p.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
	}

	// The model server's command line.
	shell := o.Shell
	if shell == "" {
		shell = "sh"
	}
	if strings.TrimSpace(o.Command) == "" {
		b.errf("the model server's command is missing: give it as the last argument, e.g. \"python3 -m vllm.entrypoints.openai.api_server --port 8080 ...\"")
	} else {
		c.Command = []string{shell, "-c", o.Command}
	}
	if o.Port < 1 || o.Port > 65535 {
		b.errf("--port %d: want 1..65535", o.Port)
	} else if p, ok := isvcbuild.PortFromCommandLine(c.Command); ok && p != o.Port {
		b.errf("--port %d, but the command line listens on --port %d: give the same port to both (or leave --port out)", o.Port, p)
	} else {
		c.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: o.Port, Protocol: corev1.ProtocolTCP}}
	}

	c.Resources = b.resources(o)
	c.Env = b.env(o)
	p.ShareMemory = b.quantity("--share-memory", o.ShareMemory)
	p.Data = b.data(o.Data)
	p.Tolerations = b.tolerations(o.Tolerations)
	p.NodeSelector = b.labelPairs("--selector", o.Selectors)
	p.Labels = b.labelPairs("--label", o.Labels)
	p.Annotations = b.annotations(o, isvc)
	isvc.Labels = copyMap(p.Labels)
	if o.Version != "" {
		if errs := validation.IsValidLabelValue(o.Version); len(errs) > 0 {
			b.errf("--version %q: %s", o.Version, strings.Join(errs, "; "))
		} else {
			if isvc.Labels == nil {
				isvc.Labels = map[string]string{}
			}
			isvc.Labels[LabelVersion] = o.Version
		}
	}
	b.scaling(o, p)
	p.Containers = []corev1.Container{c}
	if err := b.err(); err != nil {
		return nil, err
	}
	return isvc, nil
}

type builder struct{ errs []error }

func (b *builder) errf(format string, args ...any) {
	b.errs = append(b.errs, fmt.Errorf(format, args...))
}

func (b *builder) err() error { return errors.Join(b.errs...) }

func (b *builder) name(name string) {
	if name == "" {
		b.errf("--name is required")
		return
	}
	if errs := validation.IsDNS1035Label(name); len(errs) > 0 {
		b.errf("--name %q: %s", name, strings.Join(errs, "; "))
		return
	}
	if max := validation.DNS1035LabelMaxLength - len(predictorSuffix); len(name) > max {
		b.errf("--name %q: at most %d characters (the Deployment is named <name>%s)", name, max, predictorSuffix)
	}
}

func (b *builder) quantity(flag, s string) *resource.Quantity {
	if s == "" {
		return nil
	}
	q, err := resource.ParseQuantity(s)
	if err != nil {
		b.errf("%s %q: not a quantity (examples: 4, 500m, 12Gi)", flag, s)
		return nil
	}
	if q.Sign() <= 0 {
		b.errf("%s %q: must be greater than zero", flag, s)
		return nil
	}
	return &q
}

func (b *builder) resources(o Options) corev1.ResourceRequirements {
	list := corev1.ResourceList{}
	if o.GPUs < 0 {
		b.errf("--gpus %d: must not be negative", o.GPUs)
	} else if o.GPUs > 0 {
		list[spillwayv1alpha1.ResourceGPU] = *resource.NewQuantity(int64(o.GPUs), resource.DecimalSI)
	}
	if q := b.quantity("--cpu", o.CPU); q != nil {
		list[corev1.ResourceCPU] = *q
	}
	if q := b.quantity("--memory", o.Memory); q != nil {
		list[corev1.ResourceMemory] = *q
	}
	if len(list) == 0 {
		return corev1.ResourceRequirements{}
	}
	// Requests equal limits: a GPU server is sized for its model, and the
	// scheduler and node autoscaler pack on requests.
	return corev1.ResourceRequirements{Requests: list, Limits: list.DeepCopy()}
}

func (b *builder) env(o Options) []corev1.EnvVar {
	var out []corev1.EnvVar
	for _, kv := range o.Env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			b.errf("--env %q: want NAME=VALUE", kv)
			continue
		}
		if errs := validation.IsEnvVarName(k); len(errs) > 0 {
			b.errf("--env %q: %s", kv, strings.Join(errs, "; "))
			continue
		}
		out = append(out, corev1.EnvVar{Name: k, Value: v})
	}
	for _, kv := range o.EnvFromSecret {
		k, secret, ok := strings.Cut(kv, "=")
		if !ok || k == "" || secret == "" {
			b.errf("--env-from-secret %q: want NAME=SECRET (the variable NAME takes key NAME of Secret SECRET)", kv)
			continue
		}
		if errs := validation.IsEnvVarName(k); len(errs) > 0 {
			b.errf("--env-from-secret %q: %s", kv, strings.Join(errs, "; "))
			continue
		}
		if errs := validation.IsDNS1123Subdomain(secret); len(errs) > 0 {
			b.errf("--env-from-secret %q: secret name: %s", kv, strings.Join(errs, "; "))
			continue
		}
		out = append(out, corev1.EnvVar{Name: k, ValueFrom: &corev1.EnvVarSource{
			SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: k},
		}})
	}
	return out
}

func (b *builder) data(specs []string) []spillwayv1alpha1.DataVolume {
	var out []spillwayv1alpha1.DataVolume
	seen := map[string]bool{}
	for _, s := range specs {
		parts := strings.Split(s, ":")
		if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || !strings.HasPrefix(parts[1], "/") {
			b.errf("--data %q: want PVC_NAME:/mount/path[:ro]", s)
			continue
		}
		if errs := validation.IsDNS1123Subdomain(parts[0]); len(errs) > 0 {
			b.errf("--data %q: claim name: %s", s, strings.Join(errs, "; "))
			continue
		}
		v := spillwayv1alpha1.DataVolume{ClaimName: parts[0], MountPath: parts[1]}
		if len(parts) == 3 {
			if parts[2] != "ro" {
				b.errf("--data %q: the only option after the path is \"ro\"", s)
				continue
			}
			v.ReadOnly = true
		}
		if seen[v.MountPath] {
			b.errf("--data %q: mount path %s is used twice", s, v.MountPath)
			continue
		}
		seen[v.MountPath] = true
		out = append(out, v)
	}
	return out
}

// tolerations parses arena's --toleration: "all" tolerates every taint;
// otherwise KEY[=VALUE][:EFFECT][,OPERATOR].
func (b *builder) tolerations(specs []string) []corev1.Toleration {
	var out []corev1.Toleration
	for _, s := range specs {
		t, err := ParseToleration(s)
		if err != nil {
			b.errf("--toleration %q: %v", s, err)
			continue
		}
		out = append(out, t)
	}
	return out
}

// ParseToleration parses one arena --toleration value.
func ParseToleration(s string) (corev1.Toleration, error) {
	if s == "all" {
		return corev1.Toleration{Operator: corev1.TolerationOpExists}, nil
	}
	rest, op, hasOp := strings.Cut(s, ",")
	rest, effect, hasEffect := strings.Cut(rest, ":")
	key, value, hasValue := strings.Cut(rest, "=")
	t := corev1.Toleration{Key: key, Value: value}
	if key == "" {
		return t, errors.New(`want "all" or KEY[=VALUE][:EFFECT][,OPERATOR]`)
	}
	if errs := validation.IsQualifiedName(key); len(errs) > 0 {
		return t, fmt.Errorf("key: %s", strings.Join(errs, "; "))
	}
	if hasValue {
		if errs := validation.IsValidLabelValue(value); len(errs) > 0 {
			return t, fmt.Errorf("value: %s", strings.Join(errs, "; "))
		}
	}
	if hasEffect {
		switch e := corev1.TaintEffect(effect); e {
		case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
			t.Effect = e
		default:
			return t, fmt.Errorf("effect %q: want NoSchedule, PreferNoSchedule or NoExecute", effect)
		}
	}
	switch {
	case hasOp && op == string(corev1.TolerationOpExists):
		if hasValue {
			return t, errors.New("operator Exists takes no value")
		}
		t.Operator = corev1.TolerationOpExists
	case hasOp && op == string(corev1.TolerationOpEqual):
		t.Operator = corev1.TolerationOpEqual
	case hasOp:
		return t, fmt.Errorf("operator %q: want Equal or Exists", op)
	case hasValue:
		t.Operator = corev1.TolerationOpEqual
	default:
		t.Operator = corev1.TolerationOpExists
	}
	return t, nil
}

func validateLabelKey(k string) []string { return validation.IsQualifiedName(k) }

func validateAnnotationKey(k string) []string { return validation.IsQualifiedName(strings.ToLower(k)) }

func (b *builder) labelPairs(flag string, kvs []string) map[string]string {
	return b.keyValues(flag, kvs, validateLabelKey, validation.IsValidLabelValue)
}

func (b *builder) keyValues(flag string, kvs []string, key, value func(string) []string) map[string]string {
	if len(kvs) == 0 {
		return nil
	}
	out := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			b.errf("%s %q: want KEY=VALUE", flag, kv)
			continue
		}
		if errs := key(k); len(errs) > 0 {
			b.errf("%s %q: key: %s", flag, kv, strings.Join(errs, "; "))
			continue
		}
		if value != nil {
			if errs := value(v); len(errs) > 0 {
				b.errf("%s %q: value: %s", flag, kv, strings.Join(errs, "; "))
				continue
			}
		}
		out[k] = v
	}
	return out
}

// annotations returns the pod annotations and sets the InferenceService's
// (the user's --annotation values, without the Prometheus ones).
func (b *builder) annotations(o Options, isvc *spillwayv1alpha1.InferenceService) map[string]string {
	out := b.keyValues("--annotation", o.Annotations, validateAnnotationKey, nil)
	isvc.Annotations = copyMap(out)
	if o.EnablePrometheus {
		if out == nil {
			out = map[string]string{}
		}
		port := o.MetricsPort
		if port == 0 {
			port = o.Port
		}
		if port < 1 || port > 65535 {
			b.errf("--metrics-port %d: want 1..65535", port)
		}
		out["prometheus.io/scrape"] = "true"
		out["prometheus.io/port"] = strconv.Itoa(int(port))
		out["prometheus.io/path"] = "/metrics"
	} else if o.MetricsPort != 0 {
		b.errf("--metrics-port needs --enable-prometheus")
	}
	return out
}

func (b *builder) scaling(o Options, p *spillwayv1alpha1.PredictorSpec) {
	for _, f := range []struct {
		flag string
		v    *int32
	}{{"--replicas", o.Replicas}, {"--min-replicas", o.MinReplicas}, {"--max-replicas", o.MaxReplicas}} {
		if f.v != nil && *f.v < 0 {
			b.errf("%s %d: must not be negative", f.flag, *f.v)
			return
		}
	}
	autoscaled := o.MinReplicas != nil || o.MaxReplicas != nil || o.ScaleMetric != "" || o.ScaleTarget != nil
	if o.Replicas != nil {
		if autoscaled {
			b.errf("--replicas sets a fixed number of replicas; it cannot be combined with --min-replicas, --max-replicas, --scale-metric or --scale-target")
			return
		}
		p.MinReplicas = ptr.To(*o.Replicas)
		p.MaxReplicas = *o.Replicas
		p.AutoscalerClass = spillwayv1alpha1.AutoscalerNone
		if o.AutoscalerClass != "" && o.AutoscalerClass != string(spillwayv1alpha1.AutoscalerNone) {
			b.errf("--autoscaler-class %s cannot be combined with --replicas", o.AutoscalerClass)
		}
		return
	}
	p.MinReplicas = ptr.To(int32(1))
	if o.MinReplicas != nil {
		p.MinReplicas = ptr.To(*o.MinReplicas)
	}
	if o.MaxReplicas != nil {
		p.MaxReplicas = *o.MaxReplicas
		if p.MaxReplicas < *p.MinReplicas {
			b.errf("--max-replicas %d is less than --min-replicas %d", p.MaxReplicas, *p.MinReplicas)
		}
	}
	switch {
	case o.ScaleMetric == "" && o.ScaleTarget != nil:
		b.errf("--scale-target needs --scale-metric")
	case o.ScaleMetric != "" && o.ScaleTarget == nil:
		b.errf("--scale-metric %s needs --scale-target", o.ScaleMetric)
	case o.ScaleTarget != nil && *o.ScaleTarget < 1:
		b.errf("--scale-target %d: must be at least 1", *o.ScaleTarget)
	case o.ScaleMetric != "":
		if strings.ContainsAny(o.ScaleMetric, " \t\n\"'{}") || len(o.ScaleMetric) > 253 {
			b.errf("--scale-metric %q: not a metric name", o.ScaleMetric)
		}
		p.ScaleMetric = o.ScaleMetric
		p.ScaleTarget = ptr.To(*o.ScaleTarget)
	}
	switch c := spillwayv1alpha1.AutoscalerClass(o.AutoscalerClass); c {
	case "":
		if p.ScaleMetric != "" || p.MaxReplicas > *p.MinReplicas {
			p.AutoscalerClass = spillwayv1alpha1.AutoscalerHPA
		} else {
			p.AutoscalerClass = spillwayv1alpha1.AutoscalerNone
		}
	case spillwayv1alpha1.AutoscalerHPA, spillwayv1alpha1.AutoscalerLLM, spillwayv1alpha1.AutoscalerNone:
		p.AutoscalerClass = c
	default:
		b.errf("--autoscaler-class %q: want hpa, llm or none", o.AutoscalerClass)
	}
	if p.AutoscalerClass == spillwayv1alpha1.AutoscalerHPA && *p.MinReplicas == 0 {
		b.errf("--min-replicas 0 (scale to zero) needs --autoscaler-class llm")
	}
	if o.ContainerConcurrency < 0 {
		b.errf("--container-concurrency %d: must not be negative", o.ContainerConcurrency)
	}
	p.ContainerConcurrency = o.ContainerConcurrency
	if o.Timeout < 0 {
		b.errf("--timeout %d: must not be negative", o.Timeout)
	} else if o.Timeout > 0 {
		p.TimeoutSeconds = ptr.To(o.Timeout)
	}
}

func copyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
