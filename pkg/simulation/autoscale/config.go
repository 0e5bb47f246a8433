// Package autoscale replays a request trace against a simulated Spillway
// service — replicas modelled by the engine simulator's performance model
// (pkg/engine/perf), an IDC pool of fixed GPU nodes and an elastic pool of
// cloud GPU nodes that take minutes to arrive, the gateway's
// least-outstanding routing (pkg/gateway/balancer) — under one pod
// autoscaler class, with the real decision code:
//
//   - "hpa": the Kubernetes HPA (pkg/simulation/hpa) on the Pods metric
//     DCGM_CUSTOM_PROCESS_SM_UTIL with an averageValue target (the seed's 50),
//     metrics scraped every few seconds as the metrics adapter does, synced
//     every 15 s;
//   - "llm": pkg/autoscaler/llm.Decide fed the samples the llm autoscaler
//     controller builds (gateway in-flight, engines' running/waiting/KV-cache,
//     ready and starting replicas) every 2 s;
//   - "fixed": a constant replica count (to measure what a load needs).
//
// The simulation is a pure function of its inputs: time is simulated (events
// at engine step ends and request arrivals, a 1 s tick for the control
// loops), no goroutine, no clock, ties broken by a seeded random source, so
// the same inputs give the same result.
package autoscale

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spillway-io/spillway/pkg/autoscaler/llm"
	"github.com/spillway-io/spillway/pkg/engine/enginesim"
	"github.com/spillway-io/spillway/pkg/engine/perf"
	"github.com/spillway-io/spillway/pkg/simulation/hpa"
)

// Class is the pod autoscaler under test.
type Class string

// Classes.
const (
	ClassHPA   Class = "hpa"
	ClassLLM   Class = "llm"
	ClassFixed Class = "fixed"
)

// ParseClass reads a class name.
func ParseClass(s string) (Class, error) {
	switch c := Class(strings.ToLower(strings.TrimSpace(s))); c {
	case ClassHPA, ClassLLM, ClassFixed:
		return c, nil
	}
	return "", fmt.Errorf("unknown autoscaler class %q (want %s, %s or %s)", s, ClassHPA, ClassLLM, ClassFixed)
}

// Pool is where a replica runs.
type Pool string

// Pools.
const (
	PoolIDC     Pool = "idc"
	PoolElastic Pool = "elastic"
)

// Tick is the period of the control loops' clock; every interval of the
// configuration is a whole number of ticks.
const Tick = time.Second

// SeedCommand is the seed's vLLM command line (docs/cli.md).
var SeedCommand = []string{
	"python3", "-m", "vllm.entrypoints.openai.api_server", "--port", "8080", "--trust-remote-code",
	"--served-model-name", "qwen", "--model", "/mnt/models/Qwen", "--gpu-memory-utilization", "0.95",
	"--quantization", "gptq", "--max-model-len=6144",
}

// SeedEngine is the engine the node simulator runs for the seed's pods: the
// seed's command line on the default simulator settings (V100 32 GB, 7B).
func SeedEngine() (perf.Config, error) {
	cfg, _, err := enginesim.BuildConfig(SeedCommand, enginesim.DefaultSettings())
	if err != nil {
		return perf.Config{}, fmt.Errorf("building the seed's engine: %w", err)
	}
	return cfg.Engine, nil
}

// HPAConfig is the HPA and its metric pipeline.
type HPAConfig struct {
	// TargetSMUtil is the averageValue of DCGM_CUSTOM_PROCESS_SM_UTIL (percent).
	TargetSMUtil float64
	// SyncPeriod is kube-controller-manager's --horizontal-pod-autoscaler-sync-period.
	SyncPeriod time.Duration
	// ScrapeInterval is how often the metrics adapter reads the pods' SM
	// utilisation (the value the HPA sees is the last scrape's).
	ScrapeInterval         time.Duration
	Tolerance              hpa.Tolerance
	DownscaleStabilization time.Duration
	// Behavior is the HPA's spec.behavior (nil: none, as Spillway's HPA).
	Behavior *hpa.Behavior
}

// Config is one simulation run.
type Config struct {
	Class Class
	// Engine is each replica's engine (SeedEngine by default).
	Engine perf.Config
	// MinReplicas and MaxReplicas bound the autoscalers (the seed's 1..3);
	// the run starts at MinReplicas ready replicas (FixedReplicas for fixed).
	MinReplicas, MaxReplicas int32
	FixedReplicas            int32
	// IDCNodes are one-GPU nodes always there; ElasticMaxNodes one-GPU cloud
	// nodes created on demand (a pending replica) after ProvisioningDelay and
	// removed after NodeUnneededTime without a replica.
	IDCNodes, ElasticMaxNodes int
	ProvisioningDelay         time.Duration
	NodeUnneededTime          time.Duration
	// ModelLoad is the time from a replica's start on its node to ready.
	ModelLoad time.Duration
	// TerminationGrace bounds how long a removed replica drains its requests
	// (the gateway sends it nothing new); the rest are cut (dropped).
	TerminationGrace time.Duration
	// CloudPricePerHour is an elastic node's price.
	CloudPricePerHour float64

	HPA HPAConfig
	// LLM is the llm autoscaler's spec (its min/max are MinReplicas and
	// MaxReplicas); LLMInterval its tick.
	LLM         llm.Spec
	LLMInterval time.Duration

	// TTFTSLO is the time-to-first-token objective.
	TTFTSLO time.Duration
	// SampleInterval is the timeline's resolution.
	SampleInterval time.Duration
	// Drain is how long the run lasts after the last arrival; requests not
	// finished then count as dropped.
	Drain time.Duration
	// Seed drives the balancer's tie-breaks.
	Seed uint64
}

// DefaultConfig is the seed's service on the default cluster
// (config/clusters/default.yaml: one IDC V100 node, an elastic pool of up to
// three V100 nodes at 2.5 per hour) with a 60 s node provisioning delay and a
// 30 s model load.
func DefaultConfig(class Class) (Config, error) {
	eng, err := SeedEngine()
	if err != nil {
		return Config{}, err
	}
	spec := llm.DefaultSpec()
	return Config{
		Class:  class,
		Engine: eng,
		// The seed's --min-replicas=1 --max-replicas=3.
		MinReplicas: 1, MaxReplicas: 3, FixedReplicas: 3,
		IDCNodes: 1, ElasticMaxNodes: 3,
		ProvisioningDelay: 60 * time.Second,
		NodeUnneededTime:  60 * time.Second,
		ModelLoad:         30 * time.Second,
		TerminationGrace:  300 * time.Second,
		CloudPricePerHour: 2.5,
		HPA: HPAConfig{
			TargetSMUtil: 50, SyncPeriod: hpa.DefaultSyncPeriod, ScrapeInterval: 5 * time.Second,
			Tolerance: hpa.DefaultTolerance, DownscaleStabilization: hpa.DefaultDownscaleStabilization,
		},
		LLM:            spec,
		LLMInterval:    2 * time.Second,
		TTFTSLO:        2 * time.Second,
		SampleInterval: 10 * time.Second,
		Drain:          5 * time.Minute,
		Seed:           1,
	}, nil
}

// Validate reports every problem of c, each naming its field.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if _, err := ParseClass(string(c.Class)); err != nil {
		errs = append(errs, err)
	}
	if _, err := perf.New(c.Engine); err != nil {
		bad("engine: %v", err)
	}
	if c.MinReplicas < 1 {
		bad("min replicas %d: must be at least 1 (the HPA cannot scale from zero)", c.MinReplicas)
	}
	if c.MaxReplicas < c.MinReplicas {
		bad("max replicas %d: must be at least min replicas %d", c.MaxReplicas, c.MinReplicas)
	}
	if c.Class == ClassFixed && c.FixedReplicas < 1 {
		bad("fixed replicas %d: must be at least 1", c.FixedReplicas)
	}
	if c.IDCNodes < 0 || c.ElasticMaxNodes < 0 || c.IDCNodes+c.ElasticMaxNodes < 1 {
		bad("nodes: %d IDC and %d elastic: want at least one node, none negative", c.IDCNodes, c.ElasticMaxNodes)
	}
	if c.CloudPricePerHour < 0 {
		bad("cloud price per hour %v: must not be negative", c.CloudPricePerHour)
	}
	whole := func(name string, d time.Duration, positive bool) {
		if d < 0 || (positive && d == 0) || d%Tick != 0 {
			want := "a whole number of seconds"
			if positive {
				want = "a positive whole number of seconds"
			}
			bad("%s %s: must be %s", name, d, want)
		}
	}
	whole("provisioning delay", c.ProvisioningDelay, false)
	whole("node unneeded time", c.NodeUnneededTime, false)
	whole("model load time", c.ModelLoad, false)
	whole("termination grace", c.TerminationGrace, false)
	whole("sample interval", c.SampleInterval, true)
	whole("drain", c.Drain, false)
	if c.TTFTSLO <= 0 {
		bad("TTFT SLO %s: must be positive", c.TTFTSLO)
	}
	switch c.Class {
	case ClassHPA:
		whole("HPA sync period", c.HPA.SyncPeriod, true)
		whole("metric scrape interval", c.HPA.ScrapeInterval, true)
		if !(c.HPA.TargetSMUtil > 0) {
			bad("HPA target SM utilisation %v: must be positive", c.HPA.TargetSMUtil)
		}
	case ClassLLM:
		whole("llm autoscaler interval", c.LLMInterval, true)
	}
	return errors.Join(errs...)
}

func (c Config) hpaSpec() hpa.Spec {
	return hpa.Spec{
		MinReplicas: c.MinReplicas, MaxReplicas: c.MaxReplicas,
		TargetMilli: int64(c.HPA.TargetSMUtil*1000 + 0.5),
		Tolerance:   c.HPA.Tolerance, DownscaleStabilization: c.HPA.DownscaleStabilization,
		Behavior: c.HPA.Behavior,
	}
}

func (c Config) llmSpec() llm.Spec {
	s := c.LLM
	s.MinReplicas, s.MaxReplicas = c.MinReplicas, c.MaxReplicas
	return s
}
