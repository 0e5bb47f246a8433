package nodeautoscaler

import (
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"

	schedulingv1alpha1 "github.com/spillway-io/spillway/apis/scheduling/v1alpha1"
	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/pkg/cloudprovider"
	"github.com/spillway-io/spillway/pkg/resourcepolicy"
)

// Pool is a NodePool with what the controller knows of it.
type Pool struct {
	NodePool *spillwayv1alpha1.NodePool
	// Instances are the pool's instances as its provider lists them (elastic
	// pools only); an instance without a usable Node is coming.
	Instances []cloudprovider.Instance
	// BackoffUntil: no new nodes are asked of the pool before this time
	// (after a provider failure).
	BackoffUntil time.Time
	// LastScaleUp is when the pool last grew.
	LastScaleUp time.Time
}

// Snapshot is the immutable state one planning pass decides on.
type Snapshot struct {
	// Now is the time of the decision.
	Now time.Time
	// Pools are every NodePool.
	Pools []Pool
	// Nodes are every Node of the cluster.
	Nodes []*corev1.Node
	// Pods are every pod that is bound to a node and not finished.
	Pods []*corev1.Pod
	// Policies are every ResourcePolicy.
	Policies []*schedulingv1alpha1.ResourcePolicy
}

func elastic(p *spillwayv1alpha1.NodePool) bool {
	return p.Spec.Type == spillwayv1alpha1.NodePoolElastic
}

// MaxSize is the pool's max (static pools: 0 new nodes).
func MaxSize(p *spillwayv1alpha1.NodePool) int {
	if p.Spec.MaxSize == nil {
		return 0
	}
	return int(*p.Spec.MaxSize)
}

// MinSize is the pool's min.
func MinSize(p *spillwayv1alpha1.NodePool) int {
	if p.Spec.MinSize == nil {
		return 0
	}
	return int(*p.Spec.MinSize)
}

// Defaults of the pool's scale-down and provisioning settings.
const (
	DefaultUnneededTime         = 10 * time.Minute
	DefaultDelayAfterScaleUp    = 10 * time.Minute
	DefaultUtilizationThreshold = 50
	DefaultMaxProvisionTime     = 15 * time.Minute
)

// ScaleDownSettings are a pool's scale-down settings with defaults applied.
type ScaleDownSettings struct {
	Enabled              bool
	UnneededTime         time.Duration
	DelayAfterScaleUp    time.Duration
	UtilizationThreshold int32
}

// ScaleDownOf returns p's scale-down settings with defaults applied.
func ScaleDownOf(p *spillwayv1alpha1.NodePool) ScaleDownSettings {
	s := ScaleDownSettings{Enabled: elastic(p), UnneededTime: DefaultUnneededTime,
		DelayAfterScaleUp: DefaultDelayAfterScaleUp, UtilizationThreshold: DefaultUtilizationThreshold}
	sd := p.Spec.ScaleDown
	if sd == nil {
		return s
	}
	if sd.Enabled != nil {
		s.Enabled = s.Enabled && *sd.Enabled
	}
	if sd.UnneededTime != nil {
		s.UnneededTime = sd.UnneededTime.Duration
	}
	if sd.DelayAfterScaleUp != nil {
		s.DelayAfterScaleUp = sd.DelayAfterScaleUp.Duration
	}
	if sd.UtilizationThreshold != nil {
		s.UtilizationThreshold = *sd.UtilizationThreshold
	}
	return s
}

// MaxProvisionTime is how long a node of p may take to become usable.
func MaxProvisionTime(p *spillwayv1alpha1.NodePool) time.Duration {
	if p.Spec.MaxProvisionTime != nil && p.Spec.MaxProvisionTime.Duration > 0 {
		return p.Spec.MaxProvisionTime.Duration
	}
	return DefaultMaxProvisionTime
}

// PoolOfNode returns the pool name a node carries, or "".
func PoolOfNode(n *corev1.Node) string { return n.Labels[spillwayv1alpha1.LabelNodePool] }

// cluster is the simulated cluster built from a snapshot: the capacity of
// usable and coming nodes, and the ResourcePolicy engine's snapshot
// (pkg/resourcepolicy, the scheduler plugin's engine) counting what each
// unit holds.
type cluster struct {
	nodes    []*simNode // usable and coming nodes, by name
	byName   map[string]*simNode
	pools    []*Pool // sorted: weight desc, name
	poolSize map[string]int
	// rp is the policy engine's view: every node (and every instance not
	// registered yet, from its template) and every bound pod. Placements
	// the plan makes are Assumed into it, so unit max and maxResources see
	// the pods expected on coming and new nodes.
	rp *resourcepolicy.Snapshot
	// units memoises resourcepolicy.UnitOf per policy and node name.
	units map[*schedulingv1alpha1.ResourcePolicy]map[string]int
}

// buildCluster lays the snapshot's nodes, coming instances and bound pods
// into a simulated cluster. Cordoned and not-ready nodes of no elastic pool
// take no pods; nodes of elastic pools that are not usable yet are coming.
func buildCluster(s *Snapshot) *cluster {
	c := &cluster{byName: map[string]*simNode{}, poolSize: map[string]int{},
		units: map[*schedulingv1alpha1.ResourcePolicy]map[string]int{}}
	pools := map[string]*Pool{}
	for i := range s.Pools {
		p := &s.Pools[i]
		pools[p.NodePool.Name] = p
		c.pools = append(c.pools, p)
	}
	sort.Slice(c.pools, func(i, j int) bool {
		a, b := c.pools[i].NodePool, c.pools[j].NodePool
		if a.Spec.Weight != b.Spec.Weight {
			return a.Spec.Weight > b.Spec.Weight
		}
		return a.Name < b.Name
	})
	registered := map[string]bool{}
	for _, n := range s.Nodes {
		registered[n.Name] = true
		pool := pools[PoolOfNode(n)]
		var kind nodeKind
		switch {
		case n.Spec.Unschedulable || n.DeletionTimestamp != nil:
			continue
		case pool == nil:
			if !cloudprovider.Usable(n, 0) {
				continue
			}
			kind = kindUsable
		case cloudprovider.Usable(n, pool.NodePool.Spec.Template.GPUs):
			kind = kindUsable
		case elastic(pool.NodePool):
			// Coming: simulate it with the template's capacity.
			tn := cloudprovider.TemplateNode(pool.NodePool, n.Name, n.Spec.ProviderID)
			tn.Labels = n.Labels
			tn.Spec.Taints = withoutStartupTaints(n.Spec.Taints)
			n = tn
			kind = kindComing
		default:
			continue
		}
		sn := newSimNode(n, PoolOfNode(n), kind)
		c.nodes = append(c.nodes, sn)
		c.byName[sn.name] = sn
	}
	c.rp = resourcepolicy.NewSnapshot(s.Policies, s.Nodes, s.Pods)
	for _, p := range c.pools {
		if !elastic(p.NodePool) {
			continue
		}
		for _, in := range p.Instances {
			c.poolSize[p.NodePool.Name]++
			if registered[in.Name] {
				continue
			}
			sn := newSimNode(cloudprovider.TemplateNode(p.NodePool, in.Name, in.ProviderID), p.NodePool.Name, kindComing)
			c.nodes = append(c.nodes, sn)
			c.byName[sn.name] = sn
			c.rp.AddNode(sn.node)
		}
		// Nodes of the pool the provider does not list still count toward max.
		for _, n := range s.Nodes {
			if PoolOfNode(n) == p.NodePool.Name && !listed(p.Instances, n.Name) {
				c.poolSize[p.NodePool.Name]++
			}
		}
	}
	sort.Slice(c.nodes, func(i, j int) bool { return c.nodes[i].name < c.nodes[j].name })
	for _, pod := range s.Pods {
		if pod.Spec.NodeName == "" || terminal(pod) {
			continue
		}
		if sn := c.byName[pod.Spec.NodeName]; sn != nil {
			sn.add(podRequests(pod))
		}
	}
	return c
}

// unitOf is the unit of rp node n is in (-1: outside every unit), as the
// scheduler plugin computes it.
func (c *cluster) unitOf(rp *schedulingv1alpha1.ResourcePolicy, n *corev1.Node) int {
	m := c.units[rp]
	if m == nil {
		m = map[string]int{}
		c.units[rp] = m
	}
	if n.Name == "" {
		return resourcepolicy.UnitOf(rp, n)
	}
	u, ok := m[n.Name]
	if !ok {
		u = resourcepolicy.UnitOf(rp, n)
		m[n.Name] = u
	}
	return u
}

func listed(ins []cloudprovider.Instance, name string) bool {
	for _, in := range ins {
		if in.Name == name {
			return true
		}
	}
	return false
}

// withoutStartupTaints drops the taints a node carries only while it starts.
func withoutStartupTaints(ts []corev1.Taint) []corev1.Taint {
	var out []corev1.Taint
	for _, t := range ts {
		if !cloudprovider.IsStartupTaint(t) {
			out = append(out, t)
		}
	}
	return out
}

func terminal(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}
