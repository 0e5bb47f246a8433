// Package sim is the simulated cloud of Spillway's local cluster. An instance
// it creates registers its Node after a provisioning delay, Ready but without
// GPUs, and advertises nvidia.com/gpu only after a further delay, as a real
// GPU node does once its device plugin starts. Delays come from options or,
// per pool, from spec.provider.parameters provisioningDelay and gpuDelay.
package sim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/pkg/cloudprovider"
)

// Name is the provider name of the simulated cloud.
const Name = "sim"

// Parameter keys read from a pool's spec.provider.parameters.
const (
	ParamProvisioningDelay = "provisioningDelay"
	ParamGPUDelay          = "gpuDelay"
)

// ProviderIDPrefix starts the providerID of every simulated node.
const ProviderIDPrefix = "spillway-sim://"

// Provider is the simulated cloud.
type Provider struct {
	client            client.Client
	clock             clock.WithDelayedExecution
	log               logr.Logger
	provisioningDelay time.Duration
	gpuDelay          time.Duration
	rnd               func() uint64

	mu        sync.Mutex
	instances map[string]*instance
}

type instance struct {
	cloudprovider.Instance
	pool   *spillwayv1alpha1.NodePool
	timers []clock.Timer
}

// Option configures a Provider.
type Option func(*Provider)

// WithClock sets the clock that drives the delays.
func WithClock(c clock.WithDelayedExecution) Option { return func(p *Provider) { p.clock = c } }

// WithLogger sets the logger of the background registration.
func WithLogger(l logr.Logger) Option { return func(p *Provider) { p.log = l } }

// WithDelays sets the default provisioning delay (ask -> Node Ready) and GPU
// delay (Ready -> nvidia.com/gpu advertised).
func WithDelays(provisioning, gpu time.Duration) Option {
	return func(p *Provider) { p.provisioningDelay, p.gpuDelay = provisioning, gpu }
}

// WithSeed makes the random node-name suffixes reproducible.
func WithSeed(seed uint64) Option {
	return func(p *Provider) { r := rand.New(rand.NewPCG(seed, seed)); p.rnd = r.Uint64 }
}

// New returns a simulated cloud that registers Nodes through c.
func New(c client.Client, opts ...Option) *Provider {
	p := &Provider{
		client: c, clock: clock.RealClock{}, log: logr.Discard(),
		provisioningDelay: 30 * time.Second, gpuDelay: 10 * time.Second,
		rnd: rand.Uint64, instances: map[string]*instance{},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func (p *Provider) delays(pool *spillwayv1alpha1.NodePool) (time.Duration, time.Duration, error) {
	prov, gpu := p.provisioningDelay, p.gpuDelay
	if pool.Spec.Provider == nil {
		return prov, gpu, nil
	}
	for key, dst := range map[string]*time.Duration{ParamProvisioningDelay: &prov, ParamGPUDelay: &gpu} {
		s, ok := pool.Spec.Provider.Parameters[key]
		if !ok {
			continue
		}
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return 0, 0, fmt.Errorf("pool %q: parameter %s=%q is not a non-negative duration such as 30s", pool.Name, key, s)
		}
		*dst = d
	}
	return prov, gpu, nil
}

// Create asks for count instances; their Nodes appear after the delays.
func (p *Provider) Create(_ context.Context, pool *spillwayv1alpha1.NodePool, count int) ([]cloudprovider.Instance, error) {
	if count <= 0 {
		return nil, fmt.Errorf("create pool %q: count must be positive, got %d", pool.Name, count)
	}
	prov, gpu, err := p.delays(pool)
	if err != nil {
		return nil, cloudprovider.NewError(nil, "create", pool.Name, err.Error())
	}
	pool = pool.DeepCopy()
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock.Now()
	out := make([]cloudprovider.Instance, 0, count)
	for range count {
		name := p.freshNameLocked(pool.Name)
		in := &instance{Instance: cloudprovider.Instance{
			Name: name, ProviderID: ProviderIDPrefix + pool.Name + "/" + name, Pool: pool.Name, CreatedAt: now,
		}, pool: pool}
		p.instances[name] = in
		in.timers = append(in.timers, p.clock.AfterFunc(prov, func() { go p.register(in, gpu) }))
		out = append(out, in.Instance)
	}
	return out, nil
}

func (p *Provider) freshNameLocked(pool string) string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789"
	for {
		var b strings.Builder
		r := p.rnd()
		for range 5 {
			b.WriteByte(alphabet[r%uint64(len(alphabet))])
			r /= uint64(len(alphabet))
		}
		name := strings.ToLower(pool) + "-" + b.String()
		if _, taken := p.instances[name]; !taken {
			return name
		}
	}
}

// register creates the instance's Node, Ready without GPUs, and schedules
// the GPUs.
func (p *Provider) register(in *instance, gpuDelay time.Duration) {
	p.mu.Lock()
	_, alive := p.instances[in.Name]
	p.mu.Unlock()
	if !alive {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	node := cloudprovider.TemplateNode(in.pool, in.Name, in.ProviderID)
	gpus, hasGPU := node.Status.Capacity[spillwayv1alpha1.ResourceGPU]
	delete(node.Status.Capacity, spillwayv1alpha1.ResourceGPU)
	delete(node.Status.Allocatable, spillwayv1alpha1.ResourceGPU)
	if err := writeNode(ctx, p.client, node); err != nil {
		p.log.Error(err, "registering simulated node", "node", in.Name, "pool", in.Pool)
		return
	}
	p.log.V(1).Info("simulated node registered", "node", in.Name, "pool", in.Pool)
	if !hasGPU {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, alive := p.instances[in.Name]; !alive {
		return
	}
	in.timers = append(in.timers, p.clock.AfterFunc(gpuDelay, func() { go p.advertiseGPUs(in.Name, gpus) }))
}

func (p *Provider) advertiseGPUs(name string, gpus resource.Quantity) {
	p.mu.Lock()
	_, alive := p.instances[name]
	p.mu.Unlock()
	if !alive {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node := &corev1.Node{}
		if err := p.client.Get(ctx, client.ObjectKey{Name: name}, node); err != nil {
			return err
		}
		if node.Status.Capacity == nil {
			node.Status.Capacity = corev1.ResourceList{}
		}
		if node.Status.Allocatable == nil {
			node.Status.Allocatable = corev1.ResourceList{}
		}
		node.Status.Capacity[spillwayv1alpha1.ResourceGPU] = gpus.DeepCopy()
		node.Status.Allocatable[spillwayv1alpha1.ResourceGPU] = gpus.DeepCopy()
		return p.client.Status().Update(ctx, node)
	})
	if err != nil {
		p.log.Error(err, "advertising GPUs of simulated node", "node", name)
		return
	}
	p.log.V(1).Info("simulated node advertises its GPUs", "node", name, "gpus", gpus.String())
}

// Delete releases instances and deletes their Nodes.
func (p *Provider) Delete(ctx context.Context, pool *spillwayv1alpha1.NodePool, names ...string) error {
	p.mu.Lock()
	for _, n := range names {
		if in, ok := p.instances[n]; ok {
			for _, t := range in.timers {
				t.Stop()
			}
			delete(p.instances, n)
		}
	}
	p.mu.Unlock()
	for _, n := range names {
		node := &corev1.Node{}
		node.Name = n
		if err := p.client.Delete(ctx, node); client.IgnoreNotFound(err) != nil {
			return cloudprovider.NewError(cloudprovider.ErrTransient, "delete", pool.Name, fmt.Sprintf("node %q: %v", n, err))
		}
	}
	return nil
}

// List returns the pool's instances: those this process started plus the
// simulated Nodes of the pool already in the cluster (started by an earlier
// process), so a restarted manager sees what exists.
func (p *Provider) List(ctx context.Context, pool *spillwayv1alpha1.NodePool) ([]cloudprovider.Instance, error) {
	nodes := &corev1.NodeList{}
	if err := p.client.List(ctx, nodes, client.MatchingLabels{spillwayv1alpha1.LabelNodePool: pool.Name}); err != nil {
		return nil, cloudprovider.NewError(cloudprovider.ErrTransient, "list", pool.Name, err.Error())
	}
	byName := map[string]cloudprovider.Instance{}
	prefix := ProviderIDPrefix + pool.Name + "/"
	for _, n := range nodes.Items {
		if strings.HasPrefix(n.Spec.ProviderID, prefix) {
			byName[n.Name] = cloudprovider.Instance{Name: n.Name, ProviderID: n.Spec.ProviderID, Pool: pool.Name, CreatedAt: n.CreationTimestamp.Time}
		}
	}
	p.mu.Lock()
	for _, in := range p.instances {
		if in.Pool == pool.Name {
			byName[in.Name] = in.Instance
		}
	}
	p.mu.Unlock()
	out := make([]cloudprovider.Instance, 0, len(byName))
	for _, in := range byName {
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func writeNode(ctx context.Context, c client.Client, node *corev1.Node) error {
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
