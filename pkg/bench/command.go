package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/utils/clock"

	"github.com/spillway-io/spillway/pkg/cli/kubeflags"
)

// NewCommand returns `spillway bench`. Its flags are hey's, single-dash
// and multi-letter (-host, -z), so they are parsed by the standard flag
// package rather than cobra.
func NewCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "bench [options...] <url>",
		Short:              "Send HTTP load with hey's flags; report hey's and LLM figures",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, a := range args {
				if a == "--" {
					break
				}
				if a == "--help" || a == "-help" || a == "-h" {
					args = []string{"-h"}
					break
				}
			}
			cfg, err := Parse(args, cmd.OutOrStdout())
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			if err != nil {
				return err
			}
			return Main(cmd.Context(), cfg, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
}

// Main runs the benchmark and writes the report (and the plot).
func Main(ctx context.Context, cfg Config, out, progress io.Writer) error {
	clk := clock.RealClock{}
	var stopSampling func() []ClusterSample
	if cfg.Plot != "" {
		if read, err := clusterReader(cfg); err != nil {
			fmt.Fprintf(progress, "bench: not reading the cluster for the plot: %v\n", err)
		} else {
			stopSampling = sampleLoop(ctx, clk, cfg.SampleEvery, clk.Now(), read)
		}
	}
	results, wall, err := Run(ctx, cfg, clk, progress)
	if err != nil {
		return err
	}
	var samples []ClusterSample
	if stopSampling != nil {
		samples = stopSampling()
	}
	s := Summarize(results, wall)
	if cfg.Output == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		err = enc.Encode(s)
	} else {
		err = s.WriteText(out)
	}
	if err != nil {
		return err
	}
	if cfg.Plot != "" {
		title := fmt.Sprintf("spillway bench %s  (%d requests, %.1f s)", cfg.URL, len(results), wall.Seconds())
		if err := writePlot(cfg.Plot, title, Panels(results, wall, samples)); err != nil {
			return err
		}
		fmt.Fprintf(progress, "bench: timeline written to %s\n", cfg.Plot)
	}
	return nil
}

func clusterReader(cfg Config) (func(context.Context) (ClusterSample, error), error) {
	kf := kubeflags.Flags{Kubeconfig: cfg.Kubeconfig, Context: cfg.KubeContext, Namespace: cfg.Namespace}
	ns, err := kf.ResolveNamespace()
	if err != nil {
		return nil, err
	}
	c, err := kf.Client()
	if err != nil {
		return nil, err
	}
	svc := cfg.Service
	if svc == "" && cfg.Host != "" {
		// Host is {name}-{namespace}.{domain}.
		first, _, _ := strings.Cut(cfg.Host, ".")
		svc = strings.TrimSuffix(first, "-"+ns)
		if svc == first {
			svc = ""
		}
	}
	return func(ctx context.Context) (ClusterSample, error) { return SampleCluster(ctx, c, ns, svc) }, nil
}
