package server

import (
	"hash/fnv"
	"math/rand/v2"
	"strings"
)

// How the simulator counts tokens (documented in docs/engine-sim.md):
//   - a prompt is one token per 4 bytes of UTF-8 (rounded up); a chat prompt is
//     first rendered with a ChatML template (<|im_start|>role\ncontent<|im_end|>\n,
//     then <|im_start|>assistant\n), and the template counts too;
//   - a prompt given as token ids counts one token per id;
//   - every generated token is exactly one word of the synthetic vocabulary.
const bytesPerToken = 4

// promptTokens counts the tokens of a rendered prompt.
func promptTokens(text string) int {
	return (len(text) + bytesPerToken - 1) / bytesPerToken
}

// prefixHashes hashes the prompt's full KV blocks, each chained to the one
// before, so that equal hashes mean equal prefixes.
func prefixHashes(text string, blockTokens int) []uint64 {
	blockBytes := blockTokens * bytesPerToken
	n := len(text) / blockBytes
	if n == 0 {
		return nil
	}
	out := make([]uint64, n)
	h := fnv.New64a()
	for i := range n {
		_, _ = h.Write([]byte(text[i*blockBytes : (i+1)*blockBytes]))
		out[i] = h.Sum64()
	}
	return out
}

// renderChat applies the ChatML template the simulator assumes.
func renderChat(msgs []chatMessage) string {
	var b strings.Builder
	for _, m := range msgs {
		b.WriteString("<|im_start|>")
		b.WriteString(m.Role)
		b.WriteByte('\n')
		b.WriteString(m.text)
		b.WriteString("<|im_end|>\n")
	}
	b.WriteString("<|im_start|>assistant\n")
	return b.String()
}

// vocabulary is the synthetic output: every token is one of these words.
var vocabulary = [...]string{
	" simulated", " token", " the", " engine", " spillway", " answer", " of", " a", " model", " and",
	" to", " in", " is", " that", " it", " for", " on", " with", " as", " this",
	" GPU", " cloud", " batch", " cache", " stream", " prompt", " reply", " text", " word", " data",
	" fast", " slow", " more", " less", " here", " there", " now", " then", " so", " yes",
	" no", " maybe", " light", " water", " flows", " over", " the", " edge", ".", ",",
	" lorem", " ipsum", " dolor", " sit", " amet", " quick", " brown", " fox", " jumps", " lazy",
	" dog", " again", " still", "\n",
}

// plan is the synthetic completion of one request.
type plan struct {
	text   string // the whole output, cut before a stop string
	ends   []int  // byte offset in text where each token's text ends
	finish string // "stop" or "length"
}

// tokens is the number of generated tokens.
func (p *plan) tokens() int { return len(p.ends) }

// upTo is the text of tokens [from, to).
func (p *plan) upTo(from, to int) string {
	start := 0
	if from > 0 {
		start = p.ends[from-1]
	}
	return p.text[start:p.ends[to-1]]
}

// naturalLength is how long an answer runs before its end-of-sequence when
// max_tokens does not cut it first.
func naturalLength(r *rand.Rand) int { return 16 + r.IntN(241) }

// makePlan draws the completion: min(max_tokens, natural length) tokens, cut
// after the token that completes a stop string (the stop string itself is
// not returned, as in OpenAI's API).
func makePlan(seed uint64, maxTokens int, ignoreEOS bool, stops []string) plan {
	r := rand.New(rand.NewPCG(seed, 0x5b111a7))
	n := maxTokens
	finish := "length"
	if nat := naturalLength(r); !ignoreEOS && nat < n {
		n, finish = nat, "stop"
	}
	ends := make([]int, n)
	var b strings.Builder
	longest := maxLen(stops)
	for i := range n {
		w := vocabulary[r.IntN(len(vocabulary))]
		b.WriteString(w)
		ends[i] = b.Len()
		if longest == 0 {
			continue
		}
		s := b.String()
		// A stop string not seen before must end in the newest word.
		from := max(0, len(s)-len(w)-longest+1)
		cut := -1
		for _, st := range stops {
			if j := strings.Index(s[from:], st); j >= 0 && (cut < 0 || from+j < cut) {
				cut = from + j
			}
		}
		if cut >= 0 {
			ends = ends[:i+1]
			for k := range ends {
				ends[k] = min(ends[k], cut)
			}
			return plan{text: s[:cut], ends: ends, finish: "stop"}
		}
	}
	return plan{text: b.String(), ends: ends, finish: finish}
}

func maxLen(ss []string) int {
	m := 0
	for _, s := range ss {
		m = max(m, len(s))
	}
	return m
}
