package routing

import (
	"errors"
	"testing"
)

func TestLookup(t *testing.T) {
	tbl := NewTable("example.com", []Service{
		{Namespace: "default", Name: "qwen-chat", Model: "qwen"},
		{Namespace: "team-a", Name: "qwen-chat", Model: "qwen"},
		{Namespace: "default", Name: "llama", Model: "llama-3"},
	})
	cases := []struct {
		name, host, model string
		want              string
		wantErr           error
	}{
		{name: "service host", host: "qwen-chat-default.example.com", model: "anything", want: "default/qwen-chat"},
		{name: "host with port and case", host: "Qwen-Chat-Team-A.example.com:8080", want: "team-a/qwen-chat"},
		{name: "fqdn dot", host: "llama-default.example.com.", want: "default/llama"},
		{name: "unknown host under domain", host: "nope-default.example.com", wantErr: ErrUnknownHost},
		{name: "bare host by model", host: "127.0.0.1:8080", model: "llama-3", want: "default/llama"},
		{name: "same model twice: first by key", host: "gateway", model: "qwen", want: "default/qwen-chat"},
		{name: "bare domain routes by model", host: "example.com", model: "qwen", want: "default/qwen-chat"},
		{name: "unknown model", host: "localhost", model: "gpt-4", wantErr: ErrUnknownModel},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := tbl.Lookup(tc.host, tc.model)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Key() != tc.want {
				t.Errorf("got %s, want %s", s.Key(), tc.want)
			}
		})
	}
}

func TestRouterChanged(t *testing.T) {
	r := NewRouter("example.com")
	ch := r.Changed()
	select {
	case <-ch:
		t.Fatal("closed before an update")
	default:
	}
	r.Update([]Service{{Namespace: "ns", Name: "a", Model: "m"}})
	select {
	case <-ch:
	default:
		t.Fatal("not closed by the update")
	}
	if _, err := r.Table().ByModel("m"); err != nil {
		t.Fatal(err)
	}
}
