package sim

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	testingclock "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	fakeclient "sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/spillway-io/spillway/apis"
	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/pkg/cloudprovider"
)

func pool(params map[string]string) *spillwayv1alpha1.NodePool {
	return &spillwayv1alpha1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "GPU-V100-Elastic"},
		Spec: spillwayv1alpha1.NodePoolSpec{Type: spillwayv1alpha1.NodePoolElastic,
			Template: spillwayv1alpha1.NodeTemplate{GPUs: 1},
			Provider: &spillwayv1alpha1.ProviderSpec{Name: Name, Parameters: params}}}
}

// nodeState polls (the timers fire in their own goroutines) until the node
// reaches want: "absent", "ready-no-gpu" or "usable".
func nodeState(t *testing.T, c client.Client, name, want string) {
	t.Helper()
	var got string
	err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
		var n corev1.Node
		switch err := c.Get(ctx, client.ObjectKey{Name: name}, &n); {
		case err != nil:
			got = "absent"
		case cloudprovider.Usable(&n, 1):
			got = "usable"
		case cloudprovider.Usable(&n, 0):
			got = "ready-no-gpu"
		default:
			got = "other"
		}
		return got == want, nil
	})
	if err != nil {
		t.Fatalf("node %s is %s, want %s", name, got, want)
	}
}

func TestProvisioningThenGPUs(t *testing.T) {
	ctx := context.Background()
	c := fakeclient.NewClientBuilder().WithScheme(apis.NewScheme()).WithStatusSubresource(&corev1.Node{}).Build()
	clk := testingclock.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	p := New(c, WithClock(clk), WithDelays(time.Minute, time.Hour), WithSeed(1))
	np := pool(map[string]string{ParamProvisioningDelay: "30s", ParamGPUDelay: "10s"})

	ins, err := p.Create(ctx, np, 1)
	if err != nil {
		t.Fatal(err)
	}
	name := ins[0].Name
	if ins[0].ProviderID != "spillway-sim://GPU-V100-Elastic/"+name || name[:17] != "gpu-v100-elastic-" {
		t.Errorf("instance = %+v", ins[0])
	}
	nodeState(t, c, name, "absent")
	clk.Step(29 * time.Second)
	nodeState(t, c, name, "absent")
	clk.Step(time.Second)
	nodeState(t, c, name, "ready-no-gpu")
	// The GPU timer is armed once the node is registered.
	if err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		return clk.HasWaiters(), nil
	}); err != nil {
		t.Fatal("GPU timer never armed")
	}
	clk.Step(10 * time.Second)
	nodeState(t, c, name, "usable")

	// A new process (restart) lists the registered node from the cluster.
	listed, err := New(c, WithClock(clk)).List(ctx, np)
	if err != nil || len(listed) != 1 || listed[0].Name != name {
		t.Errorf("list after restart = %+v, %v", listed, err)
	}
	if err := p.Delete(ctx, np, name); err != nil {
		t.Fatal(err)
	}
	nodeState(t, c, name, "absent")
	if l, _ := p.List(ctx, np); len(l) != 0 {
		t.Errorf("after delete: %+v", l)
	}
}

func TestDeleteBeforeJoin(t *testing.T) {
	ctx := context.Background()
	c := fakeclient.NewClientBuilder().WithScheme(apis.NewScheme()).WithStatusSubresource(&corev1.Node{}).Build()
	clk := testingclock.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	p := New(c, WithClock(clk), WithDelays(time.Second, time.Second))
	np := pool(nil)
	ins, err := p.Create(ctx, np, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(ctx, np, ins[0].Name); err != nil {
		t.Fatal(err)
	}
	clk.Step(time.Second)
	nodeState(t, c, ins[1].Name, "ready-no-gpu")
	nodeState(t, c, ins[0].Name, "absent")
}

func TestBadParameters(t *testing.T) {
	c := fakeclient.NewClientBuilder().WithScheme(apis.NewScheme()).Build()
	p := New(c)
	for _, v := range []string{"soon", "-5s"} {
		_, err := p.Create(context.Background(), pool(map[string]string{ParamGPUDelay: v}), 1)
		if err == nil {
			t.Errorf("gpuDelay=%q accepted", v)
		}
	}
}

func FuzzDelays(f *testing.F) {
	for _, s := range []string{"30s", "0", "1h2m", "-1s", "soon", "", "9999999999h"} {
		f.Add(s, "10s")
	}
	p := New(nil)
	f.Fuzz(func(t *testing.T, prov, gpu string) {
		np := pool(map[string]string{ParamProvisioningDelay: prov, ParamGPUDelay: gpu})
		pd, gd, err := p.delays(np)
		if err != nil {
			return
		}
		if pd < 0 || gd < 0 {
			t.Fatalf("accepted negative delays %v %v from %q %q", pd, gd, prov, gpu)
		}
		want, _ := time.ParseDuration(prov)
		if pd != want {
			t.Fatalf("provisioningDelay %q parsed as %v, want %v", prov, pd, want)
		}
	})
}
