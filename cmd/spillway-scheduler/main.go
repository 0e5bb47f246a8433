// Command spillway-scheduler is the upstream kube-scheduler with Spillway's
// ResourcePolicy plugin built in; enable it in a KubeSchedulerConfiguration
// (see config/scheduler/scheduler-config.yaml). Flags, /metrics, /healthz and
// SIGTERM handling are the upstream scheduler's.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"

	"github.com/spillway-io/spillway/pkg/scheduler/resourcepolicy"
)

func main() {
	cmd := app.NewSchedulerCommand(app.WithPlugin(resourcepolicy.Name, resourcepolicy.New))
	os.Exit(cli.Run(cmd))
}
