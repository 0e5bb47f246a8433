package framework

import (
	"context"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// PollInterval is how often Eventually checks its condition.
const PollInterval = 100 * time.Millisecond

// Eventually polls cond every PollInterval until it is true, failing the test
// with what it waited for when timeout passes. Errors from cond are retried
// and the last one is reported.
func Eventually(tb testing.TB, timeout time.Duration, cond func(context.Context) (bool, error), what string) {
	tb.Helper()
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), PollInterval, timeout, true, func(ctx context.Context) (bool, error) {
		ok, err := cond(ctx)
		if err != nil {
			last = err
			return false, nil
		}
		return ok, nil
	})
	if err != nil {
		if last != nil {
			tb.Fatalf("waited %s for %s; last error: %v", timeout, what, last)
		}
		tb.Fatalf("waited %s for %s", timeout, what)
	}
}
