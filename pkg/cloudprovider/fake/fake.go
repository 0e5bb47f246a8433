// Package fake is a scriptable cloud provider for tests: it records every
// call, fails the calls it is told to fail, and registers the Node objects of
// the instances it creates (usable at once, or never, as scripted).
package fake

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/pkg/cloudprovider"
)

// Name is the provider name pools use to pick this provider in tests.
const Name = "fake"

// NodeMode says what becomes of an instance's Node.
type NodeMode int

const (
	// NodeUsable registers a Ready node that advertises its GPUs (default).
	NodeUsable NodeMode = iota
	// NodeNeverUsable registers a node that stays NotReady without GPUs.
	NodeNeverUsable
	// NodeNone registers no Node at all (the machine never joins).
	NodeNone
)

// CreateCall is one recorded Create.
type CreateCall struct {
	Pool  string
	Count int
	At    time.Time
	Err   error
}

// DeleteCall is one recorded Delete.
type DeleteCall struct {
	Pool  string
	Names []string
	At    time.Time
}

// Provider is the fake provider. Its zero value is not usable; call New.
type Provider struct {
	client client.Client
	clock  clock.PassiveClock

	mu          sync.Mutex
	seq         int
	instances   map[string]cloudprovider.Instance // by name
	pools       map[string]*spillwayv1alpha1.NodePool
	joined      map[string]bool // instances whose Node was registered
	createCalls []CreateCall
	deleteCalls []DeleteCall
	listCalls   int
	nextCreate  []error
	poolErr     map[string]error
	nodeMode    map[string]NodeMode // per pool; NodeUsable when absent
	onCreate    func(CreateCall)
}

// Option configures a Provider.
type Option func(*Provider)

// WithClock sets the clock used to stamp calls and instances.
func WithClock(c clock.PassiveClock) Option { return func(p *Provider) { p.clock = c } }

// New returns a fake provider that registers Nodes through c (nil: no Nodes).
func New(c client.Client, opts ...Option) *Provider {
	p := &Provider{client: c, clock: clock.RealClock{}}
	for _, o := range opts {
		o(p)
	}
	p.Reset()
	return p
}

// Reset forgets every instance, call and scripted error.
func (p *Provider) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.instances = map[string]cloudprovider.Instance{}
	p.pools = map[string]*spillwayv1alpha1.NodePool{}
	p.joined = map[string]bool{}
	p.createCalls, p.deleteCalls, p.listCalls = nil, nil, 0
	p.nextCreate = nil
	p.poolErr = map[string]error{}
	p.nodeMode = map[string]NodeMode{}
}

// NextCreateErr queues errors returned, in order, by the next Create calls.
func (p *Provider) NextCreateErr(errs ...error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.nextCreate = append(p.nextCreate, errs...)
}

// FailPool makes every Create for pool fail with err until cleared with nil.
func (p *Provider) FailPool(pool string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		delete(p.poolErr, pool)
		return
	}
	p.poolErr[pool] = err
}

// SetNodeMode scripts what becomes of the Nodes of pool's future instances.
func (p *Provider) SetNodeMode(pool string, m NodeMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.nodeMode[pool] = m
}

// OnCreate calls f (outside the lock) after each Create is recorded.
func (p *Provider) OnCreate(f func(CreateCall)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.onCreate = f
}

// CreateCalls returns the recorded Create calls.
func (p *Provider) CreateCalls() []CreateCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]CreateCall(nil), p.createCalls...)
}

// DeleteCalls returns the recorded Delete calls.
func (p *Provider) DeleteCalls() []DeleteCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]DeleteCall(nil), p.deleteCalls...)
}

// Instances returns every live instance, sorted by name.
func (p *Provider) Instances() []cloudprovider.Instance {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sortedLocked("")
}

// Create records the call, fails it when scripted to, else creates count
// instances and registers their Nodes.
func (p *Provider) Create(ctx context.Context, pool *spillwayv1alpha1.NodePool, count int) ([]cloudprovider.Instance, error) {
	if count <= 0 {
		return nil, fmt.Errorf("create pool %q: count must be positive, got %d", pool.Name, count)
	}
	p.mu.Lock()
	call := CreateCall{Pool: pool.Name, Count: count, At: p.clock.Now()}
	if len(p.nextCreate) > 0 {
		call.Err, p.nextCreate = p.nextCreate[0], p.nextCreate[1:]
	} else if err := p.poolErr[pool.Name]; err != nil {
		call.Err = err
	}
	p.createCalls = append(p.createCalls, call)
	hook := p.onCreate
	if call.Err != nil {
		p.mu.Unlock()
		if hook != nil {
			hook(call)
		}
		return nil, call.Err
	}
	mode := p.nodeMode[pool.Name]
	p.pools[pool.Name] = pool.DeepCopy()
	out := make([]cloudprovider.Instance, 0, count)
	for range count {
		p.seq++
		name := fmt.Sprintf("%s-%d", strings.ToLower(pool.Name), p.seq)
		in := cloudprovider.Instance{Name: name, ProviderID: "fake://" + pool.Name + "/" + name, Pool: pool.Name, CreatedAt: call.At}
		p.instances[name] = in
		p.joined[name] = p.client != nil && mode != NodeNone
		out = append(out, in)
	}
	p.mu.Unlock()
	if hook != nil {
		hook(call)
	}
	if p.client == nil || mode == NodeNone {
		return out, nil
	}
	for _, in := range out {
		node := cloudprovider.TemplateNode(pool, in.Name, in.ProviderID)
		if mode == NodeNeverUsable {
			node.Status.Conditions[0].Status = corev1.ConditionFalse
			node.Status.Conditions[0].Reason = "KubeletNotReady"
			delete(node.Status.Allocatable, spillwayv1alpha1.ResourceGPU)
			delete(node.Status.Capacity, spillwayv1alpha1.ResourceGPU)
		}
		if err := registerNode(ctx, p.client, node); err != nil {
			return out, fmt.Errorf("create pool %q: registering node %q: %w", pool.Name, in.Name, err)
		}
	}
	return out, nil
}

// JoinPending registers a usable Node for every instance that has none yet
// (those created under NodeNone), as if the machines finally joined.
func (p *Provider) JoinPending(ctx context.Context) ([]string, error) {
	if p.client == nil {
		return nil, fmt.Errorf("fake provider has no client to register nodes with")
	}
	p.mu.Lock()
	var todo []*corev1.Node
	for _, in := range p.sortedLocked("") {
		if !p.joined[in.Name] {
			p.joined[in.Name] = true
			todo = append(todo, cloudprovider.TemplateNode(p.pools[in.Pool], in.Name, in.ProviderID))
		}
	}
	p.mu.Unlock()
	var names []string
	for _, node := range todo {
		in := node
		if err := registerNode(ctx, p.client, node); err != nil {
			return names, fmt.Errorf("registering node %q: %w", in.Name, err)
		}
		names = append(names, node.Name)
	}
	return names, nil
}

// Delete records the call and releases the instances and their Nodes.
func (p *Provider) Delete(ctx context.Context, pool *spillwayv1alpha1.NodePool, names ...string) error {
	p.mu.Lock()
	p.deleteCalls = append(p.deleteCalls, DeleteCall{Pool: pool.Name, Names: append([]string(nil), names...), At: p.clock.Now()})
	for _, n := range names {
		delete(p.instances, n)
		delete(p.joined, n)
	}
	p.mu.Unlock()
	if p.client == nil {
		return nil
	}
	for _, n := range names {
		node := &corev1.Node{}
		node.Name = n
		if err := p.client.Delete(ctx, node); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("delete pool %q: node %q: %w", pool.Name, n, err)
		}
	}
	return nil
}

// List returns the live instances of pool.
func (p *Provider) List(_ context.Context, pool *spillwayv1alpha1.NodePool) ([]cloudprovider.Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.listCalls++
	return p.sortedLocked(pool.Name), nil
}

func (p *Provider) sortedLocked(pool string) []cloudprovider.Instance {
	out := []cloudprovider.Instance{}
	for _, in := range p.instances {
		if pool == "" || in.Pool == pool {
			out = append(out, in)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// RegisterNode creates node and writes its status, as a kubelet joining
// would; tests use it for nodes no provider owns (IDC nodes).
func (p *Provider) RegisterNode(ctx context.Context, node *corev1.Node) error {
	return registerNode(ctx, p.client, node)
}

// registerNode creates node and then writes its status, as a kubelet would.
func registerNode(ctx context.Context, c client.Client, node *corev1.Node) error {
	status := node.Status.DeepCopy()
	if err := c.Create(ctx, node.DeepCopy()); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	// Others (the node TTL controller, ...) may write the node meanwhile.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := &corev1.Node{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(node), cur); err != nil {
			return err
		}
		cur.Status = *status
		return c.Status().Update(ctx, cur)
	})
	if err != nil || !cloudprovider.Usable(&corev1.Node{Status: *status}, 0) {
		return err
	}
	// Ready: drop the startup taints, as the node lifecycle controller does.
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := &corev1.Node{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(node), cur); err != nil {
			return err
		}
		var keep []corev1.Taint
		for _, t := range cur.Spec.Taints {
			if !cloudprovider.IsStartupTaint(t) {
				keep = append(keep, t)
			}
		}
		if len(keep) == len(cur.Spec.Taints) {
			return nil
		}
		cur.Spec.Taints = keep
		return c.Update(ctx, cur)
	})
}

var _ cloudprovider.Provider = (*Provider)(nil)
