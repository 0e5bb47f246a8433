package cloudprovider

import (
	"errors"
	"fmt"
)

// Sentinel kinds of provider failure; match them with errors.Is or the IsX helpers.
var (
	// ErrQuota means the account's quota for the instance type is used up.
	ErrQuota = errors.New("quota exceeded")
	// ErrOutOfStock means the zone has no instances of the type to sell.
	ErrOutOfStock = errors.New("out of stock")
	// ErrTransient means a failure worth retrying soon (throttling, timeouts).
	ErrTransient = errors.New("transient provider error")
)

// Error is a provider failure for one pool.
type Error struct {
	// Kind is ErrQuota, ErrOutOfStock or ErrTransient (or nil when unknown).
	Kind error
	// Pool is the pool the call was for.
	Pool string
	// Op is the failed operation: create, delete or list.
	Op string
	// Message is the provider's own words.
	Message string
}

func (e *Error) Error() string {
	kind := "provider error"
	if e.Kind != nil {
		kind = e.Kind.Error()
	}
	if e.Message == "" {
		return fmt.Sprintf("%s pool %q: %s", e.Op, e.Pool, kind)
	}
	return fmt.Sprintf("%s pool %q: %s: %s", e.Op, e.Pool, kind, e.Message)
}

// Unwrap returns the error's kind.
func (e *Error) Unwrap() error { return e.Kind }

// NewError returns a provider error of kind for op on pool.
func NewError(kind error, op, pool, message string) *Error {
	return &Error{Kind: kind, Op: op, Pool: pool, Message: message}
}

// IsQuota reports whether err is a quota failure.
func IsQuota(err error) bool { return errors.Is(err, ErrQuota) }

// IsOutOfStock reports whether err is an out-of-stock failure.
func IsOutOfStock(err error) bool { return errors.Is(err, ErrOutOfStock) }

// IsTransient reports whether err is worth retrying soon.
func IsTransient(err error) bool { return errors.Is(err, ErrTransient) }

// Reason is a short CamelCase word for err, for events, conditions and metric labels.
func Reason(err error) string {
	switch {
	case err == nil:
		return ""
	case IsQuota(err):
		return "QuotaExceeded"
	case IsOutOfStock(err):
		return "OutOfStock"
	case IsTransient(err):
		return "Transient"
	default:
		return "ProviderError"
	}
}
