package scheduling

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	schedulingv1alpha1 "github.com/spillway-io/spillway/apis/scheduling/v1alpha1"
	"github.com/spillway-io/spillway/pkg/cloudprovider/fake"
)

const (
	benchNodes  = 500
	benchPods   = 1000
	benchRounds = 3
)

// BenchmarkThroughput measures pods/s of the same kube-scheduler build with
// and without the plugin, 1,000 pods matched by a two-unit policy on 500
// nodes, in one run (three rounds, order alternated, best of each kept), and reports
// the ratio plugin/plain (goal >= 0.9).
func BenchmarkThroughput(b *testing.B) {
	ctx := context.Background()
	pauseManager(b)
	ns := "bench"
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		b.Fatal(err)
	}
	alloc := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("64"), corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods: resource.MustParse("110"), gpu: resource.MustParse("8")}
	prov := fake.New(env.Client)
	for i := range benchNodes {
		pool := "np-bench-idc"
		if i%2 == 1 {
			pool = "np-bench-el"
		}
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%03d", i), Labels: map[string]string{poolKey: pool}},
			Status: corev1.NodeStatus{Capacity: alloc, Allocatable: alloc,
				Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
		if err := prov.RegisterNode(ctx, n); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() {
		_ = env.Client.DeleteAllOf(ctx, &corev1.Node{}, client.MatchingLabels{poolKey: "np-bench-idc"})
		_ = env.Client.DeleteAllOf(ctx, &corev1.Node{}, client.MatchingLabels{poolKey: "np-bench-el"})
	})
	rp := policy(ns, "bench", unit(schedulingv1alpha1.ResourceECS, "np-bench-idc"), unit(schedulingv1alpha1.ResourceElastic, "np-bench-el"))
	// A max on the IDC unit makes the plugin count the pods its units hold
	// (the slow path): 600 pods go to IDC, the other 400 to the elastic unit.
	rp.Spec.Units[0].Max = ptr.To[int32](benchPods * 3 / 5)
	if err := env.Client.Create(ctx, rp); err != nil {
		b.Fatal(err)
	}
	best := map[bool]float64{}
	for b.Loop() {
		for round := range benchRounds {
			order := []bool{false, true}
			if round%2 == 1 {
				order = []bool{true, false} // neither variant always runs second
			}
			rates := map[bool]float64{}
			for _, withPlugin := range order {
				name := fmt.Sprintf("bench-%t-%d", withPlugin, round)
				rate, first, err := measure(ctx, ns, name, withPlugin)
				if err != nil {
					b.Fatal(err)
				}
				b.Logf("%s: %.0f pods/s (first binding seen after %s); %s", name, rate, first.Round(time.Millisecond), schedulerStats(name))
				best[withPlugin] = max(best[withPlugin], rate)
				rates[withPlugin] = rate
			}
			b.Logf("round %d: ratio %.2f", round, rates[true]/rates[false])
		}
	}
	b.ReportMetric(best[false], "plain-pods/s")
	b.ReportMetric(best[true], "plugin-pods/s")
	b.ReportMetric(best[true]/best[false], "ratio")
	fmt.Printf("scheduling throughput: plain %.0f pods/s, with plugin %.0f pods/s, ratio %.2f (goal >= 0.9)\n",
		best[false], best[true], best[true]/best[false])
}

// nodeIndex is i of node bench-i (even: IDC, odd: elastic).
func nodeIndex(node string) int {
	var i int
	_, _ = fmt.Sscanf(node, "bench-%d", &i)
	return i
}

// measure creates the pods for scheduler profile name, then starts that
// scheduler and returns pods/s from its start to the last binding.
func measure(parent context.Context, ns, name string, withPlugin bool) (_ float64, first time.Duration, _ error) {
	ctx, cancel := context.WithTimeout(parent, 5*time.Minute)
	defer cancel()
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = 5000, 5000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		_ = cs.CoreV1().Pods(ns).DeleteCollection(context.Background(), metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}, metav1.ListOptions{})
		_ = wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			return err == nil && len(pods.Items) == 0, nil
		})
		time.Sleep(2 * time.Second) // let the deletions settle before the next variant
	}()
	var g errgroup.Group
	g.SetLimit(16)
	for i := range benchPods {
		g.Go(func() error {
			p := pod(ns, fmt.Sprintf("%s-%04d", name, i), 1)
			p.Spec.SchedulerName = name
			_, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return 0, 0, err
	}
	start := time.Now()
	stop, err := startScheduler(ctx, withPlugin, name)
	if err != nil {
		return 0, 0, err
	}
	defer stop()
	var elapsed time.Duration
	first = -1
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 4*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{ResourceVersion: "0"})
		if err != nil {
			return false, nil
		}
		bound := 0
		for _, p := range pods.Items {
			if p.Spec.NodeName != "" {
				bound++
			}
		}
		elapsed = time.Since(start)
		if bound > 0 && first < 0 {
			first = elapsed
		}
		return bound == benchPods, nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("%s: not every pod bound: %w", name, err)
	}
	if withPlugin {
		// The policy held: exactly max pods on the IDC unit (it has room for
		// all of them and is preferred), the rest on the elastic unit.
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return 0, 0, err
		}
		idc := 0
		for _, p := range pods.Items {
			if p.Spec.SchedulerName == name && nodeIndex(p.Spec.NodeName)%2 == 0 {
				idc++
			}
		}
		if want := benchPods * 3 / 5; idc != want {
			return 0, 0, fmt.Errorf("%s: %d pods on the IDC unit, want its max %d", name, idc, want)
		}
	}
	return float64(benchPods) / elapsed.Seconds(), first, nil
}

// schedulerStats sums the scheduler's own metrics of profile name (each
// measured scheduler has its own profile): attempts by result, batching
// (opportunistic batching hints used, cache flushes) and the mean time of a
// scheduling attempt.
func schedulerStats(profile string) string {
	families, err := legacyregistry.DefaultGatherer.Gather()
	if err != nil {
		return err.Error()
	}
	sums := map[string]float64{}
	var attemptSum, attemptCount float64
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["profile"] != profile {
				continue
			}
			switch f.GetName() {
			case "scheduler_schedule_attempts_total":
				sums["attempts "+labels["result"]] += m.GetCounter().GetValue()
			case "scheduler_batch_attempts_total":
				sums["batch "+labels["result"]] += m.GetCounter().GetValue()
			case "scheduler_batch_cache_flushed_total":
				sums["flush "+labels["reason"]] += m.GetCounter().GetValue()
			case "scheduler_plugin_evaluation_total":
				if labels["extension_point"] == "Filter" && (labels["plugin"] == "NodeResourcesFit" || labels["plugin"] == "SpillwayResourcePolicy") {
					sums["filtered "+labels["plugin"]] += m.GetCounter().GetValue()
				}
			case "scheduler_framework_extension_point_duration_seconds":
				sums["ms "+labels["extension_point"]] += 1000 * m.GetHistogram().GetSampleSum()
			case "scheduler_scheduling_attempt_duration_seconds":
				attemptSum += m.GetHistogram().GetSampleSum()
				attemptCount += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	keys := make([]string, 0, len(sums))
	for k := range sums {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%.0f ", k, sums[k])
	}
	if attemptCount > 0 {
		fmt.Fprintf(&b, "mean attempt %.2fms", 1000*attemptSum/attemptCount)
	}
	return b.String()
}
