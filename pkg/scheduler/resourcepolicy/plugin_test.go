package resourcepolicy

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	schedulingv1alpha1 "github.com/spillway-io/spillway/apis/scheduling/v1alpha1"
	"github.com/spillway-io/spillway/pkg/resourcepolicy"
)

func TestScoreAndReject(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	rp := &schedulingv1alpha1.ResourcePolicy{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"},
		Spec: schedulingv1alpha1.ResourcePolicySpec{Units: []schedulingv1alpha1.Unit{
			{Resource: "ecs", NodeSelector: map[string]string{"pool": "idc"}, Max: ptr.To[int32](0)},
			{Resource: "ecs", NodeSelector: map[string]string{"pool": "idc2"}},
			{Resource: "elastic", NodeSelector: map[string]string{"pool": "el"}},
		}, WhenTryNextUnits: &schedulingv1alpha1.WhenTryNextUnits{Policy: schedulingv1alpha1.TimeoutOrExceedMax, Timeout: "1m"}}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "default", CreationTimestamp: metav1.NewTime(t0)}}
	snap := resourcepolicy.NewSnapshot([]*schedulingv1alpha1.ResourcePolicy{rp}, nil, nil)

	cases := map[string]struct {
		now    time.Time
		scores []int64 // units 0, 1, 2, outside
		reject []string
	}{
		"waiting at unit 1": {now: t0, scores: []int64{0, 100, 0, 0},
			reject: []string{"which holds 0 pods, max 0", "", "not allowed while the pod waits at unit 1", "outside the units"}},
		"after the timeouts": {now: t0.Add(2 * time.Minute), scores: []int64{0, 100, 66, 33},
			reject: []string{"which holds 0 pods, max 0", "", "", ""}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			plan, err := snap.PlanFor(rp, pod, tc.now)
			if err != nil {
				t.Fatal(err)
			}
			var scores []int64
			var rejects []string
			for _, u := range []int{0, 1, 2, -1} {
				scores = append(scores, score(&plan, u))
				r := ""
				if !plan.Allows(u) {
					r = reject(&plan, u)
				}
				rejects = append(rejects, r)
			}
			if diff := cmp.Diff(tc.scores, scores); diff != "" {
				t.Errorf("scores (-want,+got):\n%s", diff)
			}
			for i, want := range tc.reject {
				if (want == "") != (rejects[i] == "") || !strings.Contains(rejects[i], want) {
					t.Errorf("unit %d: reject %q, want it to contain %q", i, rejects[i], want)
				}
			}
		})
	}
}
