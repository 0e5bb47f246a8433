package proxy

import (
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
