package h1

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"slices"
	"testing"
)

func TestParseIncoming(t *testing.T) {
	in := &Incoming{Fields: make([]Field, 0, 1)}
	head := "POST /v1/chat/completions?x=1 HTTP/1.1\r\nhost: gw.example\r\ncontent-type: application/json\r\n" +
		"Content-Length: 7\r\nX-Request-Id: a\r\nX-Request-Id: b\r\nConnection: close\r\n\r\n"
	f, err := parseIncoming(in, "127.0.0.1:5000", head)
	if err != nil {
		t.Fatal(err)
	}
	want := Incoming{Method: "POST", Target: "/v1/chat/completions?x=1", Path: "/v1/chat/completions", Host: "gw.example",
		RemoteAddr: "127.0.0.1:5000", Minor: 1, Close: true, ContentLength: 7,
		Fields: []Field{{"Content-Type", "application/json"}, {"Content-Length", "7"}, {"X-Request-Id", "a"}, {"X-Request-Id", "b"}, {"Connection", "close"}}}
	if in.Method != want.Method || in.Target != want.Target || in.Path != want.Path || in.Host != want.Host ||
		in.RemoteAddr != want.RemoteAddr || in.Minor != want.Minor || in.Close != want.Close || in.ContentLength != want.ContentLength ||
		!slices.Equal(in.Fields, want.Fields) {
		t.Errorf("parsed %+v, want %+v", *in, want)
	}
	if f.remaining != 7 || f.chunked || f.expect {
		t.Errorf("framing %+v", f)
	}
	if got := in.Get("X-Request-Id"); got != "a" {
		t.Errorf("Get = %q, want the first value", got)
	}

	// Reused: the fields of the last request do not stay.
	if _, err := parseIncoming(in, "", "POST /a HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil || len(in.Fields) != 0 || in.Close || in.ContentLength != 0 {
		t.Errorf("second request: %+v, %v", *in, err)
	}

	for _, tc := range []struct {
		name, head string
		status     int // 0: errNotFast
	}{
		{"absolute form", "POST http://h/a HTTP/1.1\r\nHost: h\r\n\r\n", 0},
		{"escaped path", "POST /a%2Fb HTTP/1.1\r\nHost: h\r\n\r\n", 0},
		{"no host", "POST /a HTTP/1.1\r\n\r\n", http.StatusBadRequest},
		{"two hosts", "POST /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", http.StatusBadRequest},
		{"both framings", "POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", http.StatusBadRequest},
		{"conflicting lengths", "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", http.StatusBadRequest},
		{"bad length", "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: -3\r\n\r\n", http.StatusBadRequest},
		{"gzip coding", "POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", http.StatusNotImplemented},
		{"expectation", "POST /a HTTP/1.1\r\nHost: h\r\nExpect: magic\r\n\r\n", http.StatusExpectationFailed},
		{"folding", "POST /a HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n 2\r\n\r\n", http.StatusBadRequest},
		{"bad name", "POST /a HTTP/1.1\r\nHost: h\r\nX A: 1\r\n\r\n", http.StatusBadRequest},
		{"version", "POST /a HTTP/1.2\r\nHost: h\r\n\r\n", http.StatusHTTPVersionNotSupported},
	} {
		_, err := parseIncoming(in, "", tc.head)
		var re *requestError
		switch {
		case tc.status == 0 && !errors.Is(err, errNotFast):
			t.Errorf("%s: err %v, want errNotFast", tc.name, err)
		case tc.status != 0 && (!errors.As(err, &re) || re.status != tc.status):
			t.Errorf("%s: err %v, want status %d", tc.name, err, tc.status)
		}
	}
}

func TestParseAnswerHead(t *testing.T) {
	a := &Answer{}
	head := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n" +
		"Transfer-Encoding: chunked\r\nTrailer: X-T\r\nX-Request-Id: r\r\nDate: Sun, 29 Nov 2026 10:00:00 GMT\r\n\r\n"
	f, closes, interim, err := parseAnswerHead(head, http.MethodPost, a)
	if err != nil || interim || closes || !f.chunked {
		t.Fatalf("framing %+v closes %v interim %v err %v", f, closes, interim, err)
	}
	want := []Field{{"Content-Type", "text/event-stream"}, {"X-Request-Id", "r"}, {"Date", "Sun, 29 Nov 2026 10:00:00 GMT"}}
	if a.Status != 200 || a.ContentType != "text/event-stream" || a.ContentLength != -1 || !slices.Equal(a.Fields, want) {
		t.Errorf("answer %+v, want fields %v", *a, want)
	}

	for _, tc := range []struct {
		name, head, method string
		length             int64
		closes, interim    bool
		f                  respFraming
	}{
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", "POST", 12, false, false, respFraming{remaining: 12}},
		{"empty", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "POST", 0, false, false, respFraming{done: true}},
		{"to the end", "HTTP/1.1 200 OK\r\n\r\n", "POST", -1, true, false, respFraming{toEOF: true}},
		{"close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", "POST", 1, true, false, respFraming{remaining: 1}},
		{"1.0", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", "POST", 1, true, false, respFraming{remaining: 1}},
		{"no content", "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", "POST", 0, false, false, respFraming{done: true}},
		{"head", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HEAD", 5, false, false, respFraming{done: true}},
		{"interim", "HTTP/1.1 100 Continue\r\n\r\n", "POST", 0, false, true, respFraming{}},
	} {
		f, closes, interim, err := parseAnswerHead(tc.head, tc.method, a)
		if err != nil || f != tc.f || closes != tc.closes || interim != tc.interim || !interim && a.ContentLength != tc.length {
			t.Errorf("%s: framing %+v closes %v interim %v length %d err %v", tc.name, f, closes, interim, a.ContentLength, err)
		}
	}
	for _, bad := range []string{
		"HTTP/2 200 OK\r\n\r\n",
		"HTTP/1.1 2000 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n",
	} {
		if _, _, _, err := parseAnswerHead(bad, "POST", a); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// FuzzParseIncoming: the loop's parser and the server's agree on every head
// the loop takes — the same errors, request and framing, and the same fields
// (a list there, a map here).
func FuzzParseIncoming(f *testing.F) {
	for _, s := range []string{
		"POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
		"GET /a?b=c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: h\r\nConnection: close, X-B\r\nX-B: 1\r\n\r\n",
		"POST http://h/a HTTP/1.1\r\nHost: h\r\n\r\n",
	} {
		f.Add(s)
	}
	template := (&http.Request{}).WithContext(context.Background())
	f.Fuzz(func(t *testing.T, head string) {
		in := &Incoming{}
		lf, lerr := parseIncoming(in, "r", head)
		r, sf, serr := parseRequestHead(template, "r", head)
		if errors.Is(lerr, errNotFast) {
			return
		}
		if (lerr == nil) != (serr == nil) || lerr != nil && lerr.Error() != serr.Error() {
			t.Fatalf("loop: %v; server: %v", lerr, serr)
		}
		if lerr != nil {
			return
		}
		if lf != sf || in.Method != r.Method || in.Target != r.RequestURI || in.Path != r.URL.Path || in.Host != r.Host ||
			in.Minor != r.ProtoMinor || in.Close != r.Close || in.ContentLength != r.ContentLength {
			t.Fatalf("loop %+v %+v; server %+v %+v", *in, lf, *r, sf)
		}
		h := http.Header{}
		for _, fl := range in.Fields {
			if !(sf.chunked && fl.Name == "Transfer-Encoding") {
				h[fl.Name] = append(h[fl.Name], fl.Value)
			}
		}
		if !maps.EqualFunc(h, r.Header, slices.Equal) {
			t.Fatalf("loop's fields %v; server's %v", h, r.Header)
		}
	})
}

// FuzzParseAnswerHead: the loop's parser and the transport's agree on every
// answer head: errors, framing, length, and the fields the loop passes on
// are the transport's less the hop-by-hop ones.
func FuzzParseAnswerHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: X-A\r\nX-A: 1\r\nX-B: 2\r\n\r\n",
		"HTTP/1.0 204 No Content\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\n",
	} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, head string, isHead bool) {
		method := http.MethodPost
		if isHead {
			method = http.MethodHead
		}
		a := &Answer{}
		lf, closes, interim, lerr := parseAnswerHead(head, method, a)
		resp, tf, terr := parseResponseHead(head, method)
		if (lerr == nil) != (terr == nil) || lerr != nil && lerr.Error() != terr.Error() {
			t.Fatalf("loop: %v; transport: %v", lerr, terr)
		}
		if lerr != nil {
			return
		}
		if interim != (resp == nil) {
			t.Fatalf("interim %v, transport's answer %v", interim, resp)
		}
		if interim {
			return
		}
		if lf != tf || closes != resp.Close || a.Status != resp.StatusCode || a.ContentLength != resp.ContentLength ||
			a.ContentType != resp.Header.Get("Content-Type") {
			t.Fatalf("loop %+v %+v closes %v; transport %+v %+v", *a, lf, closes, *resp, tf)
		}
		want := http.Header{}
		for k, vs := range resp.Header {
			if !hopField(k) && !hasToken(resp.Header["Connection"], k) {
				want[k] = vs
			}
		}
		got := http.Header{}
		for _, fl := range a.Fields {
			got[fl.Name] = append(got[fl.Name], fl.Value)
		}
		if !maps.EqualFunc(got, want, slices.Equal) {
			t.Fatalf("loop's fields %v; want %v", got, want)
		}
	})
}
