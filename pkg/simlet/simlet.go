package simlet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	spillwayv1alpha1 "github.com/spillway-io/spillway/apis/spillway/v1alpha1"
	"github.com/spillway-io/spillway/pkg/cloudprovider"
)

// ProviderIDPrefix starts the providerID of the static nodes the simlet registers.
const ProviderIDPrefix = "simlet://"

// simProviderIDPrefix starts the providerID of the sim cloud provider's nodes.
const simProviderIDPrefix = "spillway-sim://"

// AnnotationDCGMEndpoint is where a node's DCGM metrics are served
// (docs/metrics-adapter.md).
const AnnotationDCGMEndpoint = "spillway.io/dcgm-endpoint"

// DCGMPort is the port of every node's DCGM exporter, on the node's own IP.
const DCGMPort = 9400

// Simlet simulates the kubelets of a cluster file's nodes.
type Simlet struct {
	client        client.Client
	clock         clock.WithTicker
	log           logr.Logger
	runtime       Runtime
	pools         map[string]*spillwayv1alpha1.NodePool
	order         []string
	leaseDuration time.Duration
	// statusEvery is how often an unchanged Ready condition is refreshed.
	statusEvery time.Duration
	// backOff and backOffMax shape the crash-loop back-off of exited pods.
	backOff, backOffMax time.Duration
	// freeAddresses: skip node addresses whose DCGM port another process
	// (another simlet on this machine) holds.
	freeAddresses bool

	// serveMu serialises ServeDCGM (heartbeat loop and reconciles).
	serveMu sync.Mutex

	mu     sync.Mutex
	nodes  map[string]*nodeState
	pods   map[types.UID]*podState
	cut    map[string]bool // pools whose heartbeats are cut
	killed map[string]bool // nodes killed
	nextN  int
}

type nodeState struct {
	name, pool string
	ip         string
	n          int // ordinal, 1..
	gpu        GPU
	nextPod    int
	lastStatus time.Time
	dcgm       *http.Server
	// dcgmLn is the exporter's listener, opened when the address was chosen
	// (WithFreeAddresses).
	dcgmLn net.Listener
}

type podState struct {
	key       types.NamespacedName
	node      string
	container string
	run       RunState
	runner    Runner
	stop      chan struct{}
	// runs counts the runs started; crashes the exits in a row (back-off).
	runs, crashes int
	// terminating: the pod was deleted and is being stopped.
	terminating bool
}

// Option configures a Simlet.
type Option func(*Simlet)

// WithClock sets the clock (default: the real clock).
func WithClock(c clock.WithTicker) Option { return func(s *Simlet) { s.clock = c } }

// WithLogger sets the logger.
func WithLogger(l logr.Logger) Option { return func(s *Simlet) { s.log = l } }

// WithRuntime sets the pod runtime (default PortRuntime with a 3s load).
func WithRuntime(r Runtime) Option { return func(s *Simlet) { s.runtime = r } }

// WithLeaseDuration sets the node Lease duration; heartbeats renew it every
// quarter of it (default 40s, as the kubelet).
func WithLeaseDuration(d time.Duration) Option { return func(s *Simlet) { s.leaseDuration = d } }

// WithRestartBackOff sets the crash-loop back-off of containers that exit:
// the second restart in a row waits base, then 2×base… up to max (default
// 10s and 5m, as the kubelet).
func WithRestartBackOff(base, max time.Duration) Option {
	return func(s *Simlet) { s.backOff, s.backOffMax = base, max }
}

// WithFreeAddresses makes the simlet skip node ordinals whose address is in
// use on this machine (its DCGM port cannot be bound), so that several local
// clusters can run side by side: the node's and its pods' addresses both
// derive from the ordinal. Without it ordinals are 1, 2, 3… in order of first
// sight (deterministic, for tests).
func WithFreeAddresses() Option { return func(s *Simlet) { s.freeAddresses = true } }

// New returns a Simlet for pools.
func New(c client.Client, pools []spillwayv1alpha1.NodePool, opts ...Option) *Simlet {
	s := &Simlet{
		client: c, clock: clock.RealClock{}, log: logr.Discard(),
		runtime: PortRuntime{LoadDelay: 3 * time.Second}, pools: map[string]*spillwayv1alpha1.NodePool{},
		leaseDuration: 40 * time.Second, statusEvery: time.Minute, backOff: 10 * time.Second, backOffMax: 5 * time.Minute,
		nodes: map[string]*nodeState{}, pods: map[types.UID]*podState{}, cut: map[string]bool{}, killed: map[string]bool{},
	}
	for i := range pools {
		p := pools[i].DeepCopy()
		s.pools[p.Name] = p
		s.order = append(s.order, p.Name)
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// HeartbeatInterval is how often Leases are renewed.
func (s *Simlet) HeartbeatInterval() time.Duration { return s.leaseDuration / 4 }

// Managed reports whether node is one the simlet runs.
func (s *Simlet) Managed(node *corev1.Node) bool {
	if _, ok := s.pools[node.Labels[spillwayv1alpha1.LabelNodePool]]; !ok {
		return false
	}
	return strings.HasPrefix(node.Spec.ProviderID, ProviderIDPrefix) || strings.HasPrefix(node.Spec.ProviderID, simProviderIDPrefix)
}

// StaticNodeName names the i-th node of a static pool.
func StaticNodeName(pool string, i int) string { return fmt.Sprintf("%s-%d", pool, i) }

// RegisterStatic creates the nodes of the static pools (count per pool) that
// do not exist yet.
func (s *Simlet) RegisterStatic(ctx context.Context, counts map[string]int) error {
	for _, name := range s.order {
		pool := s.pools[name]
		for i := range counts[name] {
			nn := StaticNodeName(name, i)
			node := cloudprovider.TemplateNode(pool, nn, ProviderIDPrefix+name+"/"+nn)
			status := node.Status
			err := s.client.Create(ctx, node)
			if apierrors.IsAlreadyExists(err) {
				continue
			}
			if err != nil {
				return fmt.Errorf("registering node %s of pool %q: %w", nn, name, err)
			}
			node.Status = status
			if err := s.client.Status().Update(ctx, node); err != nil {
				return fmt.Errorf("writing status of node %s: %w", nn, err)
			}
			s.log.Info("node registered", "node", nn, "pool", name)
		}
	}
	return nil
}

// trackNode returns the node's state, assigning its address on first sight.
func (s *Simlet) trackNode(node *corev1.Node) *nodeState {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ns, ok := s.nodes[node.Name]; ok {
		return ns
	}
	s.nextN++
	n := s.nextN
	var ln net.Listener
	for s.freeAddresses && n < maxNodes {
		l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", nodeIP(n), DCGMPort))
		if err == nil {
			ln = l
			break
		}
		s.log.Info("node address in use, taking the next", "address", nodeIP(n), "err", err.Error())
		n++
	}
	s.nextN = n
	pool := s.pools[node.Labels[spillwayv1alpha1.LabelNodePool]]
	gpu := GPU{Model: pool.Spec.Template.GPUModel, Count: int(pool.Spec.Template.GPUs)}
	if m := node.Labels[spillwayv1alpha1.LabelGPUModel]; m != "" {
		gpu.Model = m
	}
	ns := &nodeState{
		name: node.Name, pool: pool.Name, n: n,
		ip:  nodeIP(n),
		gpu: gpu, dcgmLn: ln,
	}
	s.nodes[node.Name] = ns
	return ns
}

// maxNodes bounds node ordinals (127.1.0.1 … 127.1.249.250).
const maxNodes = 250 * 250

// nodeIP is the address of the n-th node: 127.1.(n/250).(n%250+1).
func nodeIP(n int) string { return fmt.Sprintf("127.1.%d.%d", n/250, n%250+1) }

// podIP allocates the next pod address of a node: 127.(2+n/250).(n%250).k.
func (s *Simlet) podIP(ns *nodeState) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ns.nextPod >= 253 {
		ns.nextPod = 0
	}
	ns.nextPod++
	return fmt.Sprintf("127.%d.%d.%d", 2+ns.n/250, ns.n%250, ns.nextPod+1), nil
}

// Heartbeat renews the Lease and Ready condition of every managed node whose
// heartbeats are not cut and that was not killed.
func (s *Simlet) Heartbeat(ctx context.Context) error {
	var nodes corev1.NodeList
	if err := s.client.List(ctx, &nodes); err != nil {
		return fmt.Errorf("listing nodes: %w", err)
	}
	var errs []error
	now := s.clock.Now()
	for i := range nodes.Items {
		node := &nodes.Items[i]
		if !s.Managed(node) {
			continue
		}
		ns := s.trackNode(node)
		s.mu.Lock()
		silent := s.cut[ns.pool] || s.killed[node.Name]
		s.mu.Unlock()
		if silent {
			continue
		}
		if err := s.renewLease(ctx, node, now); err != nil {
			errs = append(errs, err)
		}
		if err := s.refreshNodeStatus(ctx, node, ns, now); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Simlet) renewLease(ctx context.Context, node *corev1.Node, now time.Time) error {
	lease := &coordinationv1.Lease{}
	key := client.ObjectKey{Namespace: corev1.NamespaceNodeLease, Name: node.Name}
	renew := metav1.NewMicroTime(now)
	err := s.client.Get(ctx, key, lease)
	if apierrors.IsNotFound(err) {
		lease = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: node.Name, Namespace: corev1.NamespaceNodeLease,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}}},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity: ptr.To(node.Name), LeaseDurationSeconds: ptr.To(int32(s.leaseDuration / time.Second)),
				RenewTime: &renew,
			},
		}
		if err := s.client.Create(ctx, lease); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating lease of node %s: %w", node.Name, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading lease of node %s: %w", node.Name, err)
	}
	lease.Spec.RenewTime = &renew
	if err := s.client.Update(ctx, lease); err != nil {
		return fmt.Errorf("renewing lease of node %s: %w", node.Name, err)
	}
	return nil
}

// refreshNodeStatus keeps Ready=True, the address and the DCGM annotation,
// writing only when something changed or the last write is old.
func (s *Simlet) refreshNodeStatus(ctx context.Context, node *corev1.Node, ns *nodeState, now time.Time) error {
	endpoint := fmt.Sprintf("http://%s:%d/metrics", ns.ip, DCGMPort)
	if node.Annotations[AnnotationDCGMEndpoint] != endpoint {
		patch := client.MergeFrom(node.DeepCopy())
		if node.Annotations == nil {
			node.Annotations = map[string]string{}
		}
		node.Annotations[AnnotationDCGMEndpoint] = endpoint
		if err := s.client.Patch(ctx, node, patch); err != nil {
			return fmt.Errorf("annotating node %s: %w", node.Name, err)
		}
	}
	want := NodeStatus(node.Status, ns.ip, now)
	s.mu.Lock()
	stale := now.Sub(ns.lastStatus) >= s.statusEvery
	s.mu.Unlock()
	if !stale && readyTrue(node.Status) && apiequality.Semantic.DeepEqual(node.Status.Addresses, want.Addresses) {
		return nil
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := &corev1.Node{}
		if err := s.client.Get(ctx, client.ObjectKey{Name: node.Name}, cur); err != nil {
			return err
		}
		cur.Status = NodeStatus(cur.Status, ns.ip, now)
		if err := s.client.Status().Update(ctx, cur); err != nil {
			return err
		}
		s.mu.Lock()
		ns.lastStatus = now
		s.mu.Unlock()
		return nil
	})
}

func readyTrue(st corev1.NodeStatus) bool {
	for _, c := range st.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// NodeStatus returns old with a fresh kubelet-style Ready condition (and the
// pressure conditions False), the node's loopback address and node info.
// Capacity is kept: the sim provider advertises GPUs on its own schedule.
func NodeStatus(old corev1.NodeStatus, ip string, now time.Time) corev1.NodeStatus {
	st := *old.DeepCopy()
	mt := metav1.NewTime(now)
	want := []struct {
		t      corev1.NodeConditionType
		status corev1.ConditionStatus
		reason string
	}{
		{corev1.NodeReady, corev1.ConditionTrue, "KubeletReady"},
		{corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory"},
		{corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure"},
		{corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID"},
	}
	var conds []corev1.NodeCondition
	for _, w := range want {
		c := corev1.NodeCondition{Type: w.t, Status: w.status, Reason: w.reason, LastHeartbeatTime: mt, LastTransitionTime: mt,
			Message: "simulated by spillway-simlet"}
		for _, o := range old.Conditions {
			if o.Type == w.t && o.Status == w.status {
				c.LastTransitionTime = o.LastTransitionTime
			}
		}
		conds = append(conds, c)
	}
	st.Conditions = conds
	st.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeHostName, Address: ip}}
	st.NodeInfo.KubeletVersion = "v1.37.2-simlet"
	st.NodeInfo.OperatingSystem, st.NodeInfo.Architecture = "linux", "amd64"
	st.NodeInfo.ContainerRuntimeVersion = "simlet://1"
	return st
}

// CutPool stops (cut=true) or resumes the heartbeats of a pool's nodes, as a
// lost cloud-edge link would. Pods keep running.
func (s *Simlet) CutPool(pool string, cut bool) error {
	if _, ok := s.pools[pool]; !ok {
		return fmt.Errorf("unknown pool %q (known: %s)", pool, strings.Join(s.order, ", "))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cut[pool] = cut
	s.log.Info("pool heartbeats", "pool", pool, "cut", cut)
	return nil
}

// KillNode stops a node at once: its pods end without grace and it sends no
// more heartbeats, so the node lifecycle controller marks it NotReady.
func (s *Simlet) KillNode(name string) error {
	s.mu.Lock()
	if _, ok := s.nodes[name]; !ok {
		s.mu.Unlock()
		return fmt.Errorf("unknown node %q", name)
	}
	s.killed[name] = true
	var victims []*podState
	for _, ps := range s.pods {
		if ps.node == name {
			victims = append(victims, ps)
		}
	}
	s.mu.Unlock()
	for _, ps := range victims {
		if ps.runner != nil {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			_ = ps.runner.Stop(ctx)
		}
	}
	s.log.Info("node killed", "node", name, "pods", len(victims))
	return nil
}

// Faults lists the cut pools and killed nodes, sorted.
func (s *Simlet) Faults() (cutPools, killedNodes []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, c := range s.cut {
		if c {
			cutPools = append(cutPools, p)
		}
	}
	for n := range s.killed {
		killedNodes = append(killedNodes, n)
	}
	sort.Strings(cutPools)
	sort.Strings(killedNodes)
	return cutPools, killedNodes
}

// Run sends heartbeats until ctx ends, then stops every pod gracefully
// (bounded by grace).
func (s *Simlet) Run(ctx context.Context, grace time.Duration) error {
	t := s.clock.NewTicker(s.HeartbeatInterval())
	defer t.Stop()
	for {
		if err := s.Heartbeat(ctx); err != nil && ctx.Err() == nil {
			s.log.Error(err, "heartbeat")
		}
		if err := s.ServeDCGM(); err != nil {
			s.log.Error(err, "DCGM exporter")
		}
		select {
		case <-ctx.Done():
			return s.shutdown(grace)
		case <-t.C():
		}
	}
}

func (s *Simlet) shutdown(grace time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	s.mu.Lock()
	var runners []Runner
	for _, ps := range s.pods {
		if ps.runner != nil {
			runners = append(runners, ps.runner)
		}
	}
	var servers []*http.Server
	for _, ns := range s.nodes {
		if ns.dcgm != nil {
			servers = append(servers, ns.dcgm)
		}
		if ns.dcgmLn != nil {
			_ = ns.dcgmLn.Close()
			ns.dcgmLn = nil
		}
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range runners {
		wg.Add(1)
		go func() { defer wg.Done(); _ = r.Stop(ctx) }()
	}
	wg.Wait()
	for _, srv := range servers {
		_ = srv.Shutdown(ctx)
	}
	return nil
}

// ServeDCGM starts the DCGM exporter of every tracked node that has none yet.
func (s *Simlet) ServeDCGM() error {
	s.serveMu.Lock()
	defer s.serveMu.Unlock()
	s.mu.Lock()
	var todo []*nodeState
	for _, ns := range s.nodes {
		if ns.dcgm == nil {
			todo = append(todo, ns)
		}
	}
	s.mu.Unlock()
	var errs []error
	for _, ns := range todo {
		s.mu.Lock()
		ln := ns.dcgmLn
		ns.dcgmLn = nil
		s.mu.Unlock()
		if ln == nil {
			var err error
			if ln, err = net.Listen("tcp", fmt.Sprintf("%s:%d", ns.ip, DCGMPort)); err != nil {
				errs = append(errs, fmt.Errorf("DCGM exporter of node %s: %w", ns.name, err))
				continue
			}
		}
		mux := http.NewServeMux()
		name := ns.name
		mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			_, _ = w.Write([]byte(s.DCGMText(name)))
		})
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		s.mu.Lock()
		ns.dcgm = srv
		s.mu.Unlock()
		go func() { _ = srv.Serve(ln) }()
	}
	return errors.Join(errs...)
}

// DCGMText renders a node's DCGM metrics: per-pod SM utilisation and per-GPU
// utilisation (pods hold GPUs in order of their start).
func (s *Simlet) DCGMText(node string) string {
	s.mu.Lock()
	ns := s.nodes[node]
	type pod struct {
		ns, name, container string
		sm                  float64
	}
	var pods []pod
	for _, ps := range s.pods {
		if ps.node != node || ps.runner == nil {
			continue
		}
		pods = append(pods, pod{ps.key.Namespace, ps.key.Name, ps.container, ps.runner.SMUtil()})
	}
	s.mu.Unlock()
	if ns == nil {
		return ""
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].ns+"/"+pods[i].name < pods[j].ns+"/"+pods[j].name })
	var b strings.Builder
	b.WriteString("# TYPE DCGM_CUSTOM_PROCESS_SM_UTIL gauge\n")
	for i, p := range pods {
		if i >= ns.gpu.Count {
			break
		}
		fmt.Fprintf(&b, "DCGM_CUSTOM_PROCESS_SM_UTIL{gpu=\"%d\",namespace=%q,pod=%q,container=%q} %g\n", i, p.ns, p.name, p.container, p.sm)
	}
	b.WriteString("# TYPE DCGM_FI_DEV_GPU_UTIL gauge\n")
	for g := range ns.gpu.Count {
		if g < len(pods) {
			p := pods[g]
			fmt.Fprintf(&b, "DCGM_FI_DEV_GPU_UTIL{gpu=\"%d\",namespace=%q,pod=%q,container=%q} %g\n", g, p.ns, p.name, p.container, p.sm)
		} else {
			fmt.Fprintf(&b, "DCGM_FI_DEV_GPU_UTIL{gpu=\"%d\"} 0\n", g)
		}
	}
	return b.String()
}

var _ reconcile.Reconciler = (*Simlet)(nil)
