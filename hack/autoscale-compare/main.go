// Command autoscale-compare replays a request trace (by default the Azure
// LLM inference trace, conversation service, in traces/) against a simulated
// Spillway service under the `hpa` (SM utilisation at 50 %) and `llm`
// autoscaler classes, and prints a side-by-side table; -csv writes the
// timelines, -png a timeline picture, -calibrate the table that chooses the
// rate scale. See docs/autoscaling-comparison.md.
//
//	go run ./hack/autoscale-compare
//	go run ./hack/autoscale-compare -calibrate
package main

import (
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spillway-io/spillway/pkg/bench/timeline"
	"github.com/spillway-io/spillway/pkg/bench/trace"
	"github.com/spillway-io/spillway/pkg/simulation/autoscale"
)

// DefaultRateScale is the rate scale chosen with -calibrate: the largest of
// the candidates at which three fixed replicas still meet the TTFT SLO for
// 99 % of the requests of the busiest ten minutes while two do not (see
// docs/autoscaling-comparison.md).
const DefaultRateScale = 0.5

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "autoscale-compare:", err)
		os.Exit(1)
	}
}

type options struct {
	trace                          string
	rateScale, speedUp             float64
	classes                        string
	calibrate                      bool
	csvPath, pngPath               string
	provisioning, modelLoad        time.Duration
	unneeded, slo                  time.Duration
	scrape, hpaSync                time.Duration
	hpaTarget                      float64
	minReplicas, maxReplicas       int
	idcNodes, elasticNodes         int
	price                          float64
	peakWindow, warmup             time.Duration
	calibrateScales, calibrateReps string
	sweep                          string
}

func run(args []string, out io.Writer) error {
	var o options
	fs := flag.NewFlagSet("autoscale-compare", flag.ContinueOnError)
	fs.StringVar(&o.trace, "trace", "hack/autoscale-compare/traces/AzureLLMInferenceTrace_conv.csv.gz", "Azure-format trace (CSV, or CSV.gz)")
	fs.Float64Var(&o.rateScale, "rate-scale", DefaultRateScale, "requests per unit of time relative to the trace (0.5 keeps every other request)")
	fs.Float64Var(&o.speedUp, "speed-up", 1, "time compression (2 replays the trace twice as fast)")
	fs.StringVar(&o.classes, "classes", "hpa,llm", "autoscaler classes to run: hpa, llm, fixed (comma-separated)")
	fs.BoolVar(&o.calibrate, "calibrate", false, "print the fixed-replica table that chooses the rate scale, then stop")
	fs.StringVar(&o.calibrateScales, "calibrate-scales", "0.3,0.4,0.45,0.5,0.55,0.6,0.7", "rate scales tried by -calibrate")
	fs.StringVar(&o.calibrateReps, "calibrate-replicas", "1,2,3,4", "fixed replica counts tried by -calibrate")
	fs.StringVar(&o.csvPath, "csv", "", "write the timelines (one row per class and sample) to this CSV file")
	fs.StringVar(&o.pngPath, "png", "", "write a timeline picture (load, replicas per pool, SM utilisation) to this PNG file")
	fs.DurationVar(&o.provisioning, "provisioning-delay", 60*time.Second, "time to create an elastic node")
	fs.DurationVar(&o.modelLoad, "model-load", 30*time.Second, "time from a replica's start on its node to ready")
	fs.DurationVar(&o.unneeded, "node-unneeded-time", 60*time.Second, "time an empty elastic node stays")
	fs.DurationVar(&o.slo, "slo", 2*time.Second, "TTFT objective")
	fs.DurationVar(&o.scrape, "scrape-interval", 5*time.Second, "metrics adapter scrape interval (hpa)")
	fs.DurationVar(&o.hpaSync, "hpa-sync-period", 15*time.Second, "HPA sync period")
	fs.Float64Var(&o.hpaTarget, "hpa-target", 50, "HPA averageValue of DCGM_CUSTOM_PROCESS_SM_UTIL")
	fs.IntVar(&o.minReplicas, "min-replicas", 1, "minimum replicas")
	fs.IntVar(&o.maxReplicas, "max-replicas", 3, "maximum replicas")
	fs.IntVar(&o.idcNodes, "idc-nodes", 1, "IDC GPU nodes (one replica each)")
	fs.IntVar(&o.elasticNodes, "elastic-nodes", 3, "maximum elastic GPU nodes")
	fs.Float64Var(&o.price, "price", 2.5, "elastic node price per hour")
	fs.DurationVar(&o.peakWindow, "peak-window", 10*time.Minute, "length of the busiest window reported separately")
	fs.DurationVar(&o.warmup, "warmup", 5*time.Minute, "start of the run left out of the 'after warm-up' figures")
	fs.StringVar(&o.sweep, "sweep", "", "rate scales to run one after the other (comma-separated), instead of -rate-scale; no -csv/-png")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	reqs, err := load(o.trace)
	if err != nil {
		return err
	}
	if o.calibrate {
		return calibrate(o, reqs, out)
	}
	scales := []float64{o.rateScale}
	if o.sweep != "" {
		if o.csvPath != "" || o.pngPath != "" {
			return errors.New("-sweep does not write -csv or -png: give one -rate-scale")
		}
		if scales, err = floats("-sweep", o.sweep); err != nil {
			return err
		}
	}
	var runs []*autoscale.Result
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "rate\tclass\trequests\tdropped\tTTFT p50\tp90\tp99\tSLO met\tafter %s\tbusiest %s\tits p99\tmax repl.\tmean repl.\tscale up/down\tIDC GPU-s\tcloud GPU-s\tcloud node-s\tcloud cost\t\n", o.warmup, o.peakWindow)
	for _, scale := range scales {
		sched, err := trace.Transform{SpeedUp: o.speedUp, RateScale: scale}.Apply(reqs)
		if err != nil {
			return err
		}
		arrivals := make([]time.Duration, len(sched))
		for i, r := range sched {
			arrivals[i] = r.At
		}
		peak := autoscale.PeakWindow(arrivals, o.peakWindow)
		last := sched[len(sched)-1].At
		fmt.Fprintf(out, "rate scale %g, speed-up %g: %d of the trace's %d requests over %s (%.2f req/s), busiest %s from %s (%s)\n",
			scale, o.speedUp, len(sched), len(reqs), last.Round(time.Second), float64(len(sched))/last.Seconds(),
			o.peakWindow, peak, o.trace)
		for _, c := range strings.Split(o.classes, ",") {
			class, err := autoscale.ParseClass(c)
			if err != nil {
				return err
			}
			cfg, err := config(o, class)
			if err != nil {
				return err
			}
			res, err := autoscale.Run(cfg, sched)
			if err != nil {
				return fmt.Errorf("%s: %w", class, err)
			}
			runs = append(runs, res)
			row(tw, scale, res, o.warmup, peak, peak+o.peakWindow)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if o.csvPath != "" {
		if err := writeFile(o.csvPath, func(w io.Writer) error { return autoscale.WriteTimelineCSV(w, runs...) }); err != nil {
			return err
		}
	}
	if o.pngPath != "" {
		if err := writeFile(o.pngPath, func(w io.Writer) error { return plot(w, runs) }); err != nil {
			return err
		}
	}
	return nil
}

func config(o options, class autoscale.Class) (autoscale.Config, error) {
	cfg, err := autoscale.DefaultConfig(class)
	if err != nil {
		return cfg, err
	}
	cfg.ProvisioningDelay, cfg.ModelLoad, cfg.NodeUnneededTime, cfg.TTFTSLO = o.provisioning, o.modelLoad, o.unneeded, o.slo
	cfg.HPA.ScrapeInterval, cfg.HPA.SyncPeriod, cfg.HPA.TargetSMUtil = o.scrape, o.hpaSync, o.hpaTarget
	cfg.MinReplicas, cfg.MaxReplicas = int32(o.minReplicas), int32(o.maxReplicas)
	cfg.FixedReplicas = int32(o.maxReplicas)
	cfg.IDCNodes, cfg.ElasticMaxNodes, cfg.CloudPricePerHour = o.idcNodes, o.elasticNodes, o.price
	return cfg, nil
}

func load(path string) ([]trace.Request, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening the trace: %w (run from the repository's root, or give -trace)", err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		gz, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		defer gz.Close()
		r = gz
	}
	reqs, err := trace.Parse(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return reqs, nil
}

func row(tw io.Writer, scale float64, r *autoscale.Result, warmup, peakFrom, peakTo time.Duration) {
	wa, _, _ := r.Window(warmup, r.Duration())
	pa, pp99, _ := r.Window(peakFrom, peakTo)
	fmt.Fprintf(tw, "%g\t%s\t%d\t%d\t%s\t%s\t%s\t%.1f%%\t%.1f%%\t%.1f%%\t%s\t%d\t%.2f\t%d/%d\t%.0f\t%.0f\t%.0f\t%.2f\t\n",
		scale, r.Class, r.Requests, r.Dropped, secs(r.TTFTP50), secs(r.TTFTP90), secs(r.TTFTP99), 100*r.SLOAttainment(),
		100*wa, 100*pa, secs(pp99), r.MaxDesired, r.MeanReplicas, r.ScaleUps, r.ScaleDowns,
		r.IDCGPUSeconds, r.ElasticGPUSeconds, r.ElasticNodeSeconds, r.CloudCost)
}

func floats(flag, list string) ([]float64, error) {
	var out []float64
	for _, s := range strings.Split(list, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || !(v > 0) {
			return nil, fmt.Errorf("%s: %q is not a positive number", flag, s)
		}
		out = append(out, v)
	}
	return out, nil
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

// calibrate runs fixed replica counts at several rate scales and prints the
// TTFT SLO attainment in the busiest window.
func calibrate(o options, reqs []trace.Request, out io.Writer) error {
	scales, err := floats("-calibrate-scales", o.calibrateScales)
	if err != nil {
		return err
	}
	var reps []int
	for _, s := range strings.Split(o.calibrateReps, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || v < 1 {
			return fmt.Errorf("-calibrate-replicas: %q is not a positive whole number", s)
		}
		reps = append(reps, v)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "rate scale\treq/s mean\treq/s busiest %s\t", o.peakWindow)
	for _, n := range reps {
		fmt.Fprintf(tw, "%d fixed: SLO met (busiest)\tp99\t", n)
	}
	fmt.Fprintln(tw)
	for _, scale := range scales {
		sched, err := trace.Transform{SpeedUp: o.speedUp, RateScale: scale}.Apply(reqs)
		if err != nil {
			return err
		}
		arrivals := make([]time.Duration, len(sched))
		for i, r := range sched {
			arrivals[i] = r.At
		}
		peak := autoscale.PeakWindow(arrivals, o.peakWindow)
		inPeak := 0
		for _, a := range arrivals {
			if a >= peak && a < peak+o.peakWindow {
				inPeak++
			}
		}
		fmt.Fprintf(tw, "%g\t%.2f\t%.2f\t", scale, float64(len(sched))/sched[len(sched)-1].At.Seconds(), float64(inPeak)/o.peakWindow.Seconds())
		for _, n := range reps {
			cfg, err := config(o, autoscale.ClassFixed)
			if err != nil {
				return err
			}
			cfg.FixedReplicas, cfg.MaxReplicas = int32(n), int32(max(n, o.maxReplicas))
			cfg.ElasticMaxNodes = max(cfg.ElasticMaxNodes, n-cfg.IDCNodes)
			res, err := autoscale.Run(cfg, sched)
			if err != nil {
				return err
			}
			a, p99, _ := res.Window(peak, peak+o.peakWindow)
			fmt.Fprintf(tw, "%.1f%%\t%s\t", 100*a, secs(p99))
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

func writeFile(path string, write func(io.Writer) error) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	return write(f)
}

// plot draws the arrivals, the requests in flight, each run's replicas per
// pool and the ready replicas' mean SM utilisation.
func plot(w io.Writer, runs []*autoscale.Result) error {
	pts := func(r *autoscale.Result, f func(autoscale.Sample) float64) []timeline.Point {
		out := make([]timeline.Point, 0, len(r.Timeline))
		for _, p := range r.Timeline {
			out = append(out, timeline.Point{T: p.T.Seconds(), V: f(p)})
		}
		return out
	}
	panels := []timeline.Panel{{Title: "Arrivals", YLabel: "requests/s", Series: []timeline.Series{
		{Name: "arrivals/s", Points: pts(runs[0], func(p autoscale.Sample) float64 { return p.ArrivalRate })},
	}}}
	inFlight := timeline.Panel{Title: "Requests in flight (gateway)", YLabel: "requests"}
	sm := timeline.Panel{Title: "DCGM_CUSTOM_PROCESS_SM_UTIL, mean of ready replicas (hpa target 50)", YLabel: "%"}
	for _, r := range runs {
		name := string(r.Class)
		inFlight.Series = append(inFlight.Series, timeline.Series{Name: name, Points: pts(r, func(p autoscale.Sample) float64 { return float64(p.InFlight) })})
		sm.Series = append(sm.Series, timeline.Series{Name: name, Points: pts(r, func(p autoscale.Sample) float64 { return p.MeanSMUtil })})
		panels = append(panels, timeline.Panel{Title: "Replicas: " + name, YLabel: "replicas", Series: []timeline.Series{
			{Name: "desired", Step: true, Points: pts(r, func(p autoscale.Sample) float64 { return float64(p.Desired) })},
			{Name: "ready IDC", Step: true, Points: pts(r, func(p autoscale.Sample) float64 { return float64(p.ReadyIDC) })},
			{Name: "ready cloud", Step: true, Points: pts(r, func(p autoscale.Sample) float64 { return float64(p.ReadyElastic) })},
			{Name: "cloud nodes", Step: true, Points: pts(r, func(p autoscale.Sample) float64 { return float64(p.ElasticNodes) })},
		}})
	}
	panels = append(panels, inFlight, sm)
	return timeline.WritePNG(w, panels, timeline.Options{Title: "Azure LLM trace (conversation, CC-BY-4.0), seed service on V100: pod autoscaler classes"})
}
