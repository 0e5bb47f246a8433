package deletioncost

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestDesired(t *testing.T) {
	type out struct {
		Value string
		Write bool
	}
	cases := map[string]struct {
		ann  map[string]string
		cost int32
		want out
	}{
		"no annotation":            {cost: 200, want: out{"200", true}},
		"user value kept":          {ann: map[string]string{"controller.kubernetes.io/pod-deletion-cost": "5"}, cost: 200, want: out{}},
		"managed, same value":      {ann: map[string]string{"controller.kubernetes.io/pod-deletion-cost": "200", ManagedAnnotation: "true"}, cost: 200, want: out{"200", false}},
		"managed, unit changed":    {ann: map[string]string{"controller.kubernetes.io/pod-deletion-cost": "200", ManagedAnnotation: "true"}, cost: 100, want: out{"100", true}},
		"marker not true: user's":  {ann: map[string]string{"controller.kubernetes.io/pod-deletion-cost": "7", ManagedAnnotation: "no"}, cost: 100, want: out{}},
		"outside units costs zero": {cost: 0, want: out{"0", true}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			v, w := Desired(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: tc.ann}}, tc.cost)
			if diff := cmp.Diff(tc.want, out{v, w}); diff != "" {
				t.Errorf("Desired (-want,+got):\n%s", diff)
			}
		})
	}
}
