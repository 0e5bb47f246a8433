package scheduling

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	schedulingv1alpha1 "github.com/spillway-io/spillway/apis/scheduling/v1alpha1"
	"github.com/spillway-io/spillway/pkg/cloudprovider/fake"
)

const (
	benchNodes  = 500
	benchPods   = 1000
	benchRounds = 7
)

// BenchmarkThroughput measures pods/s of the same kube-scheduler build with
// and without the plugin, 1,000 pods matched by a two-unit policy on 500
// nodes, in one run: seven rounds (one of each variant, order alternated),
// the ratio plugin/plain of each round, and their median reported (goal >=
// 0.9). A round pairs the variants close in time, so the machine's drift
// cancels out of its ratio; the median drops the rounds a burst of other
// work hit.
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
	var plain, plugin, ratios []float64
	for b.Loop() {
		for round := range benchRounds {
			order := []bool{false, true}
			if round%2 == 1 {
				order = []bool{true, false} // neither variant always runs second
			}
			rates := map[bool]float64{}
			for _, withPlugin := range order {
				name := fmt.Sprintf("bench-%t-%d", withPlugin, round)
				r, err := measure(ctx, ns, name, withPlugin)
				if err != nil {
					b.Fatal(err)
				}
				fmt.Printf("%s: %.0f pods/s (bindings from %s to %s after the start); %s; %s; %s\n", name, r.rate,
					r.first.Round(time.Millisecond), r.total.Round(time.Millisecond), r.cpu, r.calls, schedulerStats(name))
				rates[withPlugin] = r.rate
			}
			plain, plugin = append(plain, rates[false]), append(plugin, rates[true])
			ratios = append(ratios, rates[true]/rates[false])
			fmt.Printf("round %d: ratio %.2f\n", round, rates[true]/rates[false])
		}
	}
	bestRatio := slices.Max(plugin) / slices.Max(plain)
	b.ReportMetric(median(plain), "plain-pods/s")
	b.ReportMetric(median(plugin), "plugin-pods/s")
	b.ReportMetric(median(ratios), "ratio")
	fmt.Printf("scheduling throughput over %d rounds: plain %.0f pods/s, with plugin %.0f pods/s (medians); "+
		"ratio %.2f (median of the rounds' ratios; of the bests %.2f; goal >= 0.9)\n",
		len(ratios), median(plain), median(plugin), median(ratios), bestRatio)
}

// median of xs (not empty); xs is not modified.
func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// nodeIndex is i of node bench-i (even: IDC, odd: elastic).
func nodeIndex(node string) int {
	var i int
	_, _ = fmt.Sscanf(node, "bench-%d", &i)
	return i
}

// measure creates the pods for scheduler profile name, then starts that
// scheduler and returns its result (pods/s from the first binding to the
// last, CPU and API calls).
func measure(parent context.Context, ns, name string, withPlugin bool) (result, error) {
	ctx, cancel := context.WithTimeout(parent, 5*time.Minute)
	defer cancel()
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = 5000, 5000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return result{}, err
	}
	defer func() {
		_ = cs.CoreV1().Pods(ns).DeleteCollection(context.Background(), metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}, metav1.ListOptions{})
		_ = wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			return err == nil && len(pods.Items) == 0, nil
		})
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
		return result{}, err
	}
	// Bindings are timed from a watch opened before the scheduler starts
	// (no polling load on the apiserver being measured).
	list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return result{}, err
	}
	// A RetryWatcher resumes where it was if the API server closes the watch.
	w, err := watchtools.NewRetryWatcherWithContext(ctx, list.ResourceVersion, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return cs.CoreV1().Pods(ns).Watch(ctx, o)
		}})
	if err != nil {
		return result{}, err
	}
	defer w.Stop()
	settle() // after the creations (and the previous measurement's deletions)
	req0, err := apiRequests(ctx)
	if err != nil {
		return result{}, err
	}
	if dir := os.Getenv("BENCH_APISERVER_PROFILE"); dir != "" {
		// A CPU profile of kube-apiserver over the measurement.
		go func() {
			raw, err := env.Clientset.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").
				Param("seconds", "4").DoRaw(context.Background())
			if err == nil {
				err = os.WriteFile(filepath.Join(dir, name+".prof"), raw, 0o644)
			}
			if err != nil {
				fmt.Println("kube-apiserver profile:", err)
			}
		}()
	}
	cpu0 := cpuTimes()
	start := time.Now()
	stop, err := startScheduler(ctx, withPlugin, name)
	if err != nil {
		return result{}, err
	}
	defer stop()
	bound := map[string]bool{}
	var first, last time.Time
	var res result
	for len(bound) < benchPods {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return result{}, fmt.Errorf("%s: pod watch closed with %d of %d pods bound", name, len(bound), benchPods)
			}
			p, isPod := ev.Object.(*corev1.Pod)
			if !isPod || p.Spec.NodeName == "" || bound[p.Name] {
				continue
			}
			now := time.Now()
			if len(bound) == 0 {
				first = now
			}
			bound[p.Name] = true
			last = now
			if len(bound) == benchPods {
				res.cpu = cpuDelta(cpu0, cpuTimes())
			}
		case <-ctx.Done():
			return result{}, fmt.Errorf("%s: %d of %d pods bound: %w", name, len(bound), benchPods, ctx.Err())
		}
	}
	if withPlugin {
		// The policy held: exactly max pods on the IDC unit (it has room for
		// all of them and is preferred), the rest on the elastic unit.
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return result{}, err
		}
		idc := 0
		for _, p := range pods.Items {
			if p.Spec.SchedulerName == name && nodeIndex(p.Spec.NodeName)%2 == 0 {
				idc++
			}
		}
		if want := benchPods * 3 / 5; idc != want {
			return result{}, fmt.Errorf("%s: %d pods on the IDC unit, want its max %d", name, idc, want)
		}
	}
	res.rate = float64(benchPods-1) / last.Sub(first).Seconds()
	// Calls made while the pods were placed (the events are sent a little
	// later by the scheduler's broadcaster: read after a settle).
	settle()
	if req1, err := apiRequests(ctx); err == nil {
		res.calls = requestDelta(req0, req1, benchPods)
	}
	res.first, res.total = first.Sub(start), last.Sub(start)
	return res, nil
}

// result is one measurement: rate is pods/s from the first binding to the
// last (the scheduler's start — self-signed certificate, informer sync — is
// left out, as scheduler_perf does); first and total are the times from its
// start to the first and the last binding; cpu the CPU time of the
// processes over the same interval.
type result struct {
	rate         float64
	first, total time.Duration
	// cpu is the CPU time the processes spent from the start to the last binding.
	cpu string
	// calls are the API calls made, by verb and resource.
	calls string
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
