package nodeautoscaler

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	schedulingv1alpha1 "github.com/spillway-io/spillway/apis/scheduling/v1alpha1"
	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
)

func TestPlanScaleUp(t *testing.T) {
	idc := makePool("idc", spillwayv1alpha1.NodePoolStatic).Obj()
	elastic := makePool("elastic", spillwayv1alpha1.NodePoolElastic).Size(0, 5).Obj()
	big := makePool("big", spillwayv1alpha1.NodePoolElastic).Size(0, 5).GPUs(4).Obj()
	small := makePool("small", spillwayv1alpha1.NodePoolElastic).Size(0, 3).Obj()
	tainted := makePool("tainted", spillwayv1alpha1.NodePoolElastic).Size(0, 5).Weight(50).Taint("dedicated").Obj()
	second := makePool("second", spillwayv1alpha1.NodePoolElastic).Size(0, 5).Obj()
	seedPolicy := policy(unitOf(schedulingv1alpha1.ResourceECS, "idc", nil), unitOf(schedulingv1alpha1.ResourceElastic, "elastic", nil))
	exceedMax := policy(unitOf(schedulingv1alpha1.ResourceElastic, "small", nil), unitOf(schedulingv1alpha1.ResourceElastic, "second", nil))
	exceedMax.Spec.WhenTryNextUnits = &schedulingv1alpha1.WhenTryNextUnits{Policy: schedulingv1alpha1.ExceedMax}
	twoUnitsDefault := exceedMax.DeepCopy()
	twoUnitsDefault.Spec.WhenTryNextUnits = nil
	unitMax := policy(unitOf(schedulingv1alpha1.ResourceECS, "idc", nil), unitOf(schedulingv1alpha1.ResourceElastic, "elastic", ptr.To[int32](2)))
	maxRes := policy(unitOf(schedulingv1alpha1.ResourceECS, "idc", nil), unitOf(schedulingv1alpha1.ResourceElastic, "elastic", nil))
	maxRes.Spec.Units[1].MaxResources = corev1.ResourceList{spillwayv1alpha1.ResourceGPU: resource.MustParse("3")}
	perRevision := policy(unitOf(schedulingv1alpha1.ResourceECS, "idc", nil), unitOf(schedulingv1alpha1.ResourceElastic, "elastic", ptr.To[int32](1)))
	perRevision.Spec.MatchLabelKeys = []string{"pod-template-hash"}
	timeoutPolicy := exceedMax.DeepCopy()
	timeoutPolicy.Spec.WhenTryNextUnits = &schedulingv1alpha1.WhenTryNextUnits{Policy: schedulingv1alpha1.TimeoutOrExceedMax, Timeout: "1m"}
	noTerminating := policy(unitOf(schedulingv1alpha1.ResourceECS, "idc", nil), unitOf(schedulingv1alpha1.ResourceElastic, "elastic", nil))
	noTerminating.Spec.WhenTryNextUnits = &schedulingv1alpha1.WhenTryNextUnits{Policy: schedulingv1alpha1.LackResourceAndNoTerminating}
	terminating := makePod("old").GPU(1).On("idc-0").Obj()
	terminating.DeletionTimestamp = &metav1.Time{Time: t0}
	other := policy(unitOf(schedulingv1alpha1.ResourceElastic, "second", nil))
	other.Name = "other"

	unitMax3 := policy(unitOf(schedulingv1alpha1.ResourceECS, "idc", nil), unitOf(schedulingv1alpha1.ResourceElastic, "elastic", ptr.To[int32](3)))
	markers := policy(unitOf(schedulingv1alpha1.ResourceECS, "idc", nil), unitOf(schedulingv1alpha1.ResourceElastic, "elastic", ptr.To[int32](1)))
	markers.Spec.Units[1].PodLabels = map[string]string{"spillway.io/burst": "true"}
	previous := policy(unitOf(schedulingv1alpha1.ResourceECS, "idc", nil), unitOf(schedulingv1alpha1.ResourceElastic, "elastic", ptr.To[int32](1)))
	previous.CreationTimestamp = metav1.NewTime(t0.Add(time.Hour))
	previous.Spec.IgnorePreviousPod = true
	countTerminating := policy(unitOf(schedulingv1alpha1.ResourceECS, "idc", nil), unitOf(schedulingv1alpha1.ResourceElastic, "elastic", ptr.To[int32](1)))
	countTerminating.Spec.IgnoreTerminatingPod = ptr.To(false)
	ignoreTerminating := countTerminating.DeepCopy()
	ignoreTerminating.Spec.IgnoreTerminatingPod = nil
	leaving := makePod("leaving").GPU(1).On("elastic-1").Obj()
	leaving.DeletionTimestamp = &metav1.Time{Time: t0}
	one := makePool("elastic", spillwayv1alpha1.NodePoolElastic).Size(0, 1).Obj()
	outsidePool := makePool("outside", spillwayv1alpha1.NodePoolElastic).Size(0, 5).Obj()
	preferOutside := policy(unitOf(schedulingv1alpha1.ResourceECS, "idc", nil), unitOf(schedulingv1alpha1.ResourceElastic, "elastic", nil))
	requiredUnits := preferOutside.DeepCopy()
	requiredUnits.Spec.Strategy = schedulingv1alpha1.StrategyRequired
	laterUnitRoom := policy(unitOf(schedulingv1alpha1.ResourceElastic, "small", nil), unitOf(schedulingv1alpha1.ResourceElastic, "big", nil))
	late := func(p *corev1.Pod) *corev1.Pod { p.CreationTimestamp = metav1.NewTime(t0.Add(2 * time.Hour)); return p }

	pending := func(n int, gpus int64) []*corev1.Pod {
		var out []*corev1.Pod
		for i := range n {
			out = append(out, makePod("p"+string(rune('a'+i))).GPU(gpus).Obj())
		}
		return out
	}
	pools := func(ps ...*spillwayv1alpha1.NodePool) []Pool {
		var out []Pool
		for _, p := range ps {
			out = append(out, Pool{NodePool: p})
		}
		return out
	}

	tests := []struct {
		name         string
		snap         Snapshot
		pending      []*corev1.Pod
		wantUps      []ScaleUp
		wantUnhelped []string
		wantWhere    map[string]Where
	}{{
		name: "seed: IDC full, two one-GPU pods buy exactly two elastic nodes",
		snap: Snapshot{Pools: pools(idc, elastic), Nodes: []*corev1.Node{nodeOf(idc, "idc-0")},
			Pods:     []*corev1.Pod{makePod("p0").GPU(1).On("idc-0").Obj()},
			Policies: []*schedulingv1alpha1.ResourcePolicy{seedPolicy}},
		pending: pending(2, 1),
		wantUps: []ScaleUp{{Pool: "elastic", Count: 2, Pods: []string{"default/pa", "default/pb"}}},
	}, {
		name:    "packing: 3+6x1 GPUs on 4-GPU nodes take three nodes",
		snap:    Snapshot{Pools: pools(big)},
		pending: append(pending(6, 1), makePod("z3").GPU(3).Obj()),
		wantUps: []ScaleUp{{Pool: "big", Count: 3, Pods: []string{"default/pa", "default/pb", "default/pc", "default/pd", "default/pe", "default/pf", "default/z3"}}},
	}, {
		name: "in flight: a registered node without GPUs and an unregistered instance are coming",
		snap: Snapshot{Pools: []Pool{{NodePool: elastic, Instances: instances("elastic", "elastic-1", "elastic-2")}},
			Nodes: []*corev1.Node{comingNodeOf(elastic, "elastic-1")}},
		pending:   pending(3, 1),
		wantUps:   []ScaleUp{{Pool: "elastic", Count: 1, Pods: []string{"default/pc"}}},
		wantWhere: map[string]Where{"default/pa": OnComing, "default/pb": OnComing, "default/pc": OnNew},
	}, {
		name: "in flight: a burst already covered buys nothing",
		snap: Snapshot{Pools: []Pool{{NodePool: elastic, Instances: instances("elastic", "elastic-1", "elastic-2")}},
			Pods: []*corev1.Pod{}},
		pending: pending(2, 1),
		wantUps: nil,
	}, {
		name:    "usable room: a pod that fits a usable node buys nothing",
		snap:    Snapshot{Pools: pools(big), Nodes: []*corev1.Node{nodeOf(big, "big-1")}},
		pending: pending(4, 1),
		wantUps: nil, wantWhere: map[string]Where{"default/pa": OnUsable},
	}, {
		name:         "pool max: never past maxSize counting the pool's instances",
		snap:         Snapshot{Pools: []Pool{{NodePool: small, Instances: instances("small", "small-1")}}, Nodes: []*corev1.Node{nodeOf(small, "small-1")}, Pods: []*corev1.Pod{makePod("x").GPU(1).On("small-1").Obj()}},
		pending:      pending(5, 1),
		wantUps:      []ScaleUp{{Pool: "small", Count: 2, Pods: []string{"default/pa", "default/pb"}}},
		wantUnhelped: []string{"default/pc", "default/pd", "default/pe"},
	}, {
		name: "unit max: the elastic unit holds at most two pods of the policy",
		snap: Snapshot{Pools: []Pool{{NodePool: idc}, {NodePool: elastic, Instances: instances("elastic", "elastic-1")}},
			Nodes:    []*corev1.Node{nodeOf(idc, "idc-0"), nodeOf(elastic, "elastic-1")},
			Pods:     []*corev1.Pod{makePod("p0").GPU(1).On("idc-0").Obj(), makePod("p1").GPU(1).On("elastic-1").Obj()},
			Policies: []*schedulingv1alpha1.ResourcePolicy{unitMax}},
		pending:      pending(3, 1),
		wantUps:      []ScaleUp{{Pool: "elastic", Count: 1, Pods: []string{"default/pa"}}},
		wantUnhelped: []string{"default/pb", "default/pc"},
	}, {
		name: "unit maxResources: the elastic unit holds at most three GPUs of the policy",
		snap: Snapshot{Pools: []Pool{{NodePool: idc}, {NodePool: elastic, Instances: instances("elastic", "elastic-1")}},
			Nodes:    []*corev1.Node{nodeOf(idc, "idc-0"), nodeOf(elastic, "elastic-1")},
			Pods:     []*corev1.Pod{makePod("p0").GPU(1).On("idc-0").Obj(), makePod("p1").GPU(1).On("elastic-1").Obj()},
			Policies: []*schedulingv1alpha1.ResourcePolicy{maxRes}},
		pending:      pending(3, 1),
		wantUps:      []ScaleUp{{Pool: "elastic", Count: 2, Pods: []string{"default/pa", "default/pb"}}},
		wantUnhelped: []string{"default/pc"},
	}, {
		name: "matchLabelKeys: each revision has its own unit max; a pod without the key is rejected",
		snap: Snapshot{Pools: []Pool{{NodePool: idc}, {NodePool: elastic, Instances: instances("elastic", "elastic-1")}},
			Nodes:    []*corev1.Node{nodeOf(idc, "idc-0"), nodeOf(elastic, "elastic-1")},
			Pods:     []*corev1.Pod{makePod("old0").GPU(1).Label("pod-template-hash", "v1").On("idc-0").Obj(), makePod("old1").GPU(1).Label("pod-template-hash", "v1").On("elastic-1").Obj()},
			Policies: []*schedulingv1alpha1.ResourcePolicy{perRevision}},
		pending: []*corev1.Pod{makePod("v1-a").GPU(1).Label("pod-template-hash", "v1").Obj(),
			makePod("v2-a").GPU(1).Label("pod-template-hash", "v2").Obj(), makePod("v2-b").GPU(1).Label("pod-template-hash", "v2").Obj(),
			makePod("nohash").GPU(1).Obj()},
		wantUps:      []ScaleUp{{Pool: "elastic", Count: 1, Pods: []string{"default/v2-a"}}},
		wantUnhelped: []string{"default/nohash", "default/v1-a", "default/v2-b"},
	}, {
		name:    "taints: untolerating pods skip the heavier tainted pool",
		snap:    Snapshot{Pools: pools(tainted, second)},
		pending: []*corev1.Pod{makePod("plain").GPU(1).Obj(), makePod("tol").GPU(1).Tolerate("dedicated").Obj()},
		wantUps: []ScaleUp{{Pool: "tainted", Count: 1, Pods: []string{"default/tol"}}, {Pool: "second", Count: 1, Pods: []string{"default/plain"}}},
	}, {
		name:    "node selector without a policy picks the matching pool",
		snap:    Snapshot{Pools: pools(elastic, second)},
		pending: []*corev1.Pod{makePod("sel").GPU(1).Selector(spillwayv1alpha1.LabelACKNodePoolID, "id-second").Obj()},
		wantUps: []ScaleUp{{Pool: "second", Count: 1, Pods: []string{"default/sel"}}},
	}, {
		name: "fallback: a pool backing off after a provider error gives way to the next unit",
		snap: Snapshot{Now: t0, Pools: []Pool{{NodePool: small, BackoffUntil: t0.Add(time.Minute)}, {NodePool: second}},
			Policies: []*schedulingv1alpha1.ResourcePolicy{twoUnitsDefault}},
		pending: pending(2, 1),
		wantUps: []ScaleUp{{Pool: "second", Count: 2, Pods: []string{"default/pa", "default/pb"}}},
	}, {
		name: "fallback: back-off over, the first unit is used again",
		snap: Snapshot{Now: t0.Add(time.Minute), Pools: []Pool{{NodePool: small, BackoffUntil: t0.Add(time.Minute)}, {NodePool: second}},
			Policies: []*schedulingv1alpha1.ResourcePolicy{twoUnitsDefault}},
		pending: pending(2, 1),
		wantUps: []ScaleUp{{Pool: "small", Count: 2, Pods: []string{"default/pa", "default/pb"}}},
	}, {
		name:    "unit order: the first unit fills to its pool's max, the rest go to the second",
		snap:    Snapshot{Pools: pools(small, second), Policies: []*schedulingv1alpha1.ResourcePolicy{twoUnitsDefault}},
		pending: pending(5, 1),
		wantUps: []ScaleUp{{Pool: "second", Count: 2, Pods: []string{"default/pd", "default/pe"}},
			{Pool: "small", Count: 3, Pods: []string{"default/pa", "default/pb", "default/pc"}}},
	}, {
		name: "ExceedMax: pods wait for a unit whose pool backs off instead of moving on",
		snap: Snapshot{Now: t0, Pools: []Pool{{NodePool: small, BackoffUntil: t0.Add(time.Minute)}, {NodePool: second}},
			Policies: []*schedulingv1alpha1.ResourcePolicy{exceedMax}},
		pending:      pending(1, 1),
		wantUnhelped: []string{"default/pa"},
	}, {
		name: "TimeoutOrExceedMax: a pod waits for its unit until the timeout",
		snap: Snapshot{Now: t0.Add(30 * time.Second), Pools: []Pool{{NodePool: small, BackoffUntil: t0.Add(time.Hour)}, {NodePool: second}},
			Policies: []*schedulingv1alpha1.ResourcePolicy{timeoutPolicy}},
		pending:      pending(1, 1),
		wantUnhelped: []string{"default/pa"},
	}, {
		name: "TimeoutOrExceedMax: after the timeout the next unit grows",
		snap: Snapshot{Now: t0.Add(time.Minute), Pools: []Pool{{NodePool: small, BackoffUntil: t0.Add(time.Hour)}, {NodePool: second}},
			Policies: []*schedulingv1alpha1.ResourcePolicy{timeoutPolicy}},
		pending: pending(1, 1),
		wantUps: []ScaleUp{{Pool: "second", Count: 1, Pods: []string{"default/pa"}}},
	}, {
		name: "LackResourceAndNoTerminating: no elastic node while an IDC pod terminates",
		snap: Snapshot{Pools: pools(idc, elastic), Nodes: []*corev1.Node{nodeOf(idc, "idc-0")},
			Pods: []*corev1.Pod{terminating}, Policies: []*schedulingv1alpha1.ResourcePolicy{noTerminating}},
		pending:      pending(1, 1),
		wantUnhelped: []string{"default/pa"},
	}, {
		name: "unit max stops a useless purchase: the cloud unit holds its max, the IDC is full",
		snap: Snapshot{Pools: []Pool{{NodePool: idc}, {NodePool: elastic, Instances: instances("elastic", "elastic-1", "elastic-2")}},
			Nodes: []*corev1.Node{nodeOf(idc, "idc-0"), nodeOf(elastic, "elastic-1"), nodeOf(elastic, "elastic-2")},
			Pods: []*corev1.Pod{makePod("p0").GPU(1).On("idc-0").Obj(), makePod("p1").GPU(1).On("elastic-1").Obj(),
				makePod("p2").GPU(1).On("elastic-2").Obj()},
			Policies: []*schedulingv1alpha1.ResourcePolicy{unitMax}},
		pending:      pending(2, 1),
		wantUnhelped: []string{"default/pa", "default/pb"},
	}, {
		name: "unit max counts the pods expected on coming nodes",
		snap: Snapshot{Pools: []Pool{{NodePool: idc}, {NodePool: elastic, Instances: instances("elastic", "elastic-1", "elastic-2")}},
			Nodes:    []*corev1.Node{nodeOf(idc, "idc-0"), nodeOf(elastic, "elastic-1")},
			Pods:     []*corev1.Pod{makePod("p0").GPU(1).On("idc-0").Obj(), makePod("p1").GPU(1).On("elastic-1").Obj()},
			Policies: []*schedulingv1alpha1.ResourcePolicy{unitMax3}},
		pending:      pending(3, 1),
		wantUps:      []ScaleUp{{Pool: "elastic", Count: 1, Pods: []string{"default/pb"}}},
		wantUnhelped: []string{"default/pc"},
		wantWhere:    map[string]Where{"default/pa": OnComing, "default/pb": OnNew},
	}, {
		name: "podLabels: a pod without the unit's marker does not count; planned pods carry it",
		snap: Snapshot{Pools: []Pool{{NodePool: idc}, {NodePool: elastic, Instances: instances("elastic", "elastic-1")}},
			Nodes:    []*corev1.Node{nodeOf(idc, "idc-0"), nodeOf(elastic, "elastic-1")},
			Pods:     []*corev1.Pod{makePod("p0").GPU(1).On("idc-0").Obj(), makePod("unmarked").GPU(1).On("elastic-1").Obj()},
			Policies: []*schedulingv1alpha1.ResourcePolicy{markers}},
		pending:      pending(2, 1),
		wantUps:      []ScaleUp{{Pool: "elastic", Count: 1, Pods: []string{"default/pa"}}},
		wantUnhelped: []string{"default/pb"},
	}, {
		name: "ignorePreviousPod: pods older than the policy do not count",
		snap: Snapshot{Pools: []Pool{{NodePool: idc}, {NodePool: elastic, Instances: instances("elastic", "elastic-1")}},
			Nodes:    []*corev1.Node{nodeOf(idc, "idc-0"), nodeOf(elastic, "elastic-1")},
			Pods:     []*corev1.Pod{makePod("p0").GPU(1).On("idc-0").Obj(), makePod("old").GPU(1).On("elastic-1").Obj()},
			Policies: []*schedulingv1alpha1.ResourcePolicy{previous}},
		pending:      []*corev1.Pod{late(makePod("pa").GPU(1).Obj()), late(makePod("pb").GPU(1).Obj())},
		wantUps:      []ScaleUp{{Pool: "elastic", Count: 1, Pods: []string{"default/pa"}}},
		wantUnhelped: []string{"default/pb"},
	}, {
		name: "ignoreTerminatingPod false: a terminating pod still counts toward max",
		snap: Snapshot{Pools: []Pool{{NodePool: idc}, {NodePool: elastic, Instances: instances("elastic", "elastic-1")}},
			Nodes:    []*corev1.Node{nodeOf(idc, "idc-0"), nodeOf(elastic, "elastic-1")},
			Pods:     []*corev1.Pod{makePod("p0").GPU(1).On("idc-0").Obj(), leaving},
			Policies: []*schedulingv1alpha1.ResourcePolicy{countTerminating}},
		pending:      pending(1, 1),
		wantUnhelped: []string{"default/pa"},
	}, {
		name: "ignoreTerminatingPod (default): a terminating pod does not count",
		snap: Snapshot{Pools: []Pool{{NodePool: idc}, {NodePool: elastic, Instances: instances("elastic", "elastic-1")}},
			Nodes:    []*corev1.Node{nodeOf(idc, "idc-0"), nodeOf(elastic, "elastic-1")},
			Pods:     []*corev1.Pod{makePod("p0").GPU(1).On("idc-0").Obj(), leaving},
			Policies: []*schedulingv1alpha1.ResourcePolicy{ignoreTerminating}},
		pending: pending(1, 1),
		wantUps: []ScaleUp{{Pool: "elastic", Count: 1, Pods: []string{"default/pa"}}},
	}, {
		name: "prefer: a pool outside every unit is used once the units' pools are at max",
		snap: Snapshot{Pools: []Pool{{NodePool: idc}, {NodePool: one}, {NodePool: outsidePool}},
			Nodes: []*corev1.Node{nodeOf(idc, "idc-0")}, Pods: []*corev1.Pod{makePod("p0").GPU(1).On("idc-0").Obj()},
			Policies: []*schedulingv1alpha1.ResourcePolicy{preferOutside}},
		pending: pending(3, 1),
		wantUps: []ScaleUp{{Pool: "elastic", Count: 1, Pods: []string{"default/pa"}}, {Pool: "outside", Count: 2, Pods: []string{"default/pb", "default/pc"}}},
	}, {
		name: "required: never a pool outside the units",
		snap: Snapshot{Pools: []Pool{{NodePool: idc}, {NodePool: one}, {NodePool: outsidePool}},
			Nodes: []*corev1.Node{nodeOf(idc, "idc-0")}, Pods: []*corev1.Pod{makePod("p0").GPU(1).On("idc-0").Obj()},
			Policies: []*schedulingv1alpha1.ResourcePolicy{requiredUnits}},
		pending:      pending(3, 1),
		wantUps:      []ScaleUp{{Pool: "elastic", Count: 1, Pods: []string{"default/pa"}}},
		wantUnhelped: []string{"default/pb", "default/pc"},
	}, {
		name: "scheduler order: a usable node of a later unit takes the pod before a node is bought for an earlier unit",
		snap: Snapshot{Pools: []Pool{{NodePool: small}, {NodePool: big, Instances: instances("big", "big-1")}},
			Nodes: []*corev1.Node{nodeOf(big, "big-1")}, Policies: []*schedulingv1alpha1.ResourcePolicy{laterUnitRoom}},
		pending:   pending(1, 1),
		wantUps:   nil,
		wantWhere: map[string]Where{"default/pa": OnUsable},
	}, {
		name:         "a pod bigger than any node is not helped",
		snap:         Snapshot{Pools: pools(elastic)},
		pending:      pending(1, 2),
		wantUnhelped: []string{"default/pa"},
	}, {
		name:         "a pod matched by two policies is not helped",
		snap:         Snapshot{Pools: pools(second), Policies: []*schedulingv1alpha1.ResourcePolicy{twoUnitsDefault, other}},
		pending:      pending(1, 1),
		wantUnhelped: []string{"default/pa"},
	}, {
		name:         "static pools never grow",
		snap:         Snapshot{Pools: pools(idc), Nodes: []*corev1.Node{nodeOf(idc, "idc-0")}, Pods: []*corev1.Pod{makePod("p0").GPU(1).On("idc-0").Obj()}},
		pending:      pending(1, 1),
		wantUnhelped: []string{"default/pa"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := PlanScaleUp(tc.snap, tc.pending)
			if diff := cmp.Diff(tc.wantUps, got.ScaleUps); diff != "" {
				t.Errorf("scale-ups (-want,+got):\n%s", diff)
			}
			var unhelped []string
			for _, u := range got.Unhelped {
				unhelped = append(unhelped, u.Pod)
				if u.Reason == "" {
					t.Errorf("pod %s unhelped without a reason", u.Pod)
				}
			}
			if diff := cmp.Diff(tc.wantUnhelped, unhelped); diff != "" {
				t.Errorf("unhelped pods (-want,+got):\n%s\nreasons: %+v", diff, got.Unhelped)
			}
			where := map[string]Where{}
			for _, p := range got.Placements {
				if _, ok := tc.wantWhere[p.Pod]; ok {
					where[p.Pod] = p.Where
				}
			}
			if len(tc.wantWhere) > 0 {
				if diff := cmp.Diff(tc.wantWhere, where); diff != "" {
					t.Errorf("placements (-want,+got):\n%s", diff)
				}
			}
		})
	}
}

// TestUnitMaxStopsUselessPurchase is the known weakness of a node autoscaler
// that does not see the policy: with the cloud unit at its max, a pending
// pod makes it buy a node the scheduler will never use. The same snapshot
// without the unit max does buy, so the max is what stops it.
func TestUnitMaxStopsUselessPurchase(t *testing.T) {
	idc := makePool("idc", spillwayv1alpha1.NodePoolStatic).Obj()
	el := makePool("elastic", spillwayv1alpha1.NodePoolElastic).Size(0, 10).Obj()
	withMax := policy(unitOf(schedulingv1alpha1.ResourceECS, "idc", nil), unitOf(schedulingv1alpha1.ResourceElastic, "elastic", ptr.To[int32](2)))
	withMax.Spec.Strategy = schedulingv1alpha1.StrategyRequired
	snap := Snapshot{Now: t0, Pools: []Pool{{NodePool: idc}, {NodePool: el, Instances: instances("elastic", "e1", "e2")}},
		Nodes: []*corev1.Node{nodeOf(idc, "idc-0"), nodeOf(el, "e1"), nodeOf(el, "e2")},
		Pods: []*corev1.Pod{makePod("p0").GPU(1).On("idc-0").Obj(), makePod("p1").GPU(1).On("e1").Obj(),
			makePod("p2").GPU(1).On("e2").Obj()},
		Policies: []*schedulingv1alpha1.ResourcePolicy{withMax}}
	pending := []*corev1.Pod{makePod("p3").GPU(1).Obj()}

	got := PlanScaleUp(snap, pending)
	if got.NewNodes() != 0 {
		t.Fatalf("bought %d node(s) for a pod the scheduler will not place (unit at max): %+v", got.NewNodes(), got.ScaleUps)
	}
	if len(got.Unhelped) != 1 || !strings.Contains(got.Unhelped[0].Reason, "max 2") {
		t.Fatalf("want the pod unhelped because unit 1 holds its max 2, got %+v", got.Unhelped)
	}

	noMax := withMax.DeepCopy()
	noMax.Spec.Units[1].Max = nil
	snap.Policies = []*schedulingv1alpha1.ResourcePolicy{noMax}
	if n := PlanScaleUp(snap, pending).NewNodes(); n != 1 {
		t.Fatalf("without the unit max the pod should buy 1 node, bought %d", n)
	}
}

func TestPlanScaleUpReasons(t *testing.T) {
	small := makePool("small", spillwayv1alpha1.NodePoolElastic).Size(0, 1).Obj()
	got := PlanScaleUp(Snapshot{Pools: []Pool{{NodePool: small}}}, []*corev1.Pod{makePod("a").GPU(1).Obj(), makePod("b").GPU(1).Obj()})
	if len(got.Unhelped) != 1 || !strings.Contains(got.Unhelped[0].Reason, "at max size 1") {
		t.Fatalf("want one pod unhelped because the pool is at max, got %+v", got.Unhelped)
	}
}

func TestPlanScaleUpDeterministic(t *testing.T) {
	big := makePool("big", spillwayv1alpha1.NodePoolElastic).Size(0, 50).GPUs(8).Obj()
	var pods []*corev1.Pod
	for i := range 40 {
		pods = append(pods, makePod("p"+string(rune('A'+i))).GPU(int64(1+i%4)).Obj())
	}
	first := PlanScaleUp(Snapshot{Pools: []Pool{{NodePool: big}}}, pods)
	for i := range 5 {
		rev := append([]*corev1.Pod(nil), pods...)
		for l, r := 0, len(rev)-1; l < r; l, r = l+1, r-1 {
			rev[l], rev[r] = rev[r], rev[l]
		}
		if i%2 == 0 {
			pods = rev
		}
		if diff := cmp.Diff(first, PlanScaleUp(Snapshot{Pools: []Pool{{NodePool: big}}}, pods)); diff != "" {
			t.Fatalf("plan depends on input order (-want,+got):\n%s", diff)
		}
	}
	// 40 pods of 1..4 GPUs = 100 GPUs on 8-GPU nodes: at least 13 nodes.
	if n := first.NewNodes(); n < 13 || n > 14 {
		t.Errorf("first-fit decreasing used %d nodes for 100 GPUs on 8-GPU nodes, want 13 or 14", n)
	}
}

func BenchmarkPlanScaleUp(b *testing.B) {
	idc := makePool("idc", spillwayv1alpha1.NodePoolStatic).GPUs(8).Obj()
	elastic := makePool("elastic", spillwayv1alpha1.NodePoolElastic).Size(0, 1000).GPUs(8).Obj()
	s := Snapshot{Pools: []Pool{{NodePool: idc}, {NodePool: elastic}},
		Policies: []*schedulingv1alpha1.ResourcePolicy{policy(unitOf(schedulingv1alpha1.ResourceECS, "idc", nil), unitOf(schedulingv1alpha1.ResourceElastic, "elastic", nil))}}
	for i := range 200 {
		name := "idc-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		s.Nodes = append(s.Nodes, nodeOf(idc, name))
		s.Pods = append(s.Pods, makePod("run-"+name).GPU(8).On(name).Obj())
	}
	var pending []*corev1.Pod
	for i := range 500 {
		pending = append(pending, makePod("pend-"+string(rune('a'+i%26))+string(rune('a'+i/26))).GPU(int64(1+i%2)).Obj())
	}
	for b.Loop() {
		PlanScaleUp(s, pending)
	}
}
