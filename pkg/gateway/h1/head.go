package h1

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"slices"
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

// fieldLine splits and checks one header line: its canonical name and its
// value without the white space around it.
func fieldLine(line string) (k, v string, err error) {
	if line[0] == ' ' || line[0] == '\t' {
		return "", "", errors.New("obsolete header line folding")
	}
	k, v, ok := strings.Cut(line, ":")
	if !ok || !httpguts.ValidHeaderFieldName(k) {
		return "", "", fmt.Errorf("malformed header line %q", truncate(line))
	}
	v = trimOWS(v)
	if !httpguts.ValidHeaderFieldValue(v) {
		return "", "", fmt.Errorf("invalid value of header %s", k)
	}
	return canonicalKey(k), v, nil
}

// scanFields parses the header lines of s (after the start line, up to the
// blank line): the fields that frame the body or end the connection are
// noted in hd, and field is called with every field but, when dropHost,
// the Host ones (counted in hd).
func scanFields(s string, hd *heading, dropHost bool, field func(k, v string)) error {
	for {
		var line string
		line, s = nextLine(s)
		if line == "" {
			return nil
		}
		k, v, err := fieldLine(line)
		if err != nil {
			return err
		}
		if hd.note(k, v) && dropHost {
			continue
		}
		field(k, v)
	}
}

// parseFields parses the header lines of s into a new Header (see
// scanFields). Values keep their order.
func parseFields(s string, hd *heading, dropHost bool) (http.Header, error) {
	n := strings.Count(s, "\n") + 1 // a last line may lack its LF
	slab := make([]string, n)       // the values of single-valued fields
	h := make(http.Header, n)
	err := scanFields(s, hd, dropHost, func(k, v string) {
		if vs := h[k]; vs != nil {
			h[k] = append(vs, v)
			return
		}
		slab[0] = v
		h[k] = slab[:1:1]
		slab = slab[1:]
	})
	if err != nil {
		return nil, err
	}
	return h, nil
}

// heading is what a message head's fields say about its framing and its
// connection, gathered while they are parsed: the rules that follow
// (request and response) are the same for a header map and a field list.
type heading struct {
	host             string // the first Host
	hosts            int
	te, teLast       string // Transfer-Encoding: all values (", "-joined), the last
	nte              int
	cl               string // the first Content-Length
	ncl              int
	clConflict       bool // Content-Length values that differ
	expect           string
	nexpect          int
	conn             string // Connection: all values (", "-joined)
	close, keepAlive bool   // Connection tokens
}

// note records k: v when it is one of the fields hd gathers, and reports
// whether it is a Host field.
func (hd *heading) note(k, v string) (host bool) {
	switch k {
	case "Host":
		if hd.hosts == 0 {
			hd.host = v
		}
		hd.hosts++
		return true
	case "Transfer-Encoding":
		if hd.nte == 0 {
			hd.te = v
		} else {
			hd.te += ", " + v
		}
		hd.teLast = v
		hd.nte++
	case "Content-Length":
		if hd.ncl == 0 {
			hd.cl = v
		} else if v != hd.cl {
			hd.clConflict = true
		}
		hd.ncl++
	case "Expect":
		if hd.nexpect == 0 {
			hd.expect = v
		} else {
			hd.expect += ", " + v
		}
		hd.nexpect++
	case "Connection":
		if hd.conn != "" {
			hd.conn += ", " + v
		} else {
			hd.conn = v
		}
		for t := range strings.SplitSeq(v, ",") {
			switch t = strings.TrimSpace(t); {
			case strings.EqualFold(t, "close"):
				hd.close = true
			case strings.EqualFold(t, "keep-alive"):
				hd.keepAlive = true
			}
		}
	}
	return false
}

// names reports whether the Connection fields name field k.
func (hd *heading) names(k string) bool {
	for t := range strings.SplitSeq(hd.conn, ",") {
		if strings.EqualFold(strings.TrimSpace(t), k) {
			return true
		}
	}
	return false
}

// closes reports whether a message of HTTP/1.minor ends its connection
// (HTTP/1.0 keeps it only when asked to).
func (hd *heading) closes(minor int) bool {
	if minor == 0 {
		return !hd.keepAlive
	}
	return hd.close
}

// contentLength parses the Content-Length fields (repeats must agree).
func (hd *heading) contentLength() (int64, error) {
	if hd.clConflict {
		return 0, errors.New("conflicting Content-Length headers")
	}
	n, err := strconv.ParseUint(hd.cl, 10, 63)
	if err != nil {
		return 0, fmt.Errorf("invalid Content-Length %q", hd.cl)
	}
	return int64(n), nil
}

// request checks the fields of a request of HTTP/1.minor: its host (the
// Host field's), its framing and its length (-1: chunked). Errors are
// *requestError.
func (hd *heading) request(minor int) (host string, f reqFraming, length int64, err error) {
	switch {
	case hd.hosts > 1:
		return "", f, 0, badRequest("more than one Host header")
	case hd.hosts == 1:
		if !httpguts.ValidHostHeader(hd.host) {
			return "", f, 0, badRequest("invalid Host header %q", hd.host)
		}
	case minor == 1:
		return "", f, 0, badRequest("missing required Host header")
	}
	switch {
	case hd.nte > 0 && hd.ncl > 0:
		return "", f, 0, badRequest("both Transfer-Encoding and Content-Length")
	case hd.nte > 0:
		if hd.nte != 1 || !strings.EqualFold(hd.te, "chunked") || minor == 0 {
			return "", f, 0, &requestError{status: http.StatusNotImplemented, msg: fmt.Sprintf("unsupported Transfer-Encoding %q", hd.te)}
		}
		f.chunked = true
		length = -1
	case hd.ncl > 0:
		if length, err = hd.contentLength(); err != nil {
			return "", f, 0, badRequest("%v", err)
		}
		f.remaining = length
	}
	if hd.nexpect > 0 {
		if hd.nexpect != 1 || !strings.EqualFold(hd.expect, "100-continue") {
			return "", f, 0, &requestError{status: http.StatusExpectationFailed, msg: fmt.Sprintf("unsupported expectation %q", hd.expect)}
		}
		f.expect = minor == 1
	}
	return hd.host, f, length, nil
}

// response gives the framing of an answer with status code to a request of
// method, its length (-1: unknown) and whether it ends the connection.
func (hd *heading) response(method string, code, minor int) (f respFraming, length int64, closes bool, err error) {
	closes = hd.closes(minor)
	switch {
	case method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified:
		if n, err := strconv.ParseInt(hd.cl, 10, 64); err == nil && method == http.MethodHead {
			length = n
		}
		f.done = true
	case hd.nte > 0:
		if !strings.EqualFold(hd.teLast, "chunked") {
			return respFraming{toEOF: true}, -1, true, nil // other codings: read to the end of the connection
		}
		f.chunked = true
		length = -1
	case hd.ncl > 0:
		n, err := hd.contentLength()
		if err != nil {
			return f, 0, false, fmt.Errorf("h1: %w", err)
		}
		length, f.remaining, f.done = n, n, n == 0
	default:
		return respFraming{toEOF: true}, -1, true, nil
	}
	return f, length, closes, nil
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

// parseStatusLine parses an answer's status line: its protocol, its minor
// version, its status ("200 OK") and code.
func parseStatusLine(line string) (proto string, minor int, status string, code int, err error) {
	proto, status, _ = strings.Cut(line, " ")
	major, minor, ok := http.ParseHTTPVersion(proto)
	if !ok || major != 1 || len(status) < 3 || len(status) > 3 && status[3] != ' ' {
		return "", 0, "", 0, fmt.Errorf("h1: malformed status line %q", truncate(line))
	}
	code, err = strconv.Atoi(status[:3])
	if err != nil || code < 100 {
		return "", 0, "", 0, fmt.Errorf("h1: malformed status code in %q", truncate(line))
	}
	return proto, minor, status, code, nil
}

// interim reports whether code is an interim answer's (skipped).
func interim(code int) bool { return code < 200 && code != http.StatusSwitchingProtocols }

// parseResponseHead parses an answer's head (status line and fields, with
// its blank line) to a request of method. An interim (1xx) answer gives a
// nil response and no error.
func parseResponseHead(s, method string) (*http.Response, respFraming, error) {
	line, rest := nextLine(s)
	proto, minor, status, code, err := parseStatusLine(line)
	if err != nil {
		return nil, respFraming{}, err
	}
	var hd heading
	h, err := parseFields(rest, &hd, false)
	if err != nil {
		return nil, respFraming{}, fmt.Errorf("h1: %w", err)
	}
	if interim(code) {
		return nil, respFraming{}, nil
	}
	f, length, closes, err := hd.response(method, code, minor)
	if err != nil {
		return nil, f, err
	}
	resp := &http.Response{Status: status, StatusCode: code, Proto: proto, ProtoMajor: 1, ProtoMinor: minor,
		Header: h, ContentLength: length, Close: closes}
	if f.chunked {
		delete(h, "Transfer-Encoding")
		delete(h, "Content-Length")
		resp.TransferEncoding = []string{"chunked"}
	}
	return resp, f, nil
}

// parseAnswerHead parses an answer's head (see parseResponseHead) into a,
// for the loop: no header map, and only the fields the loop passes on (see
// Answer). interim: a 1xx answer, skipped.
func parseAnswerHead(s, method string, a *Answer) (f respFraming, closes, interimAnswer bool, err error) {
	line, rest := nextLine(s)
	_, minor, _, code, err := parseStatusLine(line)
	if err != nil {
		return f, false, false, err
	}
	var hd heading
	a.Fields, a.ContentType = a.Fields[:0], ""
	err = scanFields(rest, &hd, false, func(k, v string) {
		if k == "Content-Type" && a.ContentType == "" {
			a.ContentType = v
		}
		if !hopField(k) {
			a.Fields = append(a.Fields, Field{k, v})
		}
	})
	if err != nil {
		return f, false, false, fmt.Errorf("h1: %w", err)
	}
	if interim(code) {
		return f, false, true, nil
	}
	if f, a.ContentLength, closes, err = hd.response(method, code, minor); err != nil {
		return f, false, false, err
	}
	if hd.conn != "" { // the fields Connection names are hop-by-hop too
		a.Fields = slices.DeleteFunc(a.Fields, func(f Field) bool { return hd.names(f.Name) })
	}
	a.Status = code
	return f, closes, false, nil
}

// hopField reports the fields a proxy does not pass on as they are:
// hop-by-hop ones (RFC 9110 7.6.1) and the framing, which it writes itself.
func hopField(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length":
		return true
	}
	return false
}
