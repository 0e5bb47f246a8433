package resourcepolicy

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	schedulingv1alpha1 "github.com/spillway-io/spillway/apis/scheduling/v1alpha1"
)

// FuzzPlan: any timeout string, max and clock offset give a plan or an
// error, never a panic, and a plan never lists a unit at max.
func FuzzPlan(f *testing.F) {
	f.Add("1m", int32(1), int64(30), uint8(2))
	f.Add("soon", int32(0), int64(-5), uint8(0))
	f.Add("-1s", int32(-1), int64(1<<40), uint8(3))
	f.Fuzz(func(t *testing.T, timeout string, max int32, offsetSec int64, which uint8) {
		policies := []schedulingv1alpha1.TryNextPolicy{schedulingv1alpha1.LackResourceOrExceedMax, schedulingv1alpha1.ExceedMax,
			schedulingv1alpha1.TimeoutOrExceedMax, schedulingv1alpha1.LackResourceAndNoTerminating}
		rp := policy("p", withMax(0, max), withTryNext(policies[int(which)%len(policies)], timeout))
		pods := []*corev1.Pod{makePod("a").on("idc-1").obj(), makePod("b").terminating().on("idc-1").obj()}
		plan, err := NewSnapshot([]*schedulingv1alpha1.ResourcePolicy{rp}, nodes, pods).Plan(makePod("new").obj(), t0.Add(time.Duration(offsetSec)*time.Second))
		if err != nil {
			return
		}
		for _, u := range plan.Units {
			if m := rp.Spec.Units[u.Index].Max; m != nil && u.Usage.Pods >= *m {
				t.Fatalf("unit %d listed at max: %+v", u.Index, u)
			}
		}
		_ = plan.Explain()
	})
}
