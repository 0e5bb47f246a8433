package nodeautoscaler

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/spillway-io/spillway/pkg/cloudprovider/fake"
	"github.com/spillway-io/spillway/pkg/controllers/nodepool"
	"github.com/spillway-io/spillway/test/integration/framework"
)

// BenchmarkScaleUp measures, against the real control plane and the real
// kube-scheduler with the ResourcePolicy plugin, what one scale-up costs:
//
//   - reaction-ms: a pod seen unschedulable (a watch in the benchmark) ->
//     the provider's Create call (goal <= 2000);
//   - running-ms: that Create call -> every pod of the burst Running, with a
//     zero provisioning delay (the fake provider registers usable nodes at
//     once; the benchmark plays the kubelets).
//
// Each iteration creates a Deployment of pods replicas of one GPU, matched by
// the seed ResourcePolicy, on an IDC pool with no room: they need pods new
// elastic nodes. The controller's periodic scan is set to a minute, so only
// its event-driven path can react in time. Run with a fixed count, e.g.
//
//	go test -run '^$' -bench ScaleUp -benchtime 5x ./test/integration/nodeautoscaler/
func BenchmarkScaleUp(b *testing.B) {
	const pods = 3
	env := framework.Start(b, framework.WithControllerManager())
	startScheduler(b, env)
	startKubelet(b, env)
	prov := fake.New(env.Client)
	startManagerWith(b, env, prov, nodepool.Options{Debounce: 100 * time.Millisecond, ScanInterval: time.Minute, Backoff: time.Minute})

	pool := elasticPool("gpu-v100-elastic", "np-elastic", 0)
	pool.Spec.MaxSize = ptr.To[int32](1000)
	pool.Spec.ScaleDown = nil // nodes stay: each iteration buys its own
	create(b, env, staticPool(), pool, seedPolicy(idcPoolID, "np-elastic"))

	var reaction, running time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("bench-%d", i)
		seen := watchUnschedulableOf(b, env, "bench="+name)
		callsBefore := len(prov.CreateCalls())
		d := deployment(pods)
		d.Name = name
		d.Spec.Template.Labels = map[string]string{"app": app, "bench": name}
		d.Spec.Selector.MatchLabels = map[string]string{"app": app, "bench": name}
		create(b, env, d)
		var allRunning time.Time
		framework.Eventually(b, 60*time.Second, func(ctx context.Context) (bool, error) {
			var list corev1.PodList
			if err := env.Client.List(ctx, &list, client.InNamespace("default"), client.MatchingLabels{"bench": name}); err != nil {
				return false, err
			}
			n := 0
			for _, p := range list.Items {
				if p.Status.Phase == corev1.PodRunning {
					n++
				}
			}
			if n == pods {
				allRunning = time.Now()
				return true, nil
			}
			return false, nil
		}, "the burst's pods Running")
		calls := prov.CreateCalls()[callsBefore:]
		if len(calls) == 0 {
			b.Fatalf("iteration %d: no provider call", i)
		}
		first := calls[0].At
		var earliest time.Time
		for _, at := range seen() {
			if earliest.IsZero() || at.Before(earliest) {
				earliest = at
			}
		}
		if earliest.IsZero() {
			b.Fatalf("iteration %d: no pod seen unschedulable", i)
		}
		reaction += first.Sub(earliest)
		running += allRunning.Sub(first)
		b.Logf("iteration %d: reaction %v, provider call -> %d pods Running %v", i, first.Sub(earliest).Round(time.Millisecond),
			pods, allRunning.Sub(first).Round(time.Millisecond))
		if got := createdNodes(calls, pool.Name); got != pods {
			b.Fatalf("iteration %d: bought %d nodes for %d one-GPU pods", i, got, pods)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(reaction.Milliseconds())/float64(b.N), "reaction-ms")
	b.ReportMetric(float64(running.Milliseconds())/float64(b.N), "running-ms")
}
