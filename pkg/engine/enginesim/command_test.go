package enginesim

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const seedCmd = "python3 -m vllm.entrypoints.openai.api_server --port 8080 --trust-remote-code --served-model-name qwen " +
	"--model /mnt/models/Qwen --gpu-memory-utilization 0.95 --quantization gptq --max-model-len=6144"

func TestBuildConfigSeed(t *testing.T) {
	cfg, warns, err := BuildConfig(strings.Fields(seedCmd), DefaultSettings())
	if err != nil || len(warns) != 0 {
		t.Fatalf("seed command: %v, warnings %v", err, warns)
	}
	got := []any{cfg.ServedModelNames, cfg.ModelPath, cfg.Engine.MaxModelLen, cfg.Engine.GPU.Name, cfg.Engine.Model.Quantization, cfg.Engine.GPUMemoryUtilization}
	want := []any{[]string{"qwen"}, "/mnt/models/Qwen", 6144, "V100-32GB", "gptq", 0.95}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("config (-want,+got):\n%s", diff)
	}
	if got := ListenAddress(DefaultSettings(), 8080); got != "127.0.0.1:8080" {
		t.Errorf("listen address %q", got)
	}
}

func TestBuildConfigErrors(t *testing.T) {
	cases := []struct {
		argv []string
		sim  func(*Settings)
		want string
	}{
		{[]string{"--gpu-memory-utilization", "2"}, nil, "must be a number in (0, 1]"},
		{nil, func(s *Settings) { s.GPU = "tpu" }, `unknown GPU profile "tpu"`},
		{nil, func(s *Settings) { s.ModelParamsBillions = -1 }, "billion parameters"},
		{[]string{"--max-model-len", "32768"}, func(s *Settings) { s.GPU = "v100-16gb" }, "less than max model len 32768"},
	}
	for _, tc := range cases {
		s := DefaultSettings()
		if tc.sim != nil {
			tc.sim(&s)
		}
		_, _, err := BuildConfig(tc.argv, s)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("BuildConfig(%q): %v, want error containing %q", tc.argv, err, tc.want)
		}
	}
}

func TestCommandServesSeedCommand(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := NewCommand()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd.SetContext(ctx)
	cmd.SetArgs(append(append([]string{"--sim-startup-delay=0s", "--sim-listen", addr}, strings.Fields(seedCmd)...), "--unknown-flag", "x"))
	done := make(chan error, 1)
	go func() { done <- cmd.Execute() }()
	var resp *http.Response
	for range 100 {
		if resp, err = http.Get("http://" + addr + "/v1/models"); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	resp.Body.Close()
	if !strings.Contains(body.String(), `"id":"qwen"`) || !strings.Contains(body.String(), `"max_model_len":6144`) {
		t.Errorf("/v1/models: %s", body.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("command: %v", err)
	}
}

func TestCommandHelpAndBadFlag(t *testing.T) {
	var out bytes.Buffer
	cmd := NewCommand()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--help"})
	if err := cmd.Execute(); err != nil || !strings.Contains(out.String(), "--sim-gpu") {
		t.Errorf("help: %v %q", err, out.String())
	}
	cmd = NewCommand()
	cmd.SetArgs([]string{"--sim-startup-delay", "soon"})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "see spillway engine-sim --help") {
		t.Errorf("bad flag: %v", err)
	}
}
