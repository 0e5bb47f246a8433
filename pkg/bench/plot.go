package bench

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/pkg/bench/timeline"
)

// ClusterSample counts a service's replicas and the nodes per node pool at T seconds.
type ClusterSample struct {
	T        float64
	Replicas map[string]int // pool -> pods ("pending": not scheduled yet)
	Nodes    map[string]int // pool -> nodes
}

// lister is what the cluster sampler reads.
type lister interface {
	List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error
}

// SampleCluster counts the service's pods per node pool and the nodes per pool.
func SampleCluster(ctx context.Context, c lister, namespace, service string) (ClusterSample, error) {
	s := ClusterSample{Replicas: map[string]int{}, Nodes: map[string]int{}}
	var nodes corev1.NodeList
	if err := c.List(ctx, &nodes); err != nil {
		return s, fmt.Errorf("listing nodes: %w", err)
	}
	poolOf := map[string]string{}
	for _, n := range nodes.Items {
		p := n.Labels[spillwayv1alpha1.LabelNodePool]
		if p == "" {
			p = n.Labels[spillwayv1alpha1.LabelACKNodePoolID]
		}
		if p == "" {
			p = "(no pool)"
		}
		poolOf[n.Name] = p
		s.Nodes[p]++
	}
	var pods corev1.PodList
	opts := []client.ListOption{client.InNamespace(namespace)}
	if service != "" {
		opts = append(opts, client.MatchingLabels{"app": "isvc." + service + "-predictor"})
	}
	if err := c.List(ctx, &pods, opts...); err != nil {
		return s, fmt.Errorf("listing pods: %w", err)
	}
	for _, p := range pods.Items {
		if service == "" && !strings.HasPrefix(p.Labels["app"], "isvc.") {
			continue
		}
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		pool := "pending"
		if p.Spec.NodeName != "" {
			pool = poolOf[p.Spec.NodeName]
		}
		s.Replicas[pool]++
	}
	return s, nil
}

// sampleLoop reads the cluster every period until ctx ends; failures are skipped.
func sampleLoop(ctx context.Context, clk clock.WithTicker, every time.Duration, start time.Time, read func(context.Context) (ClusterSample, error)) func() []ClusterSample {
	var (
		mu  sync.Mutex
		out []ClusterSample
		wg  sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(ctx)
	take := func() {
		s, err := read(ctx)
		if err != nil {
			return
		}
		s.T = clk.Since(start).Seconds()
		mu.Lock()
		out = append(out, s)
		mu.Unlock()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		take()
		t := clk.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C():
				take()
			}
		}
	}()
	return func() []ClusterSample {
		cancel()
		wg.Wait()
		take() // the state at the end
		return out
	}
}

// Panels builds the timeline: load, TTFT, and, when the cluster was read,
// replicas and nodes per pool. Pure.
func Panels(results []Result, wall time.Duration, samples []ClusterSample) []timeline.Panel {
	secs := int(wall.Seconds()) + 1
	sent := make([]float64, secs)
	errs := make([]float64, secs)
	inflight := make([]float64, secs)
	ttft := make([][]float64, secs)
	for _, r := range results {
		b := min(int(r.Start.Seconds()), secs-1)
		sent[b]++
		if r.ErrType != "" {
			errs[b]++
		}
		end := r.Start + r.Duration
		for i := b; i < secs && time.Duration(i)*time.Second+time.Second/2 <= end; i++ {
			if time.Duration(i)*time.Second+time.Second/2 >= r.Start {
				inflight[i]++
			}
		}
		if r.TTFT > 0 && r.ErrType == "" {
			ttft[b] = append(ttft[b], r.TTFT.Seconds()*1000)
		}
	}
	// The last second is usually partial: its counts become rates.
	if w := wall.Seconds() - float64(secs-1); w > 0.1 && w < 1 {
		sent[secs-1] /= w
		errs[secs-1] /= w
	}
	series := func(vs []float64) []timeline.Point {
		out := make([]timeline.Point, len(vs))
		for i, v := range vs {
			out[i] = timeline.Point{T: float64(i) + 0.5, V: v}
		}
		return out
	}
	var p50, p90 []timeline.Point
	for i, xs := range ttft {
		if len(xs) == 0 {
			continue
		}
		slices.Sort(xs)
		p50 = append(p50, timeline.Point{T: float64(i) + 0.5, V: nearestRank(xs, 50)})
		p90 = append(p90, timeline.Point{T: float64(i) + 0.5, V: nearestRank(xs, 90)})
	}
	panels := []timeline.Panel{
		{Title: "Load", YLabel: "requests", Series: []timeline.Series{
			{Name: "sent per second", Points: series(sent)},
			{Name: "in flight", Points: series(inflight)},
			{Name: "errors per second", Points: series(errs)},
		}},
		{Title: "Time to first token (by send second)", YLabel: "ms", Series: []timeline.Series{
			{Name: "p50", Points: p50}, {Name: "p90", Points: p90},
		}},
	}
	if len(samples) > 0 {
		panels = append(panels,
			timeline.Panel{Title: "Replicas per node pool", YLabel: "pods", Series: poolSeries(samples, func(s ClusterSample) map[string]int { return s.Replicas })},
			timeline.Panel{Title: "Nodes per node pool", YLabel: "nodes", Series: poolSeries(samples, func(s ClusterSample) map[string]int { return s.Nodes })},
		)
	}
	return panels
}

func poolSeries(samples []ClusterSample, get func(ClusterSample) map[string]int) []timeline.Series {
	names := map[string]bool{}
	for _, s := range samples {
		for k := range get(s) {
			names[k] = true
		}
	}
	keys := make([]string, 0, len(names))
	for k := range names {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]timeline.Series, 0, len(keys))
	for _, k := range keys {
		ser := timeline.Series{Name: k, Step: true}
		for _, s := range samples {
			ser.Points = append(ser.Points, timeline.Point{T: s.T, V: float64(get(s)[k])})
		}
		out = append(out, ser)
	}
	return out
}

// writePlot renders the timeline PNG to path.
func writePlot(path, title string, panels []timeline.Panel) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("-plot: %w", err)
	}
	if err := timeline.WritePNG(f, panels, timeline.Options{Title: title}); err != nil {
		f.Close()
		return fmt.Errorf("-plot %s: %w", path, err)
	}
	return f.Close()
}
