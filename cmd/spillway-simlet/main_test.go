package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spillway-io/spillway/pkg/simlet"
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

func TestPodRuntimeFromFlags(t *testing.T) {
	ok := flags{runtime: "engine", modelParams: 7, load: time.Second, backOff: time.Second, backOffMax: time.Minute}
	rt, err := podRuntime(ok)
	if err != nil {
		t.Fatal(err)
	}
	e, isEngine := rt.(simlet.EngineRuntime)
	if !isEngine || e.Settings.StartupDelay != time.Second || e.Settings.ModelParamsBillions != 7 {
		t.Errorf("default runtime %T %+v, want the engine with a 1s start-up", rt, rt)
	}
	port := ok
	port.runtime = "port"
	if rt, err := podRuntime(port); err != nil || rt != (simlet.PortRuntime{LoadDelay: time.Second}) {
		t.Errorf("--runtime=port: %T %v", rt, err)
	}
	for _, tc := range []struct {
		name string
		edit func(*flags)
		want string
	}{
		{"unknown runtime", func(f *flags) { f.runtime = "docker" }, `--runtime "docker": want "engine" or "port"`},
		{"negative load delay", func(f *flags) { f.load = -time.Second }, "--load-delay -1s must not be negative"},
		{"model size", func(f *flags) { f.modelParams = 0 }, "--sim-model-params 0 must be in (0, 1000]"},
		{"back-off above its cap", func(f *flags) { f.backOff = time.Hour }, "--restart-backoff 1h0m0s must not be negative nor above --restart-backoff-max 1m0s"},
	} {
		f := ok
		tc.edit(&f)
		if _, err := podRuntime(f); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}
