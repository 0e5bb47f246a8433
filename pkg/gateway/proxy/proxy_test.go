package proxy

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func TestAppendTail(t *testing.T) {
	var tail []byte
	for _, chunk := range []string{"abc", "defg", "h", "ijklmnopq"} {
		tail = appendTail(tail, []byte(chunk), 5)
	}
	if string(tail) != "mnopq" {
		t.Errorf("tail = %q", tail)
	}
	tail = appendTail(tail[:0], []byte("xy"), 5)
	tail = appendTail(tail, []byte("z"), 5)
	if string(tail) != "xyz" {
		t.Errorf("tail = %q", tail)
	}
	long := strings.Repeat("a", 100) + "END"
	if got := appendTail(nil, []byte(long), 3); string(got) != "END" {
		t.Errorf("tail = %q", got)
	}
}

func TestCopyHeadersDropsHopByHop(t *testing.T) {
	src := http.Header{
		"Connection":        {"keep-alive, X-Private"},
		"X-Private":         {"secret"},
		"Keep-Alive":        {"timeout=5"},
		"Transfer-Encoding": {"chunked"},
		"Te":                {"trailers"},
		"Expect":            {"100-continue"},
		"Upgrade":           {"h2c"},
		"Content-Type":      {"application/json"},
		"X-Request-Id":      {"a", "b"},
	}
	dst := http.Header{}
	copyHeaders(dst, src)
	want := http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {"a", "b"}}
	if !reflect.DeepEqual(dst, want) {
		t.Errorf("copied %v, want %v", dst, want)
	}
	dst.Add("X-Request-Id", "c") // values are shared with capacity clipped: adding must not write into src
	if got := src["X-Request-Id"]; len(got) != 2 {
		t.Errorf("source changed by an Add on the copy: %v", got)
	}
}
