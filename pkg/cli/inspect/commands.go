package inspect

import (
	"context"
	"fmt"
	"io"
	"net/url"
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

type options struct {
	clock clock.WithTicker
}

// Option changes the commands' dependencies (for tests).
type Option func(*options)

// WithClock sets the clock (ages, top's refresh).
func WithClock(c clock.WithTicker) Option { return func(o *options) { o.clock = c } }

// NewCommands returns list, get, delete and top.
func NewCommands(opts ...Option) []*cobra.Command {
	o := options{clock: clock.RealClock{}}
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
		k          kubeflags.Flags
		all        bool
		once       bool
		interval   time.Duration
		gatewayURL string
		timeout    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Per service and per node pool: replicas, GPUs, utilisation, queue, in-flight, cost per hour",
		Long: `Per service and per node pool: replicas, GPUs, GPU utilisation, queue, in-flight
requests and cost per hour (nodes x the pool's pricePerHour). Refreshes every
--interval like top until interrupted; --once prints one screen.

GPU utilisation (DCGM_CUSTOM_PROCESS_SM_UTIL, mean over replicas) and queue
(vllm_num_requests_waiting, summed) come from the custom metrics API
(custom.metrics.k8s.io, served by spillway-metrics-adapter); without it,
from the service's HPA when it scales on them. In-flight requests come from
the gateway's metrics (spillway_gateway_in_flight_requests and
spillway_gateway_pool_in_flight_requests) at --gateway-metrics. Figures
that no source provides are shown as "-", with a note saying why.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if interval < 500*time.Millisecond {
				return fmt.Errorf("--interval %v: want at least 500ms\nSee '%s --help'", interval, cmd.CommandPath())
			}
			if timeout <= 0 {
				return fmt.Errorf("--metrics-timeout %v: want a positive duration\nSee '%s --help'", timeout, cmd.CommandPath())
			}
			if gatewayURL != "none" {
				if u, err := url.Parse(gatewayURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
					return fmt.Errorf("--gateway-metrics %q: want http://host:port/metrics or none\nSee '%s --help'", gatewayURL, cmd.CommandPath())
				}
			}
			c, ns, err := connect(&k, all)
			if err != nil {
				return err
			}
			cfg, err := k.RESTConfig()
			if err != nil {
				return err
			}
			src := newLiveSource(cfg, c.RESTMapper(), gatewayURL, timeout)
			screen := func(w io.Writer) error {
				text, err := topScreen(cmd.Context(), c, ns, o.clock.Now(), src)
				if err != nil {
					return err
				}
				_, err = io.WriteString(w, text)
				return err
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
	cmd.Flags().StringVar(&gatewayURL, "gateway-metrics", DefaultGatewayMetricsURL(),
		"the gateway's Prometheus metrics URL (its admin port), for in-flight requests; \"none\" to skip")
	cmd.Flags().DurationVar(&timeout, "metrics-timeout", 2*time.Second, "timeout of each read of the custom metrics API and the gateway")
	return cmd
}

// topScreen reads the cluster and the live sources and renders one screen.
func topScreen(ctx context.Context, c client.Reader, ns string, now time.Time, src figuresSource) (string, error) {
	s, err := read(ctx, c, ns, now, false)
	if err != nil {
		return "", err
	}
	var pods corev1.PodList
	if err := c.List(ctx, &pods); err != nil {
		return "", fmt.Errorf("listing pods: %w", err)
	}
	f := src.Figures(ctx, s)
	services, poolLive := Combine(s, f)
	var b strings.Builder
	err = WriteTop(&b, s, WithLive(s.PoolUsage(pods.Items), poolLive), services, f.Notes)
	return b.String(), err
}
