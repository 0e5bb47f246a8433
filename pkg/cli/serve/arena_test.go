package serve

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// seedCommandLine is the seed's deployment command exactly as reference.md
// gives it (the image the documentation elides filled in), line
// continuations included.
const seedCommandLine = `arena serve kserve --name=qwen-chat --image=kube-ai-registry.cn-shanghai.cr.aliyuncs.com/kube-ai/vllm:0.4.1 --scale-metric=DCGM_CUSTOM_PROCESS_SM_UTIL --scale-target=50 \
  --min-replicas=1 --max-replicas=3 --gpus=1 --cpu=4 --memory=12Gi --data="llm-model:/mnt/models/Qwen" \
  "python3 -m vllm.entrypoints.openai.api_server --port 8080 --trust-remote-code --served-model-name qwen \
   --model /mnt/models/Qwen --gpu-memory-utilization 0.95 --quantization gptq --max-model-len=6144"`

// shellWords splits a command line as a POSIX shell does for the quoting
// the seed uses: blanks separate words, backslash-newline is removed
// (outside quotes and inside double quotes), double quotes keep blanks and
// let \" \\ \$ \` escape, single quotes keep everything.
func shellWords(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // inside a word
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && s[i+1] == '\n':
			i++
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			in = true
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated single quote")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			in = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					switch s[i+1] {
					case '\n':
						i++
						continue
					case '"', '\\', '$', '`':
						i++
					}
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated double quote")
			}
			in = true
		case c == ' ' || c == '\t' || c == '\n':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

// TestSeedCommandLineExactly: the seed's arena command line, split as the
// shell splits it, with `spillway` in place of `arena`, gives the golden
// object — the same arguments seedArgs holds, to the byte.
func TestSeedCommandLineExactly(t *testing.T) {
	words, err := shellWords(seedCommandLine)
	if err != nil {
		t.Fatal(err)
	}
	if len(words) < 3 || !slices.Equal(words[:3], []string{"arena", "serve", "kserve"}) {
		t.Fatalf("the seed line splits into %q", words)
	}
	args := words[3:]
	if !slices.Equal(args, seedArgs) {
		t.Fatalf("seedArgs differ from the seed's command line as the shell splits it:\n got %q\nwant %q", seedArgs, args)
	}
	// The vLLM command is one argument, with the spaces of the line continuation.
	if last := args[len(args)-1]; !strings.Contains(last, "--served-model-name qwen    --model /mnt/models/Qwen") {
		t.Errorf("the command argument is %q", last)
	}
	if _, err := runDry(t, args...); err != nil {
		t.Fatalf("the seed's exact flags fail: %v", err)
	}
}

func TestShellWords(t *testing.T) {
	got, err := shellWords("a 'b c' \"d \\\"e\\\" \\\nf\" g\\ h \\\n i")
	want := []string{"a", "b c", `d "e" f`, "g h", "i"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("shellWords = %q, %v; want %q", got, err, want)
	}
	if _, err := shellWords(`"open`); err == nil {
		t.Error("an unterminated quote is not an error")
	}
}

// arenaFlags are all of `arena serve kserve`'s flags (reference.md).
var arenaFlags = strings.Fields(`name version image image-pull-policy gpus gpumemory gpucore cpu memory replicas
	share-memory image-pull-secret env env-from-secret enable-istio expose-service data data-dir annotation label
	toleration selector config-file shell command model-name model-version model-format runtime storage-uri port
	runtime-version protocol-version min-replicas max-replicas scale-target scale-metric container-concurrency timeout
	canary-traffic-percent security-context affinity-policy affinity-constraint enable-prometheus metrics-port`)

// TestEveryArenaFlagMappedOrRejected: each arena flag either changes the
// InferenceService (compared with the same command line without it) or is
// rejected with an error that names it.
func TestEveryArenaFlagMappedOrRejected(t *testing.T) {
	rejected := map[string]bool{}
	for _, u := range unsupported {
		rejected[u.name] = true
	}
	// For a mapped flag: its arguments, and the arguments it needs that
	// are given in both runs.
	mapped := map[string]struct{ flag, with []string }{
		"name":                  {[]string{"--name=other"}, nil},
		"version":               {[]string{"--version=v2"}, nil},
		"image":                 {[]string{"--image=other:2"}, nil},
		"image-pull-policy":     {[]string{"--image-pull-policy=Always"}, nil},
		"gpus":                  {[]string{"--gpus=2"}, nil},
		"cpu":                   {[]string{"--cpu=2"}, nil},
		"memory":                {[]string{"--memory=1Gi"}, nil},
		"replicas":              {[]string{"--replicas=2"}, nil},
		"share-memory":          {[]string{"--share-memory=1Gi"}, nil},
		"image-pull-secret":     {[]string{"--image-pull-secret=regcred"}, nil},
		"env":                   {[]string{"--env=A=B"}, nil},
		"env-from-secret":       {[]string{"--env-from-secret=T=s"}, nil},
		"data":                  {[]string{"--data=m:/models"}, nil},
		"annotation":            {[]string{"--annotation=a=b"}, nil},
		"label":                 {[]string{"--label=a=b"}, nil},
		"toleration":            {[]string{"--toleration=all"}, nil},
		"selector":              {[]string{"--selector=a=b"}, nil},
		"shell":                 {[]string{"--shell=bash"}, nil},
		"command":               {[]string{"--command=serve --other"}, nil},
		"port":                  {[]string{"--port=8000"}, nil},
		"min-replicas":          {[]string{"--min-replicas=2"}, []string{"--max-replicas=4", "--scale-metric=cpu", "--scale-target=50"}},
		"max-replicas":          {[]string{"--max-replicas=3"}, nil},
		"scale-target":          {[]string{"--scale-target=70"}, []string{"--scale-metric=cpu", "--scale-target=50", "--max-replicas=3"}},
		"scale-metric":          {[]string{"--scale-metric=DCGM_CUSTOM_PROCESS_SM_UTIL", "--scale-target=50"}, []string{"--max-replicas=3"}},
		"container-concurrency": {[]string{"--container-concurrency=8"}, nil},
		"timeout":               {[]string{"--timeout=60"}, nil},
		"enable-prometheus":     {[]string{"--enable-prometheus"}, nil},
		"metrics-port":          {[]string{"--metrics-port=9090"}, []string{"--enable-prometheus"}},
	}
	for _, f := range arenaFlags {
		m, isMapped := mapped[f]
		if isMapped == rejected[f] {
			t.Errorf("arena flag --%s: mapped %v, rejected %v; want exactly one", f, isMapped, rejected[f])
			continue
		}
		t.Run(f, func(t *testing.T) {
			if rejected[f] {
				arg := "--" + f + "=x"
				if slices.ContainsFunc(unsupported, func(u struct {
					name, shorthand, help string
					isBool                bool
				}) bool {
					return u.name == f && u.isBool
				}) {
					arg = "--" + f
				}
				_, err := runDry(t, "--name=x", "--image=i", arg, "run")
				if err == nil || !strings.Contains(err.Error(), "Spillway does not support --"+f+" yet") || !strings.Contains(err.Error(), "--help") {
					t.Errorf("%s: error %v, want it rejected by name", arg, err)
				}
				return
			}
			base := append([]string{"--name=x", "--image=i"}, m.with...)
			last := []string{"run"}
			if f == "command" {
				last = nil
				base = append(base, "--command=run")
				m.flag = []string{} // replaces the base's --command below
			}
			without, err := runDry(t, append(base, last...)...)
			if err != nil {
				t.Fatalf("without --%s: %v", f, err)
			}
			withArgs := append(slices.Clone(base), m.flag...)
			if f == "command" {
				withArgs[len(withArgs)-1] = "--command=serve --other"
			}
			with, err := runDry(t, append(withArgs, last...)...)
			if err != nil {
				t.Fatalf("with %q: %v", m.flag, err)
			}
			if with == without {
				t.Errorf("--%s changes nothing in the InferenceService", f)
			}
		})
	}
}
