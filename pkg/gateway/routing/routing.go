// Package routing maps a request to an InferenceService: by Host
// "{name}-{namespace}.{domain}", or, on any other host (the bare gateway
// address), by the request's model name. A Table is an immutable snapshot of
// the services and their ready endpoints; a Router swaps tables atomically and
// tells waiters when the table changed.
package routing

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spillway-io/spillway/pkg/gateway/balancer"
)

// Endpoint is a ready replica of a service.
type Endpoint struct {
	// Address is host:port of the engine.
	Address string `json:"address"`
	// Pool is the node pool the replica runs on ("" if unknown).
	Pool string `json:"pool,omitempty"`
	// PoolRank orders pools by cost, lower first.
	PoolRank int `json:"poolRank,omitempty"`
}

// Service is an InferenceService as the gateway routes to it.
type Service struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Model is the served model name.
	Model string `json:"model"`
	// Endpoints are the ready replicas.
	Endpoints []Endpoint `json:"endpoints,omitempty"`
	// Policy configures balancing.
	Policy balancer.Policy `json:"policy"`
	// Timeout bounds a request end to end (0: the gateway's default).
	Timeout time.Duration `json:"timeout,omitempty"`
	// Created is when the service was created (for the model list).
	Created time.Time `json:"created,omitzero"`
}

// Key is "namespace/name".
func (s *Service) Key() string { return s.Namespace + "/" + s.Name }

// Host is the service's virtual host under domain.
func Host(name, namespace, domain string) string {
	return strings.ToLower(name + "-" + namespace + "." + domain)
}

// Errors of Lookup.
var (
	ErrUnknownHost  = errors.New("unknown host")
	ErrUnknownModel = errors.New("unknown model")
)

// Table is an immutable routing snapshot.
type Table struct {
	domain   string
	byHost   map[string]*Service
	byModel  map[string]*Service
	byKey    map[string]*Service
	services []*Service
}

// NewTable builds a table for domain. When two services serve the same model
// name, model routing picks the first by namespace/name; host routing reaches
// both.
func NewTable(domain string, svcs []Service) *Table {
	t := &Table{
		domain:  strings.ToLower(strings.TrimSuffix(domain, ".")),
		byHost:  make(map[string]*Service, len(svcs)),
		byModel: make(map[string]*Service, len(svcs)),
		byKey:   make(map[string]*Service, len(svcs)),
	}
	for i := range svcs {
		s := svcs[i]
		t.services = append(t.services, &s)
	}
	sort.Slice(t.services, func(i, j int) bool { return t.services[i].Key() < t.services[j].Key() })
	for _, s := range t.services {
		t.byHost[Host(s.Name, s.Namespace, t.domain)] = s
		t.byKey[s.Key()] = s
		if _, dup := t.byModel[s.Model]; !dup {
			t.byModel[s.Model] = s
		}
	}
	return t
}

// Services lists the services sorted by namespace/name.
func (t *Table) Services() []*Service { return t.services }

// Domain is the table's domain.
func (t *Table) Domain() string { return t.domain }

// ByHost resolves the Host header. It returns the service for a service host;
// nil and no error for the bare gateway host (route by model); ErrUnknownHost
// for a host under the domain that names no service.
func (t *Table) ByHost(host string) (*Service, error) {
	h := normalizeHost(host)
	if s, ok := t.byHost[h]; ok {
		return s, nil
	}
	if t.domain != "" && strings.HasSuffix(h, "."+t.domain) {
		return nil, fmt.Errorf("%w %q: no InferenceService is served at this host", ErrUnknownHost, h)
	}
	return nil, nil
}

// ByKey returns the service "namespace/name", or nil.
func (t *Table) ByKey(key string) *Service { return t.byKey[key] }

// ByModel resolves a model name on the bare host.
func (t *Table) ByModel(model string) (*Service, error) {
	if s, ok := t.byModel[model]; ok {
		return s, nil
	}
	return nil, fmt.Errorf("%w: the model %q does not exist", ErrUnknownModel, model)
}

// Lookup resolves a request: by host, else by model.
func (t *Table) Lookup(host, model string) (*Service, error) {
	s, err := t.ByHost(host)
	if err != nil || s != nil {
		return s, err
	}
	return t.ByModel(model)
}

func normalizeHost(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.TrimSuffix(strings.ToLower(host), ".")
}

// Router holds the current table.
type Router struct {
	table   atomic.Pointer[Table]
	mu      sync.Mutex
	changed chan struct{}
}

// NewRouter starts with an empty table for domain.
func NewRouter(domain string) *Router {
	r := &Router{changed: make(chan struct{})}
	r.table.Store(NewTable(domain, nil))
	return r
}

// Table is the current snapshot.
func (r *Router) Table() *Table { return r.table.Load() }

// Update replaces the services and wakes every waiter of Changed.
func (r *Router) Update(svcs []Service) {
	r.table.Store(NewTable(r.table.Load().domain, svcs))
	r.mu.Lock()
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// Changed returns a channel closed at the next Update.
func (r *Router) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}
