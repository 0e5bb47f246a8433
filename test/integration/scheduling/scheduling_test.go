package scheduling

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	schedulingv1 "k8s.io/api/scheduling/v1"

	schedulingv1alpha1 "github.com/spillway-io/spillway/apis/scheduling/v1alpha1"
	"github.com/spillway-io/spillway/pkg/cloudprovider/fake"
)

const (
	poolKey = "alibabacloud.com/nodepool-id"
	gpu     = corev1.ResourceName("nvidia.com/gpu")
)

// addNode registers a Ready node of pool with gpus GPUs; it is deleted when
// the test ends.
func addNode(t *testing.T, name, pool string, gpus int64) {
	t.Helper()
	alloc := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8"), corev1.ResourceMemory: resource.MustParse("32Gi"),
		corev1.ResourcePods: resource.MustParse("110"), gpu: *resource.NewQuantity(gpus, resource.DecimalSI)}
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{poolKey: pool, corev1.LabelHostname: name}},
		Status: corev1.NodeStatus{Capacity: alloc, Allocatable: alloc,
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}}}
	if err := fake.New(env.Client).RegisterNode(context.Background(), n); err != nil {
		t.Fatalf("registering node %s: %v", name, err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), n) })
}

func namespace(t *testing.T, name string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	create(t, ns)
	return name
}

func create(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := env.Client.Create(context.Background(), o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

func policy(ns, name string, units ...schedulingv1alpha1.Unit) *schedulingv1alpha1.ResourcePolicy {
	return &schedulingv1alpha1.ResourcePolicy{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: schedulingv1alpha1.ResourcePolicySpec{Selector: map[string]string{"app": "isvc.qwen-predictor"}, Units: units}}
}

func unit(kind schedulingv1alpha1.ResourceKind, pool string) schedulingv1alpha1.Unit {
	return schedulingv1alpha1.Unit{Resource: kind, NodeSelector: map[string]string{poolKey: pool}}
}

func podSpec(gpus int64) corev1.PodSpec {
	return corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To[int64](0), Containers: []corev1.Container{{Name: "vllm", Image: "vllm/vllm-openai:v0.4.1",
		Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{gpu: *resource.NewQuantity(gpus, resource.DecimalSI)},
			Limits: corev1.ResourceList{gpu: *resource.NewQuantity(gpus, resource.DecimalSI)}}}}}
}

func pod(ns, name string, gpus int64) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "isvc.qwen-predictor"}}, Spec: podSpec(gpus)}
}

// placement maps pod name -> node name ("" pending) for the app's pods.
func placement(ctx context.Context, ns string) (map[string]string, error) {
	var pods corev1.PodList
	if err := env.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"app": "isvc.qwen-predictor"}); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			out[p.Name] = p.Spec.NodeName
		}
	}
	return out, nil
}

func nodesUsed(pl map[string]string) []string {
	var out []string
	for _, n := range pl {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// unschedulableMessage is the PodScheduled=False message of a pod.
func unschedulableMessage(ctx context.Context, ns, name string) (string, error) {
	var p corev1.Pod
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &p); err != nil {
		return "", err
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return c.Message, nil
		}
	}
	return "", nil
}

func waitMessage(t *testing.T, ns, name string, want ...string) {
	t.Helper()
	var last string
	eventually(t, 20*time.Second, fmt.Sprintf("pod %s unschedulable with %q", name, want), func(ctx context.Context) (bool, error) {
		msg, err := unschedulableMessage(ctx, ns, name)
		last = msg
		for _, w := range want {
			if !strings.Contains(msg, w) {
				return false, err
			}
		}
		return err == nil, err
	})
	t.Logf("pod %s: %s", name, last)
}

// waitEvent waits for an event of reason on pod name whose note contains
// every want.
func waitEvent(t *testing.T, ns, name, reason string, want ...string) {
	t.Helper()
	eventually(t, 20*time.Second, fmt.Sprintf("a %s event on pod %s with %q", reason, name, want), func(ctx context.Context) (bool, error) {
		evs, err := env.Clientset.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
	next:
		for _, e := range evs.Items {
			if e.Reason != reason || e.Regarding.Name != name {
				continue
			}
			for _, w := range want {
				if !strings.Contains(e.Note, w) {
					continue next
				}
			}
			t.Logf("event %s on %s: %s", reason, name, e.Note)
			return true, nil
		}
		return false, nil
	})
}

// TestSeedScenario: IDC node with 1 GPU, elastic pool without nodes, three
// one-GPU replicas: one on IDC, two Pending with a readable reason; two
// elastic nodes arrive and take them; scaled to one, the IDC pod remains.
func TestSeedScenario(t *testing.T) {
	ns := namespace(t, "seed")
	addNode(t, "seed-idc-0", "np-seed-idc", 1)
	create(t, policy(ns, "qwen-chat", unit(schedulingv1alpha1.ResourceECS, "np-seed-idc"), unit(schedulingv1alpha1.ResourceElastic, "np-seed-elastic")))
	labels := map[string]string{"app": "isvc.qwen-predictor"}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "qwen-chat-predictor", Namespace: ns},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](3), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: podSpec(1)}}}
	create(t, dep)

	var pending []string
	eventually(t, 30*time.Second, "one pod on the IDC node, two pending", func(ctx context.Context) (bool, error) {
		pl, err := placement(ctx, ns)
		pending = pending[:0]
		for name, node := range pl {
			if node == "" {
				pending = append(pending, name)
			}
		}
		return err == nil && cmp.Equal([]string{"", "", "seed-idc-0"}, nodesUsed(pl)), err
	})
	for _, p := range pending {
		waitMessage(t, ns, p, "Insufficient nvidia.com/gpu")
	}

	addNode(t, "seed-elastic-0", "np-seed-elastic", 1)
	addNode(t, "seed-elastic-1", "np-seed-elastic", 1)
	eventually(t, 30*time.Second, "pending pods on the elastic nodes", func(ctx context.Context) (bool, error) {
		pl, err := placement(ctx, ns)
		return err == nil && cmp.Equal([]string{"seed-elastic-0", "seed-elastic-1", "seed-idc-0"}, nodesUsed(pl)), err
	})
	// Make the IDC pod the newest, so that the ReplicaSet's own ranking
	// (newest first) would remove it: only the deletion cost keeps it.
	pl, err := placement(context.Background(), ns)
	if err != nil {
		t.Fatal(err)
	}
	for name, node := range pl {
		if node == "seed-idc-0" {
			if err := env.Client.Delete(context.Background(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
				client.GracePeriodSeconds(0)); err != nil {
				t.Fatal(err)
			}
			eventually(t, 30*time.Second, "a new pod on the IDC node", func(ctx context.Context) (bool, error) {
				pl, err := placement(ctx, ns)
				_, old := pl[name]
				return err == nil && !old && cmp.Equal([]string{"seed-elastic-0", "seed-elastic-1", "seed-idc-0"}, nodesUsed(pl)), err
			})
		}
	}
	// The controller writes the costs: IDC 200, elastic 100.
	eventually(t, 20*time.Second, "deletion costs written", func(ctx context.Context) (bool, error) {
		var pods corev1.PodList
		if err := env.Client.List(ctx, &pods, client.InNamespace(ns)); err != nil {
			return false, err
		}
		got := map[string]string{}
		for _, p := range pods.Items {
			got[p.Spec.NodeName] = p.Annotations["controller.kubernetes.io/pod-deletion-cost"]
		}
		return cmp.Equal(map[string]string{"seed-idc-0": "200", "seed-elastic-0": "100", "seed-elastic-1": "100"}, got), nil
	})
	eventually(t, 20*time.Second, "policy status counts pods per unit", func(ctx context.Context) (bool, error) {
		var rp schedulingv1alpha1.ResourcePolicy
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "qwen-chat"}, &rp); err != nil {
			return false, err
		}
		return len(rp.Status.Units) == 2 && rp.Status.Units[0].Pods == 1 && rp.Status.Units[1].Pods == 2 && rp.Status.Pending == 0, nil
	})

	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var d appsv1.Deployment
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(dep), &d); err != nil {
			return err
		}
		d.Spec.Replicas = ptr.To[int32](1)
		return env.Client.Update(context.Background(), &d)
	})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "only the IDC pod left", func(ctx context.Context) (bool, error) {
		pl, err := placement(ctx, ns)
		return err == nil && cmp.Equal([]string{"seed-idc-0"}, nodesUsed(pl)), err
	})
}

// TestRequiredVsPrefer: with both units full, prefer uses another node,
// required leaves the pod pending with the policy's reason.
func TestRequiredVsPrefer(t *testing.T) {
	addNode(t, "rp-idc-0", "np-rp-idc", 1)
	addNode(t, "rp-other-0", "np-rp-other", 4)
	for _, strategy := range []schedulingv1alpha1.Strategy{schedulingv1alpha1.StrategyPrefer, schedulingv1alpha1.StrategyRequired} {
		t.Run(string(strategy), func(t *testing.T) {
			ns := namespace(t, "strategy-"+string(strategy))
			rp := policy(ns, "p", unit(schedulingv1alpha1.ResourceECS, "np-rp-idc"))
			rp.Spec.Strategy = strategy
			rp.Spec.Units[0].Max = ptr.To[int32](1)
			create(t, rp, pod(ns, "a", 1))
			eventually(t, 20*time.Second, "pod a on the IDC node", func(ctx context.Context) (bool, error) {
				pl, err := placement(ctx, ns)
				return err == nil && pl["a"] == "rp-idc-0", err
			})
			create(t, pod(ns, "b", 1))
			if strategy == schedulingv1alpha1.StrategyPrefer {
				eventually(t, 20*time.Second, "pod b on the other node", func(ctx context.Context) (bool, error) {
					pl, err := placement(ctx, ns)
					return err == nil && pl["b"] == "rp-other-0", err
				})
			} else {
				waitMessage(t, ns, "b", "ResourcePolicy "+ns+"/p", "holds 1 pods, max 1")
			}
			_ = env.Client.DeleteAllOf(context.Background(), &corev1.Pod{}, client.InNamespace(ns), client.GracePeriodSeconds(0))
			eventually(t, 20*time.Second, "pods gone", func(ctx context.Context) (bool, error) {
				pl, err := placement(ctx, ns)
				return err == nil && len(pl) == 0, err
			})
		})
	}
}

// TestMaxPerUnit: max 1 on a roomy IDC node sends the second pod to the
// elastic unit; podLabels of the unit are written on the pod.
func TestMaxPerUnit(t *testing.T) {
	ns := namespace(t, "max")
	addNode(t, "max-idc-0", "np-max-idc", 4)
	addNode(t, "max-el-0", "np-max-el", 4)
	rp := policy(ns, "p", unit(schedulingv1alpha1.ResourceECS, "np-max-idc"), unit(schedulingv1alpha1.ResourceElastic, "np-max-el"))
	rp.Spec.Strategy = schedulingv1alpha1.StrategyRequired
	rp.Spec.Units[0].Max = ptr.To[int32](1)
	rp.Spec.Units[1].PodLabels = map[string]string{"spillway.io/unit": "elastic"}
	rp.Spec.Units[1].PodAnnotations = map[string]string{"example.com/billing": "cloud"}
	create(t, rp, pod(ns, "a", 1))
	eventually(t, 20*time.Second, "pod a on IDC", func(ctx context.Context) (bool, error) {
		pl, err := placement(ctx, ns)
		return err == nil && pl["a"] == "max-idc-0", err
	})
	create(t, pod(ns, "b", 1))
	eventually(t, 20*time.Second, "pod b on elastic with the unit's label", func(ctx context.Context) (bool, error) {
		var p corev1.Pod
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "b"}, &p); err != nil {
			return false, err
		}
		return p.Spec.NodeName == "max-el-0" && p.Labels["spillway.io/unit"] == "elastic", nil
	})
	// The Binding carried unit 1's podAnnotations onto b only.
	for name, want := range map[string]string{"a": "", "b": "cloud"} {
		var p corev1.Pod
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &p); err != nil {
			t.Fatal(err)
		}
		if got := p.Annotations["example.com/billing"]; got != want {
			t.Errorf("pod %s: annotation example.com/billing = %q, want %q (annotations %v)", name, got, want, p.Annotations)
		}
	}
	// The spill-over event on the policy.
	eventually(t, 20*time.Second, "a ResourcePolicySpillOver event on the policy", func(ctx context.Context) (bool, error) {
		evs, err := env.Clientset.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, e := range evs.Items {
			if e.Reason == "ResourcePolicySpillOver" && e.Regarding.Kind == "ResourcePolicy" && e.Regarding.Name == "p" &&
				strings.Contains(e.Note, "pods spill over to unit 1 (elastic): unit 0 (ecs) holds 1 pods, max 1") {
				t.Logf("event: %s", e.Note)
				return true, nil
			}
		}
		return false, nil
	})
	// Once the manager wrote the policy's status (a new resourceVersion), a
	// second spill folds into the same Event as a series of 2.
	created := rp.ResourceVersion
	eventually(t, 20*time.Second, "the policy's status written", func(ctx context.Context) (bool, error) {
		var cur schedulingv1alpha1.ResourcePolicy
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(rp), &cur)
		return err == nil && cur.ResourceVersion != created, err
	})
	create(t, pod(ns, "c", 1))
	eventually(t, 20*time.Second, "one ResourcePolicySpillOver Event with a series of 2", func(ctx context.Context) (bool, error) {
		evs, err := env.Clientset.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		n, count := 0, int32(0)
		for _, e := range evs.Items {
			if e.Reason == "ResourcePolicySpillOver" {
				n++
				if e.Series != nil {
					count = e.Series.Count
				}
			}
		}
		if n > 1 {
			return false, fmt.Errorf("%d ResourcePolicySpillOver Events, want one series", n)
		}
		return n == 1 && count == 2, nil
	})
}

// TestTimeoutOrExceedMax: the pod waits for the full IDC unit, then moves on
// to the elastic unit after the timeout.
func TestTimeoutOrExceedMax(t *testing.T) {
	ns := namespace(t, "timeout")
	addNode(t, "to-idc-0", "np-to-idc", 1)
	addNode(t, "to-el-0", "np-to-el", 1)
	rp := policy(ns, "p", unit(schedulingv1alpha1.ResourceECS, "np-to-idc"), unit(schedulingv1alpha1.ResourceElastic, "np-to-el"))
	rp.Spec.WhenTryNextUnits = &schedulingv1alpha1.WhenTryNextUnits{Policy: schedulingv1alpha1.TimeoutOrExceedMax, Timeout: "4s"}
	create(t, rp, pod(ns, "a", 1))
	eventually(t, 20*time.Second, "pod a on IDC", func(ctx context.Context) (bool, error) {
		pl, err := placement(ctx, ns)
		return err == nil && pl["a"] == "to-idc-0", err
	})
	b := pod(ns, "b", 1)
	create(t, b)
	waitMessage(t, ns, "b", "waiting at unit 0", "TimeoutOrExceedMax")
	waitEvent(t, ns, "b", "ResourcePolicyWaiting", "waiting at unit 0 (ecs)", "TimeoutOrExceedMax", "4s after creation")
	eventually(t, 20*time.Second, "pod b on elastic after the timeout", func(ctx context.Context) (bool, error) {
		var p corev1.Pod
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(b), &p); err != nil {
			return false, err
		}
		if p.Spec.NodeName == "" {
			return false, nil
		}
		if waited := time.Since(p.CreationTimestamp.Time); waited < 3*time.Second {
			return false, fmt.Errorf("pod b scheduled after %s, before the 4s timeout", waited)
		}
		return p.Spec.NodeName == "to-el-0", nil
	})
}

// TestBadInput: two policies matching a pod, a pod missing a matchLabelKeys
// label, and invalid policies rejected by the API server.
func TestBadInput(t *testing.T) {
	ns := namespace(t, "bad")
	addNode(t, "bad-0", "np-bad", 4)
	create(t, policy(ns, "one", unit(schedulingv1alpha1.ResourceECS, "np-bad")), policy(ns, "two", unit(schedulingv1alpha1.ResourceECS, "np-bad")), pod(ns, "a", 1))
	waitMessage(t, ns, "a", "matched by 2 ResourcePolicies", ns+"/one", ns+"/two")
	waitEvent(t, ns, "a", "ResourcePolicyConflict", "matched by 2 ResourcePolicies", ns+"/one", ns+"/two")

	ns2 := namespace(t, "bad-keys")
	rp := policy(ns2, "keyed", unit(schedulingv1alpha1.ResourceECS, "np-bad"))
	rp.Spec.MatchLabelKeys = []string{"pod-template-hash"}
	rp.Spec.Units[0].Max = ptr.To[int32](2)
	create(t, rp, pod(ns2, "a", 1))
	waitMessage(t, ns2, "a", `lacks label "pod-template-hash"`, "matchLabelKeys of ResourcePolicy "+ns2+"/keyed")
	waitEvent(t, ns2, "a", "ResourcePolicyMissingLabel", `lacks label "pod-template-hash"`)

	invalid := map[string]func(*schedulingv1alpha1.ResourcePolicy){
		"no units":     func(p *schedulingv1alpha1.ResourcePolicy) { p.Spec.Units = nil },
		"bad strategy": func(p *schedulingv1alpha1.ResourcePolicy) { p.Spec.Strategy = "sometimes" },
		"bad resource": func(p *schedulingv1alpha1.ResourcePolicy) { p.Spec.Units[0].Resource = "gpu" },
		"negative max": func(p *schedulingv1alpha1.ResourcePolicy) { p.Spec.Units[0].Max = ptr.To[int32](-1) },
		"bad timeout": func(p *schedulingv1alpha1.ResourcePolicy) {
			p.Spec.WhenTryNextUnits = &schedulingv1alpha1.WhenTryNextUnits{Timeout: "soon"}
		},
		"keys without max": func(p *schedulingv1alpha1.ResourcePolicy) { p.Spec.MatchLabelKeys = []string{"pod-template-hash"} },
		"previous, no max": func(p *schedulingv1alpha1.ResourcePolicy) { p.Spec.IgnorePreviousPod = true },
		"bad try-next": func(p *schedulingv1alpha1.ResourcePolicy) {
			p.Spec.WhenTryNextUnits = &schedulingv1alpha1.WhenTryNextUnits{Policy: "Never"}
		},
	}
	for name, mutate := range invalid {
		p := policy(ns2, "invalid", unit(schedulingv1alpha1.ResourceECS, "np-bad"))
		mutate(p)
		if err := env.Client.Create(context.Background(), p); err == nil {
			t.Errorf("%s: the API server accepted the policy", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// TestPreemptPolicy: an IDC node holding a low-priority pod of the policy
// and an elastic node with room. A high-priority pod goes to the elastic
// node under AfterAllUnits (preemption only once every unit failed), but
// preempts the low-priority pod and takes the IDC node under BeforeNextUnit.
// Under BeforeNextUnit a pod that cannot preempt (same priority) still moves
// on to the elastic unit.
func TestPreemptPolicy(t *testing.T) {
	for _, pc := range []*schedulingv1.PriorityClass{
		{ObjectMeta: metav1.ObjectMeta{Name: "spillway-test-low"}, Value: 10},
		{ObjectMeta: metav1.ObjectMeta{Name: "spillway-test-high"}, Value: 1000},
	} {
		create(t, pc)
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), pc) })
	}
	withPriority := func(p *corev1.Pod, class string) *corev1.Pod {
		p.Spec.PriorityClassName = class
		return p
	}
	for _, preempt := range []schedulingv1alpha1.PreemptPolicy{schedulingv1alpha1.PreemptAfterAllUnits, schedulingv1alpha1.PreemptBeforeNextUnit} {
		t.Run(string(preempt), func(t *testing.T) {
			name := strings.ToLower(string(preempt))
			ns := namespace(t, "preempt-"+name)
			idc, el := "pre-"+name+"-idc", "pre-"+name+"-el"
			addNode(t, idc+"-0", "np-"+idc, 1)
			addNode(t, el+"-0", "np-"+el, 1)
			rp := policy(ns, "p", unit(schedulingv1alpha1.ResourceECS, "np-"+idc), unit(schedulingv1alpha1.ResourceElastic, "np-"+el))
			rp.Spec.PreemptPolicy = preempt
			create(t, rp, withPriority(pod(ns, "low", 1), "spillway-test-low"))
			eventually(t, 20*time.Second, "the low-priority pod on IDC", func(ctx context.Context) (bool, error) {
				pl, err := placement(ctx, ns)
				return err == nil && pl["low"] == idc+"-0", err
			})
			create(t, withPriority(pod(ns, "high", 1), "spillway-test-high"))
			if preempt == schedulingv1alpha1.PreemptAfterAllUnits {
				eventually(t, 20*time.Second, "the high-priority pod on elastic, nothing preempted", func(ctx context.Context) (bool, error) {
					pl, err := placement(ctx, ns)
					return err == nil && cmp.Equal(map[string]string{"low": idc + "-0", "high": el + "-0"}, pl), err
				})
				return
			}
			eventually(t, 30*time.Second, "the high-priority pod on IDC, the low-priority one preempted", func(ctx context.Context) (bool, error) {
				pl, err := placement(ctx, ns)
				return err == nil && cmp.Equal(map[string]string{"high": idc + "-0"}, pl), err
			})
			// Same priority as the pod on IDC: no victim there, so it moves on.
			create(t, withPriority(pod(ns, "peer", 1), "spillway-test-high"))
			eventually(t, 30*time.Second, "the peer pod on elastic", func(ctx context.Context) (bool, error) {
				pl, err := placement(ctx, ns)
				return err == nil && pl["peer"] == el+"-0", err
			})
			waitEvent(t, ns, "peer", "ResourcePolicyNextUnit", "no node of unit 0 (ecs) fits", "BeforeNextUnit")
		})
	}
}
