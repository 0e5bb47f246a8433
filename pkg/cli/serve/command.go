package serve

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/spillway-io/spillway/pkg/cli/kubeflags"
	isvcbuild "github.com/spillway-io/spillway/pkg/inferenceservice"
)

// unsupported are arena's `serve kserve` flags that Spillway accepts on the
// command line but rejects, by name, when given.
var unsupported = []struct {
	name, shorthand, help string
	isBool                bool
}{
	{name: "gpumemory", help: "GPU memory share per replica (GPU sharing)"},
	{name: "gpucore", help: "GPU core share per replica (GPU sharing)"},
	{name: "data-dir", help: "host path mounts HOST:/path"},
	{name: "enable-istio", help: "Istio sidecar", isBool: true},
	{name: "expose-service", help: "expose the service outside the cluster", isBool: true},
	{name: "config-file", help: "config files HOST_FILE:/container/file"},
	{name: "model-name", help: "KServe model name (storage-initializer models)"},
	{name: "model-version", help: "KServe model version"},
	{name: "model-format", help: "KServe model format"},
	{name: "runtime", help: "KServe serving runtime"},
	{name: "storage-uri", help: "KServe storage URI"},
	{name: "runtime-version", help: "KServe runtime version"},
	{name: "protocol-version", help: "KServe protocol version"},
	{name: "canary-traffic-percent", help: "canary rollout"},
	{name: "security-context", help: "container security context"},
	{name: "affinity-policy", help: "pod affinity policy"},
	{name: "affinity-constraint", help: "pod affinity constraint"},
}

// NewCommand returns `spillway serve` with its `kserve` subcommand.
func NewCommand() *cobra.Command {
	serve := &cobra.Command{
		Use:   "serve",
		Short: "Deploy an LLM server (arena's serve commands)",
	}
	serve.AddCommand(newKServeCommand())
	return serve
}

func newKServeCommand() *cobra.Command {
	var (
		kube        kubeflags.Flags
		o           = Options{}
		replicas    int32
		minReplicas int32
		maxReplicas int32
		scaleTarget int32
		dryRun      bool
	)
	cmd := &cobra.Command{
		Use:   "kserve [flags] COMMAND",
		Short: "Create an InferenceService from arena's `serve kserve` flags",
		Long: `Create an InferenceService from arena's "serve kserve" flags.

COMMAND (the last argument) is the model server's command line; it runs as
"sh -c COMMAND" (see --shell) in the container kserve-container. The service
is reachable through spillway-gateway at Host {name}-{namespace}.{domain}.

Flags of arena that Spillway does not support yet are accepted by the parser
and then rejected, by name, with an error.`,
		Example: `  spillway serve kserve --name=qwen-chat --image=vllm/vllm-openai:0.4.1 \
    --scale-metric=DCGM_CUSTOM_PROCESS_SM_UTIL --scale-target=50 \
    --min-replicas=1 --max-replicas=3 --gpus=1 --cpu=4 --memory=12Gi \
    --data="llm-model:/mnt/models/Qwen" \
    "python3 -m vllm.entrypoints.openai.api_server --port 8080 --served-model-name qwen --model /mnt/models/Qwen"`,
		RunE: func(cmd *cobra.Command, args []string) error {
			fs := cmd.Flags()
			var bad []string
			for _, u := range unsupported {
				if fs.Changed(u.name) {
					bad = append(bad, "--"+u.name)
				}
			}
			if len(bad) > 0 {
				return usageError(cmd, fmt.Errorf("Spillway does not support %s yet", strings.Join(bad, ", ")))
			}
			if fs.Changed("replicas") {
				o.Replicas = &replicas
			}
			if fs.Changed("min-replicas") {
				o.MinReplicas = &minReplicas
			}
			if fs.Changed("max-replicas") {
				o.MaxReplicas = &maxReplicas
			}
			if fs.Changed("scale-target") {
				o.ScaleTarget = &scaleTarget
			}
			if len(args) > 0 {
				if o.Command != "" {
					return usageError(cmd, fmt.Errorf("give the command either with --command or as the last argument, not both"))
				}
				o.Command = strings.Join(args, " ")
			}
			// arena's --port defaults to 8080; a command line that listens
			// elsewhere (vllm serve --port 8000) sets it when --port is not given.
			if !fs.Changed("port") {
				if p, ok := isvcbuild.PortFromCommandLine([]string{o.Shell, "-c", o.Command}); ok {
					o.Port = p
				}
			}
			ns, err := kube.ResolveNamespace()
			if err != nil {
				return err
			}
			o.Namespace = ns
			isvc, err := Build(o)
			if err != nil {
				return usageError(cmd, err)
			}
			if dryRun {
				out, err := yaml.Marshal(isvc)
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(out)
				return err
			}
			c, err := kube.Client()
			if err != nil {
				return err
			}
			if err := create(cmd.Context(), c, isvc, cmd.OutOrStdout()); err != nil {
				return err
			}
			warnPolicies(cmd.Context(), c, isvc, cmd.ErrOrStderr())
			return nil
		},
	}
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError(c, err) })
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.StringVar(&o.Name, "name", "", "the service's name (required; DNS label, at most 53 characters)")
	fs.StringVar(&o.Version, "version", "", "the serving version, set as label "+LabelVersion)
	fs.StringVar(&o.Image, "image", "", "the model server's container image (required)")
	fs.StringVar(&o.ImagePullPolicy, "image-pull-policy", "IfNotPresent", "Always, IfNotPresent or Never")
	fs.StringArrayVar(&o.ImagePullSecrets, "image-pull-secret", nil, "a Secret for pulling the image (repeatable)")
	fs.IntVar(&o.GPUs, "gpus", 0, "nvidia.com/gpu per replica (requests = limits)")
	fs.StringVar(&o.CPU, "cpu", "", "CPU per replica, e.g. 4 or 500m (requests = limits)")
	fs.StringVar(&o.Memory, "memory", "", "memory per replica, e.g. 12Gi (requests = limits)")
	fs.StringVar(&o.ShareMemory, "share-memory", "", "size of /dev/shm, e.g. 2Gi")
	fs.StringArrayVarP(&o.Env, "env", "e", nil, "an environment variable NAME=VALUE (repeatable)")
	fs.StringArrayVar(&o.EnvFromSecret, "env-from-secret", nil, "NAME=SECRET: variable NAME from key NAME of Secret SECRET (repeatable)")
	fs.StringArrayVarP(&o.Data, "data", "d", nil, "mount a PersistentVolumeClaim: PVC_NAME:/mount/path[:ro] (repeatable)")
	fs.StringArrayVarP(&o.Annotations, "annotation", "a", nil, "an annotation KEY=VALUE on the service and its pods (repeatable)")
	fs.StringArrayVarP(&o.Labels, "label", "l", nil, "a label KEY=VALUE on the service and its pods (repeatable)")
	fs.StringArrayVar(&o.Tolerations, "toleration", nil, `tolerate taints: "all", or KEY[=VALUE][:EFFECT][,OPERATOR] (repeatable)`)
	fs.StringArrayVar(&o.Selectors, "selector", nil, "run only on nodes with label KEY=VALUE (repeatable)")
	fs.StringVar(&o.Shell, "shell", "sh", "the shell that runs the command (SHELL -c COMMAND)")
	fs.StringVar(&o.Command, "command", "", "the model server's command line, instead of the last argument")
	fs.Int32Var(&o.Port, "port", 8080, "the port the model server listens on")
	fs.Int32Var(&replicas, "replicas", 1, "a fixed number of replicas (no autoscaling); not with --min/--max-replicas")
	fs.Int32Var(&minReplicas, "min-replicas", 1, "the fewest replicas (0: scale to zero, needs --autoscaler-class llm)")
	fs.Int32Var(&maxReplicas, "max-replicas", 0, "the most replicas (default: --min-replicas)")
	fs.StringVar(&o.ScaleMetric, "scale-metric", "", "the metric to scale on: cpu, memory, concurrency, rps, or a per-pod custom metric such as DCGM_CUSTOM_PROCESS_SM_UTIL or vllm:num_requests_waiting")
	fs.Int32Var(&scaleTarget, "scale-target", 0, "the per-replica target of --scale-metric")
	fs.StringVar(&o.AutoscalerClass, "autoscaler-class", "", "hpa, llm or none (Spillway; default: hpa when autoscaled, else none)")
	fs.Int64Var(&o.ContainerConcurrency, "container-concurrency", 0, "the most requests one replica serves at once (0: no limit)")
	fs.Int64Var(&o.Timeout, "timeout", 0, "seconds a request may take end to end (0: no limit)")
	fs.BoolVar(&o.EnablePrometheus, "enable-prometheus", false, "annotate the pods for Prometheus scraping")
	fs.Int32Var(&o.MetricsPort, "metrics-port", 0, "the metrics port for --enable-prometheus (default: --port)")
	fs.BoolVar(&dryRun, "dry-run", false, "print the InferenceService as YAML instead of creating it")
	kube.AddFlags(fs)
	for _, u := range unsupported {
		help := "NOT SUPPORTED YET (" + u.help + "); rejected when given"
		if u.isBool {
			fs.Bool(u.name, false, help)
			continue
		}
		fs.StringArray(u.name, nil, help)
	}
	return cmd
}

func usageError(cmd *cobra.Command, err error) error {
	return fmt.Errorf("%w\nSee '%s --help'", err, cmd.CommandPath())
}

func create(ctx context.Context, c client.Writer, isvc client.Object, out io.Writer) error {
	if err := c.Create(ctx, isvc); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("InferenceService %s/%s already exists; remove it with `spillway delete %s -n %s` first",
				isvc.GetNamespace(), isvc.GetName(), isvc.GetName(), isvc.GetNamespace())
		}
		return fmt.Errorf("creating InferenceService %s/%s: %w", isvc.GetNamespace(), isvc.GetName(), err)
	}
	_, err := fmt.Fprintf(out, "inferenceservice.spillway.io/%s created in namespace %s\n", isvc.GetName(), isvc.GetNamespace())
	return err
}
