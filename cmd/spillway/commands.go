package main

import "github.com/spf13/cobra"

// subcommands lists the spillway subcommands; each lives in its own package.
func subcommands() []*cobra.Command {
	return []*cobra.Command{}
}
