// Package vllmargs reads a vLLM OpenAI API server command line into the
// settings the engine simulator needs. It accepts the whole command
// (`python3 -m vllm.entrypoints.openai.api_server …`, `vllm serve MODEL …`,
// `sh -c "…"`) or the flags alone; unknown flags are kept as warnings, wrong
// values are errors.
package vllmargs

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Config is what the simulator takes from a vLLM command line.
type Config struct {
	Model                string
	ServedModelNames     []string
	Host                 string
	Port                 int
	MaxModelLen          int // 0: unset (the simulator picks a default)
	GPUMemoryUtilization float64
	Quantization         string
	Dtype                string
	MaxNumSeqs           int
	MaxNumBatchedTokens  int // 0: unset
	BlockSize            int
	EnablePrefixCaching  bool
	TensorParallelSize   int
	Seed                 int
	APIKey               string
	TrustRemoteCode      bool
}

// Defaults are vLLM's defaults.
func Defaults() Config {
	return Config{
		Model:                "facebook/opt-125m",
		Port:                 8000,
		GPUMemoryUtilization: 0.9,
		MaxNumSeqs:           256,
		BlockSize:            16,
		EnablePrefixCaching:  true,
		TensorParallelSize:   1,
		Dtype:                "auto",
	}
}

// Warning is a non-fatal remark about the command line (an unknown flag).
type Warning string

// ErrUsage marks command lines that cannot be read.
var ErrUsage = errors.New("invalid vLLM command line")

type kind int

const (
	kString kind = iota
	kInt
	kFloat
	kBool
	kList
)

type flagSpec struct {
	kind kind
	set  func(c *Config, v string, list []string) error
}

var quantizations = []string{"aqlm", "awq", "awq_marlin", "bitsandbytes", "compressed-tensors", "deepspeedfp", "experts_int8",
	"fbgemm_fp8", "fp8", "gguf", "gptq", "gptq_marlin", "gptq_marlin_24", "hqq", "marlin", "modelopt", "mxfp4", "squeezellm", "tpu_int8"}

func flags() map[string]flagSpec {
	posInt := func(name string, set func(c *Config, n int)) flagSpec {
		return flagSpec{kind: kInt, set: func(c *Config, v string, _ []string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return fmt.Errorf("--%s: %q is not a positive integer", name, v)
			}
			set(c, n)
			return nil
		}}
	}
	str := func(set func(c *Config, v string)) flagSpec {
		return flagSpec{kind: kString, set: func(c *Config, v string, _ []string) error { set(c, v); return nil }}
	}
	boolean := func(set func(c *Config)) flagSpec {
		return flagSpec{kind: kBool, set: func(c *Config, _ string, _ []string) error { set(c); return nil }}
	}
	return map[string]flagSpec{
		"model": str(func(c *Config, v string) { c.Model = v }),
		"served-model-name": {kind: kList, set: func(c *Config, _ string, l []string) error {
			if len(l) == 0 {
				return errors.New("--served-model-name needs at least one name")
			}
			c.ServedModelNames = l
			return nil
		}},
		"host": str(func(c *Config, v string) { c.Host = v }),
		"port": {kind: kInt, set: func(c *Config, v string, _ []string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 65535 {
				return fmt.Errorf("--port: %q is not a port number (0-65535)", v)
			}
			c.Port = n
			return nil
		}},
		"max-model-len": {kind: kInt, set: func(c *Config, v string, _ []string) error {
			n, err := parseLen(v)
			if err != nil || n <= 0 {
				return fmt.Errorf("--max-model-len: %q is not a positive token count", v)
			}
			c.MaxModelLen = n
			return nil
		}},
		"gpu-memory-utilization": {kind: kFloat, set: func(c *Config, v string, _ []string) error {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || !(f > 0 && f <= 1) {
				return fmt.Errorf("--gpu-memory-utilization: %q must be a number in (0, 1]", v)
			}
			c.GPUMemoryUtilization = f
			return nil
		}},
		"quantization": {kind: kString, set: func(c *Config, v string, _ []string) error {
			if !slices.Contains(quantizations, v) {
				return fmt.Errorf("--quantization: %q is not one of %s", v, strings.Join(quantizations, ", "))
			}
			c.Quantization = v
			return nil
		}},
		"dtype": {kind: kString, set: func(c *Config, v string, _ []string) error {
			if !slices.Contains([]string{"auto", "half", "float16", "bfloat16", "float", "float32"}, v) {
				return fmt.Errorf("--dtype: %q is not one of auto, half, float16, bfloat16, float, float32", v)
			}
			c.Dtype = v
			return nil
		}},
		"max-num-seqs":           posInt("max-num-seqs", func(c *Config, n int) { c.MaxNumSeqs = n }),
		"max-num-batched-tokens": posInt("max-num-batched-tokens", func(c *Config, n int) { c.MaxNumBatchedTokens = n }),
		"tensor-parallel-size":   posInt("tensor-parallel-size", func(c *Config, n int) { c.TensorParallelSize = n }),
		"tp":                     posInt("tensor-parallel-size", func(c *Config, n int) { c.TensorParallelSize = n }),
		"block-size": {kind: kInt, set: func(c *Config, v string, _ []string) error {
			n, err := strconv.Atoi(v)
			if err != nil || !slices.Contains([]int{1, 8, 16, 32, 64, 128}, n) {
				return fmt.Errorf("--block-size: %q is not one of 1, 8, 16, 32, 64, 128", v)
			}
			c.BlockSize = n
			return nil
		}},
		"seed": {kind: kInt, set: func(c *Config, v string, _ []string) error {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("--seed: %q is not an integer", v)
			}
			c.Seed = n
			return nil
		}},
		"api-key":                  str(func(c *Config, v string) { c.APIKey = v }),
		"trust-remote-code":        boolean(func(c *Config) { c.TrustRemoteCode = true }),
		"enable-prefix-caching":    boolean(func(c *Config) { c.EnablePrefixCaching = true }),
		"no-enable-prefix-caching": boolean(func(c *Config) { c.EnablePrefixCaching = false }),
		// Known flags with no effect on the simulation.
		"disable-log-requests":   boolean(func(*Config) {}),
		"disable-log-stats":      boolean(func(*Config) {}),
		"enforce-eager":          boolean(func(*Config) {}),
		"enable-chunked-prefill": boolean(func(*Config) {}),
		"uvicorn-log-level":      str(func(*Config, string) {}),
		"tokenizer":              str(func(*Config, string) {}),
		"revision":               str(func(*Config, string) {}),
		"download-dir":           str(func(*Config, string) {}),
		"chat-template":          str(func(*Config, string) {}),
		"swap-space":             str(func(*Config, string) {}),
		"kv-cache-dtype":         str(func(*Config, string) {}),
	}
}

// Parse reads argv (without the simulator's own program name).
func Parse(argv []string) (Config, []Warning, error) {
	args, model, err := stripCommand(argv)
	if err != nil {
		return Config{}, nil, err
	}
	cfg := Defaults()
	if model != "" {
		cfg.Model = model
	}
	specs := flags()
	specs["q"] = specs["quantization"]
	var warns []Warning
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" || a == "--" {
			return Config{}, warns, fmt.Errorf("%w: unexpected argument %q", ErrUsage, a)
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		name = strings.ReplaceAll(name, "_", "-")
		spec, known := specs[name]
		if !known {
			// Take a following non-flag word as the unknown flag's value.
			if !hasValue && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				i++
			}
			warns = append(warns, Warning(fmt.Sprintf("unknown vLLM flag --%s ignored by the simulator", name)))
			continue
		}
		var list []string
		switch spec.kind {
		case kBool:
			if hasValue {
				b, err := strconv.ParseBool(value)
				if err != nil {
					return Config{}, warns, fmt.Errorf("%w: --%s takes no value or a boolean, got %q", ErrUsage, name, value)
				}
				if !b {
					continue
				}
			}
		case kList:
			if hasValue {
				list = []string{value}
			}
			for i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				i++
				list = append(list, args[i])
			}
		default:
			if !hasValue {
				if i+1 >= len(args) {
					return Config{}, warns, fmt.Errorf("%w: --%s needs a value", ErrUsage, name)
				}
				i++
				value = args[i]
			}
		}
		if err := spec.set(&cfg, value, list); err != nil {
			return Config{}, warns, fmt.Errorf("%w: %w", ErrUsage, err)
		}
	}
	if len(cfg.ServedModelNames) == 0 {
		cfg.ServedModelNames = []string{cfg.Model}
	}
	return cfg, warns, nil
}

// parseLen reads a token count, allowing vLLM's k/K/m/M suffixes (6k = 6000, 6K = 6144).
func parseLen(v string) (int, error) {
	mult := 1
	switch {
	case strings.HasSuffix(v, "k"):
		mult, v = 1000, strings.TrimSuffix(v, "k")
	case strings.HasSuffix(v, "K"):
		mult, v = 1024, strings.TrimSuffix(v, "K")
	case strings.HasSuffix(v, "m"):
		mult, v = 1000000, strings.TrimSuffix(v, "m")
	case strings.HasSuffix(v, "M"):
		mult, v = 1<<20, strings.TrimSuffix(v, "M")
	}
	n, err := strconv.Atoi(v)
	if err != nil || n > (1<<31)/mult {
		return 0, fmt.Errorf("bad length %q", v)
	}
	return n * mult, nil
}

// stripCommand removes the program part of argv and returns the flags and a
// positional model (from `vllm serve MODEL`).
func stripCommand(argv []string) ([]string, string, error) {
	if len(argv) == 0 {
		return nil, "", nil
	}
	prog := path.Base(argv[0])
	switch {
	case (prog == "sh" || prog == "bash") && len(argv) >= 3 && argv[1] == "-c":
		words, err := SplitShell(argv[2])
		if err != nil {
			return nil, "", fmt.Errorf("%w: %w", ErrUsage, err)
		}
		return stripCommand(words)
	case len(argv) == 1 && strings.ContainsAny(argv[0], " \t\n"):
		words, err := SplitShell(argv[0])
		if err != nil {
			return nil, "", fmt.Errorf("%w: %w", ErrUsage, err)
		}
		return stripCommand(words)
	case strings.HasPrefix(prog, "python"):
		if len(argv) < 3 || argv[1] != "-m" {
			return nil, "", fmt.Errorf("%w: expected %s -m vllm.entrypoints.openai.api_server", ErrUsage, argv[0])
		}
		switch argv[2] {
		case "vllm.entrypoints.openai.api_server":
			return argv[3:], "", nil
		case "vllm.entrypoints.cli.main":
			return stripCommand(append([]string{"vllm"}, argv[3:]...))
		}
		return nil, "", fmt.Errorf("%w: module %q is not the vLLM OpenAI API server", ErrUsage, argv[2])
	case prog == "vllm":
		if len(argv) < 2 || argv[1] != "serve" {
			return nil, "", fmt.Errorf("%w: only `vllm serve` is supported", ErrUsage)
		}
		if len(argv) >= 3 && !strings.HasPrefix(argv[2], "-") {
			return argv[3:], argv[2], nil
		}
		return argv[2:], "", nil
	case !strings.HasPrefix(argv[0], "-"):
		return nil, "", fmt.Errorf("%w: %q is neither a vLLM command nor a flag", ErrUsage, argv[0])
	}
	return argv, "", nil
}

// SplitShell splits a POSIX shell command line into words, honouring single
// and double quotes and backslashes. It does no expansion.
func SplitShell(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`\n", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New("unterminated double quote")
			}
			inWord = true
		case c == '\\':
			if i+1 < len(s) {
				i++
				if s[i] != '\n' {
					cur.WriteByte(s[i])
					inWord = true
				}
			}
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
