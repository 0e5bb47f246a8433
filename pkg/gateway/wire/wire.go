// Package wire holds what the gateway knows of the OpenAI HTTP API: the few
// request fields it routes on (model, stream, prompt prefix), the error
// format ({"error":{...}}) for answers the gateway gives itself, and the
// server-sent-event framing of streamed answers.
package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// Paths the gateway serves.
const (
	PathChatCompletions = "/v1/chat/completions"
	PathCompletions     = "/v1/completions"
	PathEmbeddings      = "/v1/embeddings"
	PathModels          = "/v1/models"
)

// Request is what the gateway reads from an OpenAI request body.
type Request struct {
	// Model is the requested model name.
	Model string
	// Stream is true for a server-sent-events answer.
	Stream bool
	// Prefix is the start of the prompt (at most the maxPrefix bytes given to
	// Parse), the key of prefix affinity. Empty when the body has no prompt.
	Prefix []byte
}

// ErrInvalidRequest marks a body that is not a valid OpenAI request.
var ErrInvalidRequest = errors.New("invalid request")

type body struct {
	Model    *json.RawMessage `json:"model"`
	Stream   *json.RawMessage `json:"stream"`
	Messages json.RawMessage  `json:"messages"`
	Prompt   json.RawMessage  `json:"prompt"`
	Input    json.RawMessage  `json:"input"`
}

// Parse reads the routing fields of a request body. The body must be one JSON
// object with a non-empty string "model"; "stream", when present, must be a
// boolean. maxPrefix bounds Request.Prefix, which shares data's memory.
func Parse(data []byte, maxPrefix int) (Request, error) {
	if r, ok := parseFast(data, maxPrefix); ok {
		return r, nil
	}
	return parseSlow(data, maxPrefix)
}

// parseSlow is Parse with encoding/json, for what parseFast leaves aside.
func parseSlow(data []byte, maxPrefix int) (Request, error) {
	var b body
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return Request{}, fmt.Errorf("%w: empty body, expected a JSON object", ErrInvalidRequest)
	}
	if trimmed[0] != '{' {
		return Request{}, fmt.Errorf("%w: the body must be a JSON object", ErrInvalidRequest)
	}
	if err := json.Unmarshal(trimmed, &b); err != nil {
		return Request{}, fmt.Errorf("%w: malformed JSON: %v", ErrInvalidRequest, err)
	}
	var r Request
	if b.Model == nil {
		return Request{}, fmt.Errorf("%w: missing field \"model\"", ErrInvalidRequest)
	}
	if err := json.Unmarshal(*b.Model, &r.Model); err != nil {
		return Request{}, fmt.Errorf("%w: field \"model\" must be a string", ErrInvalidRequest)
	}
	if r.Model == "" {
		return Request{}, fmt.Errorf("%w: field \"model\" must not be empty", ErrInvalidRequest)
	}
	if b.Stream != nil && string(*b.Stream) != "null" {
		if err := json.Unmarshal(*b.Stream, &r.Stream); err != nil {
			return Request{}, fmt.Errorf("%w: field \"stream\" must be a boolean", ErrInvalidRequest)
		}
	}
	for _, p := range []json.RawMessage{b.Messages, b.Prompt, b.Input} {
		if len(p) > 0 && string(p) != "null" {
			n := min(len(p), maxPrefix)
			r.Prefix = p[:n:n]
			break
		}
	}
	return r, nil
}

// Error is the body of an OpenAI error answer.
type Error struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// Error types used by the gateway.
const (
	TypeInvalidRequest = "invalid_request_error"
	TypeAuthentication = "authentication_error"
	TypeRateLimit      = "rate_limit_exceeded"
	TypeServer         = "server_error"
	TypeUnavailable    = "service_unavailable"
)

// NewError builds an error of the type that fits the HTTP status.
func NewError(status int, code, message string) Error {
	e := Error{Message: message, Type: typeFor(status)}
	if code != "" {
		e.Code = &code
	}
	return e
}

func typeFor(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return TypeAuthentication
	case status == http.StatusTooManyRequests:
		return TypeRateLimit
	case status == http.StatusServiceUnavailable:
		return TypeUnavailable
	case status >= 500:
		return TypeServer
	default:
		return TypeInvalidRequest
	}
}

// Marshal encodes {"error": e}.
func (e Error) Marshal() []byte {
	out, err := json.Marshal(struct {
		Error Error `json:"error"`
	}{e})
	if err != nil { // cannot happen: only strings
		return []byte(`{"error":{"message":"internal error","type":"server_error","param":null,"code":null}}`)
	}
	return out
}

// WriteError answers with status and an OpenAI error body. retryAfter > 0
// adds a Retry-After header (seconds).
func WriteError(w http.ResponseWriter, status int, code, message string, retryAfter int) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(retryAfter))
	}
	w.WriteHeader(status)
	_, _ = w.Write(NewError(status, code, message).Marshal())
}

// ErrorEvent is a server-sent event carrying an error, ending a stream that
// failed after its first byte, followed by the [DONE] marker.
func ErrorEvent(code, message string) []byte {
	var b bytes.Buffer
	b.WriteString("data: ")
	b.Write(NewError(http.StatusBadGateway, code, message).Marshal())
	b.WriteString("\n\ndata: [DONE]\n\n")
	return b.Bytes()
}
