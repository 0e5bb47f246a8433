// Package outlier decides when a failing replica is ejected from balancing and
// for how long (passive outlier detection, as Envoy does it): after
// Consecutive failures in a row a replica is ejected for BaseEjection times the
// number of its ejections so far (capped at MaxEjection); a success resets the
// failure count. State is a plain value; time is a parameter.
package outlier

import "time"

// Policy configures ejection.
type Policy struct {
	// Consecutive failures that eject a replica (0: 3).
	Consecutive int
	// BaseEjection is the first ejection's length (0: 10s).
	BaseEjection time.Duration
	// MaxEjection caps the ejection length (0: 5m).
	MaxEjection time.Duration
}

func (p Policy) withDefaults() Policy {
	if p.Consecutive <= 0 {
		p.Consecutive = 3
	}
	if p.BaseEjection <= 0 {
		p.BaseEjection = 10 * time.Second
	}
	if p.MaxEjection <= 0 {
		p.MaxEjection = 5 * time.Minute
	}
	return p
}

// State is one replica's record.
type State struct {
	failures     int
	ejections    int
	ejectedUntil time.Time
}

// Failure records a failed request at now and reports whether it ejected the replica.
func (s *State) Failure(p Policy, now time.Time) bool {
	p = p.withDefaults()
	s.failures++
	if s.failures < p.Consecutive || now.Before(s.ejectedUntil) {
		return false
	}
	s.ejections++
	d := p.BaseEjection * time.Duration(s.ejections)
	if d > p.MaxEjection || d <= 0 {
		d = p.MaxEjection
	}
	s.ejectedUntil = now.Add(d)
	s.failures = 0
	return true
}

// Success records a successful request. The ejection count decays only when a
// replica stays healthy: it is forgotten on a success after the ejection ended.
func (s *State) Success(now time.Time) {
	s.failures = 0
	if !now.Before(s.ejectedUntil) {
		s.ejections = 0
	}
}

// Ejected reports whether the replica is ejected at now.
func (s *State) Ejected(now time.Time) bool { return now.Before(s.ejectedUntil) }
