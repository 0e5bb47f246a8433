package nodeautoscaler

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"
	"k8s.io/component-base/configz"
	"k8s.io/klog/v2"
	schedapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
	schedoptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"
	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	schedulingv1alpha1 "github.com/spillway-io/spillway/apis/scheduling/v1alpha1"
	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/pkg/cloudprovider"
	"github.com/spillway-io/spillway/pkg/cloudprovider/fake"
	"github.com/spillway-io/spillway/pkg/controllers/deletioncost"
	"github.com/spillway-io/spillway/pkg/controllers/nodepool"
	rpplugin "github.com/spillway-io/spillway/pkg/scheduler/resourcepolicy"
	"github.com/spillway-io/spillway/test/integration/framework"
)

const (
	app          = "isvc.qwen-chat-predictor"
	idcPoolID    = "np-idc"
	deletionCost = "controller.kubernetes.io/pod-deletion-cost"
)

// startScheduler runs the real kube-scheduler in this process until the
// test ends, built as cmd/spillway-scheduler builds it (the upstream app
// with the SpillwayResourcePolicy plugin) and configured by the shipped
// config/scheduler/scheduler-config.yaml: the scheduler whose decisions the
// node autoscaler simulates.
func startScheduler(t testing.TB, env *framework.Env) {
	t.Helper()
	root, err := framework.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	body, err := os.ReadFile(filepath.Join(root, "config/scheduler/scheduler-config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	body = append(body, []byte("clientConnection:\n  kubeconfig: "+env.KubeconfigPath+"\n  qps: 1000\n  burst: 1000\n")...)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "scheduler-config.yaml")
	if err := os.WriteFile(cfg, body, 0o600); err != nil {
		t.Fatal(err)
	}
	port, err := framework.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	opts := schedoptions.NewOptions()
	fs := pflag.NewFlagSet("kube-scheduler", pflag.ContinueOnError)
	for _, f := range opts.Flags.FlagSets {
		fs.AddFlagSet(f)
	}
	args := []string{"--config=" + cfg, "--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(port), "--cert-dir=" + dir}
	if err := fs.Parse(args); err != nil {
		t.Fatalf("kube-scheduler flags: %v", err)
	}
	name, err := cache.NewInformerName("kube-scheduler-" + t.Name())
	if err != nil {
		t.Fatal(err)
	}
	opts.InformerName = name
	ctx, cancel := context.WithCancel(context.Background())
	cc, sched, err := schedapp.Setup(ctx, opts, schedapp.WithPlugin(rpplugin.Name, rpplugin.New))
	if err != nil {
		cancel()
		t.Fatalf("setting up kube-scheduler: %v", err)
	}
	if got := cc.ComponentConfig.Profiles[0].Plugins.Filter.Enabled; !hasPlugin(got, rpplugin.Name) {
		cancel()
		t.Fatalf("the scheduler profile does not enable %s as a filter: %+v", rpplugin.Name, got)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := schedapp.Run(ctx, cc, sched); err != nil && ctx.Err() == nil {
			t.Errorf("kube-scheduler: %v", err)
		}
	}()
	// The scheduler registers its config globally; free the name for the
	// next test's scheduler in this process.
	t.Cleanup(func() { cancel(); <-done; name.Release(); configz.Delete("componentconfig") })
}

func hasPlugin(ps []schedconfig.Plugin, name string) bool {
	for _, p := range ps {
		if p.Name == name {
			return true
		}
	}
	return false
}

// manager is a running controller manager with the nodepool controller.
type manager struct {
	cancel context.CancelFunc
	done   chan struct{}
	reg    *prometheus.Registry
}

func (m *manager) stop() {
	if m.cancel != nil {
		m.cancel()
		<-m.done
		m.cancel = nil
	}
}

// startManager runs a manager with the nodepool controller and prov as the
// "fake" provider until stopped or the test ends.
func startManager(t testing.TB, env *framework.Env, prov cloudprovider.Provider, backoff time.Duration) *manager {
	t.Helper()
	return startManagerWith(t, env, prov, nodepool.Options{Debounce: 100 * time.Millisecond,
		ScanInterval: 500 * time.Millisecond, Backoff: backoff})
}

// startManagerWith is startManager with the controller's options (the
// providers and registerer are set here).
func startManagerWith(t testing.TB, env *framework.Env, prov cloudprovider.Provider, opts nodepool.Options) *manager {
	t.Helper()
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 env.Client.Scheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
		Logger:                 klog.Background().WithName(t.Name()),
	})
	if err != nil {
		t.Fatalf("creating manager: %v", err)
	}
	reg := prometheus.NewRegistry()
	// The deletion-cost controller runs beside the node autoscaler, as in
	// spillway-manager, so a scale-in removes cloud pods first.
	if err := deletioncost.SetupWithManager(mgr); err != nil {
		t.Fatalf("setting up the deletion-cost controller: %v", err)
	}
	opts.Providers = cloudprovider.Registry{fake.Name: prov}
	opts.Registerer = reg
	err = nodepool.SetupWithManager(mgr, opts)
	if err != nil {
		t.Fatalf("setting up the nodepool controller: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &manager{cancel: cancel, done: make(chan struct{}), reg: reg}
	go func() {
		defer close(m.done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	t.Cleanup(m.stop)
	return m
}

// startKubelet plays every kubelet of the cluster: bound pods become Running
// and Ready, and pods being deleted go away at once.
func startKubelet(t testing.TB, env *framework.Env) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			var pods corev1.PodList
			if err := env.Client.List(ctx, &pods); err != nil {
				return false, nil
			}
			for i := range pods.Items {
				p := &pods.Items[i]
				switch {
				case p.DeletionTimestamp != nil:
					_ = env.Client.Delete(ctx, p, client.GracePeriodSeconds(0))
				case p.Spec.NodeName != "" && p.Status.Phase != corev1.PodRunning:
					now := metav1.Now()
					p.Status.Phase = corev1.PodRunning
					p.Status.StartTime = &now
					p.Status.Conditions = append(p.Status.Conditions,
						corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
						corev1.PodCondition{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now})
					_ = env.Client.Status().Update(ctx, p)
				}
			}
			return false, nil
		})
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func gpuList(cpu string, gpus int64) corev1.ResourceList {
	return corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), spillwayv1alpha1.ResourceGPU: *resource.NewQuantity(gpus, resource.DecimalSI)}
}

// idcNode registers the IDC node: Ready with one GPU, labelled only with the
// ACK pool id (the controller adds the rest).
func idcNode(t testing.TB, env *framework.Env) *corev1.Node {
	t.Helper()
	pool := &spillwayv1alpha1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "gpu-v100-edge"},
		Spec: spillwayv1alpha1.NodePoolSpec{Template: spillwayv1alpha1.NodeTemplate{CPU: ptr.To(resource.MustParse("8")), GPUs: 1}}}
	n := cloudprovider.TemplateNode(pool, "idc-gpu-0", "")
	n.Labels = map[string]string{spillwayv1alpha1.LabelACKNodePoolID: idcPoolID, corev1.LabelHostname: "idc-gpu-0"}
	prov := fake.New(env.Client)
	if err := prov.RegisterNode(context.Background(), n); err != nil {
		t.Fatalf("registering the IDC node: %v", err)
	}
	return n
}

func staticPool() *spillwayv1alpha1.NodePool {
	return &spillwayv1alpha1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "gpu-v100-edge"},
		Spec: spillwayv1alpha1.NodePoolSpec{Type: spillwayv1alpha1.NodePoolStatic, Role: spillwayv1alpha1.RoleIDC,
			Labels:   map[string]string{spillwayv1alpha1.LabelACKNodePoolID: idcPoolID},
			Template: spillwayv1alpha1.NodeTemplate{GPUs: 1, GPUModel: "V100"}}}
}

func elasticPool(name, poolID string, weight int32) *spillwayv1alpha1.NodePool {
	return &spillwayv1alpha1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: spillwayv1alpha1.NodePoolSpec{Type: spillwayv1alpha1.NodePoolElastic, Role: spillwayv1alpha1.RoleElastic,
			Labels: map[string]string{spillwayv1alpha1.LabelACKNodePoolID: poolID},
			Template: spillwayv1alpha1.NodeTemplate{CPU: ptr.To(resource.MustParse("8")), Memory: ptr.To(resource.MustParse("32Gi")),
				GPUs: 1, GPUModel: "V100"},
			MinSize: ptr.To[int32](0), MaxSize: ptr.To[int32](5), Weight: weight,
			Provider: &spillwayv1alpha1.ProviderSpec{Name: fake.Name},
			ScaleDown: &spillwayv1alpha1.ScaleDown{UnneededTime: &metav1.Duration{Duration: 2 * time.Second},
				DelayAfterScaleUp: &metav1.Duration{Duration: time.Second}},
			MaxProvisionTime: &metav1.Duration{Duration: time.Minute}}}
}

func seedPolicy(poolIDs ...string) *schedulingv1alpha1.ResourcePolicy {
	rp := &schedulingv1alpha1.ResourcePolicy{ObjectMeta: metav1.ObjectMeta{Name: "qwen-chat", Namespace: "default"},
		Spec: schedulingv1alpha1.ResourcePolicySpec{Selector: map[string]string{"app": app}, Strategy: schedulingv1alpha1.StrategyPrefer}}
	for i, id := range poolIDs {
		kind := schedulingv1alpha1.ResourceElastic
		if i == 0 {
			kind = schedulingv1alpha1.ResourceECS
		}
		rp.Spec.Units = append(rp.Spec.Units, schedulingv1alpha1.Unit{Resource: kind, NodeSelector: map[string]string{spillwayv1alpha1.LabelACKNodePoolID: id}})
	}
	return rp
}

func deployment(replicas int32) *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "qwen-chat-predictor", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
				Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To[int64](1), Containers: []corev1.Container{{
					Name: "vllm", Image: "vllm/vllm-openai:v0.4.1",
					Resources: corev1.ResourceRequirements{Requests: gpuList("4", 1), Limits: gpuList("4", 1)}}}}}}}
}

func create(t testing.TB, env *framework.Env, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := env.Client.Create(context.Background(), o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

func appPods(ctx context.Context, env *framework.Env) ([]corev1.Pod, error) {
	var pods corev1.PodList
	if err := env.Client.List(ctx, &pods, client.InNamespace("default"), client.MatchingLabels{"app": app}); err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// nodesOf lists the nodes of a pool by name.
func nodesOf(ctx context.Context, env *framework.Env, pool string) ([]string, error) {
	var nodes corev1.NodeList
	if err := env.Client.List(ctx, &nodes, client.MatchingLabels{spillwayv1alpha1.LabelNodePool: pool}); err != nil {
		return nil, err
	}
	var out []string
	for _, n := range nodes.Items {
		out = append(out, n.Name)
	}
	sort.Strings(out)
	return out, nil
}

func createdNodes(calls []fake.CreateCall, pool string) int {
	n := 0
	for _, c := range calls {
		if c.Pool == pool && c.Err == nil {
			n += c.Count
		}
	}
	return n
}

// placement maps each app pod to the pool of its node ("" when unbound).
func placement(ctx context.Context, env *framework.Env) (map[string]string, error) {
	pods, err := appPods(ctx, env)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, p := range pods {
		pool := ""
		if p.Spec.NodeName != "" {
			var n corev1.Node
			if err := env.Client.Get(ctx, client.ObjectKey{Name: p.Spec.NodeName}, &n); err != nil {
				return nil, err
			}
			pool = n.Labels[spillwayv1alpha1.LabelNodePool]
		}
		out[p.Name] = pool
	}
	return out, nil
}

func countValues(m map[string]string) map[string]int {
	out := map[string]int{}
	for _, v := range m {
		out[v]++
	}
	return out
}

func describe(m map[string]string) string { return fmt.Sprint(countValues(m)) }

func metav1ListOptions() metav1.ListOptions { return metav1.ListOptions{} }

// watchUnschedulable records when each app pod is first seen unschedulable;
// the returned func gives a copy of what it saw.
func watchUnschedulable(t testing.TB, env *framework.Env) func() map[string]time.Time {
	return watchUnschedulableOf(t, env, "app="+app)
}

// watchUnschedulableOf is watchUnschedulable for the pods of a label selector.
func watchUnschedulableOf(t testing.TB, env *framework.Env, selector string) func() map[string]time.Time {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := env.Clientset.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]time.Time{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || !unschedulable(p) {
				continue
			}
			mu.Lock()
			if _, ok := seen[p.Name]; !ok {
				seen[p.Name] = time.Now()
			}
			mu.Unlock()
		}
	}()
	t.Cleanup(func() { w.Stop(); cancel(); <-done })
	return func() map[string]time.Time {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]time.Time{}
		for k, v := range seen {
			out[k] = v
		}
		return out
	}
}

// histogram returns the sum and count of a histogram the manager registered.
func histogram(t testing.TB, m *manager, name string) (float64, uint64) {
	t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleSum(), h.GetSampleCount()
		}
	}
	return 0, 0
}

// dumpOnFailure logs pods, nodes and pools when the test fails.
func dumpOnFailure(t testing.TB, env *framework.Env) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		ctx := context.Background()
		var pods corev1.PodList
		_ = env.Client.List(ctx, &pods)
		for _, p := range pods.Items {
			t.Logf("pod %s/%s node=%q phase=%s conditions=%+v", p.Namespace, p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.Conditions)
		}
		var nodes corev1.NodeList
		_ = env.Client.List(ctx, &nodes)
		for _, n := range nodes.Items {
			t.Logf("node %s labels=%v taints=%v unschedulable=%v allocatable=%v", n.Name, n.Labels, n.Spec.Taints, n.Spec.Unschedulable, n.Status.Allocatable)
		}
		var pools spillwayv1alpha1.NodePoolList
		_ = env.Client.List(ctx, &pools)
		for _, p := range pools.Items {
			t.Logf("nodepool %s status=%+v", p.Name, p.Status)
		}
	})
}
