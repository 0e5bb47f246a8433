// Package auth checks the gateway's optional API keys ("Authorization: Bearer
// KEY") and applies each key's rate limit. Keys are read from text in the
// format of a key file (one key per line, "KEY [REQUESTS_PER_SECOND [BURST]]",
// '#' comments), which is also the format of each value of a key Secret.
package auth

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Errors of Check.
var (
	ErrMissingKey  = errors.New("missing API key: send \"Authorization: Bearer <key>\"")
	ErrInvalidKey  = errors.New("incorrect API key provided")
	ErrRateLimited = errors.New("rate limit reached for this API key")
)

// Key is one API key and its limit.
type Key struct {
	// Secret is the key itself.
	Secret string
	// RPS is the sustained requests per second (0: unlimited).
	RPS float64
	// Burst is the bucket size (0: max(1, ceil(RPS))).
	Burst int
}

// ParseKeys reads keys in key-file format. name says where they come from in errors.
func ParseKeys(name, text string) ([]Key, error) {
	var keys []Key
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) > 3 {
			return nil, fmt.Errorf("%s:%d: want \"KEY [REQUESTS_PER_SECOND [BURST]]\", got %d fields", name, n, len(f))
		}
		k := Key{Secret: f[0]}
		if len(f) > 1 {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil || v < 0 || v != v {
				return nil, fmt.Errorf("%s:%d: requests per second %q is not a non-negative number", name, n, f[1])
			}
			k.RPS = v
		}
		if len(f) > 2 {
			v, err := strconv.Atoi(f[2])
			if err != nil || v < 1 {
				return nil, fmt.Errorf("%s:%d: burst %q is not a positive integer", name, n, f[2])
			}
			k.Burst = v
		}
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return keys, nil
}

type entry struct {
	id      string
	limiter *rate.Limiter
}

// Authenticator holds the current keys. The zero value is not usable; use New.
type Authenticator struct {
	mu   sync.RWMutex
	keys map[[32]byte]*entry
}

// New returns an authenticator with keys.
func New(keys []Key) *Authenticator {
	a := &Authenticator{}
	a.SetKeys(keys)
	return a
}

// SetKeys replaces the keys; limiters of keys kept with the same limit keep their state.
func (a *Authenticator) SetKeys(keys []Key) {
	m := make(map[[32]byte]*entry, len(keys))
	a.mu.RLock()
	old := a.keys
	a.mu.RUnlock()
	for _, k := range keys {
		h := sha256.Sum256([]byte(k.Secret))
		var lim *rate.Limiter
		if k.RPS > 0 {
			burst := k.Burst
			if burst == 0 {
				burst = max(1, int(k.RPS+0.999999))
			}
			if e := old[h]; e != nil && e.limiter != nil && e.limiter.Limit() == rate.Limit(k.RPS) && e.limiter.Burst() == burst {
				lim = e.limiter
			} else {
				lim = rate.NewLimiter(rate.Limit(k.RPS), burst)
			}
		}
		m[h] = &entry{id: fmt.Sprintf("%x", h[:4]), limiter: lim}
	}
	a.mu.Lock()
	a.keys = m
	a.mu.Unlock()
}

// Check authenticates the Authorization header at now and spends one request
// of the key's rate. It returns a short non-secret id of the key.
func (a *Authenticator) Check(authorization string, now time.Time) (string, error) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(authorization), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", ErrMissingKey
	}
	h := sha256.Sum256([]byte(strings.TrimSpace(token)))
	a.mu.RLock()
	e := a.keys[h]
	a.mu.RUnlock()
	if e == nil {
		return "", ErrInvalidKey
	}
	if e.limiter != nil && !e.limiter.AllowN(now, 1) {
		return e.id, ErrRateLimited
	}
	return e.id, nil
}
