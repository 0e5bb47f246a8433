// Package scheduling tests the SpillwayResourcePolicy plugin inside the real
// kube-scheduler (configured by the shipped config/scheduler example) and the
// deletion-cost controller against a real kube-apiserver and
// kube-controller-manager. Nodes are API objects; no kubelet runs.
package scheduling

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/tools/cache"
	"k8s.io/component-base/configz"
	"k8s.io/klog/v2"
	schedapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
	schedoptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/spillway-io/spillway/pkg/controllers/deletioncost"
	rpplugin "github.com/spillway-io/spillway/pkg/scheduler/resourcepolicy"
	"github.com/spillway-io/spillway/test/integration/framework"
)

var env *framework.Env

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		fmt.Println("skipping integration tests in -short mode")
		return 0
	}
	ctrl.SetLogger(klog.Background())
	var err error
	env, err = framework.Launch(framework.WithControllerManager())
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the control plane:", err)
		return 1
	}
	defer env.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopSched, err := startScheduler(ctx, true, "default-scheduler")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stopSched()
	stopMgr, err := startManager(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	manager = managerControl{ctx: ctx, stop: stopMgr}
	defer func() { manager.stop() }()
	return m.Run()
}

// schedulerConfig writes the shipped example configuration, or the default
// profile alone, with the test kubeconfig.
func schedulerConfig(dir string, withPlugin bool, name string) (string, error) {
	root, err := framework.RepoRoot()
	if err != nil {
		return "", err
	}
	var body []byte
	if withPlugin {
		if body, err = os.ReadFile(filepath.Join(root, "config/scheduler/scheduler-config.yaml")); err != nil {
			return "", err
		}
		body = []byte(strings.Replace(string(body), "schedulerName: default-scheduler", "schedulerName: "+name, 1))
	} else {
		body = []byte("apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nleaderElection:\n  leaderElect: false\nprofiles:\n- schedulerName: " + name + "\n")
	}
	body = append(body, []byte("clientConnection:\n  kubeconfig: "+env.KubeconfigPath+"\n  qps: 5000\n  burst: 5000\n")...)
	path := filepath.Join(dir, "scheduler-config.yaml")
	return path, os.WriteFile(path, body, 0o600)
}

var schedulers int

// startScheduler runs the real kube-scheduler in this process, with or
// without the plugin's profile, until stop is called.
func startScheduler(parent context.Context, withPlugin bool, schedulerName string) (stop func(), err error) {
	dir, err := os.MkdirTemp("", "spillway-sched-")
	if err != nil {
		return nil, err
	}
	cfg, err := schedulerConfig(dir, withPlugin, schedulerName)
	if err != nil {
		return nil, err
	}
	port, err := framework.FreePort()
	if err != nil {
		return nil, err
	}
	opts := schedoptions.NewOptions()
	fs := pflag.NewFlagSet("kube-scheduler", pflag.ContinueOnError)
	for _, f := range opts.Flags.FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse([]string{"--config=" + cfg, "--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port), "--cert-dir=" + dir}); err != nil {
		return nil, fmt.Errorf("kube-scheduler flags: %w", err)
	}
	schedulers++
	name, err := cache.NewInformerName("kube-scheduler-" + strconv.Itoa(schedulers))
	if err != nil {
		return nil, err
	}
	opts.InformerName = name
	ctx, cancel := context.WithCancel(parent)
	// Goroutines of this scheduler (informers, scheduling and binding
	// cycles) carry its name as a pprof label: go test -cpuprofile, then
	// go tool pprof -tagfocus scheduler=<name>.
	ctx = pprof.WithLabels(ctx, pprof.Labels("scheduler", schedulerName))
	pprof.SetGoroutineLabels(ctx)
	defer pprof.SetGoroutineLabels(parent)
	cc, sched, err := schedapp.Setup(ctx, opts, schedapp.WithPlugin(rpplugin.Name, rpplugin.New))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("setting up kube-scheduler: %w", err)
	}
	// Only one scheduler of the process may hold /configz.
	configz.Delete("componentconfig")
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := schedapp.Run(ctx, cc, sched); err != nil && ctx.Err() == nil {
			fmt.Fprintln(os.Stderr, "kube-scheduler:", err)
		}
	}()
	return func() {
		cancel()
		<-done
		name.Release()
		configz.Delete("componentconfig")
		os.RemoveAll(dir)
	}, nil
}

// managerControl lets a benchmark pause the deletion-cost controller.
type managerControl struct {
	ctx  context.Context
	stop func()
}

var manager managerControl

// pauseManager stops the deletion-cost controller until the benchmark ends:
// in a cluster it is another process, and here it would share this
// process's CPU with the schedulers being measured.
func pauseManager(b *testing.B) {
	manager.stop()
	b.Cleanup(func() {
		stop, err := startManager(manager.ctx)
		if err != nil {
			b.Errorf("restarting the manager: %v", err)
			return
		}
		manager.stop = stop
	})
}

// startManager runs the deletion-cost controller.
func startManager(parent context.Context) (stop func(), err error) {
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 env.Client.Scheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// pauseManager starts a second manager in the same process.
		Controller: ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return nil, err
	}
	if err := deletioncost.SetupWithManager(mgr); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(parent)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	return func() { cancel(); <-done }, nil
}

// eventually polls cond every 100ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func(context.Context) (bool, error)) {
	t.Helper()
	framework.Eventually(t, timeout, cond, what)
}
