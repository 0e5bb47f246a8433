package main

import (
	"context"
	"strings"
	"testing"
)

func TestRunRefusesBadFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    flags
		want string
	}{
		{"address beyond loopback", flags{addr: "0.0.0.0:10361", clusterFile: "../../config/clusters/default.yaml"}, "must be a loopback host:port"},
		{"address without port", flags{addr: "127.0.0.1", clusterFile: "../../config/clusters/default.yaml"}, "must be a loopback host:port"},
		{"missing cluster file", flags{addr: "127.0.0.1:0", clusterFile: "nope.yaml"}, "reading cluster file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := run(context.Background(), tc.f)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
