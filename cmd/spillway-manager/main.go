// Command spillway-manager hosts Spillway's controllers in one
// controller-runtime manager: the InferenceService controller, the llm pod
// autoscaler and the others listed in controllers.go. It serves /metrics,
// /healthz and /readyz, logs through klog, can run with leader election, and
// on SIGTERM stops taking work and lets running reconciles finish.
package main

import (
	"context"
	goflag "flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func newCommand() *cobra.Command {
	var f flags
	cmd := &cobra.Command{
		Use:   "spillway-manager",
		Short: "Run Spillway's controllers (InferenceService, llm autoscaler, ...)",
		Long: `spillway-manager runs Spillway's Kubernetes controllers in one process: the
InferenceService controller (Deployment, Service, HPA and status of each
service), the llm pod autoscaler, and the others registered in its
controllers list. It serves Prometheus metrics, /healthz and /readyz.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				_ = cmd.Usage()
				return fmt.Errorf("unexpected argument %q: spillway-manager takes only flags", args[0])
			}
			return nil
		},
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.config()
			if err != nil {
				_ = cmd.Usage()
				return err
			}
			ctrl.SetLogger(klog.NewKlogr())
			return run(cmd.Context(), cfg)
		},
	}
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		_ = c.Usage()
		return err
	})
	f.register(cmd.Flags())
	klogFlags := goflag.NewFlagSet("klog", goflag.ContinueOnError)
	klog.InitFlags(klogFlags)
	cmd.Flags().AddGoFlagSet(klogFlags)
	return cmd
}
