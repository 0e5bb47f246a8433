package vllmargs

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const seedCmd = "python3 -m vllm.entrypoints.openai.api_server --port 8080 --trust-remote-code --served-model-name qwen " +
	"--model /mnt/models/Qwen --gpu-memory-utilization 0.95 --quantization gptq --max-model-len=6144"

func seedConfig() Config {
	c := Defaults()
	c.Port = 8080
	c.TrustRemoteCode = true
	c.ServedModelNames = []string{"qwen"}
	c.Model = "/mnt/models/Qwen"
	c.GPUMemoryUtilization = 0.95
	c.Quantization = "gptq"
	c.MaxModelLen = 6144
	return c
}

func TestParse(t *testing.T) {
	withModel := func(m string, f func(*Config)) Config {
		c := Defaults()
		c.Model = m
		c.ServedModelNames = []string{m}
		if f != nil {
			f(&c)
		}
		return c
	}
	cases := []struct {
		name  string
		argv  []string
		want  Config
		warns []Warning
	}{
		{name: "seed command as words", argv: strings.Fields(seedCmd), want: seedConfig()},
		{name: "seed command as one string", argv: []string{seedCmd}, want: seedConfig()},
		{name: "sh -c", argv: []string{"sh", "-c", seedCmd}, want: seedConfig()},
		{name: "flags alone", argv: strings.Fields(seedCmd)[3:], want: seedConfig()},
		{name: "empty", argv: nil, want: withModel("facebook/opt-125m", nil)},
		{name: "vllm serve", argv: []string{"vllm", "serve", "Qwen/Qwen2-7B", "--max-num-seqs", "64", "--no-enable-prefix-caching"},
			want: withModel("Qwen/Qwen2-7B", func(c *Config) { c.MaxNumSeqs = 64; c.EnablePrefixCaching = false })},
		{name: "underscores, K suffix, several names", argv: []string{"--max_model_len", "4K", "--served-model-name", "a", "b", "--port=9000"},
			want: withModel("facebook/opt-125m", func(c *Config) { c.MaxModelLen = 4096; c.ServedModelNames = []string{"a", "b"}; c.Port = 9000 })},
		{name: "unknown flags warn", argv: []string{"--frobnicate", "3", "--shiny", "--port", "1"},
			want:  withModel("facebook/opt-125m", func(c *Config) { c.Port = 1 }),
			warns: []Warning{"unknown vLLM flag --frobnicate ignored by the simulator", "unknown vLLM flag --shiny ignored by the simulator"}},
		{name: "quoted sh -c", argv: []string{"/bin/sh", "-c", `vllm serve "my model" --api-key 'k e y'`},
			want: withModel("my model", func(c *Config) { c.APIKey = "k e y" })},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, warns, err := Parse(tc.argv)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("config (-want,+got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.warns, warns); diff != "" {
				t.Errorf("warnings (-want,+got):\n%s", diff)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		argv []string
		want string
	}{
		{[]string{"--gpu-memory-utilization", "1.5"}, "--gpu-memory-utilization: \"1.5\" must be a number in (0, 1]"},
		{[]string{"--port", "http"}, "--port: \"http\" is not a port number"},
		{[]string{"--max-model-len=-3"}, "--max-model-len: \"-3\" is not a positive token count"},
		{[]string{"--quantization", "magic"}, "--quantization: \"magic\" is not one of"},
		{[]string{"--max-num-seqs"}, "--max-num-seqs needs a value"},
		{[]string{"python3", "-m", "http.server"}, "module \"http.server\" is not the vLLM OpenAI API server"},
		{[]string{"sh", "-c", "vllm serve 'oops"}, "unterminated single quote"},
		{[]string{"nginx", "-g"}, "\"nginx\" is neither a vLLM command nor a flag"},
		{[]string{"--port", "80", "stray"}, "unexpected argument \"stray\""},
		{[]string{"--trust-remote-code=maybe"}, "takes no value or a boolean"},
	}
	for _, tc := range cases {
		_, _, err := Parse(tc.argv)
		if err == nil || !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) error = %v, want ErrUsage containing %q", tc.argv, err, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(seedCmd)
	f.Add(`sh -c "vllm serve m --port 1"`)
	f.Add(`--max-model-len 6K --served-model-name a b --x`)
	f.Fuzz(func(t *testing.T, line string) {
		words, err := SplitShell(line)
		if err != nil {
			return
		}
		cfg, _, err := Parse(words)
		if err != nil {
			return
		}
		if cfg.Port < 0 || cfg.Port > 65535 || cfg.GPUMemoryUtilization <= 0 || cfg.GPUMemoryUtilization > 1 || len(cfg.ServedModelNames) == 0 || cfg.MaxModelLen < 0 {
			t.Fatalf("Parse(%q) accepted an invalid config %+v", line, cfg)
		}
	})
}
