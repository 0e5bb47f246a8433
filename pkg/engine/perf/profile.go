// Package perf is the engine simulator's performance model: GPU and model
// profiles, KV-cache sizing, and a deterministic continuous-batching scheduler
// that is a pure function of (time, arrivals). It does no I/O and reads no
// clock; callers pass the time in.
package perf

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// GPU describes one accelerator as the model sees it.
type GPU struct {
	Name string
	// MemoryBytes is the device memory.
	MemoryBytes int64
	// BandwidthBytesPerSec is the memory bandwidth; a decode step reads the
	// weights and the batch's KV cache once.
	BandwidthBytesPerSec float64
	// PrefillTokensPerSec is the prompt throughput for a 7B model; it scales
	// inversely with model size.
	PrefillTokensPerSec float64
	// StepOverhead is the fixed cost of one engine step (scheduling, kernel launches).
	StepOverhead time.Duration
	// PerSeqOverhead is the extra cost per sequence in a decode step.
	PerSeqOverhead time.Duration
	// SaturationBatch is the decode batch size that keeps all SMs busy.
	SaturationBatch int
}

const gib = int64(1) << 30

// GPUs are the built-in profiles, by lower-case name.
var gpus = map[string]GPU{
	"v100":      {Name: "V100-32GB", MemoryBytes: 32 * gib, BandwidthBytesPerSec: 900e9, PrefillTokensPerSec: 4000, StepOverhead: 8 * time.Millisecond, PerSeqOverhead: 150 * time.Microsecond, SaturationBatch: 8},
	"v100-16gb": {Name: "V100-16GB", MemoryBytes: 16 * gib, BandwidthBytesPerSec: 900e9, PrefillTokensPerSec: 4000, StepOverhead: 8 * time.Millisecond, PerSeqOverhead: 150 * time.Microsecond, SaturationBatch: 8},
	"a10":       {Name: "A10-24GB", MemoryBytes: 24 * gib, BandwidthBytesPerSec: 600e9, PrefillTokensPerSec: 5000, StepOverhead: 7 * time.Millisecond, PerSeqOverhead: 120 * time.Microsecond, SaturationBatch: 8},
	"a100":      {Name: "A100-80GB", MemoryBytes: 80 * gib, BandwidthBytesPerSec: 2039e9, PrefillTokensPerSec: 14000, StepOverhead: 5 * time.Millisecond, PerSeqOverhead: 60 * time.Microsecond, SaturationBatch: 16},
	"h100":      {Name: "H100-80GB", MemoryBytes: 80 * gib, BandwidthBytesPerSec: 3350e9, PrefillTokensPerSec: 28000, StepOverhead: 4 * time.Millisecond, PerSeqOverhead: 40 * time.Microsecond, SaturationBatch: 16},
}

// LookupGPU returns the profile named (case-insensitive): v100, v100-16gb, a10, a100, h100.
func LookupGPU(name string) (GPU, error) {
	g, ok := gpus[strings.ToLower(name)]
	if !ok {
		return GPU{}, fmt.Errorf("unknown GPU profile %q (known: %s)", name, strings.Join(GPUNames(), ", "))
	}
	return g, nil
}

// GPUNames lists the built-in GPU profiles.
func GPUNames() []string {
	names := make([]string, 0, len(gpus))
	for n := range gpus {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Model describes the served model's shape.
type Model struct {
	// ParamsBillions is the parameter count in billions.
	ParamsBillions float64
	// Layers and HiddenSize size the KV cache; KVHeadRatio is kv_heads/heads (1 for MHA, 1/8 for GQA-8).
	Layers      int
	HiddenSize  int
	KVHeadRatio float64
	// Quantization is vLLM's --quantization value ("" for fp16/bf16).
	Quantization string
}

// ModelForParams returns a plausible dense-transformer shape for a size in billions.
func ModelForParams(b float64, quantization string) Model {
	switch {
	case b <= 2:
		return Model{ParamsBillions: b, Layers: 24, HiddenSize: 2048, KVHeadRatio: 1, Quantization: quantization}
	case b <= 9:
		return Model{ParamsBillions: b, Layers: 32, HiddenSize: 4096, KVHeadRatio: 1, Quantization: quantization}
	case b <= 16:
		return Model{ParamsBillions: b, Layers: 40, HiddenSize: 5120, KVHeadRatio: 1, Quantization: quantization}
	case b <= 40:
		return Model{ParamsBillions: b, Layers: 64, HiddenSize: 5120, KVHeadRatio: 0.125, Quantization: quantization}
	default:
		return Model{ParamsBillions: b, Layers: 80, HiddenSize: 8192, KVHeadRatio: 0.125, Quantization: quantization}
	}
}

// BytesPerParam is the weight storage per parameter for a quantization method.
func BytesPerParam(quantization string) float64 {
	switch strings.ToLower(quantization) {
	case "gptq", "awq", "marlin", "gptq_marlin", "awq_marlin", "squeezellm", "bitsandbytes":
		return 0.56 // 4-bit weights plus scales and zeros
	case "fp8", "fbgemm_fp8", "compressed-tensors", "experts_int8":
		return 1
	default:
		return 2
	}
}

// WeightBytes is the memory the weights take.
func (m Model) WeightBytes() int64 {
	return int64(m.ParamsBillions * 1e9 * BytesPerParam(m.Quantization))
}

// KVBytesPerToken is the fp16 KV cache one token occupies.
func (m Model) KVBytesPerToken() int64 {
	return int64(2 * float64(m.Layers) * float64(m.HiddenSize) * m.KVHeadRatio * 2)
}

// activationReserve is memory vLLM keeps for activations and the CUDA context.
const activationReserve = gib
