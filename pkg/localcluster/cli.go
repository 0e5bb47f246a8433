package localcluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// configFile keeps the configuration of the last up in the state folder so
// status and down use the same ports and paths.
const configFile = "cluster.json"

// DefaultStateDir is ./.state inside a Spillway checkout, else
// $XDG_STATE_HOME/spillway (~/.local/state/spillway).
func DefaultStateDir(root string) string {
	if root != "" {
		return filepath.Join(root, ".state")
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "spillway")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local", "state", "spillway")
}

// repoRoot finds the Spillway checkout containing dir ("" if none).
func repoRoot(dir string) string {
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/spillway-io/spillway\n") {
			return d
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}

type cliFlags struct {
	stateDir, clusterFile, root string
	ports                       Ports
	noBuild, wipe               bool
	grace                       time.Duration
	hpa                         HPASettings
}

func (f *cliFlags) addCommon(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.stateDir, "state-dir", "", "state folder (default ./.state in a Spillway checkout, else $XDG_STATE_HOME/spillway)")
}

func (f *cliFlags) resolve() error {
	wd, _ := os.Getwd()
	f.root = repoRoot(wd)
	if f.stateDir == "" {
		f.stateDir = DefaultStateDir(f.root)
	}
	abs, err := filepath.Abs(f.stateDir)
	if err != nil {
		return err
	}
	f.stateDir = abs
	return nil
}

func loadConfig(stateDir string) (Config, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, configFile))
	if err != nil {
		return Config{}, fmt.Errorf("no local cluster in %s (run `spillway up` first): %w", stateDir, err)
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return Config{}, fmt.Errorf("reading %s: %w", configFile, err)
	}
	return c, nil
}

// NewUpCommand returns `spillway up`.
func NewUpCommand() *cobra.Command {
	f := &cliFlags{ports: DefaultPorts()}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start the local hybrid cluster (control plane, Spillway, node simulator) on 127.0.0.1",
		Long: "Builds what is missing, then starts etcd, kube-apiserver, kube-controller-manager, the node simulator,\n" +
			"the metrics adapter, spillway-scheduler, spillway-gateway and spillway-manager on 127.0.0.1, installs the\n" +
			"CRDs, creates the node pools of a cluster file and registers the metrics adapter's APIServices.\n" +
			"Logs go to <state>/logs; `spillway down` stops everything.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.resolve(); err != nil {
				return err
			}
			if f.root == "" {
				return errors.New("run `spillway up` inside a Spillway checkout (it builds and uses bin/, config/)")
			}
			if f.clusterFile == "" {
				f.clusterFile = filepath.Join(f.root, "config", "clusters", "default.yaml")
			}
			cf, err := filepath.Abs(f.clusterFile)
			if err != nil {
				return err
			}
			if _, err := ReadClusterFile(cf); err != nil {
				return err
			}
			c := Config{
				StateDir: f.stateDir, K8sBinDir: filepath.Join(f.root, "bin", "k8s-v1.37.2"), SpillwayBinDir: filepath.Join(f.root, "bin"),
				ClusterFile: cf, CRDDir: filepath.Join(f.root, "config", "crd", "bases"), Ports: f.ports, HPA: f.hpa,
				SchedulerConfig: filepath.Join(f.root, "config", "scheduler", "scheduler-config.yaml"),
			}
			out := cmd.OutOrStdout()
			if !f.noBuild {
				if err := build(cmd, f.root, c, out); err != nil {
					return err
				}
			}
			if err := os.MkdirAll(c.StateDir, 0o700); err != nil {
				return err
			}
			b, _ := json.MarshalIndent(c, "", "  ")
			if err := os.WriteFile(filepath.Join(c.StateDir, configFile), b, 0o600); err != nil {
				return err
			}
			if err := Up(cmd.Context(), c, out, time.Now()); err != nil {
				return err
			}
			fmt.Fprintf(out, "\nexport KUBECONFIG=%s\n", c.KubeconfigPath())
			return nil
		},
	}
	f.addCommon(cmd)
	fl := cmd.Flags()
	fl.StringVar(&f.clusterFile, "cluster-file", "", "cluster file of NodePools (default config/clusters/default.yaml)")
	fl.BoolVar(&f.noBuild, "no-build", false, "do not build missing binaries")
	fl.DurationVar(&f.hpa.SyncPeriod, "hpa-sync-period", 15*time.Second, "how often the HPA controller re-evaluates (kube-controller-manager --horizontal-pod-autoscaler-sync-period)")
	fl.DurationVar(&f.hpa.DownscaleStabilization, "hpa-downscale-stabilization", time.Minute, "how long the HPA keeps the highest recent recommendation before scaling in (upstream default 5m; shorter here so the demo's scale-in shows within minutes)")
	fl.IntVar(&f.ports.EtcdClient, "etcd-port", f.ports.EtcdClient, "etcd client port")
	fl.IntVar(&f.ports.EtcdPeer, "etcd-peer-port", f.ports.EtcdPeer, "etcd peer port")
	fl.IntVar(&f.ports.APIServer, "apiserver-port", f.ports.APIServer, "kube-apiserver secure port")
	fl.IntVar(&f.ports.KCM, "kcm-port", f.ports.KCM, "kube-controller-manager secure port")
	fl.IntVar(&f.ports.Scheduler, "scheduler-port", f.ports.Scheduler, "spillway-scheduler secure port")
	fl.IntVar(&f.ports.SimletMetrics, "simlet-port", f.ports.SimletMetrics, "node simulator /metrics /healthz /faults port")
	fl.IntVar(&f.ports.ManagerMetrics, "manager-metrics-port", f.ports.ManagerMetrics, "spillway-manager /metrics port")
	fl.IntVar(&f.ports.ManagerProbe, "manager-probe-port", f.ports.ManagerProbe, "spillway-manager /healthz port")
	fl.IntVar(&f.ports.GatewayHTTP, "gateway-port", f.ports.GatewayHTTP, "spillway-gateway OpenAI API port")
	fl.IntVar(&f.ports.GatewayAdmin, "gateway-admin-port", f.ports.GatewayAdmin, "spillway-gateway admin port (/healthz, /metrics)")
	fl.IntVar(&f.ports.MetricsAdapter, "metrics-adapter-port", f.ports.MetricsAdapter, "spillway-metrics-adapter secure port (custom.metrics.k8s.io)")
	fl.IntVar(&f.ports.MetricsAdapterHealth, "metrics-adapter-health-port", f.ports.MetricsAdapterHealth, "spillway-metrics-adapter /healthz /readyz /metrics port")
	return cmd
}

// build runs hack/build-k8s.sh when the control plane is missing and builds
// the Spillway binaries of the components whose cmd/ folder exists.
func build(cmd *cobra.Command, root string, c Config, out io.Writer) error {
	if _, err := os.Stat(filepath.Join(c.K8sBinDir, "kube-apiserver")); err != nil {
		fmt.Fprintln(out, "building the Kubernetes control plane (hack/build-k8s.sh, ~15 min the first time)")
		sh := exec.CommandContext(cmd.Context(), filepath.Join(root, "hack", "build-k8s.sh"), c.K8sBinDir)
		sh.Dir, sh.Stdout, sh.Stderr = root, out, out
		if err := sh.Run(); err != nil {
			return fmt.Errorf("building the control plane: %w", err)
		}
	}
	var pkgs []string
	for _, comp := range Components(c) {
		if filepath.Dir(comp.Binary) != c.SpillwayBinDir {
			continue
		}
		name := filepath.Base(comp.Binary)
		if _, err := os.Stat(filepath.Join(root, "cmd", name)); err == nil {
			pkgs = append(pkgs, "./cmd/"+name)
		}
	}
	if len(pkgs) == 0 {
		return nil
	}
	fmt.Fprintf(out, "building %s\n", strings.Join(pkgs, " "))
	gb := exec.CommandContext(cmd.Context(), "go", append([]string{"build", "-o", c.SpillwayBinDir + "/"}, pkgs...)...)
	gb.Dir, gb.Stdout, gb.Stderr = root, out, out
	if err := gb.Run(); err != nil {
		return fmt.Errorf("building Spillway's binaries: %w", err)
	}
	return nil
}

// NewStatusCommand returns `spillway status`.
func NewStatusCommand() *cobra.Command {
	f := &cliFlags{}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the processes of the local cluster",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.resolve(); err != nil {
				return err
			}
			c, err := loadConfig(f.stateDir)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "COMPONENT\tPID\tSTATE")
			for _, s := range Status(cmd.Context(), c) {
				state, pid := "stopped", "-"
				if s.Running {
					pid = fmt.Sprint(s.PID)
					state = "running"
					if !s.Healthy {
						state = "unhealthy"
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, pid, state)
			}
			_ = tw.Flush()
			fmt.Fprintf(cmd.OutOrStdout(), "state %s, kubeconfig %s\n", c.StateDir, c.KubeconfigPath())
			return nil
		},
	}
	f.addCommon(cmd)
	return cmd
}

// NewDownCommand returns `spillway down`.
func NewDownCommand() *cobra.Command {
	f := &cliFlags{}
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop the local cluster (keeps its state unless --wipe)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.resolve(); err != nil {
				return err
			}
			c, err := loadConfig(f.stateDir)
			if err != nil {
				return err
			}
			if f.grace <= 0 {
				return fmt.Errorf("--grace must be positive, got %s", f.grace)
			}
			return Down(c, cmd.OutOrStdout(), f.grace, f.wipe)
		},
	}
	f.addCommon(cmd)
	cmd.Flags().BoolVar(&f.wipe, "wipe", false, "remove the state folder (etcd data, certificates, logs) after stopping")
	cmd.Flags().DurationVar(&f.grace, "grace", 40*time.Second, "how long each process may take to stop before it is killed")
	return cmd
}
