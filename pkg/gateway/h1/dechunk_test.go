package h1

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net/http/httputil"
	"testing"
)

// decodeInPieces feeds enc to a dechunker in pieces of the sizes rnd picks.
func decodeInPieces(enc []byte, rnd *rand.Rand) (out, rest []byte, done bool, err error) {
	var d dechunker
	for len(enc) > 0 {
		n := 1 + rnd.IntN(len(enc))
		piece := append([]byte(nil), enc[:n]...)
		enc = enc[n:]
		data, r, dn, e := d.feed(piece)
		out = append(out, data...)
		if e != nil {
			return out, nil, false, e
		}
		if dn {
			return out, append(r, enc...), true, nil
		}
	}
	return out, nil, false, nil
}

func TestDechunkerMatchesTheChunkedWriter(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 500; i++ {
		var want, enc bytes.Buffer
		cw := httputil.NewChunkedWriter(&enc)
		for j := rnd.IntN(6); j > 0; j-- {
			p := make([]byte, rnd.IntN(3000))
			for k := range p {
				p[k] = byte(rnd.IntN(256))
			}
			want.Write(p)
			_, _ = cw.Write(p)
		}
		_ = cw.Close()
		enc.WriteString("\r\nNEXT")
		got, rest, done, err := decodeInPieces(enc.Bytes(), rnd)
		if err != nil || !done {
			t.Fatalf("case %d: done %v, err %v", i, done, err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("case %d: decoded %d bytes, want %d", i, len(got), want.Len())
		}
		if string(rest) != "NEXT" {
			t.Fatalf("case %d: rest %q, want NEXT", i, rest)
		}
		// httputil's reader agrees on the same input.
		ref, err := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(enc.Bytes())))
		if err != nil || !bytes.Equal(ref, got) {
			t.Fatalf("case %d: httputil read %d bytes (%v)", i, len(ref), err)
		}
	}
}

func TestDechunkerExtensionsTrailersAndErrors(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct {
		in, want string
		done     bool
		bad      bool
	}{
		{in: "5;name=value\r\nhello\r\n0\r\n\r\n", want: "hello", done: true},
		{in: "5\nhello\n0\n\n", want: "hello", done: true},
		{in: "3\r\nabc\r\n0\r\nX-Checksum: 1\r\nX-Other: 2\r\n\r\n", want: "abc", done: true},
		{in: "A\r\n0123456789\r\n", want: "0123456789"},
		{in: "3\r\nabc", want: "abc"},
		{in: "zz\r\n", bad: true},
		{in: "\r\n", bad: true},
		{in: "3\r\nabcX\r\n", want: "abc", bad: true},
		{in: "1000000000000000\r\n", bad: true},
	} {
		got, _, done, err := decodeInPieces([]byte(tc.in), rnd)
		if (err != nil) != tc.bad || done != tc.done || string(got) != tc.want {
			t.Errorf("%q: got %q done %v err %v; want %q done %v bad %v", tc.in, got, done, err, tc.want, tc.done, tc.bad)
		}
	}
}

func FuzzDechunker(f *testing.F) {
	f.Add([]byte("5\r\nhello\r\n0\r\n\r\n"), uint8(3))
	f.Add([]byte("3;x\r\nabc\r\n0\r\nA: b\r\n\r\n"), uint8(1))
	f.Fuzz(func(t *testing.T, in []byte, split uint8) {
		var d dechunker
		var out []byte
		p := append([]byte(nil), in...)
		for len(p) > 0 {
			n := min(len(p), int(split)+1)
			data, _, done, err := d.feed(p[:n])
			out = append(out, data...)
			if err != nil || done {
				break
			}
			p = p[n:]
		}
		if len(out) > len(in) {
			t.Fatalf("decoded %d bytes from %d", len(out), len(in))
		}
	})
}
