package wire

// A one-pass JSON scanner for the request path: it validates the whole body
// (as encoding/json would) and picks out the top-level "model", "stream",
// "messages", "prompt" and "input" values without decoding anything else and
// without allocating. Whatever it does not handle on its own (escaped or
// non-ASCII keys and model names, keys differing only in case from the ones
// it reads, wrong types, syntax errors) it leaves to encoding/json (parseSlow),
// which also words the error messages: the result is the same either way
// (FuzzParseFast checks it).

// maxDepth is encoding/json's nesting limit.
const maxDepth = 10000

type fields struct {
	model, stream, messages, prompt, input []byte
}

// scanner walks data; pos is the next byte.
type scanner struct {
	data []byte
	pos  int
}

func (s *scanner) ws() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// scanTop scans one top-level object and reports whether data is valid JSON
// the fast path can take (ok false: use parseSlow).
func scanTop(data []byte) (f fields, ok bool) {
	s := scanner{data: data}
	s.ws()
	if s.pos >= len(data) || data[s.pos] != '{' {
		return f, false
	}
	s.pos++
	s.ws()
	if s.pos < len(data) && data[s.pos] == '}' {
		s.pos++
	} else {
		for {
			s.ws()
			kStart := s.pos
			simple, good := s.str()
			if !good || !simple {
				return f, false
			}
			key := data[kStart+1 : s.pos-1]
			s.ws()
			if s.pos >= len(data) || data[s.pos] != ':' {
				return f, false
			}
			s.pos++
			s.ws()
			vStart := s.pos
			if !s.value(1) {
				return f, false
			}
			val := data[vStart:s.pos]
			switch string(key) {
			case "model":
				f.model = val
			case "stream":
				f.stream = val
			case "messages":
				f.messages = val
			case "prompt":
				f.prompt = val
			case "input":
				f.input = val
			default:
				if foldsToField(key) {
					return f, false // encoding/json matches keys case-insensitively
				}
			}
			s.ws()
			if s.pos >= len(data) {
				return f, false
			}
			if data[s.pos] == ',' {
				s.pos++
				continue
			}
			if data[s.pos] != '}' {
				return f, false
			}
			s.pos++
			break
		}
	}
	s.ws()
	return f, s.pos == len(data)
}

// foldsToField reports whether key equals one of the read fields ignoring
// ASCII case.
func foldsToField(key []byte) bool {
	for _, name := range [...]string{"model", "stream", "messages", "prompt", "input"} {
		if len(key) == len(name) && equalFoldASCII(key, name) {
			return true
		}
	}
	return false
}

func equalFoldASCII(b []byte, s string) bool {
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// value scans one JSON value at depth.
func (s *scanner) value(depth int) bool {
	if s.pos >= len(s.data) || depth > maxDepth {
		return false
	}
	switch c := s.data[s.pos]; {
	case c == '"':
		_, ok := s.str()
		return ok
	case c == '{':
		s.pos++
		s.ws()
		if s.pos < len(s.data) && s.data[s.pos] == '}' {
			s.pos++
			return true
		}
		for {
			s.ws()
			if s.pos >= len(s.data) || s.data[s.pos] != '"' {
				return false
			}
			if _, ok := s.str(); !ok {
				return false
			}
			s.ws()
			if s.pos >= len(s.data) || s.data[s.pos] != ':' {
				return false
			}
			s.pos++
			s.ws()
			if !s.value(depth + 1) {
				return false
			}
			s.ws()
			if s.pos >= len(s.data) {
				return false
			}
			if s.data[s.pos] == ',' {
				s.pos++
				continue
			}
			if s.data[s.pos] != '}' {
				return false
			}
			s.pos++
			return true
		}
	case c == '[':
		s.pos++
		s.ws()
		if s.pos < len(s.data) && s.data[s.pos] == ']' {
			s.pos++
			return true
		}
		for {
			s.ws()
			if !s.value(depth + 1) {
				return false
			}
			s.ws()
			if s.pos >= len(s.data) {
				return false
			}
			if s.data[s.pos] == ',' {
				s.pos++
				continue
			}
			if s.data[s.pos] != ']' {
				return false
			}
			s.pos++
			return true
		}
	case c == 't':
		return s.lit("true")
	case c == 'f':
		return s.lit("false")
	case c == 'n':
		return s.lit("null")
	case c == '-' || ('0' <= c && c <= '9'):
		return s.number()
	default:
		return false
	}
}

func (s *scanner) lit(w string) bool {
	if len(s.data)-s.pos < len(w) || string(s.data[s.pos:s.pos+len(w)]) != w {
		return false
	}
	s.pos += len(w)
	return true
}

// str scans a string starting at its quote; simple reports that it has no
// escape and only ASCII bytes (its bytes are its value).
func (s *scanner) str() (simple, ok bool) {
	if s.pos >= len(s.data) || s.data[s.pos] != '"' {
		return false, false
	}
	s.pos++
	simple = true
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			s.pos++
			return simple, true
		case c < 0x20:
			return false, false
		case c == '\\':
			simple = false
			s.pos++
			if s.pos >= len(s.data) {
				return false, false
			}
			switch s.data[s.pos] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.pos++
			case 'u':
				if len(s.data)-s.pos < 5 {
					return false, false
				}
				for _, h := range s.data[s.pos+1 : s.pos+5] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return false, false
					}
				}
				s.pos += 5
			default:
				return false, false
			}
		default:
			if c >= 0x80 {
				simple = false
			}
			s.pos++
		}
	}
	return false, false
}

func (s *scanner) digits() int {
	n := 0
	for s.pos < len(s.data) && '0' <= s.data[s.pos] && s.data[s.pos] <= '9' {
		s.pos++
		n++
	}
	return n
}

func (s *scanner) number() bool {
	if s.data[s.pos] == '-' {
		s.pos++
	}
	if s.pos >= len(s.data) {
		return false
	}
	if s.data[s.pos] == '0' {
		s.pos++
	} else if s.digits() == 0 {
		return false
	}
	if s.pos < len(s.data) && s.data[s.pos] == '.' {
		s.pos++
		if s.digits() == 0 {
			return false
		}
	}
	if s.pos < len(s.data) && (s.data[s.pos] == 'e' || s.data[s.pos] == 'E') {
		s.pos++
		if s.pos < len(s.data) && (s.data[s.pos] == '+' || s.data[s.pos] == '-') {
			s.pos++
		}
		if s.digits() == 0 {
			return false
		}
	}
	return true
}

// parseFast is Parse without encoding/json for the common request; ok false
// means the caller must use parseSlow.
func parseFast(data []byte, maxPrefix int) (Request, bool) {
	f, ok := scanTop(data)
	if !ok || len(f.model) < 3 || f.model[0] != '"' {
		return Request{}, false // includes a missing, null, empty or non-string model
	}
	model := f.model[1 : len(f.model)-1]
	for _, c := range model {
		if c == '\\' || c >= 0x80 {
			return Request{}, false
		}
	}
	r := Request{Model: string(model)}
	switch string(f.stream) {
	case "", "null", "false":
	case "true":
		r.Stream = true
	default:
		return Request{}, false
	}
	for _, p := range [...][]byte{f.messages, f.prompt, f.input} {
		if len(p) > 0 && string(p) != "null" {
			n := min(len(p), maxPrefix)
			r.Prefix = p[:n:n]
			break
		}
	}
	return r, true
}
