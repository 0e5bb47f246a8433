package main

import (
	"github.com/spf13/cobra"

	"github.com/spillway-io/spillway/pkg/bench"
	"github.com/spillway-io/spillway/pkg/cli/inspect"
	"github.com/spillway-io/spillway/pkg/cli/serve"
	"github.com/spillway-io/spillway/pkg/engine/enginesim"
	"github.com/spillway-io/spillway/pkg/localcluster"
)

// subcommands lists the spillway subcommands; each lives in its own package.
func subcommands() []*cobra.Command {
	return append([]*cobra.Command{
		serve.NewCommand(),
		bench.NewCommand(),
		localcluster.NewUpCommand(),
		localcluster.NewStatusCommand(),
		localcluster.NewDownCommand(),
		enginesim.NewCommand(),
	}, inspect.NewCommands()...)
}
