package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// apiError is an error in OpenAI's JSON shape with its HTTP status.
type apiError struct {
	Status  int     `json:"-"`
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func (e *apiError) Error() string { return e.Message }

func badRequest(param, format string, args ...any) *apiError {
	e := &apiError{Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...), Type: "invalid_request_error"}
	if param != "" {
		e.Param = &param
	}
	return e
}

func writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(struct {
		Error *apiError `json:"error"`
	}{e})
}

type chatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
	text    string
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// wireRequest is the union of the chat and completions request bodies.
type wireRequest struct {
	Model               string          `json:"model"`
	Messages            []chatMessage   `json:"messages"`
	Prompt              json.RawMessage `json:"prompt"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Stop                json.RawMessage `json:"stop"`
	Seed                *int64          `json:"seed"`
	Stream              bool            `json:"stream"`
	StreamOptions       *streamOptions  `json:"stream_options"`
	N                   *int            `json:"n"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	IgnoreEOS           bool            `json:"ignore_eos"`
}

// genRequest is a validated generation request.
type genRequest struct {
	chat         bool
	model        string
	prompt       string // rendered prompt text
	promptTokens int
	maxTokens    int // 0: up to the context limit
	stops        []string
	seed         *int64
	stream       bool
	includeUsage bool
	ignoreEOS    bool
}

// parseRequest reads and validates a chat (chat=true) or completions body.
func parseRequest(body []byte, chat bool) (*genRequest, *apiError) {
	var w wireRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&w); err != nil {
		return nil, badRequest("", "invalid JSON body: %v", err)
	}
	if dec.More() {
		return nil, badRequest("", "invalid JSON body: data after the JSON object")
	}
	if w.Model == "" {
		return nil, badRequest("model", "you must provide a model parameter")
	}
	r := &genRequest{chat: chat, model: w.Model, seed: w.Seed, stream: w.Stream, ignoreEOS: w.IgnoreEOS}
	if chat {
		if len(w.Messages) == 0 {
			return nil, badRequest("messages", "messages must be a non-empty array")
		}
		for i := range w.Messages {
			m := &w.Messages[i]
			switch m.Role {
			case "system", "user", "assistant", "tool", "developer", "function":
			case "":
				return nil, badRequest("messages", "messages[%d].role is required", i)
			default:
				return nil, badRequest("messages", "messages[%d].role %q is not one of system, user, assistant, tool, developer", i, m.Role)
			}
			text, err := contentText(m.Content)
			if err != nil {
				return nil, badRequest("messages", "messages[%d].content: %v", i, err)
			}
			m.text = text
		}
		r.prompt = renderChat(w.Messages)
		r.promptTokens = promptTokens(r.prompt)
	} else {
		text, ids, err := promptOf(w.Prompt)
		if err != nil {
			return nil, badRequest("prompt", "%v", err)
		}
		r.prompt = text
		r.promptTokens = promptTokens(text)
		if ids > 0 {
			r.promptTokens = ids
		}
	}
	maxTok := w.MaxTokens
	if w.MaxCompletionTokens != nil {
		maxTok = w.MaxCompletionTokens
	}
	if maxTok != nil {
		if *maxTok < 1 {
			return nil, badRequest("max_tokens", "max_tokens must be at least 1, got %d", *maxTok)
		}
		r.maxTokens = *maxTok
	}
	stops, err := stopsOf(w.Stop)
	if err != nil {
		return nil, badRequest("stop", "%v", err)
	}
	r.stops = stops
	if w.N != nil && *w.N != 1 {
		return nil, badRequest("n", "n must be 1 in the engine simulator, got %d", *w.N)
	}
	if w.Temperature != nil && (*w.Temperature < 0 || *w.Temperature > 2) {
		return nil, badRequest("temperature", "temperature must be between 0 and 2, got %v", *w.Temperature)
	}
	if w.TopP != nil && (*w.TopP <= 0 || *w.TopP > 1) {
		return nil, badRequest("top_p", "top_p must be in (0, 1], got %v", *w.TopP)
	}
	if w.StreamOptions != nil {
		if !w.Stream {
			return nil, badRequest("stream_options", "stream_options can only be set when stream is true")
		}
		r.includeUsage = w.StreamOptions.IncludeUsage
	}
	return r, nil
}

// contentText accepts a string, null, or an array of {"type":"text","text":…} parts.
func contentText(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", err
		}
		return s, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", fmt.Errorf("must be a string or an array of content parts")
	}
	var b strings.Builder
	for _, p := range parts {
		if p.Type != "text" {
			return "", fmt.Errorf("content part type %q is not supported (only text)", p.Type)
		}
		b.WriteString(p.Text)
	}
	return b.String(), nil
}

// promptOf accepts a string, a one-element array of strings, or an array of token ids.
func promptOf(raw json.RawMessage) (string, int, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", 0, fmt.Errorf("prompt is required")
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", 0, err
		}
		if s == "" {
			return "", 0, fmt.Errorf("prompt must not be empty")
		}
		return s, 0, nil
	}
	var ss []string
	if err := json.Unmarshal(raw, &ss); err == nil {
		if len(ss) != 1 || ss[0] == "" {
			return "", 0, fmt.Errorf("prompt must be one non-empty string (batched prompts are not supported)")
		}
		return ss[0], 0, nil
	}
	var ids []int64
	if err := json.Unmarshal(raw, &ids); err == nil && len(ids) > 0 {
		var b strings.Builder
		for _, id := range ids {
			fmt.Fprintf(&b, "%d,", id)
		}
		return b.String(), len(ids), nil
	}
	return "", 0, fmt.Errorf("prompt must be a string, an array of one string, or an array of token ids")
}

func stopsOf(raw json.RawMessage) ([]string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var list []string
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		list = []string{s}
	} else if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("stop must be a string or an array of strings")
	}
	out := list[:0]
	for _, s := range list {
		if s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}
