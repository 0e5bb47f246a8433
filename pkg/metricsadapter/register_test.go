package metricsadapter

import (
	"context"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	aggfake "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset/fake"
)

// TestRegisterRetriesConflicts: registering again while the aggregator
// writes the APIService status (an update conflict) retries on a fresh read
// instead of failing.
func TestRegisterRetriesConflicts(t *testing.T) {
	ctx := context.Background()
	ag := aggfake.NewSimpleClientset()
	r := Registration{Namespace: "spillway-system", Service: "spillway-metrics-adapter"}
	if err := Register(ctx, kubefake.NewSimpleClientset(), ag, r); err != nil {
		t.Fatalf("first registration: %v", err)
	}
	conflicts := 0
	ag.PrependReactor("update", "apiservices", func(k8stesting.Action) (bool, runtime.Object, error) {
		if conflicts < 2 {
			conflicts++
			return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "apiregistration.k8s.io", Resource: "apiservices"},
				"v1beta2."+Group, nil)
		}
		return false, nil, nil
	})
	if err := Register(ctx, kubefake.NewSimpleClientset(), ag, r); err != nil {
		t.Fatalf("registering again through %d conflicts: %v", conflicts, err)
	}
	if conflicts != 2 {
		t.Errorf("%d conflicts returned, want 2", conflicts)
	}
}
