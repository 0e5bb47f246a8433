// Command spillway is Spillway's command line: it deploys and inspects LLM
// services (`serve kserve` with arena's flags, list, get, delete, top), drives
// load (`bench` with hey's flags), runs the vLLM-compatible engine simulator
// (`engine-sim`), and starts the local hybrid cluster (`up`, `status`, `down`).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "spillway",
		Short:         "Run LLM inference across your own GPUs and the cloud",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(subcommands()...)
	return root
}
