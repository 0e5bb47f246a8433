package autoscale

import (
	"encoding/csv"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/pkg/gateway/balancer"
	"github.com/spillway-io/spillway/pkg/gateway/endpoints"
)

// gatewayPolicy is the balancing policy the gateway uses for a service of
// the class (pool preference for llm, spread for the others), on the
// default annotations.
func gatewayPolicy(c Class) balancer.Policy {
	class := spillwayv1alpha1.AutoscalerNone
	switch c {
	case ClassHPA:
		class = spillwayv1alpha1.AutoscalerHPA
	case ClassLLM:
		class = spillwayv1alpha1.AutoscalerLLM
	}
	p, _ := endpoints.PolicyOf(nil, class) // no annotations: no error
	return p
}

// Sample is the service at one instant of the timeline.
type Sample struct {
	T time.Duration
	// Desired is the Deployment's replica count.
	Desired int32
	// ReadyIDC and ReadyElastic are the ready replicas per pool; Starting
	// those pending or loading; Draining those deleted and finishing.
	ReadyIDC, ReadyElastic, Starting, Draining int
	// ElasticNodes are the cloud nodes, provisioning ones included.
	ElasticNodes int
	// InFlight are the requests in the service (held at the gateway
	// included), Held those at the gateway, Waiting those queued in engines.
	InFlight, Held, Waiting int
	// MeanSMUtil is the ready replicas' mean SM utilisation (percent).
	MeanSMUtil float64
	// ArrivalRate is the requests per second since the previous sample.
	ArrivalRate float64
}

// Result is one run's figures.
type Result struct {
	Class Class
	// Requests = Completed + Dropped; Dropped = Rejected (longer than the
	// model's context) + Cut (a drained replica's grace ran out) +
	// Unfinished (not done at the end of the run).
	Requests, Completed, Dropped  int
	Rejected, Cut, Unfinished     int
	TTFTP50, TTFTP90, TTFTP99     time.Duration
	SLO                           time.Duration
	SLOMet                        int
	ScaleUps, ScaleDowns          int
	MaxDesired                    int32
	NodesCreated                  int
	IDCGPUSeconds                 float64
	ElasticGPUSeconds             float64
	ElasticNodeSeconds, CloudCost float64
	MeanReplicas                  float64
	Timeline                      []Sample
	duration                      time.Duration
	arrivals, ttft                []time.Duration
	status                        []uint8
	pools                         []Pool
	servedIDC, servedElastic      int
}

// Duration is the simulated time.
func (r *Result) Duration() time.Duration { return r.duration }

// SLOAttainment is the share of all requests whose first token came within
// the SLO (dropped requests count as misses).
func (r *Result) SLOAttainment() float64 {
	return float64(r.SLOMet) / float64(max(r.Requests, 1))
}

// Window is the SLO attainment and TTFT p99 of the requests arriving in
// [from, to).
func (r *Result) Window(from, to time.Duration) (attainment float64, p99 time.Duration, n int) {
	var ttfts []time.Duration
	met := 0
	for i, at := range r.arrivals {
		if at < from || at >= to {
			continue
		}
		n++
		if r.ttft[i] >= 0 {
			ttfts = append(ttfts, r.ttft[i])
			if r.status[i] == statusDone && r.ttft[i] <= r.SLO {
				met++
			}
		}
	}
	slices.Sort(ttfts)
	return float64(met) / float64(max(n, 1)), quantile(ttfts, 0.99), n
}

// ServedBy is the number of requests sent to each pool.
func (r *Result) ServedBy() (idc, elastic int) { return r.servedIDC, r.servedElastic }

func (r *Result) summarise() {
	var ttfts []time.Duration
	for i, st := range r.status {
		switch st {
		case statusDone:
			r.Completed++
			if r.ttft[i] <= r.SLO {
				r.SLOMet++
			}
		case statusRejected:
			r.Rejected++
		case statusCut:
			r.Cut++
		default:
			r.Unfinished++
		}
		if st == statusDone {
			ttfts = append(ttfts, r.ttft[i])
		}
		switch r.pools[i] {
		case PoolIDC:
			r.servedIDC++
		case PoolElastic:
			r.servedElastic++
		}
	}
	r.Dropped = r.Rejected + r.Cut + r.Unfinished
	slices.Sort(ttfts)
	r.TTFTP50, r.TTFTP90, r.TTFTP99 = quantile(ttfts, 0.5), quantile(ttfts, 0.9), quantile(ttfts, 0.99)
	var sum float64
	for _, p := range r.Timeline {
		sum += float64(p.ReadyIDC + p.ReadyElastic + p.Starting + p.Draining)
	}
	if len(r.Timeline) > 0 {
		r.MeanReplicas = sum / float64(len(r.Timeline))
	}
}

// quantile is the nearest-rank quantile of sorted values.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*q+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// PeakWindow is the start of the busiest window of length w in the
// schedule (most arrivals), searched at Tick resolution.
func PeakWindow(at []time.Duration, w time.Duration) time.Duration {
	best, bestN := time.Duration(0), -1
	j := 0
	for i := range at {
		for j < len(at) && at[j] < at[i]+w {
			j++
		}
		if n := j - i; n > bestN {
			best, bestN = at[i], n
		}
	}
	return best.Truncate(Tick)
}

// WriteTimelineCSV writes the runs' timelines, one row per class and sample.
func WriteTimelineCSV(w io.Writer, runs ...*Result) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"class", "t_seconds", "desired", "ready_idc", "ready_elastic", "starting", "draining",
		"elastic_nodes", "in_flight", "held", "waiting", "mean_sm_util", "arrivals_per_second"})
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }
	for _, r := range runs {
		for _, p := range r.Timeline {
			_ = cw.Write([]string{string(r.Class), f(p.T.Seconds()), fmt.Sprint(p.Desired), fmt.Sprint(p.ReadyIDC),
				fmt.Sprint(p.ReadyElastic), fmt.Sprint(p.Starting), fmt.Sprint(p.Draining), fmt.Sprint(p.ElasticNodes),
				fmt.Sprint(p.InFlight), fmt.Sprint(p.Held), fmt.Sprint(p.Waiting), f(p.MeanSMUtil), f(p.ArrivalRate)})
		}
	}
	cw.Flush()
	return cw.Error()
}
