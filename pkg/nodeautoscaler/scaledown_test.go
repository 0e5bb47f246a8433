package nodeautoscaler

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	schedulingv1alpha1 "github.com/spillway-io/spillway/apis/scheduling/v1alpha1"
	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
)

func TestPlanScaleDown(t *testing.T) {
	idc := makePool("idc", spillwayv1alpha1.NodePoolStatic).Obj()
	el := makePool("elastic", spillwayv1alpha1.NodePoolElastic).Size(0, 5).ScaleDown(time.Minute, 2*time.Minute).Obj()
	min1 := makePool("elastic", spillwayv1alpha1.NodePoolElastic).Size(1, 5).ScaleDown(time.Minute, 2*time.Minute).Obj()
	big := makePool("big", spillwayv1alpha1.NodePoolElastic).Size(0, 5).GPUs(4).ScaleDown(time.Minute, 0).Obj()
	off := makePool("elastic", spillwayv1alpha1.NodePoolElastic).Size(0, 5).ScaleDown(time.Minute, 0).Obj()
	off.Spec.ScaleDown.Enabled = ptr.To(false)

	spare := makePool("spare", spillwayv1alpha1.NodePoolStatic).Obj()
	onlyBig := policy(unitOf(schedulingv1alpha1.ResourceElastic, "big", nil))
	onlyBig.Spec.Strategy = schedulingv1alpha1.StrategyRequired
	preferBig := policy(unitOf(schedulingv1alpha1.ResourceElastic, "big", nil))

	now := t0.Add(time.Hour)
	longAgo := now.Add(-5 * time.Minute)
	elNodes := []*corev1.Node{nodeOf(el, "e1"), nodeOf(el, "e2")}
	elPool := Pool{NodePool: el, Instances: instances("elastic", "e1", "e2")}

	tests := []struct {
		name      string
		snap      Snapshot
		state     ScaleDownState
		wantSince []string
		wantRm    []Removal
	}{{
		name: "seed: empty elastic nodes unneeded long enough go together; the IDC node stays",
		snap: Snapshot{Now: now, Pools: []Pool{{NodePool: idc}, elPool},
			Nodes: append([]*corev1.Node{nodeOf(idc, "idc-0")}, elNodes...),
			Pods:  []*corev1.Pod{makePod("p0").GPU(1).On("idc-0").Obj()}},
		state:     ScaleDownState{UnneededSince: map[string]time.Time{"e1": longAgo, "e2": longAgo, "idc-0": longAgo}},
		wantSince: []string{"e1", "e2"},
		wantRm:    []Removal{{Node: "e1", Pool: "elastic", Empty: true, Reason: "empty for 5m0s"}, {Node: "e2", Pool: "elastic", Empty: true, Reason: "empty for 5m0s"}},
	}, {
		name:      "newly unneeded nodes start their clock",
		snap:      Snapshot{Now: now, Pools: []Pool{elPool}, Nodes: elNodes},
		wantSince: []string{"e1", "e2"},
	}, {
		name:      "no scale-down within the delay after a scale-up",
		snap:      Snapshot{Now: now, Pools: []Pool{{NodePool: el, Instances: instances("elastic", "e1", "e2"), LastScaleUp: now.Add(-time.Minute)}}, Nodes: elNodes},
		state:     ScaleDownState{UnneededSince: map[string]time.Time{"e1": longAgo, "e2": longAgo}},
		wantSince: []string{"e1", "e2"},
	}, {
		name:      "never below min",
		snap:      Snapshot{Now: now, Pools: []Pool{{NodePool: min1, Instances: instances("elastic", "e1", "e2")}}, Nodes: elNodes},
		state:     ScaleDownState{UnneededSince: map[string]time.Time{"e1": longAgo, "e2": longAgo}},
		wantSince: []string{"e1", "e2"},
		wantRm:    []Removal{{Node: "e1", Pool: "elastic", Empty: true, Reason: "empty for 5m0s"}},
	}, {
		name: "busy nodes are needed",
		snap: Snapshot{Now: now, Pools: []Pool{elPool}, Nodes: elNodes,
			Pods: []*corev1.Pod{makePod("a").GPU(1).On("e1").Obj(), makePod("b").GPU(1).On("e2").Obj()}},
		state: ScaleDownState{UnneededSince: map[string]time.Time{"e1": longAgo}},
	}, {
		name: "under-used nodes whose pods fit elsewhere go one at a time",
		snap: Snapshot{Now: now, Pools: []Pool{{NodePool: big, Instances: instances("big", "b1", "b2", "b3")}},
			Nodes: []*corev1.Node{nodeOf(big, "b1"), nodeOf(big, "b2"), nodeOf(big, "b3")},
			Pods: []*corev1.Pod{makePod("a").GPU(1).On("b1").Obj(), makePod("b").GPU(1).On("b2").Obj(),
				makePod("c").GPU(3).On("b3").Obj()}},
		state:     ScaleDownState{UnneededSince: map[string]time.Time{"b1": longAgo, "b2": longAgo.Add(time.Second)}},
		wantSince: []string{"b1", "b2"},
		wantRm:    []Removal{{Node: "b1", Pool: "big", Reason: "pods can move elsewhere; unneeded for 5m0s"}},
	}, {
		name: "no second non-empty node while one drains",
		snap: Snapshot{Now: now, Pools: []Pool{{NodePool: big, Instances: instances("big", "b1", "b2", "b3")}},
			Nodes: []*corev1.Node{nodeOf(big, "b1"), nodeOf(big, "b2"), nodeOf(big, "b3")},
			Pods: []*corev1.Pod{makePod("a").GPU(1).On("b1").Obj(), makePod("b").GPU(1).On("b2").Obj(),
				makePod("c").GPU(1).On("b3").Obj()}},
		state:     ScaleDownState{UnneededSince: map[string]time.Time{"b2": longAgo, "b3": longAgo}, Draining: []string{"b1"}},
		wantSince: []string{"b2", "b3"},
	}, {
		name: "bare pods pin their node",
		snap: Snapshot{Now: now, Pools: []Pool{{NodePool: big, Instances: instances("big", "b1", "b2")}},
			Nodes: []*corev1.Node{nodeOf(big, "b1"), nodeOf(big, "b2")},
			Pods:  []*corev1.Pod{makePod("a").GPU(1).On("b1").Bare().Obj(), makePod("b").GPU(1).On("b2").Obj()}},
		state:     ScaleDownState{UnneededSince: map[string]time.Time{"b1": longAgo, "b2": longAgo}},
		wantSince: []string{"b2"},
		wantRm:    []Removal{{Node: "b2", Pool: "big", Reason: "pods can move elsewhere; unneeded for 5m0s"}},
	}, {
		name: "required policy: a pod does not move to a node outside its units",
		snap: Snapshot{Now: now, Pools: []Pool{{NodePool: spare}, {NodePool: big, Instances: instances("big", "b1")}},
			Nodes:    []*corev1.Node{nodeOf(spare, "s1"), nodeOf(big, "b1")},
			Pods:     []*corev1.Pod{makePod("a").GPU(1).On("b1").Obj()},
			Policies: []*schedulingv1alpha1.ResourcePolicy{onlyBig}},
		state: ScaleDownState{UnneededSince: map[string]time.Time{"b1": longAgo}},
	}, {
		name: "prefer policy: the same pod may move outside its units",
		snap: Snapshot{Now: now, Pools: []Pool{{NodePool: spare}, {NodePool: big, Instances: instances("big", "b1")}},
			Nodes:    []*corev1.Node{nodeOf(spare, "s1"), nodeOf(big, "b1")},
			Pods:     []*corev1.Pod{makePod("a").GPU(1).On("b1").Obj()},
			Policies: []*schedulingv1alpha1.ResourcePolicy{preferBig}},
		state:     ScaleDownState{UnneededSince: map[string]time.Time{"b1": longAgo}},
		wantSince: []string{"b1"},
		wantRm:    []Removal{{Node: "b1", Pool: "big", Reason: "pods can move elsewhere; unneeded for 5m0s"}},
	}, {
		name:  "scale-down disabled",
		snap:  Snapshot{Now: now, Pools: []Pool{{NodePool: off, Instances: instances("elastic", "e1")}}, Nodes: []*corev1.Node{nodeOf(off, "e1")}},
		state: ScaleDownState{UnneededSince: map[string]time.Time{"e1": longAgo}},
	}, {
		name:  "coming nodes are not scale-down's business",
		snap:  Snapshot{Now: now, Pools: []Pool{{NodePool: el, Instances: instances("elastic", "e1")}}, Nodes: []*corev1.Node{comingNodeOf(el, "e1")}},
		state: ScaleDownState{UnneededSince: map[string]time.Time{"e1": longAgo}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := PlanScaleDown(tc.snap, tc.state)
			var since []string
			for n := range got.UnneededSince {
				since = append(since, n)
			}
			if diff := cmp.Diff(tc.wantSince, since, cmpSorted); diff != "" {
				t.Errorf("unneeded nodes (-want,+got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantRm, got.Remove); diff != "" {
				t.Errorf("removals (-want,+got):\n%s", diff)
			}
		})
	}
}

var cmpSorted = cmp.Transformer("sort", func(in []string) []string {
	out := append([]string(nil), in...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
})
