package simlet

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func testPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", UID: "uid-1"},
		Spec:       corev1.PodSpec{NodeName: "gpu-0", Containers: []corev1.Container{{Name: "kserve-container", Image: "vllm"}}},
	}
}

func condStatus(st corev1.PodStatus) map[corev1.PodConditionType]corev1.ConditionStatus {
	m := map[corev1.PodConditionType]corev1.ConditionStatus{}
	for _, c := range st.Conditions {
		m[c.Type] = c.Status
	}
	return m
}

func TestPodStatusTransitions(t *testing.T) {
	T, F := corev1.ConditionTrue, corev1.ConditionFalse
	for _, tc := range []struct {
		name       string
		run        RunState
		phase      corev1.PodPhase
		ready      corev1.ConditionStatus
		state      string
		restarts   int32
		lastReason string
		podIP      string
	}{
		{"not started", RunState{HostIP: "127.1.0.2"}, corev1.PodPending, F, "ContainerCreating", 0, "", ""},
		{"start failed", RunState{HostIP: "127.1.0.2", StartErr: "port in use"}, corev1.PodPending, F, "RunContainerError", 0, "", ""},
		{"loading", RunState{HostIP: "127.1.0.2", PodIP: "127.2.1.2", Started: t0}, corev1.PodRunning, F, "running", 0, "", "127.2.1.2"},
		{"ready", RunState{HostIP: "127.1.0.2", PodIP: "127.2.1.2", Started: t0, Ready: true}, corev1.PodRunning, T, "running", 0, "", "127.2.1.2"},
		{"restarted", RunState{HostIP: "127.1.0.2", PodIP: "127.2.1.2", Started: t0.Add(time.Minute), Restarts: 1,
			LastExit: &Exit{At: t0.Add(time.Minute), Started: t0, ExitCode: 1, Reason: "Error"}}, corev1.PodRunning, F, "running", 1, "Error", "127.2.1.2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := PodStatus(testPod(), tc.run, t0.Add(2*time.Minute))
			cs := st.ContainerStatuses[0]
			state := "running"
			if cs.State.Waiting != nil {
				state = cs.State.Waiting.Reason
			}
			last := ""
			if cs.LastTerminationState.Terminated != nil {
				last = cs.LastTerminationState.Terminated.Reason
			}
			type out struct {
				Phase     corev1.PodPhase
				Ready     corev1.ConditionStatus
				CReady    corev1.ConditionStatus
				Sched     corev1.ConditionStatus
				State     string
				Restarts  int32
				Last      string
				PodIP     string
				HostIP    string
				ContReady bool
			}
			c := condStatus(st)
			got := out{st.Phase, c[corev1.PodReady], c[corev1.ContainersReady], c[corev1.PodScheduled], state, cs.RestartCount, last, st.PodIP, st.HostIP, cs.Ready}
			want := out{tc.phase, tc.ready, tc.ready, T, tc.state, tc.restarts, tc.lastReason, tc.podIP, "127.1.0.2", tc.ready == T}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("status (-want,+got):\n%s", diff)
			}
		})
	}
}

func TestPodStatusKeepsTransitionTimes(t *testing.T) {
	pod := testPod()
	run := RunState{HostIP: "h", PodIP: "127.2.1.2", Started: t0, Ready: true}
	pod.Status = PodStatus(pod, run, t0)
	again := PodStatus(pod, run, t0.Add(time.Hour))
	if diff := cmp.Diff(pod.Status, again); diff != "" {
		t.Errorf("unchanged state changed the status (-want,+got):\n%s", diff)
	}
	run.Ready = false
	later := PodStatus(&corev1.Pod{Spec: pod.Spec, Status: pod.Status}, run, t0.Add(time.Hour))
	for _, c := range later.Conditions {
		if c.Type == corev1.PodReady && !c.LastTransitionTime.Time.Equal(t0.Add(time.Hour)) {
			t.Errorf("Ready went False but its transition time is %v", c.LastTransitionTime)
		}
	}
}

// fakeRuntime records starts; runners become ready when told.
type fakeRuntime struct {
	mu      sync.Mutex
	runners []*fakeRunner
	ips     []string
}

func (f *fakeRuntime) Start(_ context.Context, _ *corev1.Pod, ip string, _ GPU) (Runner, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := &fakeRunner{done: make(chan struct{}), sm: 42}
	f.runners = append(f.runners, r)
	f.ips = append(f.ips, ip)
	return r, nil
}

type fakeRunner struct {
	mu      sync.Mutex
	ready   bool
	stopped bool
	done    chan struct{}
	sm      float64
}

func (r *fakeRunner) Ready() bool           { r.mu.Lock(); defer r.mu.Unlock(); return r.ready }
func (r *fakeRunner) Done() <-chan struct{} { return r.done }
func (r *fakeRunner) Err() error            { return nil }
func (r *fakeRunner) SMUtil() float64       { return r.sm }
func (r *fakeRunner) Stop(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.stopped {
		r.stopped = true
		close(r.done)
	}
	return nil
}

func gpuPool() spillwayv1alpha1.NodePool {
	return spillwayv1alpha1.NodePool{
		ObjectMeta: metav1.ObjectMeta{Name: "gpu"},
		Spec: spillwayv1alpha1.NodePoolSpec{Type: spillwayv1alpha1.NodePoolStatic, Role: spillwayv1alpha1.RoleIDC,
			Template: spillwayv1alpha1.NodeTemplate{GPUs: 1, GPUModel: "V100", CPU: ptr.To(resource.MustParse("8"))}},
	}
}

func newTestSimlet(t *testing.T, objs ...client.Object) (*Simlet, client.Client, *fakeRuntime, *clocktesting.FakeClock) {
	t.Helper()
	scheme := runtime.NewScheme()
	_ = corev1.AddToScheme(scheme)
	_ = coordinationv1.AddToScheme(scheme)
	cl := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).
		WithStatusSubresource(&corev1.Pod{}, &corev1.Node{}).Build()
	rt := &fakeRuntime{}
	clk := clocktesting.NewFakeClock(t0)
	s := New(cl, []spillwayv1alpha1.NodePool{gpuPool()}, WithRuntime(rt), WithClock(clk))
	if err := s.RegisterStatic(context.Background(), map[string]int{"gpu": 1}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.shutdown(time.Second) })
	return s, cl, rt, clk
}

func TestRegisterStaticAndHeartbeat(t *testing.T) {
	s, cl, _, clk := newTestSimlet(t)
	ctx := context.Background()
	node := &corev1.Node{}
	if err := cl.Get(ctx, client.ObjectKey{Name: "gpu-0"}, node); err != nil {
		t.Fatal(err)
	}
	gpus := node.Status.Capacity[spillwayv1alpha1.ResourceGPU]
	if gpus.Value() != 1 || node.Labels[spillwayv1alpha1.LabelNodePool] != "gpu" || !s.Managed(node) {
		t.Fatalf("node %s: gpus %v labels %v managed %v", node.Name, gpus.String(), node.Labels, s.Managed(node))
	}
	if err := s.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	lease := &coordinationv1.Lease{}
	if err := cl.Get(ctx, client.ObjectKey{Namespace: corev1.NamespaceNodeLease, Name: "gpu-0"}, lease); err != nil {
		t.Fatal(err)
	}
	if !lease.Spec.RenewTime.Time.Equal(t0) {
		t.Errorf("lease renewed at %v, want %v", lease.Spec.RenewTime, t0)
	}
	_ = cl.Get(ctx, client.ObjectKey{Name: "gpu-0"}, node)
	if !readyTrue(node.Status) || node.Status.Addresses[0].Address != "127.1.0.2" ||
		node.Annotations[AnnotationDCGMEndpoint] != "http://127.1.0.2:9400/metrics" {
		t.Errorf("node status %+v annotations %v", node.Status, node.Annotations)
	}

	clk.Step(10 * time.Second)
	_ = s.Heartbeat(ctx)
	_ = cl.Get(ctx, client.ObjectKey{Namespace: corev1.NamespaceNodeLease, Name: "gpu-0"}, lease)
	if !lease.Spec.RenewTime.Time.Equal(t0.Add(10 * time.Second)) {
		t.Errorf("lease not renewed: %v", lease.Spec.RenewTime)
	}

	if err := s.CutPool("gpu", true); err != nil {
		t.Fatal(err)
	}
	clk.Step(10 * time.Second)
	_ = s.Heartbeat(ctx)
	_ = cl.Get(ctx, client.ObjectKey{Namespace: corev1.NamespaceNodeLease, Name: "gpu-0"}, lease)
	if !lease.Spec.RenewTime.Time.Equal(t0.Add(10 * time.Second)) {
		t.Errorf("cut pool's lease renewed: %v", lease.Spec.RenewTime)
	}
	if err := s.CutPool("nope", true); err == nil || !strings.Contains(err.Error(), "unknown pool") {
		t.Errorf("cutting an unknown pool: %v", err)
	}
}

func TestReconcileRunsPodThroughItsLife(t *testing.T) {
	pod := testPod()
	s, cl, rt, _ := newTestSimlet(t, pod)
	ctx := context.Background()
	req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "default", Name: "p"}}
	get := func() *corev1.Pod {
		p := &corev1.Pod{}
		if err := cl.Get(ctx, req.NamespacedName, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, err := s.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	p := get()
	if p.Status.Phase != corev1.PodRunning || condStatus(p.Status)[corev1.PodReady] != corev1.ConditionFalse {
		t.Fatalf("after start: phase %s conditions %v", p.Status.Phase, condStatus(p.Status))
	}
	if diff := cmp.Diff([]string{"127.2.1.2"}, rt.ips); diff != "" {
		t.Errorf("pod IPs (-want,+got):\n%s", diff)
	}
	rt.runners[0].mu.Lock()
	rt.runners[0].ready = true
	rt.runners[0].mu.Unlock()
	_, _ = s.Reconcile(ctx, req)
	if p = get(); condStatus(p.Status)[corev1.PodReady] != corev1.ConditionTrue || p.Status.PodIP != "127.2.1.2" {
		t.Fatalf("after load: ready %v ip %s", condStatus(p.Status)[corev1.PodReady], p.Status.PodIP)
	}
	if txt := s.DCGMText("gpu-0"); !strings.Contains(txt, `DCGM_CUSTOM_PROCESS_SM_UTIL{gpu="0",namespace="default",pod="p",container="kserve-container"} 42`) {
		t.Errorf("DCGM text:\n%s", txt)
	}

	// The container exits: restarted with the same IP and a restart count.
	_ = rt.runners[0].Stop(ctx)
	_, _ = s.Reconcile(ctx, req)
	p = get()
	if cs := p.Status.ContainerStatuses[0]; cs.RestartCount != 1 || cs.LastTerminationState.Terminated == nil || len(rt.runners) != 2 {
		t.Fatalf("after exit: %+v, %d starts", cs, len(rt.runners))
	}

	// Deleted with grace: the runner is stopped, then the pod removed with grace 0.
	p.DeletionGracePeriodSeconds = ptr.To(int64(5))
	p.DeletionTimestamp = &metav1.Time{Time: t0}
	if err := s.terminate(ctx, p, s.pods[p.UID]); err != nil {
		t.Fatal(err)
	}
	if !rt.runners[1].stopped {
		t.Error("runner not stopped on deletion")
	}
	if err := cl.Get(ctx, req.NamespacedName, &corev1.Pod{}); !apierrors.IsNotFound(err) {
		t.Errorf("pod still there after termination: %v", err)
	}
	if len(s.pods) != 0 {
		t.Errorf("pod state kept after deletion: %d", len(s.pods))
	}
}

func TestKillNodeStopsPods(t *testing.T) {
	pod := testPod()
	s, _, rt, _ := newTestSimlet(t, pod)
	ctx := context.Background()
	req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "default", Name: "p"}}
	_, _ = s.Reconcile(ctx, req)
	if err := s.KillNode("gpu-0"); err != nil {
		t.Fatal(err)
	}
	if !rt.runners[0].stopped {
		t.Error("pod of a killed node still runs")
	}
	if _, err := s.Reconcile(ctx, req); err != nil || len(rt.runners) != 1 {
		t.Errorf("pod restarted on a killed node (%d starts, %v)", len(rt.runners), err)
	}
	if err := s.KillNode("nope"); err == nil {
		t.Error("killing an unknown node succeeded")
	}
}

func TestFaultHandler(t *testing.T) {
	s, _, _, _ := newTestSimlet(t)
	_ = s.Heartbeat(context.Background())
	srv := httptest.NewServer(s.FaultHandler())
	defer srv.Close()
	for _, tc := range []struct {
		method, path string
		code         int
		want         string
	}{
		{"POST", "/faults/cut-pool?pool=gpu", 200, `"cut":true`},
		{"POST", "/faults/cut-pool", 400, "missing query parameter pool"},
		{"POST", "/faults/cut-pool?pool=x", 404, `unknown pool \"x\"`},
		{"POST", "/faults/kill-node?node=gpu-0", 200, `"killed":"gpu-0"`},
		{"GET", "/faults", 200, `{"cutPools":["gpu"],"killedNodes":["gpu-0"]}`},
		{"POST", "/faults/restore-pool?pool=gpu", 200, `"cut":false`},
		{"GET", "/faults", 200, `{"cutPools":[],"killedNodes":["gpu-0"]}`},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body json.RawMessage
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || !strings.Contains(string(body), tc.want) {
			t.Errorf("%s %s: %d %s, want %d containing %s", tc.method, tc.path, resp.StatusCode, body, tc.code, tc.want)
		}
	}
}

func TestPortRuntimeServesHealthAfterLoad(t *testing.T) {
	pod := testPod()
	pod.Annotations = map[string]string{AnnotationLoadDelay: "150ms"}
	pod.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 0}}
	r, err := PortRuntime{}.Start(context.Background(), pod, "127.0.0.1", GPU{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Ready() {
		t.Error("ready before the load delay")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !r.Ready() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !r.Ready() {
		t.Error("not ready after the load delay")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := r.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.Done():
	case <-time.After(2 * time.Second):
		t.Error("Done not closed after Stop")
	}
	pod.Annotations[AnnotationLoadDelay] = "soon"
	if _, err := (PortRuntime{}).Start(context.Background(), pod, "127.0.0.1", GPU{}); err == nil || !strings.Contains(err.Error(), "not a duration") {
		t.Errorf("bad load delay: %v", err)
	}
}

func TestPortRuntimeVLLMCommandLine(t *testing.T) {
	for _, tc := range []struct {
		name    string
		command []string
		args    []string
		wantErr string
	}{
		{"vllm serve with port", []string{"vllm", "serve", "Qwen/Qwen2.5-7B"}, []string{"--port=0"}, ""},
		{"python -m with bad flag value", []string{"python3", "-m", "vllm.entrypoints.openai.api_server"}, []string{"--port", "x"}, "container c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := testPod()
			pod.Spec.Containers[0].Name = "c"
			pod.Spec.Containers[0].Command, pod.Spec.Containers[0].Args = tc.command, tc.args
			r, err := PortRuntime{}.Start(context.Background(), pod, "127.0.0.1", GPU{})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_ = r.Stop(ctx)
		})
	}
	if IsVLLM([]string{"nginx"}) || !IsVLLM([]string{"sh", "-c", "exec vllm serve m"}) {
		t.Error("IsVLLM misclassifies")
	}
}

// TestCutPoolWritesNoPodStatus checks a node whose link is cut does not
// write its pods' status: the node lifecycle controller's "not ready" stands
// until the link is restored, and then the simulator reports Ready again.
func TestCutPoolWritesNoPodStatus(t *testing.T) {
	pod := testPod()
	s, cl, rt, _ := newTestSimlet(t, pod)
	ctx := context.Background()
	req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "default", Name: "p"}}
	_, _ = s.Reconcile(ctx, req)
	rt.runners[0].mu.Lock()
	rt.runners[0].ready = true
	rt.runners[0].mu.Unlock()
	_, _ = s.Reconcile(ctx, req)
	ready := func() corev1.ConditionStatus {
		p := &corev1.Pod{}
		if err := cl.Get(ctx, req.NamespacedName, p); err != nil {
			t.Fatal(err)
		}
		return condStatus(p.Status)[corev1.PodReady]
	}
	if got := ready(); got != corev1.ConditionTrue {
		t.Fatalf("ready %v before the cut", got)
	}
	if err := s.CutPool("gpu", true); err != nil {
		t.Fatal(err)
	}
	// What the node lifecycle controller does to the pods of a lost node.
	p := &corev1.Pod{}
	_ = cl.Get(ctx, req.NamespacedName, p)
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == corev1.PodReady {
			p.Status.Conditions[i].Status = corev1.ConditionFalse
		}
	}
	if err := cl.Status().Update(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if got := ready(); got != corev1.ConditionFalse {
		t.Errorf("ready %v while the link is cut: the simulator wrote the status", got)
	}
	if rt.runners[0].stopped || len(rt.runners) != 1 {
		t.Error("the pod stopped or restarted while its node's link was cut")
	}
	_ = s.CutPool("gpu", false)
	_, _ = s.Reconcile(ctx, req)
	if got := ready(); got != corev1.ConditionTrue {
		t.Errorf("ready %v after the link came back", got)
	}
}
