package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	cases := []struct {
		name, body string
		want       Request
		wantErr    string
	}{
		{name: "chat", body: `{"model":"qwen","messages":[{"role":"user","content":"hi"}],"stream":true}`,
			want: Request{Model: "qwen", Stream: true, Prefix: []byte(`[{"role":"user","con`)}},
		{name: "completion prompt", body: ` {"prompt":"abc","model":"m"} `, want: Request{Model: "m", Prefix: []byte(`"abc"`)}},
		{name: "embeddings input", body: `{"model":"e","input":["a","b"],"stream":null}`, want: Request{Model: "e", Prefix: []byte(`["a","b"]`)}},
		{name: "unknown fields kept", body: `{"model":"m","temperature":0.7,"seed":10}`, want: Request{Model: "m"}},
		{name: "empty", body: "  ", wantErr: "empty body"},
		{name: "array", body: `[{"model":"m"}]`, wantErr: "must be a JSON object"},
		{name: "truncated", body: `{"model":"m"`, wantErr: "malformed JSON"},
		{name: "trailing data", body: `{"model":"m"} {}`, wantErr: "malformed JSON: invalid character '{' after top-level value"},
		{name: "no model", body: `{"messages":[]}`, wantErr: `missing field "model"`},
		{name: "model number", body: `{"model":1}`, wantErr: `"model" must be a string`},
		{name: "model empty", body: `{"model":""}`, wantErr: `"model" must not be empty`},
		{name: "stream string", body: `{"model":"m","stream":"yes"}`, wantErr: `"stream" must be a boolean`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse([]byte(tc.body), 20)
			if tc.wantErr != "" {
				if err == nil || !errors.Is(err, ErrInvalidRequest) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("Parse (-want,+got):\n%s", d)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{`{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}`, `{"model":`, `[]`, `{"model":"\u0000","prompt":null}`} {
		f.Add([]byte(s), 16)
	}
	f.Fuzz(func(t *testing.T, body []byte, maxPrefix int) {
		maxPrefix = max(0, maxPrefix%4096)
		r, err := Parse(body, maxPrefix)
		if err != nil {
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("error not marked invalid request: %v", err)
			}
			return
		}
		if r.Model == "" || len(r.Prefix) > maxPrefix {
			t.Fatalf("accepted %q as %+v", body, r)
		}
	})
}

func TestWriteError(t *testing.T) {
	w := httptest.NewRecorder()
	WriteError(w, 503, "no_ready_replica", "scaling up", 5)
	want := `{"error":{"message":"scaling up","type":"service_unavailable","param":null,"code":"no_ready_replica"}}`
	if w.Code != 503 || w.Body.String() != want || w.Header().Get("Retry-After") != "5" || w.Header().Get("Content-Type") != "application/json" {
		t.Errorf("got %d %q %v", w.Code, w.Body.String(), w.Header())
	}
}

func TestEventReader(t *testing.T) {
	in := "data: {\"choices\":[{\"delta\":{}}]}\n\n: comment\r\n\r\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":5}}\n\ndata: [DONE]\n\ntrailing"
	r := NewEventReader(strings.NewReader(in))
	var got []string
	for {
		ev, err := r.Next()
		if len(ev) > 0 {
			got = append(got, string(ev))
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"data: {\"choices\":[{\"delta\":{}}]}\n\n", ": comment\r\n\r\n",
		"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":5}}\n\n", "data: [DONE]\n\n", "trailing"}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("events (-want,+got):\n%s", d)
	}
	if !HasChoices([]byte(got[0])) || HasChoices([]byte(got[2])) || HasChoices([]byte(got[1])) {
		t.Error("HasChoices")
	}
	if u, ok := FindUsage([]byte(got[2])); !ok || u != (Usage{PromptTokens: 3, CompletionTokens: 5}) {
		t.Errorf("FindUsage = %+v %v", u, ok)
	}
	// The answer's own usage is the last "usage" key: the text may hold others.
	answer := `{"choices":[{"message":{"content":"\"usage\": {\"prompt_tokens\": 1} \"usage\""}}],"usage":{"prompt_tokens":7,"completion_tokens":9}}`
	if u, ok := FindUsage([]byte(answer)); !ok || u != (Usage{PromptTokens: 7, CompletionTokens: 9}) {
		t.Errorf("FindUsage with usage in the text = %+v %v", u, ok)
	}
	if _, ok := FindUsage([]byte(`data: {"usage":null}`)); ok {
		t.Error("null usage found")
	}
	if !IsDone([]byte(got[3])) || IsDone([]byte(got[0])) {
		t.Error("IsDone")
	}
}

func FuzzEventReader(f *testing.F) {
	f.Add("data: a\n\ndata: b\r\n\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		r := NewEventReader(strings.NewReader(in))
		var total int
		for {
			ev, err := r.Next()
			total += len(ev)
			FindUsage(ev)
			HasChoices(ev)
			if err != nil {
				break
			}
		}
		if total != len(in) {
			t.Fatalf("events hold %d bytes of %d: the reader must pass every byte on", total, len(in))
		}
	})
}

// FuzzParseFast checks that the allocation-free scanner agrees with
// encoding/json: whatever it accepts is valid JSON and parses to the same
// request as the encoding/json path.
func FuzzParseFast(f *testing.F) {
	for _, s := range []string{`{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}`,
		`{"model":"m","prompt":[1,2.5e-3,-0,true,false,null,{"a":{}}],"input":[],"stream":false}`,
		`{"Model":"m"}`, `{"model":"m","model":"n"}`, `{"model":"\u006d"}`, `{"model":"m","x":"\ud800"}`,
		`{"model":"m","x":01}`, `{"model":"m","x":1.}`, `{"model":"m","x":"a` + "\x01" + `"}`, " {} ", `{"model":"é"}`} {
		f.Add([]byte(s), 16)
	}
	f.Fuzz(func(t *testing.T, body []byte, maxPrefix int) {
		maxPrefix = max(0, maxPrefix%4096)
		fast, ok := parseFast(body, maxPrefix)
		if !ok {
			return
		}
		if !json.Valid(body) {
			t.Fatalf("fast path accepted invalid JSON %q", body)
		}
		slow, err := parseSlow(body, maxPrefix)
		if err != nil {
			t.Fatalf("fast path accepted %q, encoding/json refused it: %v", body, err)
		}
		if d := cmp.Diff(slow, fast); d != "" {
			t.Fatalf("%q: (-encoding/json +fast):\n%s", body, d)
		}
	})
}

func TestParseFastTakesCommonBodies(t *testing.T) {
	for _, b := range []string{
		`{"model":"qwen","messages":[{"role":"user","content":"你好"}],"max_tokens":16,"stream":true,"stream_options":{"include_usage":true}}`,
		`{"model":"qwen-7b","prompt":"x","temperature":0.7,"top_p":1e-1,"stop":["\n"],"seed":-3}`,
	} {
		if _, ok := parseFast([]byte(b), 256); !ok {
			t.Errorf("fast path refused %s", b)
		}
	}
}

// HasChoices, the search ScanEvent replaced (of the first "choices" only),
// is FuzzScanEvent's oracle: whether an event's data carries generated
// output (a non-empty "choices" list).
func HasChoices(event []byte) bool {
	i := bytes.Index(event, []byte(`"choices"`))
	if i < 0 {
		return false
	}
	return nonEmptyList(event[i+len(`"choices"`):])
}

func TestHasChoices(t *testing.T) {
	for ev, want := range map[string]bool{
		`data: {"choices":[{"delta":{"content":"a"}}]}`:      true,
		"data: {\"choices\" :\r\n [ {\"index\":0} ]}":        true,
		`data: {"choices":[]}`:                               false,
		`data: {"choices":[ ]}`:                              false,
		`data: {"choices":null,"usage":{"prompt_tokens":1}}`: false,
		`data: {"usage":{"prompt_tokens":1}}`:                false,
		`data: {"choices"`:                                   false,
	} {
		if got := HasChoices([]byte(ev)); got != want {
			t.Errorf("HasChoices(%q) = %v, want %v", ev, got, want)
		}
	}
}

// vllmChunk is a token event as vLLM streams it.
const vllmChunk = `data: {"id":"chatcmpl-4f1c2a9e8b7d4c6f","object":"chat.completion.chunk","created":1732867200,"model":"Qwen/Qwen2.5-7B-Instruct","choices":[{"index":0,"delta":{"content":" token"},"logprobs":null,"finish_reason":null}]}` + "\n\n"

func TestScanEvent(t *testing.T) {
	for ev, want := range map[string]Event{
		vllmChunk: {Choices: true},
		`data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5}}`:                      {Usage: Usage{3, 5}, HasUsage: true},
		`data: {"choices":[{"delta":{}}],"usage":{"prompt_tokens":3,"completion_tokens":1}}` + "\n\n": {Choices: true, Usage: Usage{3, 1}, HasUsage: true},
		"data: [DONE]\r\n\r\n":                {Done: true},
		`data: {"usage":null}`:                {},
		": comment\n\n":                       {},
		`data: {"choices"`:                    {},
		`data: {"choices":[ ]}`:               {},
		`data: {"usage"`:                      {},
		`data: {"x":"choices","choices":[1]}`: {Choices: true}, // a value first, then the key
		// The text may hold the keys, escaped: the last real "usage" counts.
		`data: {"choices":[{"delta":{"content":"\"usage\": {\"prompt_tokens\": 1} \"choices\":[1]"}}],"usage":{"prompt_tokens":7,"completion_tokens":9}}`: {Choices: true, Usage: Usage{7, 9}, HasUsage: true},
	} {
		if got := ScanEvent([]byte(ev)); got != want {
			t.Errorf("ScanEvent(%q) = %+v, want %+v", ev, got, want)
		}
	}
}

// FuzzScanEvent holds the one-pass scan to the separate searches: the same
// [DONE], the same usage, and output whenever HasChoices sees it (ScanEvent
// also sees a "choices" key after a "choices" string value).
func FuzzScanEvent(f *testing.F) {
	for _, s := range []string{vllmChunk, "data: [DONE]\n\n", `data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5}}`,
		`{"usage":{"prompt_tokens":1},"usage":{"completion_tokens":2}}`, `"choices" : [ 1 ] "usage":null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, ev []byte) {
		got := ScanEvent(ev)
		if got.Done != IsDone(ev) {
			t.Fatalf("%q: Done %v, IsDone %v", ev, got.Done, IsDone(ev))
		}
		if got.Done {
			return
		}
		if u, ok := FindUsage(ev); got.HasUsage != ok || got.Usage != u {
			t.Fatalf("%q: usage %+v %v, FindUsage %+v %v", ev, got.Usage, got.HasUsage, u, ok)
		}
		if HasChoices(ev) && !got.Choices {
			t.Fatalf("%q: HasChoices, ScanEvent not", ev)
		}
	})
}

func BenchmarkScanEvent(b *testing.B) {
	ev := []byte(vllmChunk)
	b.Run("ScanEvent", func(b *testing.B) {
		for b.Loop() {
			_ = ScanEvent(ev)
		}
	})
	b.Run("separate", func(b *testing.B) { // the searches ScanEvent replaces
		for b.Loop() {
			_ = IsDone(ev)
			_ = HasChoices(ev)
			_, _ = FindUsage(ev)
		}
	})
}
