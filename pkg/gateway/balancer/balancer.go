// Package balancer picks the replica that serves a request. It is pure: the
// caller hands it an immutable snapshot of the service's endpoints (address,
// node pool and its rank, the gateway's own outstanding requests, the engine's
// scraped queue and KV-cache use) and a seeded random source, and gets back
// the index of the chosen endpoint.
//
// The choice is made in three steps:
//  1. pool preference: candidates are grouped by pool rank (cheapest first);
//     the first group with a replica below the saturation threshold is used,
//     so traffic stays on IDC replicas until they are busy and spills to cloud
//     replicas above it; when every replica is saturated all are candidates;
//  2. prefix affinity (optional): requests sharing a prompt prefix go to the
//     same replica (rendezvous hashing) unless its load exceeds LoadFactor
//     times the average (consistent hashing with bounded load);
//  3. the algorithm: least outstanding requests (default), power of two
//     choices, or round robin (the baseline in benchmarks).
package balancer

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
)

// Algorithm names a picking rule.
type Algorithm string

const (
	// LeastRequest picks the least loaded candidate (ties at random).
	LeastRequest Algorithm = "least-request"
	// PowerOfTwo picks the less loaded of two random candidates.
	PowerOfTwo Algorithm = "p2c"
	// RoundRobin cycles through candidates, blind to load.
	RoundRobin Algorithm = "round-robin"
)

// ParseAlgorithm reads an algorithm name ("" is LeastRequest).
func ParseAlgorithm(s string) (Algorithm, error) {
	switch a := Algorithm(strings.ToLower(strings.TrimSpace(s))); a {
	case "":
		return LeastRequest, nil
	case LeastRequest, PowerOfTwo, RoundRobin:
		return a, nil
	default:
		return "", fmt.Errorf("unknown balancing algorithm %q (want %s, %s or %s)", s, LeastRequest, PowerOfTwo, RoundRobin)
	}
}

// Policy configures the picker for one service.
type Policy struct {
	// Algorithm is the final picking rule.
	Algorithm Algorithm `json:"algorithm,omitempty"`
	// PoolPreference keeps traffic on the cheapest pool below Saturation.
	PoolPreference bool `json:"poolPreference,omitempty"`
	// Saturation is the load (see Endpoint.Load) at which a replica counts as
	// saturated for pool preference. 0 means DefaultSaturation.
	Saturation float64 `json:"saturation,omitempty"`
	// PrefixAffinity sends requests with the same prompt prefix to the same
	// replica while its load stays under LoadFactor x average.
	PrefixAffinity bool `json:"prefixAffinity,omitempty"`
	// LoadFactor bounds affinity (> 1; 0 means DefaultLoadFactor).
	LoadFactor float64 `json:"loadFactor,omitempty"`
	// QueueWeight is the extra load counted per waiting request of the engine
	// (0 means DefaultQueueWeight; negative disables).
	QueueWeight float64 `json:"queueWeight,omitempty"`
	// KVWeight is the extra load counted at a full KV cache (0 means
	// DefaultKVWeight; negative disables).
	KVWeight float64 `json:"kvWeight,omitempty"`
}

// Defaults of Policy.
const (
	DefaultSaturation  = 8
	DefaultLoadFactor  = 1.25
	DefaultQueueWeight = 1
	DefaultKVWeight    = 4
)

// Endpoint is one replica as the picker sees it.
type Endpoint struct {
	// Address is host:port.
	Address string
	// Pool is the node pool the replica runs on.
	Pool string
	// PoolRank orders pools by cost: lower is cheaper (IDC pools are 0).
	PoolRank int
	// Outstanding is the number of requests the gateway has in flight there.
	Outstanding int
	// Scraped is true when Waiting, Running and KVUsage are fresh.
	Scraped bool
	// Waiting and Running are the engine's queued and running requests.
	Waiting, Running float64
	// OutstandingAtScrape is the gateway's own Outstanding when Waiting and
	// Running were scraped: the engine's count beyond it is other clients'
	// traffic (other gateway replicas).
	OutstandingAtScrape int
	// KVUsage is the engine's KV-cache use, 0..1.
	KVUsage float64
	// Excluded endpoints are never picked (already tried, or ejected).
	Excluded bool
}

// Load is the endpoint's load under policy p: the gateway's outstanding
// count (exact, now) plus the other clients' requests the engine reported at
// the last scrape (its running+waiting beyond what this gateway had in flight
// then), plus a penalty per waiting request and for KV use.
//
// The scrape is up to a scrape interval old: taking max(outstanding,
// running+waiting) instead let a replica scraped while busy look busy after
// it drained, so short requests herded onto the others and it idled until
// the next scrape (seen with three replicas at 20 clients).
func (e Endpoint) Load(p Policy) float64 {
	l := float64(e.Outstanding)
	if !e.Scraped {
		return l
	}
	l += max(0, e.Running+e.Waiting-float64(e.OutstandingAtScrape))
	if w := weight(p.QueueWeight, DefaultQueueWeight); w > 0 {
		l += w * e.Waiting
	}
	if w := weight(p.KVWeight, DefaultKVWeight); w > 0 {
		l += w * min(max(e.KVUsage, 0), 1)
	}
	return l
}

func weight(v, def float64) float64 {
	if v == 0 {
		return def
	}
	return v
}

// Request is what the picker knows of the request.
type Request struct {
	// Prefix is the prompt prefix key for affinity (empty: none).
	Prefix []byte
	// Sequence is a counter for round robin.
	Sequence uint64
}

// Pick returns the index in eps of the endpoint to use, or -1 when every
// endpoint is excluded (or eps is empty). rnd breaks ties and drives p2c.
func Pick(p Policy, eps []Endpoint, req Request, rnd *rand.Rand) int {
	var candBuf [16]int
	var loadBuf [16]float64
	cand, loads := candBuf[:0], loadBuf[:]
	if len(eps) > len(candBuf) {
		cand, loads = make([]int, 0, len(eps)), make([]float64, len(eps))
	}
	loads = loads[:len(eps)]
	for i, e := range eps {
		if !e.Excluded {
			cand = append(cand, i)
			loads[i] = e.Load(p)
		}
	}
	if len(cand) == 0 {
		return -1
	}
	if p.PoolPreference {
		cand = preferredPool(cand, eps, loads, weight(p.Saturation, DefaultSaturation))
	}
	if p.PrefixAffinity && len(req.Prefix) > 0 && len(cand) > 1 {
		if i := affinity(cand, eps, loads, req.Prefix, weight(p.LoadFactor, DefaultLoadFactor)); i >= 0 {
			return i
		}
	}
	switch p.Algorithm {
	case RoundRobin:
		return cand[req.Sequence%uint64(len(cand))]
	case PowerOfTwo:
		if len(cand) == 1 {
			return cand[0]
		}
		a := rnd.IntN(len(cand))
		b := rnd.IntN(len(cand) - 1)
		if b >= a {
			b++
		}
		if loads[cand[b]] < loads[cand[a]] {
			return cand[b]
		}
		return cand[a]
	default:
		return least(cand, loads, rnd)
	}
}

// least returns the least loaded candidate; ties are broken uniformly at random
// (reservoir sampling over the tied ones).
func least(cand []int, loads []float64, rnd *rand.Rand) int {
	best, ties := cand[0], 1
	for _, i := range cand[1:] {
		switch {
		case loads[i] < loads[best]:
			best, ties = i, 1
		case loads[i] == loads[best]:
			ties++
			if rnd.IntN(ties) == 0 {
				best = i
			}
		}
	}
	return best
}

// preferredPool keeps the candidates of the cheapest pool rank that has a
// replica below saturation; all candidates when every replica is saturated.
func preferredPool(cand []int, eps []Endpoint, loads []float64, saturation float64) []int {
	bestRank, found := 0, false
	for _, i := range cand {
		if loads[i] < saturation && (!found || eps[i].PoolRank < bestRank) {
			bestRank, found = eps[i].PoolRank, true
		}
	}
	if !found {
		return cand
	}
	out := cand[:0:0]
	for _, i := range cand {
		if eps[i].PoolRank == bestRank && loads[i] < saturation {
			out = append(out, i)
		}
	}
	return out
}

// affinity ranks candidates by a hash of (prefix, address) and returns the
// best ranked one whose load is within factor x the average load (counting
// the new request, rounded up as in Mirrokni et al.), or -1.
func affinity(cand []int, eps []Endpoint, loads []float64, prefix []byte, factor float64) int {
	total := 1.0
	for _, i := range cand {
		total += loads[i]
	}
	bound := math.Ceil(factor * total / float64(len(cand)))
	base := fnv1a(fnvOffset, prefix)
	best, bestScore := -1, uint64(0)
	for _, i := range cand {
		if loads[i]+1 > bound {
			continue
		}
		if s := mix(fnv1a(base, []byte(eps[i].Address))); best < 0 || s > bestScore {
			best, bestScore = i, s
		}
	}
	return best
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// fnv1a continues an FNV-1a hash; fixed, so every gateway replica agrees.
func fnv1a(h uint64, b []byte) uint64 {
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return h
}

// mix spreads the bits of h (splitmix64 finaliser) so that scores of
// addresses differing in the last byte are not ordered alike.
func mix(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
