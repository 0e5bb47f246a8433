package h1

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// Message heads (request line or status line, then header fields) are read
// into one buffer, turned into one string, and every key and value is a
// substring of it: two allocations for the text of a head instead of one per
// line and field.

// errHeadTooLarge: the head exceeds its limit.
var errHeadTooLarge = errors.New("h1: message head too large")

// readHead reads a message head up to and including its blank line into
// buf[:0], within limit bytes. Empty lines before it are skipped (RFC 9112
// 2.2). io.EOF means the connection ended before any byte of a head;
// io.ErrUnexpectedEOF that it ended inside one.
func readHead(br *bufio.Reader, buf []byte, limit int) ([]byte, error) {
	buf = buf[:0]
	lineStart := 0
	for {
		line, err := br.ReadSlice('\n')
		if len(buf)+len(line) > limit {
			return buf, errHeadTooLarge
		}
		buf = append(buf, line...)
		if err == bufio.ErrBufferFull {
			continue // a line longer than the reader's buffer: go on gathering it
		}
		if err != nil {
			if err == io.EOF && len(buf) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return buf, err
		}
		if l := buf[lineStart:]; len(l) == 1 || len(l) == 2 && l[0] == '\r' { // "\n" or "\r\n": the blank line
			if lineStart == 0 {
				buf = buf[:0]
				continue
			}
			return buf, nil
		}
		lineStart = len(buf)
	}
}

// nextLine splits off the first line of s (without its CRLF or LF).
func nextLine(s string) (line, rest string) {
	i := strings.IndexByte(s, '\n')
	if i < 0 {
		return s, ""
	}
	line, rest = s[:i], s[i+1:]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, rest
}

// parseFields parses the header lines of s (after the start line, up to the
// blank line) into a new Header. Keys are canonicalised; values keep their
// order. With hosts set, Host fields are counted there and the first is
// returned instead of going into the Header.
func parseFields(s string, hosts *int) (h http.Header, host string, err error) {
	n := strings.Count(s, "\n")
	slab := make([]string, n) // the values of single-valued fields
	h = make(http.Header, n)
	for {
		var line string
		line, s = nextLine(s)
		if line == "" {
			return h, host, nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			return nil, "", errors.New("obsolete header line folding")
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || !httpguts.ValidHeaderFieldName(k) {
			return nil, "", fmt.Errorf("malformed header line %q", truncate(line))
		}
		v = trimOWS(v)
		if !httpguts.ValidHeaderFieldValue(v) {
			return nil, "", fmt.Errorf("invalid value of header %s", k)
		}
		k = canonicalKey(k)
		if hosts != nil && k == "Host" {
			if *hosts == 0 {
				host = v
			}
			*hosts++
			continue
		}
		if vs := h[k]; vs != nil {
			h[k] = append(vs, v)
			continue
		}
		slab[0] = v
		h[k] = slab[:1:1]
		slab = slab[1:]
	}
}

// trimOWS trims the optional white space (SP, HTAB) around a field value.
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

func truncate(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return s
}

// canonicalKey is textproto's canonical form; it allocates only for keys not
// already canonical.
func canonicalKey(k string) string {
	upper := true
	for i := 0; i < len(k); i++ {
		ch := k[i]
		if upper && 'a' <= ch && ch <= 'z' || !upper && 'A' <= ch && ch <= 'Z' {
			return http.CanonicalHeaderKey(k)
		}
		upper = ch == '-'
	}
	return k
}

// hasToken reports whether a comma-separated field lists token.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for f := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), token) {
				return true
			}
		}
	}
	return false
}

// skipTrailer reads the trailer section after a last chunk.
func skipTrailer(br *bufio.Reader, limit int) error {
	for size := 0; ; {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		if size += len(line); size > limit {
			return errors.New("h1: trailer too large")
		}
		if len(line) <= 2 && strings.TrimRight(string(line), "\r\n") == "" {
			return nil
		}
	}
}

// closes reports whether a message of HTTP/1.minor with header h ends its
// connection (HTTP/1.0 keeps it only when asked to).
func closes(minor int, h http.Header) bool {
	if minor == 0 {
		return !hasToken(h["Connection"], "keep-alive")
	}
	return hasToken(h["Connection"], "close")
}

// contentLength parses the Content-Length fields of a message (repeats
// must agree).
func contentLength(cl []string) (int64, error) {
	for _, v := range cl[1:] {
		if v != cl[0] {
			return 0, errors.New("conflicting Content-Length headers")
		}
	}
	n, err := strconv.ParseUint(cl[0], 10, 63)
	if err != nil {
		return 0, fmt.Errorf("invalid Content-Length %q", cl[0])
	}
	return int64(n), nil
}

// maxResponseHead bounds an engine's status line and headers.
const maxResponseHead = 64 << 10

// readResponse reads the answer to a request (method; req is RoundTrip's,
// nil for Send's, and becomes the answer's Request) from c: its head, then a body framed
// by chunked encoding, Content-Length, or the end of the connection.
// Interim 1xx answers are skipped.
func (c *conn) readResponse(method string, req *http.Request) (*http.Response, *body, error) {
	for {
		head, err := readHead(c.br, c.head, maxResponseHead)
		c.head = head[:0]
		if err != nil {
			return nil, nil, err
		}
		resp, f, err := parseResponseHead(string(head), method)
		if err != nil {
			return nil, nil, err
		}
		if resp == nil { // interim
			continue
		}
		resp.Request = req
		b := &body{c: c, remaining: f.remaining, toEOF: f.toEOF, done: f.done}
		if f.chunked {
			b.chunked = httputil.NewChunkedReader(c.br)
		}
		return resp, b, nil
	}
}

// respFraming is how an answer's body ends.
type respFraming struct {
	remaining int64 // Content-Length framing: the length
	chunked   bool  // chunked framing
	toEOF     bool  // ends with the connection
	done      bool  // no body
}

// parseResponseHead parses an answer's head (status line and fields, with
// its blank line) to a request of method. An interim (1xx) answer gives a
// nil response and no error.
func parseResponseHead(s, method string) (*http.Response, respFraming, error) {
	var f respFraming
	line, rest := nextLine(s)
	proto, status, _ := strings.Cut(line, " ")
	major, minor, ok := http.ParseHTTPVersion(proto)
	if !ok || major != 1 {
		return nil, f, fmt.Errorf("h1: malformed status line %q", truncate(line))
	}
	if len(status) < 3 || len(status) > 3 && status[3] != ' ' {
		return nil, f, fmt.Errorf("h1: malformed status line %q", truncate(line))
	}
	code, err := strconv.Atoi(status[:3])
	if err != nil || code < 100 {
		return nil, f, fmt.Errorf("h1: malformed status code in %q", truncate(line))
	}
	h, _, err := parseFields(rest, nil)
	if err != nil {
		return nil, f, fmt.Errorf("h1: %w", err)
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		return nil, f, nil
	}
	resp := &http.Response{Status: status, StatusCode: code, Proto: proto, ProtoMajor: major, ProtoMinor: minor,
		Header: h, ContentLength: -1}
	resp.Close = closes(minor, h)
	te, cl := h["Transfer-Encoding"], h["Content-Length"]
	switch {
	case method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified:
		resp.ContentLength = 0
		if n, err := strconv.ParseInt(first(cl), 10, 64); err == nil && method == http.MethodHead {
			resp.ContentLength = n
		}
		f.done = true
	case te != nil:
		if !strings.EqualFold(te[len(te)-1], "chunked") {
			resp.Close = true // other codings: read to the end of the connection
			f.toEOF = true
			break
		}
		delete(h, "Transfer-Encoding")
		delete(h, "Content-Length")
		resp.TransferEncoding = []string{"chunked"}
		f.chunked = true
	case cl != nil:
		n, err := contentLength(cl)
		if err != nil {
			return nil, f, fmt.Errorf("h1: %w", err)
		}
		resp.ContentLength, f.remaining = n, n
		f.done = n == 0
	default:
		resp.Close = true
		f.toEOF = true
	}
	return resp, f, nil
}

func first(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}
