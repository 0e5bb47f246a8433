// Package nodeautoscaler tests Spillway's node autoscaler against a real
// kube-apiserver, the real kube-controller-manager (Deployments) and the real
// kube-scheduler, with the fake cloud provider registering Node objects.
package nodeautoscaler

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/pkg/cloudprovider"
	"github.com/spillway-io/spillway/pkg/cloudprovider/fake"
	"github.com/spillway-io/spillway/pkg/cloudprovider/sim"
	"github.com/spillway-io/spillway/test/integration/framework"
)

// TestSeedScenario: IDC has one GPU; three one-GPU replicas buy exactly two
// elastic nodes; scaled to one, the cloud pods go first and the two elastic
// nodes are removed after their unneeded time; the IDC node is untouched.
func TestSeedScenario(t *testing.T) {
	env := framework.Start(t, framework.WithControllerManager())
	dumpOnFailure(t, env)
	ctx := context.Background()
	startScheduler(t, env)
	startKubelet(t, env)
	prov := fake.New(env.Client)
	m := startManager(t, env, prov, 2*time.Second)

	idc := idcNode(t, env)
	elastic := elasticPool("gpu-v100-elastic", "np-elastic", 0)
	create(t, env, staticPool(), elastic, seedPolicy(idcPoolID, "np-elastic"))

	// The static pool's controller labels the IDC node.
	framework.Eventually(t, 10*time.Second, func(ctx context.Context) (bool, error) {
		var n corev1.Node
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(idc), &n); err != nil {
			return false, err
		}
		return n.Labels[spillwayv1alpha1.LabelNodePool] == "gpu-v100-edge" && n.Labels[spillwayv1alpha1.LabelGPUModel] == "V100", nil
	}, "the IDC node labelled with its pool")

	// One replica first: it takes the IDC GPU.
	create(t, env, deployment(1))
	framework.Eventually(t, 20*time.Second, func(ctx context.Context) (bool, error) {
		pl, err := placement(ctx, env)
		return err == nil && cmp.Equal(countValues(pl), map[string]int{"gpu-v100-edge": 1}), err
	}, "the first replica on the IDC node")

	// Three replicas: two are unschedulable; a watch notes when each is first seen so.
	seen := watchUnschedulable(t, env)
	scaleTo(t, env, 3)
	framework.Eventually(t, 20*time.Second, func(ctx context.Context) (bool, error) {
		return len(createCallsOK(prov)) > 0, nil
	}, "a provider call for the unschedulable pods")
	framework.Eventually(t, 30*time.Second, func(ctx context.Context) (bool, error) {
		pl, err := placement(ctx, env)
		if err != nil {
			return false, err
		}
		pods, err := appPods(ctx, env)
		running := 0
		for _, p := range pods {
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		return err == nil && running == 3 && cmp.Equal(countValues(pl), map[string]int{"gpu-v100-edge": 1, "gpu-v100-elastic": 2}), err
	}, "three replicas running: one on IDC, two on elastic nodes")
	allRunning := time.Now()
	time.Sleep(1500 * time.Millisecond) // several passes: nothing more is bought
	if got := createdNodes(prov.CreateCalls(), elastic.Name); got != 2 {
		t.Fatalf("elastic nodes bought = %d, want exactly 2 (calls %+v)", got, prov.CreateCalls())
	}
	first := prov.CreateCalls()[0].At
	seenAt := seen()
	if len(seenAt) != 2 {
		t.Errorf("pods seen unschedulable: %v, want 2", seenAt)
	}
	for name, at := range seenAt {
		// Reported, not asserted: the speed goal (<= 2s) is measured by
		// BenchmarkScaleUp, with the periodic scan out of the way.
		t.Logf("reaction: pod %s seen unschedulable -> provider call: %v", name, first.Sub(at).Round(time.Millisecond))
	}
	if sum, count := histogram(t, m, "spillway_nodeautoscaler_reaction_seconds"); count > 0 {
		t.Logf("controller's reaction histogram: %d pods, mean %.3fs", count, sum/float64(count))
	}
	t.Logf("scale-up request -> all pods Running (zero provisioning delay): %v", allRunning.Sub(first).Round(time.Millisecond))

	// Status reports the pool.
	framework.Eventually(t, 10*time.Second, func(ctx context.Context) (bool, error) {
		var np spillwayv1alpha1.NodePool
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(elastic), &np); err != nil {
			return false, err
		}
		return np.Status.Size == 2 && np.Status.Ready == 2 && np.Status.InFlight == 0 && np.Status.LastScaleUpTime != nil, nil
	}, "the elastic pool's status: size 2, ready 2")

	// Scale-in: the deletion-cost controller gives the pods of the cloud
	// unit the lower cost, so a ReplicaSet scale-down removes them first.
	// Make the IDC pod the newest (and most recently ready) first, so that
	// only its deletion cost can keep it.
	idcPod := replaceIDCPod(t, env)
	framework.Eventually(t, 20*time.Second, func(ctx context.Context) (bool, error) {
		pl, err := placement(ctx, env)
		if err != nil {
			return false, err
		}
		pods, err := appPods(ctx, env)
		if err != nil || len(pods) != 3 {
			return false, err
		}
		for _, p := range pods {
			want := "100" // unit 1 (cloud) of 2
			if pl[p.Name] == "gpu-v100-edge" {
				want = "200" // unit 0 (IDC)
			}
			if p.Annotations[deletionCost] != want {
				return false, nil
			}
		}
		return true, nil
	}, "the deletion-cost controller's costs: IDC pod 200, cloud pods 100")
	scaleTo(t, env, 1)
	framework.Eventually(t, 30*time.Second, func(ctx context.Context) (bool, error) {
		pl, err := placement(ctx, env)
		return err == nil && cmp.Equal(pl, map[string]string{idcPod: "gpu-v100-edge"}), err
	}, "one replica left: the newest pod, on the IDC node")
	framework.Eventually(t, 30*time.Second, func(ctx context.Context) (bool, error) {
		names, err := nodesOf(ctx, env, elastic.Name)
		return err == nil && len(names) == 0 && len(prov.Instances()) == 0, err
	}, "the two elastic nodes removed")
	if got := createdNodes(prov.CreateCalls(), elastic.Name); got != 2 {
		t.Errorf("elastic nodes bought over the whole scenario = %d, want 2 (calls %+v)", got, prov.CreateCalls())
	}
	var n corev1.Node
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(idc), &n); err != nil {
		t.Fatalf("the IDC node: %v", err)
	}
	if n.Spec.Unschedulable {
		t.Errorf("the IDC node was cordoned")
	}
	if got := len(prov.DeleteCalls()); got == 0 {
		t.Errorf("no provider delete calls")
	}
}

// TestUnitMaxBuysNoUselessNode: the cloud unit of the policy holds at most
// one pod. Three replicas: one on the IDC node, one on a single new elastic
// node; the third stays pending — the scheduler will not place it in the
// full unit, and the node autoscaler, simulating with the same engine, buys
// no node for it and says why.
func TestUnitMaxBuysNoUselessNode(t *testing.T) {
	env := framework.Start(t, framework.WithControllerManager())
	dumpOnFailure(t, env)
	startScheduler(t, env)
	startKubelet(t, env)
	prov := fake.New(env.Client)
	startManager(t, env, prov, 2*time.Second)

	idcNode(t, env)
	rp := seedPolicy(idcPoolID, "np-elastic")
	rp.Spec.Units[1].Max = ptr.To[int32](1)
	create(t, env, staticPool(), elasticPool("gpu-v100-elastic", "np-elastic", 0), rp, deployment(3))
	framework.Eventually(t, 30*time.Second, func(ctx context.Context) (bool, error) {
		pl, err := placement(ctx, env)
		return err == nil && cmp.Equal(countValues(pl), map[string]int{"gpu-v100-edge": 1, "gpu-v100-elastic": 1, "": 1}), err
	}, "one replica on IDC, one on the elastic unit, one pending")
	var pending string
	framework.Eventually(t, 20*time.Second, func(ctx context.Context) (bool, error) {
		pl, err := placement(ctx, env)
		if err != nil {
			return false, err
		}
		for name, pool := range pl {
			if pool == "" {
				pending = name
			}
		}
		return hasEvent(ctx, env, pending, "NotTriggerScaleUp", "max 1")
	}, "a NotTriggerScaleUp event on the pending pod naming the unit max")
	time.Sleep(2 * time.Second) // several passes
	if got := createdNodes(prov.CreateCalls(), "gpu-v100-elastic"); got != 1 {
		t.Fatalf("elastic nodes bought = %d, want 1 (the unit max stops the second): %+v", got, prov.CreateCalls())
	}
	var pod corev1.Pod
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: "default", Name: pending}, &pod); err != nil {
		t.Fatal(err)
	}
	if !unschedulable(&pod) || pod.Spec.NodeName != "" {
		t.Fatalf("pod %s should still be unschedulable: node %q, conditions %+v", pending, pod.Spec.NodeName, pod.Status.Conditions)
	}
}

// TestProviderFailureUsesNextPool: the first elastic pool is out of stock;
// the second one is used, and the failure is an event and a condition.
func TestProviderFailureUsesNextPool(t *testing.T) {
	env := framework.Start(t, framework.WithControllerManager())
	dumpOnFailure(t, env)
	startScheduler(t, env)
	startKubelet(t, env)
	prov := fake.New(env.Client)
	prov.FailPool("elastic-a", cloudprovider.NewError(cloudprovider.ErrOutOfStock, "create", "elastic-a", "zone has no V100"))
	startManager(t, env, prov, time.Minute)

	idcNode(t, env)
	create(t, env, staticPool(), elasticPool("elastic-a", "np-a", 0), elasticPool("elastic-b", "np-b", 0),
		seedPolicy(idcPoolID, "np-a", "np-b"), deployment(3))
	framework.Eventually(t, 30*time.Second, func(ctx context.Context) (bool, error) {
		pl, err := placement(ctx, env)
		return err == nil && cmp.Equal(countValues(pl), map[string]int{"gpu-v100-edge": 1, "elastic-b": 2}), err
	}, "two replicas on the second elastic pool")
	if got := createdNodes(prov.CreateCalls(), "elastic-b"); got != 2 {
		t.Errorf("nodes bought from elastic-b = %d, want 2", got)
	}
	failed := 0
	for _, c := range prov.CreateCalls() {
		if c.Pool == "elastic-a" && cloudprovider.IsOutOfStock(c.Err) {
			failed++
		}
	}
	if failed != 1 {
		t.Errorf("failed calls to elastic-a = %d, want 1 (then back-off): %+v", failed, prov.CreateCalls())
	}
	framework.Eventually(t, 10*time.Second, func(ctx context.Context) (bool, error) {
		var np spillwayv1alpha1.NodePool
		if err := env.Client.Get(ctx, client.ObjectKey{Name: "elastic-a"}, &np); err != nil {
			return false, err
		}
		for _, c := range np.Status.Conditions {
			if c.Type == "ProviderError" {
				return c.Status == "True" && c.Reason == "OutOfStock", nil
			}
		}
		return false, nil
	}, "elastic-a's ProviderError condition")
	framework.Eventually(t, 10*time.Second, func(ctx context.Context) (bool, error) {
		return hasEvent(ctx, env, "elastic-a", "ScaleUpFailed", "OutOfStock", "zone has no V100", "trying the next eligible pool")
	}, "a ScaleUpFailed event on elastic-a saying why (out of stock) and that the next pool is tried")
}

// TestRestartMidScaleUp: the manager stops after asking for nodes that have
// not joined yet; a new manager must not buy them again.
func TestRestartMidScaleUp(t *testing.T) {
	env := framework.Start(t, framework.WithControllerManager())
	dumpOnFailure(t, env)
	startScheduler(t, env)
	startKubelet(t, env)
	prov := fake.New(env.Client)
	prov.SetNodeMode("gpu-v100-elastic", fake.NodeNone)
	m1 := startManager(t, env, prov, 2*time.Second)

	idcNode(t, env)
	create(t, env, staticPool(), elasticPool("gpu-v100-elastic", "np-elastic", 0), seedPolicy(idcPoolID, "np-elastic"), deployment(3))
	framework.Eventually(t, 20*time.Second, func(context.Context) (bool, error) {
		return createdNodes(prov.CreateCalls(), "gpu-v100-elastic") == 2, nil
	}, "two nodes asked for")
	m1.stop()
	startManager(t, env, prov, 2*time.Second)
	time.Sleep(2 * time.Second) // the new manager runs several passes
	if got := createdNodes(prov.CreateCalls(), "gpu-v100-elastic"); got != 2 {
		t.Fatalf("after a restart the pool bought %d nodes, want still 2: %+v", got, prov.CreateCalls())
	}
	if _, err := prov.JoinPending(context.Background()); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 30*time.Second, func(ctx context.Context) (bool, error) {
		pl, err := placement(ctx, env)
		return err == nil && cmp.Equal(countValues(pl), map[string]int{"gpu-v100-edge": 1, "gpu-v100-elastic": 2}), err
	}, "the pods on the two nodes once they joined")
	if got := createdNodes(prov.CreateCalls(), "gpu-v100-elastic"); got != 2 {
		t.Fatalf("pool bought %d nodes, want 2", got)
	}
}

// TestNeverUsableNodeReplaced: a node that never advertises its GPUs is
// deleted after the pool's max provision time and another one is bought.
func TestNeverUsableNodeReplaced(t *testing.T) {
	env := framework.Start(t, framework.WithControllerManager())
	dumpOnFailure(t, env)
	startScheduler(t, env)
	startKubelet(t, env)
	prov := fake.New(env.Client)
	prov.SetNodeMode("gpu-v100-elastic", fake.NodeNeverUsable)
	prov.OnCreate(func(fake.CreateCall) { prov.SetNodeMode("gpu-v100-elastic", fake.NodeUsable) })
	startManager(t, env, prov, 500*time.Millisecond)

	pool := elasticPool("gpu-v100-elastic", "np-elastic", 0)
	pool.Spec.MaxProvisionTime.Duration = 3 * time.Second
	idcNode(t, env)
	create(t, env, staticPool(), pool, seedPolicy(idcPoolID, "np-elastic"), deployment(2))
	framework.Eventually(t, 30*time.Second, func(ctx context.Context) (bool, error) {
		pl, err := placement(ctx, env)
		return err == nil && cmp.Equal(countValues(pl), map[string]int{"gpu-v100-edge": 1, "gpu-v100-elastic": 1}), err
	}, "the second replica on a replacement node")
	calls := prov.CreateCalls()
	dels := prov.DeleteCalls()
	if len(calls) != 2 || len(dels) != 1 {
		t.Fatalf("want 2 create calls and 1 delete, got creates %+v deletes %+v", calls, dels)
	}
	if d := calls[1].At.Sub(calls[0].At); d < 3*time.Second || d > 10*time.Second {
		t.Errorf("replacement asked %v after the first node, want max provision time (3s) + back-off", d)
	}
	t.Logf("stuck node %v replaced %v after it was asked for", dels[0].Names, calls[1].At.Sub(calls[0].At).Round(time.Millisecond))
	if _, err := nodesOf(context.Background(), env, "gpu-v100-elastic"); err != nil {
		t.Fatal(err)
	}
	var n corev1.Node
	if err := env.Client.Get(context.Background(), client.ObjectKey{Name: dels[0].Names[0]}, &n); !apierrors.IsNotFound(err) {
		t.Errorf("the stuck node still exists (err %v)", err)
	}
}

func createCallsOK(p *fake.Provider) []fake.CreateCall {
	var out []fake.CreateCall
	for _, c := range p.CreateCalls() {
		if c.Err == nil {
			out = append(out, c)
		}
	}
	return out
}

func unschedulable(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return true
		}
	}
	return false
}

func scaleTo(t *testing.T, env *framework.Env, n int32) {
	t.Helper()
	// The deployment controller writes the object too: retry on conflicts.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d := deployment(0)
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(d), d); err != nil {
			return err
		}
		d.Spec.Replicas = ptr.To(n)
		return env.Client.Update(context.Background(), d)
	})
	if err != nil {
		t.Fatalf("scaling to %d: %v", n, err)
	}
}

// replaceIDCPod deletes the app pod on the IDC node at once and waits for
// its replacement to be bound there; it returns the replacement's name.
func replaceIDCPod(t *testing.T, env *framework.Env) string {
	t.Helper()
	ctx := context.Background()
	pl, err := placement(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	old := ""
	for name, pool := range pl {
		if pool == "gpu-v100-edge" {
			old = name
		}
	}
	if old == "" {
		t.Fatalf("no app pod on the IDC node: %v", pl)
	}
	if err := env.Client.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: old, Namespace: "default"}},
		client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	var repl string
	framework.Eventually(t, 20*time.Second, func(ctx context.Context) (bool, error) {
		pl, err := placement(ctx, env)
		if err != nil {
			return false, err
		}
		for name, pool := range pl {
			if pool == "gpu-v100-edge" && name != old {
				repl = name
			}
		}
		return repl != "" && len(pl) == 3, nil
	}, "the IDC pod's replacement bound to the IDC node")
	return repl
}

// hasEvent tells whether an event about regarding has reason and a note
// containing every one of words.
func hasEvent(ctx context.Context, env *framework.Env, regarding, reason string, words ...string) (bool, error) {
	evs, err := env.Clientset.EventsV1().Events("").List(ctx, metav1ListOptions())
	if err != nil {
		return false, err
	}
	for _, e := range evs.Items {
		if e.Regarding.Name != regarding || e.Reason != reason {
			continue
		}
		all := true
		for _, w := range words {
			all = all && strings.Contains(e.Note, w)
		}
		if all {
			return true, nil
		}
	}
	return false, nil
}

// TestScaleDownHonoursPDB: an under-used elastic node whose pod fits on the
// IDC node is cordoned; a PodDisruptionBudget holds the eviction; once the
// budget allows it the pod moves and the node is removed.
func TestScaleDownHonoursPDB(t *testing.T) {
	env := framework.Start(t, framework.WithControllerManager())
	dumpOnFailure(t, env)
	ctx := context.Background()
	startScheduler(t, env)
	startKubelet(t, env)
	prov := fake.New(env.Client)
	startManager(t, env, prov, 2*time.Second)

	idcNode(t, env)
	big := elasticPool("gpu-v100-elastic", "np-elastic", 0)
	big.Spec.Template.GPUs = 4
	filler := deployment(1)
	filler.Name = "filler"
	filler.Spec.Selector.MatchLabels = map[string]string{"app": "filler"}
	filler.Spec.Template.Labels = map[string]string{"app": "filler"}
	create(t, env, staticPool(), big, filler)
	framework.Eventually(t, 20*time.Second, func(ctx context.Context) (bool, error) {
		var pods corev1.PodList
		err := env.Client.List(ctx, &pods, client.MatchingLabels{"app": "filler"})
		return err == nil && len(pods.Items) == 1 && pods.Items[0].Spec.NodeName == "idc-gpu-0", err
	}, "the filler on the IDC node")

	create(t, env, deployment(1), &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "qwen", Namespace: "default"},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromInt32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}}})
	framework.Eventually(t, 20*time.Second, func(ctx context.Context) (bool, error) {
		pl, err := placement(ctx, env)
		return err == nil && cmp.Equal(countValues(pl), map[string]int{"gpu-v100-elastic": 1}), err
	}, "the app pod on a 4-GPU elastic node")
	nodes, _ := nodesOf(ctx, env, big.Name)
	if len(nodes) != 1 {
		t.Fatalf("elastic nodes = %v, want 1", nodes)
	}

	// Free the IDC GPU: the elastic node is 25% used and its pod fits there.
	if err := env.Client.Delete(ctx, filler); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 20*time.Second, func(ctx context.Context) (bool, error) {
		var n corev1.Node
		err := env.Client.Get(ctx, client.ObjectKey{Name: nodes[0]}, &n)
		return err == nil && n.Spec.Unschedulable && n.Annotations["spillway.io/scale-down"] != "", err
	}, "the under-used elastic node cordoned for scale-down")
	time.Sleep(2 * time.Second) // several passes: the budget holds the pod
	pl, err := placement(ctx, env)
	if err != nil || !cmp.Equal(countValues(pl), map[string]int{"gpu-v100-elastic": 1}) {
		t.Fatalf("the PDB did not hold: placement %v, err %v", pl, err)
	}
	if len(prov.DeleteCalls()) != 0 {
		t.Fatalf("node deleted while its pod was protected: %+v", prov.DeleteCalls())
	}

	if err := env.Client.Delete(ctx, &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "qwen", Namespace: "default"}}); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 30*time.Second, func(ctx context.Context) (bool, error) {
		pl, err := placement(ctx, env)
		if err != nil {
			return false, err
		}
		left, err := nodesOf(ctx, env, big.Name)
		return err == nil && len(left) == 0 && cmp.Equal(countValues(pl), map[string]int{"gpu-v100-edge": 1}), err
	}, "the pod moved to the IDC node and the elastic node removed")
}

// TestSimCloudGPUDelay: with the simulated cloud a node is Ready before it
// advertises its GPUs; it stays "coming" until then, so the burst buys
// exactly two nodes, and the pods land once the GPUs appear.
func TestSimCloudGPUDelay(t *testing.T) {
	env := framework.Start(t, framework.WithControllerManager())
	dumpOnFailure(t, env)
	startScheduler(t, env)
	startKubelet(t, env)
	simCloud := sim.New(env.Client, sim.WithDelays(time.Second, 2*time.Second))
	counting := &countingProvider{Provider: simCloud}
	startManager(t, env, counting, 2*time.Second)

	pool := elasticPool("gpu-v100-elastic", "np-elastic", 0)
	idcNode(t, env)
	create(t, env, staticPool(), pool, seedPolicy(idcPoolID, "np-elastic"), deployment(3))
	framework.Eventually(t, 30*time.Second, func(ctx context.Context) (bool, error) {
		var nodes corev1.NodeList
		if err := env.Client.List(ctx, &nodes, client.MatchingLabels{spillwayv1alpha1.LabelNodePool: pool.Name}); err != nil {
			return false, err
		}
		for _, n := range nodes.Items {
			if cloudprovider.Usable(&n, 0) && !cloudprovider.Usable(&n, 1) {
				return true, nil
			}
		}
		return false, nil
	}, "a simulated node Ready without its GPUs")
	framework.Eventually(t, 30*time.Second, func(ctx context.Context) (bool, error) {
		pl, err := placement(ctx, env)
		return err == nil && cmp.Equal(countValues(pl), map[string]int{"gpu-v100-edge": 1, "gpu-v100-elastic": 2}), err
	}, "two replicas on simulated nodes once their GPUs appear")
	if got := counting.created(); got != 2 {
		t.Errorf("simulated nodes bought = %d, want 2", got)
	}
}

// countingProvider counts the nodes a provider created.
type countingProvider struct {
	cloudprovider.Provider
	mu sync.Mutex
	n  int
}

func (c *countingProvider) Create(ctx context.Context, np *spillwayv1alpha1.NodePool, count int) ([]cloudprovider.Instance, error) {
	ins, err := c.Provider.Create(ctx, np, count)
	c.mu.Lock()
	c.n += len(ins)
	c.mu.Unlock()
	return ins, err
}

func (c *countingProvider) created() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
