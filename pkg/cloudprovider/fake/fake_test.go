package fake

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	testingclock "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	fakeclient "sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/spillway-io/spillway/apis"
	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/pkg/cloudprovider"
)

func pool(name string) *spillwayv1alpha1.NodePool {
	return &spillwayv1alpha1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: spillwayv1alpha1.NodePoolSpec{Type: spillwayv1alpha1.NodePoolElastic, Template: spillwayv1alpha1.NodeTemplate{GPUs: 1}}}
}

func newClient() client.Client {
	return fakeclient.NewClientBuilder().WithScheme(apis.NewScheme()).WithStatusSubresource(&corev1.Node{}).Build()
}

func TestProvider(t *testing.T) {
	ctx := context.Background()
	c := newClient()
	clk := testingclock.NewFakePassiveClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	p := New(c, WithClock(clk))
	a, b := pool("Pool-A"), pool("pool-b")

	quota := cloudprovider.NewError(cloudprovider.ErrQuota, "create", "Pool-A", "")
	p.NextCreateErr(quota)
	if _, err := p.Create(ctx, a, 1); !cloudprovider.IsQuota(err) {
		t.Fatalf("scripted error: got %v", err)
	}
	ins, err := p.Create(ctx, a, 2)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"pool-a-1", "pool-a-2"}, names(ins)); diff != "" {
		t.Errorf("instance names (-want,+got):\n%s", diff)
	}
	var n corev1.Node
	if err := c.Get(ctx, client.ObjectKey{Name: "pool-a-1"}, &n); err != nil {
		t.Fatalf("node registered: %v", err)
	}
	if !cloudprovider.Usable(&n, 1) || n.Spec.ProviderID != "fake://Pool-A/pool-a-1" {
		t.Errorf("registered node not usable or wrong provider id: %+v", n)
	}

	p.SetNodeMode("pool-b", NodeNone)
	if _, err := p.Create(ctx, b, 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKey{Name: "pool-b-3"}, &n); err == nil {
		t.Errorf("NodeNone must not register a node")
	}
	joined, err := p.JoinPending(ctx)
	if err != nil || !cmp.Equal(joined, []string{"pool-b-3"}) {
		t.Errorf("JoinPending = %v, %v", joined, err)
	}
	if _, err := p.Create(ctx, a, 0); err == nil {
		t.Errorf("count 0 must be an error")
	}

	p.FailPool("pool-b", cloudprovider.NewError(cloudprovider.ErrOutOfStock, "create", "pool-b", ""))
	if _, err := p.Create(ctx, b, 1); !cloudprovider.IsOutOfStock(err) {
		t.Errorf("FailPool: got %v", err)
	}
	p.FailPool("pool-b", nil)

	if err := p.Delete(ctx, a, "pool-a-1", "unknown"); err != nil {
		t.Fatal(err)
	}
	listed, _ := p.List(ctx, a)
	if diff := cmp.Diff([]string{"pool-a-2"}, names(listed)); diff != "" {
		t.Errorf("after delete (-want,+got):\n%s", diff)
	}
	if err := c.Get(ctx, client.ObjectKey{Name: "pool-a-1"}, &n); err == nil {
		t.Errorf("deleted instance's node still exists")
	}
	calls := p.CreateCalls()
	if len(calls) != 4 || calls[1].Count != 2 || !calls[1].At.Equal(clk.Now()) || calls[0].Err == nil {
		t.Errorf("create calls recorded wrongly: %+v", calls)
	}
	if d := p.DeleteCalls(); len(d) != 1 || !cmp.Equal(d[0].Names, []string{"pool-a-1", "unknown"}) {
		t.Errorf("delete calls = %+v", d)
	}
	p.Reset()
	if len(p.Instances()) != 0 || len(p.CreateCalls()) != 0 {
		t.Errorf("Reset kept state")
	}
}

func TestNeverUsable(t *testing.T) {
	ctx := context.Background()
	c := newClient()
	p := New(c)
	p.SetNodeMode("a", NodeNeverUsable)
	if _, err := p.Create(ctx, pool("a"), 1); err != nil {
		t.Fatal(err)
	}
	var n corev1.Node
	if err := c.Get(ctx, client.ObjectKey{Name: "a-1"}, &n); err != nil {
		t.Fatal(err)
	}
	if cloudprovider.Usable(&n, 1) {
		t.Errorf("NodeNeverUsable registered a usable node")
	}
}

func names(ins []cloudprovider.Instance) []string {
	var out []string
	for _, in := range ins {
		out = append(out, in.Name)
	}
	return out
}
