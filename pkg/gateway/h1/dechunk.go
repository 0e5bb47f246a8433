package h1

import "errors"

// dechunker decodes a chunked body (RFC 9112 section 7.1) as it arrives in
// pieces of any size, in place: the event loop cannot block in a reader
// the way httputil's chunked reader does. Chunk extensions and trailer
// fields are skipped.
type dechunker struct {
	state  uint8
	size   int64 // of the chunk being read, or what is left of it
	digits int   // hex digits of the size line
	line   int   // bytes of the trailer line being skipped
}

const (
	dcSize        uint8 = iota // size digits
	dcExt                      // a chunk extension, up to LF
	dcSizeLF                   // CR seen after the size line
	dcData                     // chunk data
	dcDataCR                   // the CRLF after the data
	dcDataLF                   // CR seen after the data
	dcTrailer                  // start of a trailer line (or the final blank line)
	dcTrailerLine              // inside a trailer line
	dcTrailerLF                // CR seen at the start of a trailer line
	dcDone
)

var errChunk = errors.New("h1: malformed chunked encoding")

// maxTrailerLine bounds one trailer line.
const maxTrailerLine = 64 << 10

// feed decodes p in place: the body bytes it holds are moved to its front
// and returned as data; rest is what follows the body's end (only when done).
func (d *dechunker) feed(p []byte) (data, rest []byte, done bool, err error) {
	w := 0
	i := 0
	for i < len(p) {
		c := p[i]
		switch d.state {
		case dcSize:
			v, ok := hexValue(c)
			switch {
			case ok:
				if d.digits >= 15 {
					return p[:w], nil, false, errChunk // too large
				}
				d.size = d.size<<4 | int64(v)
				d.digits++
			case d.digits == 0:
				return p[:w], nil, false, errChunk
			case c == ';' || c == ' ' || c == '\t':
				d.state = dcExt
			case c == '\r':
				d.state = dcSizeLF
			case c == '\n':
				d.endSizeLine()
			default:
				return p[:w], nil, false, errChunk
			}
			i++
		case dcExt:
			if c == '\n' {
				d.endSizeLine()
			}
			i++
		case dcSizeLF:
			if c != '\n' {
				return p[:w], nil, false, errChunk
			}
			d.endSizeLine()
			i++
		case dcData:
			n := int64(len(p) - i)
			if n > d.size {
				n = d.size
			}
			w += copy(p[w:], p[i:i+int(n)])
			i += int(n)
			if d.size -= n; d.size == 0 {
				d.state = dcDataCR
			}
		case dcDataCR:
			switch c {
			case '\r':
				d.state = dcDataLF
			case '\n':
				d.state, d.digits = dcSize, 0
			default:
				return p[:w], nil, false, errChunk
			}
			i++
		case dcDataLF:
			if c != '\n' {
				return p[:w], nil, false, errChunk
			}
			d.state, d.digits = dcSize, 0
			i++
		case dcTrailer:
			switch c {
			case '\r':
				d.state = dcTrailerLF
			case '\n':
				d.state = dcDone
				return p[:w], p[i+1:], true, nil
			default:
				d.state, d.line = dcTrailerLine, 1
			}
			i++
		case dcTrailerLine:
			if c == '\n' {
				d.state = dcTrailer
			} else if d.line++; d.line > maxTrailerLine {
				return p[:w], nil, false, errChunk
			}
			i++
		case dcTrailerLF:
			if c != '\n' {
				return p[:w], nil, false, errChunk
			}
			d.state = dcDone
			return p[:w], p[i+1:], true, nil
		case dcDone:
			return p[:w], p[i:], true, nil
		}
	}
	return p[:w], nil, d.state == dcDone, nil
}

// endSizeLine starts the chunk's data, or the trailer after the last chunk.
func (d *dechunker) endSizeLine() {
	if d.size == 0 {
		d.state = dcTrailer
		return
	}
	d.state = dcData
}

func hexValue(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
