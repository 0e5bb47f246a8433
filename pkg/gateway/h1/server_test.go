package h1

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"golang.org/x/net/http/httpguts"
)

// testServer is a Server on 127.0.0.1 with its accepts counted and its log
// kept.
type testServer struct {
	*Server
	addr    string
	accepts atomic.Int64
	served  chan error // Serve's result
	logMu   sync.Mutex
	logs    []string
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

// Accept hands the *net.TCPConn on unwrapped: the server needs its RawConn.
func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func startServer(t *testing.T, h http.HandlerFunc, opts ...func(*Server)) *testServer {
	t.Helper()
	if !Supported() {
		t.Skip("h1.Server needs epoll")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: &Server{Handler: h}, addr: ln.Addr().String(), served: make(chan error, 1)}
	ts.Log = funcr.New(func(prefix, args string) {
		ts.logMu.Lock()
		ts.logs = append(ts.logs, args)
		ts.logMu.Unlock()
	}, funcr.Options{})
	for _, o := range opts {
		o(ts.Server)
	}
	go func() { ts.served <- ts.Serve(countingListener{ln, &ts.accepts}) }()
	t.Cleanup(func() {
		_ = ts.Close()
		select {
		case err := <-ts.served:
			if !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Close")
		}
		_ = ln.Close()
	})
	return ts
}

func (ts *testServer) logged() string {
	ts.logMu.Lock()
	defer ts.logMu.Unlock()
	return strings.Join(ts.logs, "\n")
}

func (ts *testServer) url(path string) string { return "http://" + ts.addr + path }

// client is an http.Client whose transport is dropped at the end of the test.
func newClient(t *testing.T, tune ...func(*http.Transport)) *http.Client {
	t.Helper()
	tr := &http.Transport{DisableCompression: true}
	for _, f := range tune {
		f(tr)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// dialRaw opens a connection for exact bytes; everything on it must be done
// within 5 seconds.
func dialRaw(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	t.Cleanup(func() { _ = c.Close() })
	return c, bufio.NewReader(c)
}

func writeRaw(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatalf("writing the request: %v", err)
	}
}

// readResp reads one response to a request of method and its whole body.
func readResp(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the response body: %v (got %q)", err, b)
	}
	return resp, string(b)
}

// expectClosed checks that the server sends nothing more and closes.
func expectClosed(t *testing.T, br *bufio.Reader) {
	t.Helper()
	rest, err := io.ReadAll(br)
	if len(rest) > 0 {
		t.Errorf("unexpected bytes after the response: %q", rest)
	}
	if err != nil {
		t.Errorf("the connection did not close cleanly: %v", err)
	}
}

// expectOpen checks that the connection is still usable by sending another
// request on it.
func expectOpen(t *testing.T, c net.Conn, br *bufio.Reader, path string) {
	t.Helper()
	writeRaw(t, c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body := readResp(t, br, http.MethodGet)
	if resp.StatusCode != http.StatusOK || body != "path="+path {
		t.Fatalf("follow-up request: %d %q, want 200 %q", resp.StatusCode, body, "path="+path)
	}
}

// pathHandler answers "path=<path>" for GETs, so that a reply can be matched
// with its request.
func pathHandler(w http.ResponseWriter, r *http.Request) {
	_, _ = io.WriteString(w, "path="+r.URL.Path)
}

func getBody(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", url, err)
	}
	return resp, string(b)
}

func TestServerKeepAlive(t *testing.T) {
	ts := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		if err := r.Context().Err(); err != nil {
			t.Errorf("request context done in the handler: %v", err)
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("reading the body: %v", err)
		}
		_, _ = fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.RequestURI(), b)
	})
	c := newClient(t)
	var reused atomic.Int64
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		if i.Reused {
			reused.Add(1)
		}
	}}
	for i := range 6 {
		method, body := http.MethodGet, ""
		if i%2 == 1 {
			method, body = http.MethodPost, "body "+strconv.Itoa(i)
		}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), method,
			ts.url("/p?i="+strconv.Itoa(i)), strings.NewReader(body))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		want := fmt.Sprintf("%s /p?i=%d %s", method, i, body)
		if err != nil || string(got) != want {
			t.Fatalf("request %d: %q %v, want %q", i, got, err, want)
		}
		if resp.ContentLength != int64(len(want)) || resp.Header.Get("Content-Length") != strconv.Itoa(len(want)) {
			t.Errorf("request %d: Content-Length %d, want %d (a small answer is measured)", i, resp.ContentLength, len(want))
		}
		if resp.TransferEncoding != nil || resp.Close {
			t.Errorf("request %d: Transfer-Encoding %v, Close %v", i, resp.TransferEncoding, resp.Close)
		}
		if resp.Header.Get("Date") == "" {
			t.Errorf("request %d: no Date header", i)
		}
	}
	if n := ts.accepts.Load(); n != 1 {
		t.Errorf("6 sequential requests used %d connections, want 1", n)
	}
	if n := reused.Load(); n != 5 {
		t.Errorf("the connection was reused %d times, want 5", n)
	}
}

func TestServerResponseFraming(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	ts := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big": // in 64 KiB pieces, no Content-Length
			for p := big; len(p) > 0; p = p[64<<10:] {
				if _, err := w.Write(p[:64<<10]); err != nil {
					t.Errorf("writing /big: %v", err)
					return
				}
			}
		case "/declared": // Content-Length set, written in small pieces
			w.Header().Set("Content-Length", "10000")
			for range 100 {
				_, _ = w.Write(bytes.Repeat([]byte{'d'}, 100))
			}
			if _, err := w.Write([]byte("x")); !errors.Is(err, http.ErrContentLength) {
				t.Errorf("writing past Content-Length: %v, want http.ErrContentLength", err)
			}
		case "/4096": // exactly the buffer: still measured
			_, _ = w.Write(bytes.Repeat([]byte{'a'}, 4096))
		case "/4097":
			_, _ = w.Write(bytes.Repeat([]byte{'a'}, 4096))
			_, _ = w.Write([]byte{'b'})
		case "/empty":
		case "/status":
			w.Header().Set("X-Test", "yes")
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, "created")
		}
	})
	c := newClient(t)
	for _, tc := range []struct {
		path    string
		status  int
		cl      int64
		chunked bool
		body    []byte
	}{
		{"/big", 200, -1, true, big},
		{"/declared", 200, 10000, false, bytes.Repeat([]byte{'d'}, 10000)},
		{"/4096", 200, 4096, false, bytes.Repeat([]byte{'a'}, 4096)},
		{"/4097", 200, -1, true, append(bytes.Repeat([]byte{'a'}, 4096), 'b')},
		{"/empty", 200, 0, false, []byte{}},
		{"/status", 201, 7, false, []byte("created")},
	} {
		resp, body := getBody(t, c, ts.url(tc.path))
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", tc.path, resp.StatusCode, tc.status)
		}
		if resp.ContentLength != tc.cl {
			t.Errorf("%s: Content-Length %d, want %d", tc.path, resp.ContentLength, tc.cl)
		}
		if chunked := len(resp.TransferEncoding) == 1 && resp.TransferEncoding[0] == "chunked"; chunked != tc.chunked {
			t.Errorf("%s: Transfer-Encoding %v, want chunked %v", tc.path, resp.TransferEncoding, tc.chunked)
		}
		if body != string(tc.body) {
			t.Errorf("%s: got %d bytes (%.40q), want %d", tc.path, len(body), body, len(tc.body))
		}
		if tc.path == "/status" && resp.Header.Get("X-Test") != "yes" {
			t.Errorf("%s: header X-Test lost: %v", tc.path, resp.Header)
		}
	}
	if n := ts.accepts.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

func TestServerRawChunkedAnswer(t *testing.T) {
	ts := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(bytes.Repeat([]byte{'z'}, 5000))
	})
	c, br := dialRaw(t, ts.addr)
	writeRaw(t, c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	head, err := br.ReadString('\n')
	if err != nil || head != "HTTP/1.1 200 OK\r\n" {
		t.Fatalf("status line %q %v", head, err)
	}
	tp := readHeaderLines(t, br)
	if tp.Get("Transfer-Encoding") != "chunked" || tp.Get("Content-Length") != "" {
		t.Fatalf("headers %v, want chunked without Content-Length", tp)
	}
	var body []byte
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(line, "\r\n"), 16, 64)
		if err != nil || !strings.HasSuffix(line, "\r\n") {
			t.Fatalf("chunk size line %q", line)
		}
		chunk := make([]byte, n+2)
		if _, err := io.ReadFull(br, chunk); err != nil {
			t.Fatal(err)
		}
		if string(chunk[n:]) != "\r\n" {
			t.Fatalf("chunk not followed by CRLF: %q", chunk[n:])
		}
		body = append(body, chunk[:n]...)
		if n == 0 {
			break
		}
	}
	if string(body) != strings.Repeat("z", 5000) {
		t.Fatalf("chunked body of %d bytes, want 5000 z", len(body))
	}
	if br.Buffered() != 0 {
		peek, _ := br.Peek(br.Buffered())
		t.Fatalf("bytes after the last chunk: %q", peek)
	}
}

// readHeaderLines reads header lines up to the blank line, as sent.
func readHeaderLines(t *testing.T, br *bufio.Reader) http.Header {
	t.Helper()
	h := http.Header{}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			return h
		}
		k, v, ok := strings.Cut(strings.TrimSuffix(line, "\r\n"), ": ")
		if !ok {
			t.Fatalf("header line %q", line)
		}
		h[k] = append(h[k], v)
	}
}

// sumHandler answers the size and SHA-256 of the body it reads.
func sumHandler(t *testing.T) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			t.Errorf("reading the body: %v", err)
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		_, _ = fmt.Fprintf(w, "%d %s %d %v", n, hex.EncodeToString(h.Sum(nil)), r.ContentLength, r.TransferEncoding)
	}
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func TestServerRequestBodies(t *testing.T) {
	ts := startServer(t, sumHandler(t))
	c := newClient(t)
	big := make([]byte, 1<<20+7)
	for i := range big {
		big[i] = byte(i * 7)
	}
	for _, tc := range []struct {
		name    string
		body    io.Reader
		size    int64
		content []byte
		want    string
	}{
		{"small", strings.NewReader("hello"), 5, []byte("hello"), "5 " + sha([]byte("hello")) + " 5 []"},
		{"big", bytes.NewReader(big), int64(len(big)), big, fmt.Sprintf("%d %s %d []", len(big), sha(big), len(big))},
		// An unknown length is sent chunked.
		{"chunked", io.MultiReader(bytes.NewReader(big)), -1, big, fmt.Sprintf("%d %s -1 [chunked]", len(big), sha(big))},
	} {
		req, _ := http.NewRequest(http.MethodPost, ts.url("/"), tc.body)
		req.ContentLength = tc.size
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if string(got) != tc.want {
			t.Errorf("%s: server saw %q, want %q", tc.name, got, tc.want)
		}
	}
	if n := ts.accepts.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

func TestServerChunkedRequestWithTrailer(t *testing.T) {
	var trailerSeen atomic.Bool
	ts := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/chunked" {
			pathHandler(w, r)
			return
		}
		if r.Header.Get("Transfer-Encoding") != "" {
			t.Errorf("Transfer-Encoding left in the header: %v", r.Header)
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("reading a chunked body: %v", err)
		}
		trailerSeen.Store(strings.Contains(string(b), "Trailer"))
		_, _ = fmt.Fprintf(w, "%q %d %v", b, r.ContentLength, r.TransferEncoding)
	})
	c, br := dialRaw(t, ts.addr)
	writeRaw(t, c, "POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+
		"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\nX-Other: 2\r\n\r\n")
	resp, body := readResp(t, br, http.MethodPost)
	if want := `"hello world" -1 [chunked]`; resp.StatusCode != 200 || body != want {
		t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, body, want)
	}
	if trailerSeen.Load() {
		t.Error("the trailer was read as body")
	}
	// The trailer was consumed: the next request parses.
	expectOpen(t, c, br, "/after-trailer")
}

func TestServerUnreadBody(t *testing.T) {
	ts := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			_, _ = io.WriteString(w, "ignored") // the body is not read
			return
		}
		pathHandler(w, r)
	})
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

	t.Run("buffered", func(t *testing.T) {
		// A small body is skipped; the request hidden in it is never served.
		c, br := dialRaw(t, ts.addr)
		writeRaw(t, c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: "+strconv.Itoa(len(smuggled))+"\r\n\r\n"+smuggled+
			"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, body := readResp(t, br, http.MethodPost); resp.StatusCode != 200 || body != "ignored" {
			t.Fatalf("POST: %d %q", resp.StatusCode, body)
		}
		if resp, body := readResp(t, br, http.MethodGet); resp.StatusCode != 200 || body != "path=/next" {
			t.Fatalf("after an unread body: %d %q, want 200 path=/next", resp.StatusCode, body)
		}
		expectOpen(t, c, br, "/again")
	})

	t.Run("large", func(t *testing.T) {
		// A large body is not read: the answer says the connection closes,
		// and it does, without serving what the body holds.
		c, br := dialRaw(t, ts.addr)
		body := strings.Repeat(smuggled, (256<<10)/len(smuggled))
		writeRaw(t, c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n")
		go func() { _, _ = io.WriteString(c, body) }() // the server may stop reading
		resp, got := readResp(t, br, http.MethodPost)
		if resp.StatusCode != 200 || got != "ignored" {
			t.Fatalf("POST: %d %q", resp.StatusCode, got)
		}
		if !resp.Close {
			t.Errorf("the answer to a request whose body is left unread does not say Connection: close: %v", resp.Header)
		}
		expectClosed(t, br)
	})

	t.Run("chunked", func(t *testing.T) {
		c, br := dialRaw(t, ts.addr)
		writeRaw(t, c, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+
			fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(smuggled), smuggled))
		resp, got := readResp(t, br, http.MethodPost)
		if resp.StatusCode != 200 || got != "ignored" {
			t.Fatalf("POST: %d %q", resp.StatusCode, got)
		}
		expectClosed(t, br)
	})

	t.Run("client", func(t *testing.T) {
		// net/http's client goes on working whatever the server decides.
		c := newClient(t)
		big := strings.Repeat("b", 1<<20)
		for i := range 4 {
			resp, err := c.Post(ts.url("/"), "text/plain", strings.NewReader(big))
			if err != nil {
				t.Fatalf("POST %d: %v", i, err)
			}
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if string(b) != "ignored" {
				t.Fatalf("POST %d: %q", i, b)
			}
			if _, got := getBody(t, c, ts.url("/x")); got != "path=/x" {
				t.Fatalf("GET after POST %d: %q", i, got)
			}
		}
	})
}

func TestServerExpectContinue(t *testing.T) {
	ts := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet:
			pathHandler(w, r)
			return
		case r.URL.Path == "/refuse":
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("reading: %v", err)
		}
		_, _ = fmt.Fprintf(w, "got %s", b)
	})

	t.Run("raw", func(t *testing.T) {
		c, br := dialRaw(t, ts.addr)
		writeRaw(t, c, "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
		resp, _ := readResp(t, br, http.MethodPost)
		if resp.StatusCode != http.StatusContinue {
			t.Fatalf("first answer %d, want 100", resp.StatusCode)
		}
		writeRaw(t, c, "hello")
		if resp, body := readResp(t, br, http.MethodPost); resp.StatusCode != 200 || body != "got hello" {
			t.Fatalf("final answer %d %q", resp.StatusCode, body)
		}
		expectOpen(t, c, br, "/next")
	})

	t.Run("refused", func(t *testing.T) {
		// The handler answers without reading: no 100 Continue, and the
		// body (never sent) is not awaited.
		c, br := dialRaw(t, ts.addr)
		writeRaw(t, c, "POST /refuse HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
		resp, body := readResp(t, br, http.MethodPost)
		if resp.StatusCode != http.StatusForbidden || body != "no\n" {
			t.Fatalf("answer %d %q, want 403", resp.StatusCode, body)
		}
		if !resp.Close {
			t.Errorf("the answer does not say Connection: close although the body was never sent: %v", resp.Header)
		}
		expectClosed(t, br)
	})

	t.Run("client", func(t *testing.T) {
		var got100 atomic.Int64
		// The long ExpectContinueTimeout makes the body wait for the 100.
		c := newClient(t, func(tr *http.Transport) { tr.ExpectContinueTimeout = 5 * time.Second })
		for _, path := range []string{"/", "/refuse"} {
			req, _ := http.NewRequest(http.MethodPost, ts.url(path), strings.NewReader("hello"))
			req.Header.Set("Expect", "100-continue")
			req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
				Got100Continue: func() { got100.Add(1) },
			}))
			start := time.Now()
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if time.Since(start) > 4*time.Second {
				t.Errorf("%s: the client waited for its ExpectContinueTimeout", path)
			}
			switch path {
			case "/":
				if string(b) != "got hello" || got100.Load() != 1 {
					t.Errorf("%s: %q, %d 100 Continue", path, b, got100.Load())
				}
			case "/refuse":
				if resp.StatusCode != http.StatusForbidden || got100.Load() != 1 {
					t.Errorf("%s: %d, %d 100 Continue in all (one more was sent)", path, resp.StatusCode, got100.Load())
				}
			}
		}
	})
}

func TestServerPipelining(t *testing.T) {
	ts := startServer(t, pathHandler)
	c, br := dialRaw(t, ts.addr)
	writeRaw(t, c, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nPOST /3 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
	for _, want := range []string{"path=/1", "path=/2", "path=/3"} {
		if resp, body := readResp(t, br, http.MethodGet); resp.StatusCode != 200 || body != want {
			t.Fatalf("%d %q, want 200 %q", resp.StatusCode, body, want)
		}
	}
	expectOpen(t, c, br, "/4")
}

// TestServerNextRequestEarly sends the next request while the handler of
// the previous one has not returned yet (its answer already complete, or
// pipelined): the server must notice that request, which is in the socket
// before it starts waiting.
func TestServerNextRequestEarly(t *testing.T) {
	release := make(chan struct{}, 1)
	ts := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len("path="+r.URL.Path)))
		pathHandler(w, r)
		http.NewResponseController(w).Flush()
		if r.URL.Path == "/wait" {
			select {
			case <-release:
			case <-r.Context().Done(): // the test failed and closed the server
			case <-time.After(5 * time.Second):
				t.Error("never released")
			}
		}
	}, func(s *Server) { s.IdleTimeout = 30 * time.Second })

	t.Run("raw", func(t *testing.T) {
		c, br := dialRaw(t, ts.addr)
		writeRaw(t, c, "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
		if _, body := readResp(t, br, http.MethodGet); body != "path=/wait" {
			t.Fatalf("first: %q", body)
		}
		writeRaw(t, c, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
		time.Sleep(50 * time.Millisecond) // the request reaches the server's socket
		release <- struct{}{}
		if _, body := readResp(t, br, http.MethodGet); body != "path=/next" {
			t.Fatalf("second: %q", body)
		}
	})

	t.Run("client", func(t *testing.T) {
		c := newClient(t)
		for i := range 3 {
			go func() {
				time.Sleep(50 * time.Millisecond)
				release <- struct{}{}
			}()
			if _, body := getBody(t, c, ts.url("/wait")); body != "path=/wait" {
				t.Fatalf("%d: %q", i, body)
			}
			// Sent as soon as the answer is read, before the handler returns.
			if _, body := getBody(t, c, ts.url("/next")); body != "path=/next" {
				t.Fatalf("%d: %q", i, body)
			}
		}
	})
}

func TestServerHTTP10(t *testing.T) {
	ts := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			_, _ = w.Write(bytes.Repeat([]byte{'s'}, 3000))
			http.NewResponseController(w).Flush()
			_, _ = w.Write(bytes.Repeat([]byte{'t'}, 3000))
			return
		}
		_, _ = fmt.Fprintf(w, "%s %d.%d close=%v host=%q", r.URL.Path, r.ProtoMajor, r.ProtoMinor, r.Close, r.Host)
	})

	t.Run("close", func(t *testing.T) {
		c, br := dialRaw(t, ts.addr)
		writeRaw(t, c, "GET /a HTTP/1.0\r\n\r\n")
		resp, body := readResp(t, br, http.MethodGet)
		if body != `/a 1.0 close=true host=""` || !resp.Close || resp.ContentLength != int64(len(body)) {
			t.Fatalf("%q close=%v cl=%d", body, resp.Close, resp.ContentLength)
		}
		expectClosed(t, br)
	})

	t.Run("keep-alive", func(t *testing.T) {
		c, br := dialRaw(t, ts.addr)
		for i := range 2 {
			writeRaw(t, c, "GET /b HTTP/1.0\r\nConnection: keep-alive\r\nHost: h\r\n\r\n")
			resp, body := readResp(t, br, http.MethodGet)
			if body != `/b 1.0 close=false host="h"` || resp.Close || resp.Header.Get("Connection") != "keep-alive" {
				t.Fatalf("%d: %q close=%v %v", i, body, resp.Close, resp.Header)
			}
		}
		// Without a length, the end of the connection ends the body.
		writeRaw(t, c, "GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
		resp, body := readResp(t, br, http.MethodGet)
		if resp.TransferEncoding != nil || resp.ContentLength != -1 || !resp.Close {
			t.Errorf("HTTP/1.0 stream: Transfer-Encoding %v, Content-Length %d, Close %v", resp.TransferEncoding, resp.ContentLength, resp.Close)
		}
		if body != strings.Repeat("s", 3000)+strings.Repeat("t", 3000) {
			t.Errorf("HTTP/1.0 stream: %d bytes", len(body))
		}
	})
}

func TestServerHeadAndNoContent(t *testing.T) {
	ts := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/head":
			_, err := io.WriteString(w, "hello")
			if err != nil {
				t.Errorf("writing to HEAD: %v", err)
			}
		case "/head-declared":
			w.Header().Set("Content-Length", "5")
			_, _ = io.WriteString(w, "hello")
		case "/204":
			w.Header().Set("Content-Length", "3")
			w.WriteHeader(http.StatusNoContent)
			if _, err := io.WriteString(w, "abc"); !errors.Is(err, http.ErrBodyNotAllowed) {
				t.Errorf("writing to a 204: %v, want http.ErrBodyNotAllowed", err)
			}
		case "/304":
			w.WriteHeader(http.StatusNotModified)
		default:
			pathHandler(w, r)
		}
	})
	c, br := dialRaw(t, ts.addr)
	writeRaw(t, c, "HEAD /head HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, body := readResp(t, br, http.MethodHead); resp.StatusCode != 200 || body != "" {
		t.Fatalf("HEAD: %d %q", resp.StatusCode, body)
	}
	expectOpen(t, c, br, "/after-head")
	writeRaw(t, c, "HEAD /head-declared HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := readResp(t, br, http.MethodHead); resp.Header.Get("Content-Length") != "5" {
		t.Fatalf("HEAD with a declared length: %v", resp.Header)
	}
	expectOpen(t, c, br, "/after-head-declared")
	for _, p := range []string{"/204", "/304"} {
		writeRaw(t, c, "GET "+p+" HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, body := readResp(t, br, http.MethodGet)
		if strconv.Itoa(resp.StatusCode) != p[1:] || body != "" || resp.TransferEncoding != nil {
			t.Fatalf("%s: %d %q %v", p, resp.StatusCode, body, resp.TransferEncoding)
		}
		if p == "/204" && resp.Header.Get("Content-Length") != "" {
			t.Errorf("a 204 with Content-Length: %v", resp.Header)
		}
		expectOpen(t, c, br, "/after"+p)
	}
}

func TestServerConnectionClose(t *testing.T) {
	ts := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bye" {
			w.Header().Set("Connection", "close")
		}
		pathHandler(w, r)
	})
	for _, tc := range []struct{ name, req string }{
		{"client", "GET /x HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n"},
		{"handler", "GET /bye HTTP/1.1\r\nHost: x\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, br := dialRaw(t, ts.addr)
			writeRaw(t, c, tc.req)
			status, err := br.ReadString('\n')
			if err != nil || status != "HTTP/1.1 200 OK\r\n" {
				t.Fatalf("status line %q %v", status, err)
			}
			h := readHeaderLines(t, br)
			if v := h["Connection"]; len(v) != 1 || v[0] != "close" {
				t.Errorf("Connection headers %q, want one: close", v)
			}
			n, _ := strconv.Atoi(h.Get("Content-Length"))
			body := make([]byte, n)
			if _, err := io.ReadFull(br, body); err != nil || !strings.HasPrefix(string(body), "path=/") {
				t.Fatalf("body %q %v", body, err)
			}
			expectClosed(t, br)
		})
	}
}

func TestServerInformational(t *testing.T) {
	ts := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		_, _ = io.WriteString(w, "final")
	})
	c, br := dialRaw(t, ts.addr)
	writeRaw(t, c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, _ := readResp(t, br, http.MethodGet)
	if resp.StatusCode != http.StatusEarlyHints || resp.Header.Get("Link") == "" {
		t.Fatalf("first answer %d %v, want 103 with Link", resp.StatusCode, resp.Header)
	}
	resp, body := readResp(t, br, http.MethodGet)
	if resp.StatusCode != 200 || body != "final" || resp.Header.Get("Link") != "" {
		t.Fatalf("final answer %d %q %v", resp.StatusCode, body, resp.Header)
	}
}

func TestServerMalformed(t *testing.T) {
	var called atomic.Int64
	ts := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		called.Add(1)
		pathHandler(w, r)
	}, func(s *Server) { s.MaxHeaderBytes = 2048 })
	for _, tc := range []struct {
		name   string
		req    string
		status int
	}{
		{"request line", "GARBAGE\r\n\r\n", 400},
		{"request line spaces", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"request line extra", "GET / HTTP/1.1 x\r\nHost: x\r\n\r\n", 400},
		{"method", "G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"protocol", "GET / FTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"target", "GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"target query", "GET /a?b\x7fc HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"target escape", "GET /a%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"no host", "GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", 400},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"bad host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"bad target host", "GET http://a\"b/ HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"header line", "GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", 400},
		{"header name space", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400},
		{"header value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400},
		{"folding", "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  2\r\n\r\n", 400},
		{"te and cl", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400},
		{"te gzip", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"te gzip chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
		{"te http/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
		{"expect", "POST / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx", 417},
		{"http/2", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
		{"http/1.2", "GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505},
		{"header too large", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 3000) + "\r\n\r\n", 431},
		{"headers too large", "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-Many: aaaaaaaaaaaaaaaa\r\n", 100) + "\r\n", 431},
		{"line too large", "GET /" + strings.Repeat("a", 5000) + " HTTP/1.1\r\nHost: x\r\n\r\n", 431},
		{"content-length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400},
		{"content-length negative", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400},
		{"content-length plus", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\nx", 400},
		{"content-length list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 1\r\n\r\nx", 400},
		{"content-lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy", 400},
		{"head cut", "GET / HTTP/1.1\r\nHost: x\r\n", 400}, // then the client half-closes
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, br := dialRaw(t, ts.addr)
			writeRaw(t, c, tc.req)
			if tc.name == "head cut" {
				_ = c.(*net.TCPConn).CloseWrite()
			}
			resp, body := readResp(t, br, http.MethodGet)
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d (%q)", resp.StatusCode, tc.status, body)
			}
			if !resp.Close {
				t.Error("no Connection: close")
			}
			if want := strconv.Itoa(tc.status) + " " + http.StatusText(tc.status) + ": "; !strings.HasPrefix(body, want) {
				t.Errorf("body %q, want it to start with %q", body, want)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			expectClosed(t, br)
		})
	}
	t.Cleanup(func() {
		if n := called.Load(); n != 0 {
			t.Errorf("the handler was called %d times for malformed requests", n)
		}
	})
}

func TestServerMalformedKeepsValidOnes(t *testing.T) {
	// Valid requests that a strict parser could reject.
	ts := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, "%s %q %q %q %q", r.Method, r.Host, r.URL.Path, r.URL.RawQuery, r.Header.Get("X-A"))
	})
	for _, tc := range []struct{ req, want string }{
		{"\r\n\r\nGET /lead HTTP/1.1\r\nHost: x\r\n\r\n", `GET "x" "/lead" "" ""`},
		{"GET /lf?q=1 HTTP/1.1\nHost: x\nX-A:  v \t\n\n", `GET "x" "/lf" "q=1" "v"`},
		{"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", `OPTIONS "x" "*" "" ""`},
		{"GET http://abs.example:81/p?q HTTP/1.1\r\nHost: other\r\n\r\n", `GET "abs.example:81" "/p" "q" ""`},
		{"GET /a%20b HTTP/1.1\r\nhOsT: x\r\nx-a: 1\r\nX-A: 2\r\n\r\n", `GET "x" "/a b" "" "1"`},
		{"CUSTOM-M /x HTTP/1.1\r\nHost: x\r\n\r\n", `CUSTOM-M "x" "/x" "" ""`},
	} {
		c, br := dialRaw(t, ts.addr)
		writeRaw(t, c, tc.req)
		if resp, body := readResp(t, br, http.MethodGet); resp.StatusCode != 200 || body != tc.want {
			t.Errorf("%q: %d %q, want 200 %q", tc.req, resp.StatusCode, body, tc.want)
		}
	}
}

func TestServerErrorBody(t *testing.T) {
	var gotStatus atomic.Int64
	ts := startServer(t, pathHandler, func(s *Server) {
		s.ErrorBody = func(status int, msg string) (string, []byte) {
			gotStatus.Store(int64(status))
			return "application/json", []byte(`{"status":` + strconv.Itoa(status) + `,"message":` + strconv.Quote(msg) + `}`)
		}
	})
	c, br := dialRaw(t, ts.addr)
	writeRaw(t, c, "GET / HTTP/2.0\r\nHost: x\r\n\r\n")
	resp, body := readResp(t, br, http.MethodGet)
	if resp.StatusCode != 505 || resp.Header.Get("Content-Type") != "application/json" ||
		!strings.HasPrefix(body, `{"status":505,"message":"unsupported protocol version`) || gotStatus.Load() != 505 {
		t.Fatalf("%d %v %q", resp.StatusCode, resp.Header, body)
	}
	if resp.ContentLength != int64(len(body)) {
		t.Errorf("Content-Length %d for %d bytes", resp.ContentLength, len(body))
	}
	expectClosed(t, br)
}

func TestServerFlushStreams(t *testing.T) {
	proceed := make(chan struct{})
	ts := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: 1\n\n")
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("Flush: %v", err)
		}
		select {
		case <-proceed:
		case <-r.Context().Done(): // the test failed and closed the connection
			return
		case <-time.After(5 * time.Second):
			t.Error("the client never received the first event")
			return
		}
		_, _ = io.WriteString(w, "data: 2\n\n")
	})
	c := newClient(t)
	resp, err := c.Get(ts.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if te := resp.TransferEncoding; len(te) != 1 || te[0] != "chunked" {
		t.Errorf("Transfer-Encoding %v", te)
	}
	br := bufio.NewReader(resp.Body)
	first := make(chan string, 1)
	go func() {
		line, _ := br.ReadString('\n')
		first <- line
	}()
	select {
	case line := <-first:
		if line != "data: 1\n" {
			t.Fatalf("first event %q", line)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the flushed event did not arrive")
	}
	close(proceed)
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "\ndata: 2\n\n" {
		t.Fatalf("rest %q %v", rest, err)
	}
}

func TestServerClientGone(t *testing.T) {
	started := make(chan struct{}, 1)
	cause := make(chan error, 1)
	ts := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/block" {
			pathHandler(w, r)
			return
		}
		started <- struct{}{}
		select {
		case <-r.Context().Done():
			cause <- context.Cause(r.Context())
		case <-time.After(5 * time.Second):
			cause <- errors.New("the context was not cancelled")
		}
	})
	c, _ := dialRaw(t, ts.addr)
	writeRaw(t, c, "GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
	<-started
	_ = c.Close()
	select {
	case err := <-cause:
		if !errors.Is(err, errClientGone) {
			t.Fatalf("cause %v, want %v", err, errClientGone)
		}
	case <-time.After(7 * time.Second):
		t.Fatal("the handler did not return")
	}
	// Another connection is not affected.
	if _, body := getBody(t, newClient(t), ts.url("/x")); body != "path=/x" {
		t.Fatalf("body %q", body)
	}
}

func TestServerAbortHandler(t *testing.T) {
	ts := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/abort-flushed": // part of a declared length is on the wire
			w.Header().Set("Content-Length", "1000")
			_, _ = w.Write(bytes.Repeat([]byte{'a'}, 100))
			http.NewResponseController(w).Flush()
			time.Sleep(20 * time.Millisecond)
			panic(http.ErrAbortHandler)
		case "/abort-buffered": // nothing is on the wire yet
			w.Header().Set("Content-Length", "1000")
			_, _ = w.Write(bytes.Repeat([]byte{'a'}, 100))
			panic(http.ErrAbortHandler)
		case "/abort-large": // past the buffer
			w.Header().Set("Content-Length", "100000")
			_, _ = w.Write(bytes.Repeat([]byte{'a'}, 50000))
			panic(http.ErrAbortHandler)
		case "/abort-chunked":
			_, _ = w.Write(bytes.Repeat([]byte{'a'}, 100))
			http.NewResponseController(w).Flush()
			time.Sleep(20 * time.Millisecond)
			panic(http.ErrAbortHandler)
		case "/short": // returns having written less than it declared
			w.Header().Set("Content-Length", "1000")
			_, _ = w.Write(bytes.Repeat([]byte{'a'}, 100))
		case "/panic":
			panic("boom")
		default:
			pathHandler(w, r)
		}
	})
	c := newClient(t)
	for _, p := range []string{"/abort-flushed", "/abort-buffered", "/abort-large", "/abort-chunked", "/short", "/panic"} {
		resp, err := c.Get(ts.url(p))
		if err != nil {
			if p == "/abort-flushed" || p == "/abort-chunked" || p == "/short" {
				t.Errorf("%s: %v; the head was sent before the failure", p, err)
			}
			continue
		}
		b, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%s: read %d bytes, error %v, want io.ErrUnexpectedEOF", p, len(b), err)
		}
	}
	logs := ts.logged()
	if n := strings.Count(logs, "handler panicked"); n != 1 || !strings.Contains(logs, "boom") || !strings.Contains(logs, `"path"="/panic"`) {
		t.Errorf("%d panics logged, want only the one of /panic:\n%s", n, logs)
	}
	// The server goes on serving.
	if _, body := getBody(t, c, ts.url("/ok")); body != "path=/ok" {
		t.Fatalf("after the panics: %q", body)
	}
}

func TestServerWriteDeadline(t *testing.T) {
	result := make(chan error, 1)
	ts := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if err := rc.SetWriteDeadline(time.Now().Add(300 * time.Millisecond)); err != nil {
			result <- err
			return
		}
		piece := make([]byte, 64<<10)
		for written := 0; written < 1<<30; written += len(piece) {
			if _, err := w.Write(piece); err != nil {
				if _, err2 := w.Write(piece); err2 == nil {
					result <- errors.New("a Write after a failed one succeeded")
					return
				}
				result <- err
				return
			}
		}
		result <- nil
	})
	c, br := dialRaw(t, ts.addr)
	writeRaw(t, c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") // and never read
	select {
	case err := <-result:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Write error %v, want a deadline error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler was not cut off")
	}
	// The connection is dropped: reading comes to an end.
	_, _ = io.Copy(io.Discard, br)
}

// TestServerBoundsBlockingIO: without deadlines of the handler's, the
// server's WriteTimeout cuts off a client that stops reading, and its
// BodyReadTimeout a client that stops sending its body.
func TestServerBoundsBlockingIO(t *testing.T) {
	result := make(chan error, 1)
	ts := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		if b, ok := w.(interface{ BoundsBlockingIO() bool }); !ok || !b.BoundsBlockingIO() {
			result <- errors.New("the response writer does not report BoundsBlockingIO")
			return
		}
		if r.URL.Path == "/upload" {
			_, err := io.ReadAll(r.Body)
			result <- err
			return
		}
		piece := make([]byte, 64<<10)
		for written := 0; written < 1<<30; written += len(piece) {
			if _, err := w.Write(piece); err != nil {
				result <- err
				return
			}
		}
		result <- nil
	}, func(s *Server) { s.WriteTimeout, s.BodyReadTimeout = 300*time.Millisecond, 300*time.Millisecond })
	for _, req := range []string{
		"GET /download HTTP/1.1\r\nHost: x\r\n\r\n",                                 // and never read
		"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b", // and never the rest
	} {
		c, _ := dialRaw(t, ts.addr)
		writeRaw(t, c, req)
		select {
		case err := <-result:
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("%q: error %v, want a deadline error", req, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%q: the handler was not cut off", req)
		}
		_ = c.Close()
	}
}

func TestServerShutdownIdle(t *testing.T) {
	ts := startServer(t, pathHandler)
	c, br := dialRaw(t, ts.addr)
	expectOpen(t, c, br, "/first") // now idle for IdleTimeout (120s)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v with one idle connection", d)
	}
	expectClosed(t, br)
	select {
	case err := <-ts.served:
		ts.served <- err // for the cleanup
		if !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Error("Serve did not return")
	}
	if c, err := net.DialTimeout("tcp", ts.addr, time.Second); err == nil {
		_ = c.Close()
		t.Error("the listener still accepts")
	}
	// Serve after Shutdown refuses and closes its listener.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve after Shutdown: %v", err)
	}
	if _, err := ln.Accept(); err == nil {
		t.Error("Serve after Shutdown left its listener open")
	}
}

func TestServerShutdownInFlight(t *testing.T) {
	started := make(chan struct{}, 1)
	ts := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		time.Sleep(200 * time.Millisecond)
		_, _ = io.WriteString(w, "done")
	})
	c, br := dialRaw(t, ts.addr)
	writeRaw(t, c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	<-started
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- ts.Shutdown(ctx)
	}()
	resp, body := readResp(t, br, http.MethodGet)
	if resp.StatusCode != 200 || body != "done" {
		t.Fatalf("in-flight answer %d %q", resp.StatusCode, body)
	}
	if !resp.Close {
		t.Error("an answer sent during Shutdown does not say Connection: close")
	}
	expectClosed(t, br)
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Shutdown did not return")
	}
}

func TestServerShutdownExpired(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	returned := make(chan error, 1)
	ts := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		returned <- context.Cause(r.Context())
	})
	c, br := dialRaw(t, ts.addr)
	writeRaw(t, c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := ts.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want context.DeadlineExceeded", err)
	}
	// Close ends what Shutdown waited for.
	if err := ts.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case err := <-returned:
		if !errors.Is(err, errServerClosed) {
			t.Errorf("cause %v, want %v", err, errServerClosed)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Close did not cancel the request")
	}
	close(release)
	rest, _ := io.ReadAll(br)
	if len(rest) > 0 {
		if resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(rest)), nil); err == nil {
			if b, err := io.ReadAll(resp.Body); err == nil {
				t.Errorf("a complete answer after Close: %d %q", resp.StatusCode, b)
			}
		}
	}
}

func TestServerClose(t *testing.T) {
	ts := startServer(t, pathHandler)
	idle, idleBr := dialRaw(t, ts.addr)
	expectOpen(t, idle, idleBr, "/x")
	fresh, freshBr := dialRaw(t, ts.addr) // never sends anything
	_ = fresh
	time.Sleep(20 * time.Millisecond)
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	for _, br := range []*bufio.Reader{idleBr, freshBr} {
		if _, err := br.ReadByte(); err == nil {
			t.Error("a connection is still open after Close")
		}
	}
}

func TestServerReadHeaderTimeout(t *testing.T) {
	ts := startServer(t, pathHandler, func(s *Server) {
		s.ReadHeaderTimeout = 150 * time.Millisecond
		s.IdleTimeout = 400 * time.Millisecond
	})
	for _, tc := range []struct {
		name, send string
		min        time.Duration
	}{
		{"silent", "", 100 * time.Millisecond},
		{"partial head", "GET / HTTP/1.1\r\nHost: x\r\n", 100 * time.Millisecond},
		{"idle", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 200 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, br := dialRaw(t, ts.addr)
			start := time.Now()
			writeRaw(t, c, tc.send)
			if tc.name == "idle" {
				if _, body := readResp(t, br, http.MethodGet); body != "path=/" {
					t.Fatalf("%q", body)
				}
				start = time.Now()
			}
			rest, err := io.ReadAll(br)
			if err != nil || len(rest) > 0 {
				t.Errorf("read %q %v, want a clean close", rest, err)
			}
			if d := time.Since(start); d < tc.min {
				t.Errorf("closed after %v, before the timeout", d)
			}
		})
	}
}

// TestServerIdleLongerThanHeaderTimeout: a keep-alive connection may idle
// for IdleTimeout, longer than ReadHeaderTimeout.
func TestServerIdleLongerThanHeaderTimeout(t *testing.T) {
	ts := startServer(t, pathHandler, func(s *Server) {
		s.ReadHeaderTimeout = 100 * time.Millisecond
		s.IdleTimeout = 5 * time.Second
	})
	c, br := dialRaw(t, ts.addr)
	expectOpen(t, c, br, "/1")
	time.Sleep(300 * time.Millisecond)
	expectOpen(t, c, br, "/2")
}

func TestServerConcurrent(t *testing.T) {
	ts := startServer(t, sumHandler(t))
	c := newClient(t, func(tr *http.Transport) { tr.MaxIdleConnsPerHost = 8 })
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 25 {
				body := bytes.Repeat([]byte{byte('a' + g)}, 100*i+g)
				resp, err := c.Post(ts.url("/"), "text/plain", bytes.NewReader(body))
				if err != nil {
					t.Errorf("goroutine %d request %d: %v", g, i, err)
					return
				}
				got, err := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if want := fmt.Sprintf("%d %s %d []", len(body), sha(body), len(body)); err != nil || string(got) != want {
					t.Errorf("goroutine %d request %d: %q %v, want %q", g, i, got, err, want)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := ts.accepts.Load(); n > 50 {
		t.Errorf("%d connections for 200 requests of 8 clients: few are kept alive", n)
	}
}

func TestServerBodyErrors(t *testing.T) {
	errs := make(chan error, 1)
	ts := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/deadline" {
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		}
		b, err := io.ReadAll(r.Body)
		errs <- err
		_, _ = fmt.Fprintf(w, "%q", b)
	})

	t.Run("read deadline", func(t *testing.T) {
		c, br := dialRaw(t, ts.addr)
		writeRaw(t, c, "POST /deadline HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
		if err := <-errs; !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("reading a stalled body past the deadline: %v", err)
		}
		resp, body := readResp(t, br, http.MethodPost)
		if body != `"abc"` || !resp.Close {
			t.Errorf("%q close=%v, want \"abc\" and Connection: close", body, resp.Close)
		}
		expectClosed(t, br)
	})

	t.Run("short", func(t *testing.T) {
		c, br := dialRaw(t, ts.addr)
		writeRaw(t, c, "POST /short HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
		_ = c.(*net.TCPConn).CloseWrite()
		if err := <-errs; !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("reading a cut body: %v, want io.ErrUnexpectedEOF", err)
		}
		resp, body := readResp(t, br, http.MethodPost)
		if body != `"abc"` || !resp.Close {
			t.Errorf("%q close=%v", body, resp.Close)
		}
	})

	t.Run("bad chunk", func(t *testing.T) {
		c, br := dialRaw(t, ts.addr)
		writeRaw(t, c, "POST /chunk HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n")
		if err := <-errs; err == nil {
			t.Error("a malformed chunk size was read without error")
		}
		resp, body := readResp(t, br, http.MethodPost)
		if body != `"abc"` || !resp.Close {
			t.Errorf("%q close=%v", body, resp.Close)
		}
		expectClosed(t, br)
	})
}

// stubConn is a net.Conn for the parser: nothing to read, writes dropped.
type stubConn struct{}

func (stubConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (stubConn) Write(p []byte) (int, error)      { return len(p), nil }
func (stubConn) Close() error                     { return nil }
func (stubConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (stubConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (stubConn) SetDeadline(time.Time) error      { return nil }
func (stubConn) SetReadDeadline(time.Time) error  { return nil }
func (stubConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzServerParse feeds bytes to the request reader as the server does
// (head, body, next head) and checks what it accepts.
func FuzzServerParse(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /a?b=c HTTP/1.0\r\n\r\n",
		"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /n HTTP/1.1\r\nHost: y\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nT: 1\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
		"GET http://h:1/x HTTP/1.1\r\nHost: y\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
		"\r\nGET /%41 HTTP/1.1\nhost: a\nX: 1\nx: 2\n\n",
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"GET / HTTP/2.0\r\n\r\n",
		"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GARBAGE",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := &Server{MaxHeaderBytes: 1024}
		c := &serverConn{s: s, nc: stubConn{}, remote: "1.2.3.4:5", br: bufio.NewReaderSize(bytes.NewReader(data), 4<<10)}
		c.template = *(&http.Request{}).WithContext(context.Background())
		for range 4 {
			r, b, err := c.readRequest()
			if err != nil {
				var re *requestError
				if errors.As(err, &re) {
					switch re.status {
					case 400, 417, 431, 501, 505:
					default:
						t.Fatalf("status %d for %q", re.status, data)
					}
				} else if err != io.EOF {
					t.Fatalf("error %v (%T) is neither a requestError nor io.EOF", err, err)
				}
				return
			}
			checkRequest(t, r)
			n, err := io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
			if err == nil && r.ContentLength >= 0 && n != r.ContentLength {
				t.Fatalf("read %d bytes of a %d-byte body", n, r.ContentLength)
			}
			if err != nil || !b.eof {
				return // the server closes the connection
			}
		}
	})
}

func checkRequest(t *testing.T, r *http.Request) {
	t.Helper()
	switch {
	case r.Method == "" || !validMethod(r.Method):
		t.Fatalf("method %q", r.Method)
	case r.URL == nil:
		t.Fatal("nil URL")
	case r.RequestURI == "":
		t.Fatal("empty RequestURI")
	case r.Header == nil:
		t.Fatal("nil Header")
	case r.Header["Host"] != nil:
		t.Fatalf("Host in the header: %q", r.Header["Host"])
	case r.Header["Transfer-Encoding"] != nil:
		t.Fatalf("Transfer-Encoding in the header: %q", r.Header["Transfer-Encoding"])
	case r.ProtoMajor != 1 || r.ProtoMinor > 1 || r.Proto != "HTTP/1."+strconv.Itoa(r.ProtoMinor):
		t.Fatalf("protocol %q %d.%d", r.Proto, r.ProtoMajor, r.ProtoMinor)
	case r.Body == nil || r.Context() == nil:
		t.Fatal("nil Body or Context")
	case r.ContentLength < -1:
		t.Fatalf("Content-Length %d", r.ContentLength)
	case (r.ContentLength == -1) != (len(r.TransferEncoding) == 1 && r.TransferEncoding[0] == "chunked"):
		t.Fatalf("Content-Length %d with Transfer-Encoding %q", r.ContentLength, r.TransferEncoding)
	case r.ContentLength > 0 && len(r.Header["Content-Length"]) == 0:
		t.Fatal("a length without Content-Length")
	}
	for _, ch := range []byte(r.RequestURI) {
		if ch <= ' ' || ch == 0x7f {
			t.Fatalf("control character or space in the target %q", r.RequestURI)
		}
	}
	if r.Host != "" && !httpguts.ValidHostHeader(r.Host) {
		t.Fatalf("host %q", r.Host)
	}
	for k, vs := range r.Header {
		if !httpguts.ValidHeaderFieldName(k) || k != http.CanonicalHeaderKey(k) {
			t.Fatalf("header name %q", k)
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) || strings.TrimSpace(v) != v {
				t.Fatalf("header %s value %q", k, v)
			}
		}
	}
}

// TestServerConnectionChurn: many short connections (Connection: close, and
// clients that leave without closing cleanly) leave nothing behind in the
// hang-up watcher or the server, and every request is answered.
func TestServerConnectionChurn(t *testing.T) {
	w, err := hangups()
	if err != nil {
		t.Skip(err)
	}
	before := w.watched()
	ts := startServer(t, pathHandler)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 100 {
				c, err := net.Dial("tcp", ts.addr)
				if err != nil {
					t.Error(err)
					return
				}
				if i%2 == 0 { // a clean request with Connection: close
					_, _ = fmt.Fprintf(c, "GET /%d-%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", g, i)
					b, err := io.ReadAll(c)
					if err != nil || !bytes.Contains(b, []byte(fmt.Sprintf("path=/%d-%d", g, i))) {
						t.Errorf("answer %q %v", b, err)
					}
				} else { // a client that sends half a head and resets the connection
					_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHo")
					_ = c.(*net.TCPConn).SetLinger(0)
				}
				_ = c.Close()
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ts.mu.Lock()
		open := len(ts.conns)
		ts.mu.Unlock()
		if n := w.watched(); open == 0 && n <= before {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("after 400 closed connections: %d still tracked by the server, %d watched (before: %d)", open, n, before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
