package inspect

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/pkg/cli/kubeflags"
)

// metricsSource gives live figures per service ("namespace/name");
// missing sources or services are shown as "-".
type metricsSource interface {
	Metrics(ctx context.Context, s *Snapshot) map[string]ServiceMetrics
}

// hpaMetrics reads GPU utilisation from the HPAs of services that scale on
// a GPU metric, and queue length from those scaling on vllm:num_requests_waiting.
type hpaMetrics struct{}

func (hpaMetrics) Metrics(_ context.Context, s *Snapshot) map[string]ServiceMetrics {
	out := map[string]ServiceMetrics{}
	for _, svc := range s.Services {
		h, ok := s.HPAs[svc.Namespace+"/"+svc.Name+"-hpa"]
		if !ok {
			continue
		}
		var m ServiceMetrics
		for _, cm := range h.Status.CurrentMetrics {
			if cm.Pods == nil || cm.Pods.Current.AverageValue == nil {
				continue
			}
			v := cm.Pods.Current.AverageValue.AsApproximateFloat64()
			switch name := cm.Pods.Metric.Name; {
			case strings.HasPrefix(name, "DCGM_") && strings.Contains(name, "UTIL"):
				m.GPUUtil = &v
			case name == "vllm:num_requests_waiting":
				m.Queue = &v
			case name == "vllm:num_requests_running":
				m.InFlight = &v
			}
		}
		out[svc.Namespace+"/"+svc.Name] = m
	}
	return out
}

type options struct {
	clock   clock.WithTicker
	metrics metricsSource
}

// Option changes the commands' dependencies (for tests).
type Option func(*options)

// WithClock sets the clock (ages, top's refresh).
func WithClock(c clock.WithTicker) Option { return func(o *options) { o.clock = c } }

// NewCommands returns list, get, delete and top.
func NewCommands(opts ...Option) []*cobra.Command {
	o := options{clock: clock.RealClock{}, metrics: hpaMetrics{}}
	for _, opt := range opts {
		opt(&o)
	}
	return []*cobra.Command{newList(o), newGet(o), newDelete(o), newTop(o)}
}

func usage(cmd *cobra.Command) {
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w\nSee '%s --help'", err, c.CommandPath())
	})
}

func connect(k *kubeflags.Flags, all bool) (client.Client, string, error) {
	c, err := k.Client()
	if err != nil {
		return nil, "", err
	}
	if all {
		return c, "", nil
	}
	ns, err := k.ResolveNamespace()
	return c, ns, err
}

func newList(o options) *cobra.Command {
	var (
		k   kubeflags.Flags
		all bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List InferenceServices with their URL, replicas and replicas per node pool",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ns, err := connect(&k, all)
			if err != nil {
				return err
			}
			s, err := read(cmd.Context(), c, ns, o.clock.Now(), false)
			if err != nil {
				return err
			}
			if len(s.Services) == 0 {
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "No InferenceServices found%s.\n", inNS(ns))
				return err
			}
			return WriteList(cmd.OutOrStdout(), s, all)
		},
	}
	usage(cmd)
	k.AddFlags(cmd.Flags())
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "list the services of every namespace")
	return cmd
}

func inNS(ns string) string {
	if ns == "" {
		return ""
	}
	return " in namespace " + ns
}

func getService(ctx context.Context, c client.Reader, ns, name string) (*spillwayv1alpha1.InferenceService, error) {
	var svc spillwayv1alpha1.InferenceService
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &svc); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("InferenceService %q not found in namespace %s (see `spillway list`)", name, ns)
		}
		return nil, fmt.Errorf("reading InferenceService %s/%s: %w", ns, name, err)
	}
	return &svc, nil
}

func newGet(o options) *cobra.Command {
	var k kubeflags.Flags
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Show a service: URL, replicas per node pool, autoscaler state, recent events",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := connect(&k, false)
			if err != nil {
				return err
			}
			svc, err := getService(cmd.Context(), c, ns, args[0])
			if err != nil {
				return err
			}
			s, err := read(cmd.Context(), c, ns, o.clock.Now(), true)
			if err != nil {
				return err
			}
			return WriteGet(cmd.OutOrStdout(), s, svc)
		},
	}
	usage(cmd)
	k.AddFlags(cmd.Flags())
	return cmd
}

func newDelete(o options) *cobra.Command {
	var k kubeflags.Flags
	cmd := &cobra.Command{
		Use:   "delete NAME...",
		Short: "Delete InferenceServices (their Deployment, Service and HPA go with them)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := connect(&k, false)
			if err != nil {
				return err
			}
			for _, name := range args {
				svc := &spillwayv1alpha1.InferenceService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
				if err := c.Delete(cmd.Context(), svc, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil {
					if apierrors.IsNotFound(err) {
						return fmt.Errorf("InferenceService %q not found in namespace %s", name, ns)
					}
					return fmt.Errorf("deleting InferenceService %s/%s: %w", ns, name, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "inferenceservice.spillway.io/%s deleted from namespace %s\n", name, ns)
			}
			return nil
		},
	}
	usage(cmd)
	k.AddFlags(cmd.Flags())
	return cmd
}

func newTop(o options) *cobra.Command {
	var (
		k        kubeflags.Flags
		all      bool
		once     bool
		interval time.Duration
	)
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Per service and per node pool: replicas, GPUs, utilisation, queue, in-flight, cost per hour",
		Long: `Per service and per node pool: replicas, GPUs, GPU utilisation, queue, in-flight
requests and cost per hour (nodes x the pool's pricePerHour). Refreshes every
--interval like top until interrupted; --once prints one screen. Figures
that no source provides are shown as "-".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if interval < 500*time.Millisecond {
				return fmt.Errorf("--interval %v: want at least 500ms\nSee '%s --help'", interval, cmd.CommandPath())
			}
			c, ns, err := connect(&k, all)
			if err != nil {
				return err
			}
			screen := func(w io.Writer) error {
				s, err := read(cmd.Context(), c, ns, o.clock.Now(), false)
				if err != nil {
					return err
				}
				var pods corev1.PodList
				if err := c.List(cmd.Context(), &pods); err != nil {
					return fmt.Errorf("listing pods: %w", err)
				}
				return WriteTop(w, s, s.PoolUsage(pods.Items), o.metrics.Metrics(cmd.Context(), s))
			}
			if once {
				return screen(cmd.OutOrStdout())
			}
			t := o.clock.NewTicker(interval)
			defer t.Stop()
			for {
				var b strings.Builder
				b.WriteString("\x1b[H\x1b[2J") // home, clear
				if err := screen(&b); err != nil {
					return err
				}
				fmt.Fprint(cmd.OutOrStdout(), b.String())
				select {
				case <-cmd.Context().Done():
					return nil
				case <-t.C():
				}
			}
		},
	}
	usage(cmd)
	k.AddFlags(cmd.Flags())
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "show the services of every namespace")
	cmd.Flags().BoolVar(&once, "once", false, "print one screen and exit")
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "refresh period")
	return cmd
}
