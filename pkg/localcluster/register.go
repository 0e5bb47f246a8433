package localcluster

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	aggregator "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"
	"sigs.k8s.io/yaml"

	"github.com/spillway-io/spillway/pkg/metricsadapter"
)

// RegisterMetricsAdapter registers the running metrics adapter with the
// aggregation layer (APIServices v1beta2 and v1beta1 of custom.metrics.k8s.io,
// behind an ExternalName Service of localhost) and waits until kube-apiserver
// reports them Available.
func RegisterMetricsAdapter(ctx context.Context, c Config, out io.Writer) error {
	rc, err := clientcmd.BuildConfigFromFlags("", c.KubeconfigPath())
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	ag, err := aggregator.NewForConfig(rc)
	if err != nil {
		return err
	}
	caFile := filepath.Join(c.metricsAdapterCertDir(), "apiserver.crt")
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return fmt.Errorf("reading the metrics adapter's serving certificate: %w", err)
	}
	reg := metricsadapter.Registration{
		Namespace: MetricsAdapterNamespace, Service: MetricsAdapterService, Port: int32(c.Ports.MetricsAdapter),
		CABundle: ca, ExternalName: "localhost",
	}
	if err := metricsadapter.Register(ctx, cs, ag, reg); err != nil {
		return fmt.Errorf("registering the metrics adapter: %w", err)
	}
	var reason string
	if err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		ok, r, err := metricsadapter.Available(ctx, ag)
		reason = r
		if err != nil {
			reason = err.Error()
		}
		return ok, nil
	}); err != nil {
		return fmt.Errorf("APIService v1beta2.%s not Available (%s): %w", metricsadapter.Group, reason, err)
	}
	fmt.Fprintf(out, "%-24s APIServices v1beta2/v1beta1.%s Available\n", "spillway-metrics-adapter", metricsadapter.Group)
	return nil
}

// WriteSchedulerConfig writes spillway-scheduler's configuration into the
// state folder: c.SchedulerConfig (the default profile with the
// SpillwayResourcePolicy plugin) with the local kubeconfig as its client
// connection.
func WriteSchedulerConfig(c Config) error {
	if c.SchedulerConfig == "" {
		return fmt.Errorf("no scheduler configuration given (config/scheduler/scheduler-config.yaml of the checkout)")
	}
	b, err := os.ReadFile(c.SchedulerConfig)
	if err != nil {
		return fmt.Errorf("reading the scheduler configuration: %w", err)
	}
	doc := map[string]any{}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("%s: %w", c.SchedulerConfig, err)
	}
	if doc["kind"] != "KubeSchedulerConfiguration" {
		return fmt.Errorf("%s: kind %v, want KubeSchedulerConfiguration", c.SchedulerConfig, doc["kind"])
	}
	conn, _ := doc["clientConnection"].(map[string]any)
	if conn == nil {
		conn = map[string]any{}
	}
	conn["kubeconfig"] = c.KubeconfigPath()
	doc["clientConnection"] = conn
	doc["leaderElection"] = map[string]any{"leaderElect": false}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return err
	}
	return os.WriteFile(c.schedulerConfigPath(), out, 0o600)
}
