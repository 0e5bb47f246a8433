package auth

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseKeys(t *testing.T) {
	got, err := ParseKeys("keys", "# team keys\nsk-a\n  sk-b 2.5\nsk-c 10 20\n\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []Key{{Secret: "sk-a"}, {Secret: "sk-b", RPS: 2.5}, {Secret: "sk-c", RPS: 10, Burst: 20}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("ParseKeys (-want,+got):\n%s", d)
	}
	for _, bad := range []string{"k x", "k 1 0", "k -1", "k 1 2 3", "k NaN"} {
		if _, err := ParseKeys("f", bad); err == nil || !strings.HasPrefix(err.Error(), "f:1: ") {
			t.Errorf("ParseKeys(%q) = %v, want an error naming f:1", bad, err)
		}
	}
}

func TestCheck(t *testing.T) {
	a := New([]Key{{Secret: "sk-free"}, {Secret: "sk-slow", RPS: 1, Burst: 2}})
	now := time.Unix(100, 0)
	cases := []struct {
		header string
		want   error
	}{
		{"", ErrMissingKey},
		{"Basic abc", ErrMissingKey},
		{"Bearer ", ErrMissingKey},
		{"Bearer sk-wrong", ErrInvalidKey},
		{"Bearer sk-free", nil},
		{"bearer  sk-free ", nil},
	}
	for _, tc := range cases {
		if _, err := a.Check(tc.header, now); !errors.Is(err, tc.want) {
			t.Errorf("Check(%q) = %v, want %v", tc.header, err, tc.want)
		}
	}
	// Burst of 2, then 1 per second.
	for i, want := range []error{nil, nil, ErrRateLimited} {
		if _, err := a.Check("Bearer sk-slow", now); !errors.Is(err, want) {
			t.Errorf("request %d: %v, want %v", i, err, want)
		}
	}
	if _, err := a.Check("Bearer sk-slow", now.Add(time.Second)); err != nil {
		t.Errorf("after a second: %v", err)
	}
	// Reloading the same keys keeps the bucket (still empty).
	a.SetKeys([]Key{{Secret: "sk-slow", RPS: 1, Burst: 2}})
	if _, err := a.Check("Bearer sk-slow", now.Add(time.Second)); !errors.Is(err, ErrRateLimited) {
		t.Errorf("reload reset the bucket: %v", err)
	}
	if _, err := a.Check("Bearer sk-free", now); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("removed key still accepted: %v", err)
	}
}

func TestFileSource(t *testing.T) {
	path := t.TempDir() + "/keys"
	if err := os.WriteFile(path, []byte("sk-1 5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := FileSource(path)(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]Key{{Secret: "sk-1", RPS: 5}}, keys); d != "" {
		t.Errorf("FileSource (-want,+got):\n%s", d)
	}
	if _, err := FileSource(path + ".missing")(context.Background()); err == nil {
		t.Error("missing file accepted")
	}
}
