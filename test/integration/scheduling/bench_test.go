package scheduling

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	schedulingv1alpha1 "github.com/spillway-io/spillway/apis/scheduling/v1alpha1"
)

const (
	benchNodes = 500
	benchPods  = 1000
)

// BenchmarkThroughput measures pods/s of the same kube-scheduler build with
// and without the plugin, 1,000 pods matched by a two-unit policy on 500
// nodes, in one run (two alternating rounds each, best kept), and reports
// the ratio plugin/plain (goal >= 0.9).
func BenchmarkThroughput(b *testing.B) {
	ctx := context.Background()
	ns := "bench"
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		b.Fatal(err)
	}
	alloc := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("64"), corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods: resource.MustParse("110"), gpu: resource.MustParse("8")}
	for i := range benchNodes {
		pool := "np-bench-idc"
		if i%2 == 1 {
			pool = "np-bench-el"
		}
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%03d", i), Labels: map[string]string{poolKey: pool}}}
		if err := env.Client.Create(ctx, n); err != nil {
			b.Fatal(err)
		}
		n.Status = corev1.NodeStatus{Capacity: alloc, Allocatable: alloc,
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}
		if err := env.Client.Status().Update(ctx, n); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() {
		_ = env.Client.DeleteAllOf(ctx, &corev1.Node{}, client.MatchingLabels{poolKey: "np-bench-idc"})
		_ = env.Client.DeleteAllOf(ctx, &corev1.Node{}, client.MatchingLabels{poolKey: "np-bench-el"})
	})
	rp := policy(ns, "bench", unit(schedulingv1alpha1.ResourceECS, "np-bench-idc"), unit(schedulingv1alpha1.ResourceElastic, "np-bench-el"))
	if err := env.Client.Create(ctx, rp); err != nil {
		b.Fatal(err)
	}
	best := map[bool]float64{}
	for b.Loop() {
		for round := range 2 {
			for _, withPlugin := range []bool{false, true} {
				name := fmt.Sprintf("bench-%t-%d", withPlugin, round)
				rate, err := measure(ctx, ns, name, withPlugin)
				if err != nil {
					b.Fatal(err)
				}
				b.Logf("%s: %.0f pods/s", name, rate)
				best[withPlugin] = max(best[withPlugin], rate)
			}
		}
	}
	b.ReportMetric(best[false], "plain-pods/s")
	b.ReportMetric(best[true], "plugin-pods/s")
	b.ReportMetric(best[true]/best[false], "ratio")
	fmt.Printf("scheduling throughput: plain %.0f pods/s, with plugin %.0f pods/s, ratio %.2f (goal >= 0.9)\n",
		best[false], best[true], best[true]/best[false])
}

// measure starts a scheduler with profile name, creates the pods for it and
// returns pods/s from the first creation to the last binding.
func measure(parent context.Context, ns, name string, withPlugin bool) (float64, error) {
	ctx, cancel := context.WithTimeout(parent, 5*time.Minute)
	defer cancel()
	stop, err := startScheduler(ctx, withPlugin, name)
	if err != nil {
		return 0, err
	}
	defer stop()
	defer func() {
		_ = env.Client.DeleteAllOf(context.Background(), &corev1.Pod{}, client.InNamespace(ns), client.GracePeriodSeconds(0))
		_ = wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			var pods corev1.PodList
			err := env.Client.List(ctx, &pods, client.InNamespace(ns))
			return err == nil && len(pods.Items) == 0, nil
		})
	}()
	time.Sleep(2 * time.Second) // informers synced
	start := time.Now()
	for i := range benchPods {
		p := pod(ns, fmt.Sprintf("%s-%04d", name, i), 1)
		p.Spec.SchedulerName = name
		p.Spec.TerminationGracePeriodSeconds = ptr.To[int64](0)
		if _, err := env.Clientset.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			return 0, err
		}
	}
	var elapsed time.Duration
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 4*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := env.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
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
		return bound == benchPods, nil
	})
	if err != nil {
		return 0, fmt.Errorf("%s: not every pod bound: %w", name, err)
	}
	return float64(benchPods) / elapsed.Seconds(), nil
}
