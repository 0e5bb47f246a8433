// Package enginesim is the `spillway engine-sim` command: it takes a vLLM API
// server command line, adds the simulator's own settings (GPU profile, model
// size, start-up delay, seed, listen address) from --sim-* flags or
// SPILLWAY_SIM_* environment variables, and serves the simulated engine.
package enginesim

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/spillway-io/spillway/pkg/engine/perf"
	"github.com/spillway-io/spillway/pkg/engine/server"
	"github.com/spillway-io/spillway/pkg/engine/vllmargs"
)

// Settings are the simulator-only settings.
type Settings struct {
	// GPU is a perf GPU profile name (v100, v100-16gb, a10, a100, h100).
	GPU string
	// ModelParamsBillions is the simulated model size.
	ModelParamsBillions float64
	StartupDelay        time.Duration
	Seed                int64
	// Listen overrides the listen address (default 127.0.0.1:<--port>).
	Listen      string
	GracePeriod time.Duration
}

// DefaultSettings suit the seed scenario: a 7B model on a V100 32GB.
func DefaultSettings() Settings {
	return Settings{GPU: "v100", ModelParamsBillions: 7, StartupDelay: 5 * time.Second, GracePeriod: 30 * time.Second}
}

// BuildConfig turns a vLLM command line and the simulator settings into a
// server configuration; the node simulator calls it for each pod.
func BuildConfig(argv []string, sim Settings) (server.Config, []vllmargs.Warning, error) {
	a, warns, err := vllmargs.Parse(argv)
	if err != nil {
		return server.Config{}, warns, err
	}
	gpu, err := perf.LookupGPU(sim.GPU)
	if err != nil {
		return server.Config{}, warns, err
	}
	if !(sim.ModelParamsBillions > 0 && sim.ModelParamsBillions <= 1000) {
		return server.Config{}, warns, fmt.Errorf("model size %v billion parameters must be in (0, 1000]", sim.ModelParamsBillions)
	}
	// Tensor parallelism pools the memory and bandwidth of several GPUs.
	tp := float64(a.TensorParallelSize)
	gpu.MemoryBytes *= int64(a.TensorParallelSize)
	gpu.BandwidthBytesPerSec *= tp
	gpu.PrefillTokensPerSec *= tp
	maxLen := a.MaxModelLen
	if maxLen == 0 {
		maxLen = 4096
	}
	cfg := server.Config{
		ServedModelNames: a.ServedModelNames,
		ModelPath:        a.Model,
		Engine: perf.Config{
			GPU:                  gpu,
			Model:                perf.ModelForParams(sim.ModelParamsBillions, a.Quantization),
			GPUMemoryUtilization: a.GPUMemoryUtilization,
			MaxNumSeqs:           a.MaxNumSeqs,
			MaxNumBatchedTokens:  a.MaxNumBatchedTokens,
			MaxModelLen:          maxLen,
			BlockSize:            a.BlockSize,
			PrefixCaching:        a.EnablePrefixCaching,
		},
		StartupDelay: sim.StartupDelay,
		Seed:         sim.Seed + int64(a.Seed),
		APIKey:       a.APIKey,
		GracePeriod:  sim.GracePeriod,
	}
	if _, err := perf.New(cfg.Engine); err != nil {
		return server.Config{}, warns, err
	}
	return cfg, warns, nil
}

// ListenAddress is where the simulator listens for a vLLM --port.
func ListenAddress(sim Settings, port int) string {
	if sim.Listen != "" {
		return sim.Listen
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

const help = `Run a simulated vLLM OpenAI API server.

Give the vLLM command line as arguments, whole or flags only, e.g.
  spillway engine-sim python3 -m vllm.entrypoints.openai.api_server --port 8080 \
    --served-model-name qwen --model /mnt/models/Qwen --gpu-memory-utilization 0.95 \
    --quantization gptq --max-model-len=6144
  spillway engine-sim --sim-gpu a100 vllm serve Qwen/Qwen2-7B --port 8000
Unknown vLLM flags are accepted with a warning. The generated text is synthetic.

Simulator flags (environment variable in brackets):
`

// simFlags declares the --sim-* flags with defaults from the environment.
func simFlags(s *Settings) (*pflag.FlagSet, error) {
	fs := pflag.NewFlagSet("engine-sim", pflag.ContinueOnError)
	env := func(name string) (string, bool) { return os.LookupEnv("SPILLWAY_SIM_" + name) }
	var errs []error
	if v, ok := env("GPU"); ok {
		s.GPU = v
	}
	if v, ok := env("MODEL_PARAMS"); ok {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("SPILLWAY_SIM_MODEL_PARAMS=%q is not a number", v))
		}
		s.ModelParamsBillions = f
	}
	if v, ok := env("STARTUP_DELAY"); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("SPILLWAY_SIM_STARTUP_DELAY=%q is not a duration", v))
		}
		s.StartupDelay = d
	}
	if v, ok := env("SEED"); ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("SPILLWAY_SIM_SEED=%q is not an integer", v))
		}
		s.Seed = n
	}
	if v, ok := env("LISTEN"); ok {
		s.Listen = v
	}
	fs.StringVar(&s.GPU, "sim-gpu", s.GPU, "GPU profile: "+strings.Join(perf.GPUNames(), ", ")+" [SPILLWAY_SIM_GPU]")
	fs.Float64Var(&s.ModelParamsBillions, "sim-model-params", s.ModelParamsBillions, "model size in billions of parameters [SPILLWAY_SIM_MODEL_PARAMS]")
	fs.DurationVar(&s.StartupDelay, "sim-startup-delay", s.StartupDelay, "simulated model load time; /health is 503 until it passes [SPILLWAY_SIM_STARTUP_DELAY]")
	fs.Int64Var(&s.Seed, "sim-seed", s.Seed, "seed for outputs of requests without a seed [SPILLWAY_SIM_SEED]")
	fs.StringVar(&s.Listen, "sim-listen", s.Listen, "listen address (default 127.0.0.1:<--port>) [SPILLWAY_SIM_LISTEN]")
	fs.DurationVar(&s.GracePeriod, "sim-grace-period", s.GracePeriod, "how long to drain in-flight requests on SIGTERM")
	return fs, errors.Join(errs...)
}

// splitArgs separates the simulator's flags from the vLLM command line.
func splitArgs(args []string) (sim, vllm []string, helpAsked bool) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-h" || a == "--help":
			helpAsked = true
		case strings.HasPrefix(a, "--sim-"):
			sim = append(sim, a)
			if !strings.Contains(a, "=") && i+1 < len(args) {
				i++
				sim = append(sim, args[i])
			}
		default:
			vllm = append(vllm, a)
		}
	}
	return sim, vllm, helpAsked
}

// NewCommand returns `spillway engine-sim`.
func NewCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:                "engine-sim [--sim-* flags] [vLLM command line]",
		Short:              "Run a vLLM-compatible engine simulator",
		DisableFlagParsing: true,
		SilenceUsage:       true,
		SilenceErrors:      true,
		RunE: func(cmd *cobra.Command, args []string) error {
			settings := DefaultSettings()
			fs, envErr := simFlags(&settings)
			simArgs, vllmArgv, helpAsked := splitArgs(args)
			if helpAsked {
				fmt.Fprint(cmd.OutOrStdout(), help+fs.FlagUsages())
				return nil
			}
			if envErr != nil {
				return envErr
			}
			if err := fs.Parse(simArgs); err != nil {
				return fmt.Errorf("%w (see spillway engine-sim --help)", err)
			}
			cfg, warns, err := BuildConfig(vllmArgv, settings)
			log := klog.Background().WithName("engine-sim")
			for _, w := range warns {
				log.Info("warning", "detail", string(w))
			}
			if err != nil {
				return fmt.Errorf("%w (see spillway engine-sim --help)", err)
			}
			a, _, _ := vllmargs.Parse(vllmArgv)
			addr := ListenAddress(settings, a.Port)
			s, err := server.New(cfg, server.WithLogger(log))
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("listening on %s: %w", addr, err)
			}
			return s.Serve(cmd.Context(), ln)
		},
	}
	return cmd
}
