package main

import (
	"fmt"
	"net/http"
	"time"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/spillway-io/spillway/pkg/cloudprovider"
	"github.com/spillway-io/spillway/pkg/cloudprovider/sim"
	"github.com/spillway-io/spillway/pkg/controllers/deletioncost"
	"github.com/spillway-io/spillway/pkg/controllers/inferenceservice"
	"github.com/spillway-io/spillway/pkg/controllers/llmautoscaler"
	"github.com/spillway-io/spillway/pkg/controllers/nodepool"
)

// Options are what the controllers' setups may read: the manager's flags.
type Options struct {
	// Domain is the domain of service URLs ({name}-{namespace}.{domain}).
	Domain string
	// SchedulerName is the scheduler of replicas whose spec names none.
	SchedulerName string
	// GatewayMetricsURL is the gateway's /metrics URL ("" when not set: the
	// llm autoscaler then uses the engines' figures alone).
	GatewayMetricsURL string
	// LLMInterval is the llm autoscaler's tick.
	LLMInterval time.Duration
	// Clock is the clock of controllers that take time as a parameter.
	Clock clock.WithTicker
}

// controllerSetup registers one controller with the manager.
type controllerSetup struct {
	// Name is what --controllers selects.
	Name  string
	Setup func(mgr ctrl.Manager, opts Options) error
}

// controllerSetups lists every controller spillway-manager hosts, in the
// order they are registered. Registration is explicit, here and nowhere
// else (no init() side effects): to add a controller, append an entry whose
// Setup builds it from mgr (client, scheme, cache) and opts, and calls
// SetupWithManager or mgr.Add. Give it a short, unique Name so it can be
// turned off with --controllers=*,-name.
func controllerSetups() []controllerSetup {
	return []controllerSetup{
		{Name: "inferenceservice", Setup: func(mgr ctrl.Manager, o Options) error {
			return inferenceservice.New(mgr.GetClient(),
				inferenceservice.WithDomain(o.Domain), inferenceservice.WithSchedulerName(o.SchedulerName), inferenceservice.WithClock(o.Clock)).SetupWithManager(mgr)
		}},
		{Name: "llmautoscaler", Setup: func(mgr ctrl.Manager, o Options) error {
			opts := []llmautoscaler.Option{
				llmautoscaler.WithClock(o.Clock),
				llmautoscaler.WithInterval(o.LLMInterval),
				llmautoscaler.WithRegisterer(ctrlmetrics.Registry),
				llmautoscaler.WithEngineSource(&llmautoscaler.EngineScraper{Client: &http.Client{Timeout: time.Second}}),
			}
			if o.GatewayMetricsURL != "" {
				opts = append(opts, llmautoscaler.WithInFlightSource(&llmautoscaler.GatewayScraper{
					URL: o.GatewayMetricsURL, Client: &http.Client{Timeout: time.Second},
				}))
			}
			if err := mgr.Add(llmautoscaler.New(mgr.GetClient(), opts...)); err != nil {
				return fmt.Errorf("adding the llm autoscaler: %w", err)
			}
			return nil
		}},
		{Name: "deletioncost", Setup: func(mgr ctrl.Manager, _ Options) error {
			return deletioncost.SetupWithManager(mgr)
		}},
		{Name: "nodepool", Setup: func(mgr ctrl.Manager, o Options) error {
			// Elastic pools name their provider; the local cluster's is the
			// simulated cloud (delays per pool in spec.provider.parameters).
			simClock, ok := o.Clock.(clock.WithDelayedExecution)
			if !ok {
				simClock = clock.RealClock{}
			}
			// The simulated cloud is another system than the manager: it
			// reads and writes Nodes directly, not through the manager's
			// cache (a Node it just created is not in the cache yet).
			cloud, err := client.New(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
			if err != nil {
				return err
			}
			providers := cloudprovider.Registry{
				sim.Name: sim.New(cloud, sim.WithClock(simClock),
					sim.WithLogger(mgr.GetLogger().WithName("sim-cloud"))),
			}
			return nodepool.SetupWithManager(mgr, nodepool.Options{
				Providers: providers, Clock: o.Clock, Registerer: ctrlmetrics.Registry,
			})
		}},
	}
}
