// Command spillway-metrics-adapter serves custom.metrics.k8s.io through the
// API aggregation layer: per-pod vLLM metrics scraped from the pods' /metrics
// and DCGM GPU metrics scraped from the nodes' exporters, for the HPA. It
// also serves /metrics, /healthz and /readyz over plain HTTP (--health-addr)
// and shuts down cleanly on SIGTERM. See docs/metrics-adapter.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/spillway-io/spillway/pkg/metricsadapter"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stderr))
}

// run parses args and runs the adapter; it returns the exit code.
func run(ctx context.Context, args []string, stderr io.Writer) int {
	cfg := metricsadapter.DefaultConfig()
	fs := pflag.NewFlagSet("spillway-metrics-adapter", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: spillway-metrics-adapter [flags]\n\n"+
			"Serves custom.metrics.k8s.io (vllm_* from pods, DCGM_* from nodes) for the HPA.\n\nFlags:\n%s", fs.FlagUsages())
	}
	cfg.AddFlags(fs)
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	fs.AddGoFlagSet(klogFlags)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "error: %v\n\n", err)
		fs.Usage()
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "error: unexpected arguments %q\n", fs.Args())
		fs.Usage()
		return 2
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "error: %v\n\n", err)
		fs.Usage()
		return 2
	}
	logger := klog.Background().WithName("spillway-metrics-adapter")
	if err := metricsadapter.Run(klog.NewContext(ctx, logger), cfg); err != nil {
		logger.Error(err, "adapter failed")
		klog.Flush()
		return 1
	}
	klog.Flush()
	return 0
}
