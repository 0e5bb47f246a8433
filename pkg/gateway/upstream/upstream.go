// Package upstream keeps the live state of every replica the gateway sends
// to: requests it has outstanding there, the engine's last scraped load, and
// its outlier (ejection) record. The balancer reads it through Snapshot.
package upstream

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/spillway-io/spillway/pkg/gateway/outlier"
)

// Load is an engine's scraped state.
type Load struct {
	Waiting, Running, KVUsage float64
	// Outstanding is the gateway's own in-flight count there when the
	// scrape was stored (set by SetLoad).
	Outstanding int
	// At is when it was scraped.
	At time.Time
}

// Upstream is one replica's live state.
type Upstream struct {
	Address     string
	outstanding atomic.Int64
	load        atomic.Pointer[Load]

	mu      sync.Mutex
	outlier outlier.State
}

// Begin counts a request sent; End, called once for it, ends it.
func (u *Upstream) Begin() { u.outstanding.Add(1) }

// End ends a request Begin counted.
func (u *Upstream) End() { u.outstanding.Add(-1) }

// Outstanding is the number of requests in flight there.
func (u *Upstream) Outstanding() int { return int(u.outstanding.Load()) }

// SetLoad stores a scrape result.
func (u *Upstream) SetLoad(l Load) {
	l.Outstanding = int(u.outstanding.Load())
	u.load.Store(&l)
}

// Load returns the last scrape and whether it is younger than maxAge at now.
func (u *Upstream) Load(now time.Time, maxAge time.Duration) (Load, bool) {
	l := u.load.Load()
	if l == nil || now.Sub(l.At) > maxAge {
		return Load{}, false
	}
	return *l, true
}

// Failure records a failed request; true if it ejected the replica.
func (u *Upstream) Failure(p outlier.Policy, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.outlier.Failure(p, now)
}

// Success records a successful request.
func (u *Upstream) Success(now time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.outlier.Success(now)
}

// Ejected reports whether the replica is ejected at now.
func (u *Upstream) Ejected(now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.outlier.Ejected(now)
}

// Registry holds the Upstreams by address.
type Registry struct {
	mu sync.RWMutex
	m  map[string]*Upstream
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{m: map[string]*Upstream{}} }

// Get returns the Upstream of addr, creating it.
func (r *Registry) Get(addr string) *Upstream {
	r.mu.RLock()
	u := r.m[addr]
	r.mu.RUnlock()
	if u != nil {
		return u
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if u = r.m[addr]; u == nil {
		u = &Upstream{Address: addr}
		r.m[addr] = u
	}
	return u
}

// Retain drops the replicas not in keep that have nothing outstanding.
func (r *Registry) Retain(keep map[string]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for a, u := range r.m {
		if !keep[a] && u.Outstanding() == 0 {
			delete(r.m, a)
		}
	}
}

// Addresses lists the known replicas.
func (r *Registry) Addresses() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.m))
	for a := range r.m {
		out = append(out, a)
	}
	return out
}
