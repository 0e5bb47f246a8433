package auth

import (
	"context"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Source loads the current keys.
type Source func(ctx context.Context) ([]Key, error)

// FileSource reads keys from a key file.
func FileSource(path string) Source {
	return func(context.Context) ([]Key, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading API keys: %w", err)
		}
		return ParseKeys(path, string(b))
	}
}

// SecretSource reads keys from every value of a Secret, each in key-file format.
func SecretSource(cs kubernetes.Interface, namespace, name string) Source {
	return func(ctx context.Context) ([]Key, error) {
		s, err := cs.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("reading API keys from Secret %s/%s: %w", namespace, name, err)
		}
		names := make([]string, 0, len(s.Data))
		for k := range s.Data {
			names = append(names, k)
		}
		sort.Strings(names)
		var all []Key
		for _, k := range names {
			keys, err := ParseKeys(fmt.Sprintf("Secret %s/%s key %s", namespace, name, k), string(s.Data[k]))
			if err != nil {
				return nil, err
			}
			all = append(all, keys...)
		}
		return all, nil
	}
}

// Refresh reloads the keys of a every period until ctx ends; on an error
// the previous keys stay.
func Refresh(ctx context.Context, log logr.Logger, every time.Duration, a *Authenticator, load Source) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		keys, err := load(ctx)
		if err != nil {
			log.Error(err, "reloading API keys; keeping the previous ones")
			continue
		}
		a.SetKeys(keys)
	}
}
