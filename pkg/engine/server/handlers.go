package server

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// maxBody bounds a request body.
const maxBody = 8 << 20

// Handler is the server's HTTP API. The engine that generates the tokens runs
// inside Serve: to mount Handler elsewhere (httptest, another mux), keep Serve
// running too (e.g. on a listener nobody dials), or requests wait until their
// client gives up.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /health", s.health)
	mux.HandleFunc("GET /readyz", s.health)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	mux.HandleFunc("GET /v1/models", s.auth(s.models))
	mux.HandleFunc("POST /v1/chat/completions", s.auth(func(w http.ResponseWriter, r *http.Request) { s.generate(w, r, true) }))
	mux.HandleFunc("POST /v1/completions", s.auth(func(w http.ResponseWriter, r *http.Request) { s.generate(w, r, false) }))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{Status: http.StatusNotFound, Type: "invalid_request_error",
			Message: fmt.Sprintf("%s %s is not an endpoint of this server", r.Method, r.URL.Path)})
	})
	return mux
}

func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	if !s.Ready() {
		http.Error(w, "model loading", http.StatusServiceUnavailable)
		return
	}
	if s.draining.Load() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) auth(next http.HandlerFunc) http.HandlerFunc {
	if s.cfg.APIKey == "" {
		return next
	}
	want := []byte("Bearer " + s.cfg.APIKey)
	return func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			writeError(w, &apiError{Status: http.StatusUnauthorized, Type: "invalid_request_error", Message: "Unauthorized: missing or wrong API key"})
			return
		}
		next(w, r)
	}
}

func (s *Server) models(w http.ResponseWriter, _ *http.Request) {
	type model struct {
		ID          string  `json:"id"`
		Object      string  `json:"object"`
		Created     int64   `json:"created"`
		OwnedBy     string  `json:"owned_by"`
		Root        string  `json:"root"`
		Parent      *string `json:"parent"`
		MaxModelLen int     `json:"max_model_len"`
	}
	out := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list"}
	for _, n := range s.cfg.ServedModelNames {
		out.Data = append(out.Data, model{ID: n, Object: "model", Created: s.created, OwnedBy: "vllm", Root: s.cfg.ModelPath, MaxModelLen: s.cfg.Engine.MaxModelLen})
	}
	writeJSON(w, out)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// generate serves chat (chat=true) and completions requests.
func (s *Server) generate(w http.ResponseWriter, r *http.Request, chat bool) {
	if !s.Ready() || s.draining.Load() {
		writeError(w, &apiError{Status: http.StatusServiceUnavailable, Type: "service_unavailable", Message: "the model is loading or the server is shutting down"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, &apiError{Status: http.StatusRequestEntityTooLarge, Type: "invalid_request_error", Message: fmt.Sprintf("request body over %d bytes", maxBody)})
			return
		}
		writeError(w, badRequest("", "reading request body: %v", err))
		return
	}
	req, aerr := parseRequest(body, chat)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	if !slices.Contains(s.cfg.ServedModelNames, req.model) {
		code, param := "model_not_found", "model"
		writeError(w, &apiError{Status: http.StatusNotFound, Type: "NotFoundError", Param: &param, Code: &code,
			Message: fmt.Sprintf("The model `%s` does not exist.", req.model)})
		return
	}
	limit := s.cfg.Engine.MaxModelLen
	maxTokens := req.maxTokens
	if maxTokens == 0 {
		maxTokens = limit - req.promptTokens
	}
	if maxTokens < 1 || req.promptTokens+maxTokens > limit {
		writeError(w, badRequest("max_tokens", "This model's maximum context length is %d tokens. However, you requested %d tokens "+
			"(%d in the messages, %d in the completion). Please reduce the length of the messages or completion.",
			limit, req.promptTokens+maxTokens, req.promptTokens, maxTokens))
		return
	}
	var seed uint64
	if req.seed != nil {
		seed = uint64(*req.seed)
	} else {
		seed = rand.New(rand.NewPCG(uint64(s.cfg.Seed), s.nextID.Load())).Uint64()
	}
	pl := makePlan(seed, maxTokens, req.ignoreEOS, req.stops)
	st, aerr := s.submit(req.promptTokens, prefixHashes(req.prompt, s.cfg.Engine.BlockSize), pl)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	s.log.V(4).Info("request", "id", st.id, "chat", chat, "promptTokens", req.promptTokens, "outputTokens", pl.tokens(), "stream", req.stream)
	resp := response{s: s, req: req, st: st, id: strconv.FormatUint(st.id, 16), created: s.clock.Now().Unix()}
	if req.stream {
		resp.stream(w, r)
	} else {
		resp.whole(w, r)
	}
}

type response struct {
	s       *Server
	req     *genRequest
	st      *stream
	id      string
	created int64
}

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func (p *response) usage() usage {
	n := p.st.plan.tokens()
	return usage{PromptTokens: p.req.promptTokens, CompletionTokens: n, TotalTokens: p.req.promptTokens + n}
}

// whole waits for the last token and answers in one JSON body.
func (p *response) whole(w http.ResponseWriter, r *http.Request) {
	for {
		select {
		case <-r.Context().Done():
			p.s.abort(p.st)
			return
		case <-p.st.notify:
		}
		if _, done := p.s.progress(p.st); done {
			break
		}
	}
	pl := &p.st.plan
	text := pl.upTo(0, pl.tokens())
	type message struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	type choice struct {
		Index        int      `json:"index"`
		Message      *message `json:"message,omitempty"`
		Text         *string  `json:"text,omitempty"`
		Logprobs     *int     `json:"logprobs"`
		FinishReason string   `json:"finish_reason"`
	}
	out := struct {
		ID      string   `json:"id"`
		Object  string   `json:"object"`
		Created int64    `json:"created"`
		Model   string   `json:"model"`
		Choices []choice `json:"choices"`
		Usage   usage    `json:"usage"`
	}{Created: p.created, Model: p.req.model, Usage: p.usage()}
	c := choice{FinishReason: pl.finish}
	if p.req.chat {
		out.ID, out.Object = "chatcmpl-"+p.id, "chat.completion"
		c.Message = &message{Role: "assistant", Content: text}
	} else {
		out.ID, out.Object = "cmpl-"+p.id, "text_completion"
		c.Text = &text
	}
	out.Choices = []choice{c}
	writeJSON(w, out)
}

// stream sends one SSE chunk per token, then the usage chunk when asked, then [DONE].
func (p *response) stream(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	pl := &p.st.plan
	var head []byte
	head = append(head, `data: {"id":"`...)
	object := "text_completion"
	if p.req.chat {
		head = append(head, "chatcmpl-"...)
		object = "chat.completion.chunk"
	} else {
		head = append(head, "cmpl-"...)
	}
	head = append(head, p.id...)
	head = append(head, `","object":"`+object+`","created":`...)
	head = strconv.AppendInt(head, p.created, 10)
	head = append(head, `,"model":`...)
	head = appendJSONString(head, p.req.model)
	head = append(head, `,"choices":[`...)
	buf := make([]byte, 0, 4096)
	sent := 0
	for sent < pl.tokens() {
		select {
		case <-r.Context().Done():
			p.s.abort(p.st)
			return
		case <-p.st.notify:
		}
		n, _ := p.s.progress(p.st)
		buf = buf[:0]
		for ; sent < n; sent++ {
			if sent == 0 && p.req.chat {
				buf = append(buf, head...)
				buf = append(buf, `{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}`+"\n\n"...)
			}
			buf = append(buf, head...)
			if p.req.chat {
				buf = append(buf, `{"index":0,"delta":{"content":`...)
				buf = appendJSONString(buf, pl.upTo(sent, sent+1))
				buf = append(buf, `},"logprobs":null,"finish_reason":`...)
			} else {
				buf = append(buf, `{"index":0,"text":`...)
				buf = appendJSONString(buf, pl.upTo(sent, sent+1))
				buf = append(buf, `,"logprobs":null,"finish_reason":`...)
			}
			if sent == pl.tokens()-1 {
				buf = appendJSONString(buf, pl.finish)
			} else {
				buf = append(buf, "null"...)
			}
			buf = append(buf, "}]}\n\n"...)
		}
		if sent == pl.tokens() {
			if p.req.includeUsage {
				u, _ := json.Marshal(p.usage())
				buf = append(buf, head...)
				buf = append(buf, `],"usage":`...)
				buf = append(buf, u...)
				buf = append(buf, "}\n\n"...)
			}
			buf = append(buf, "data: [DONE]\n\n"...)
		}
		if _, err := w.Write(buf); err != nil {
			p.s.abort(p.st)
			return
		}
		if err := rc.Flush(); err != nil {
			p.s.abort(p.st)
			return
		}
	}
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
