package balancer

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func rnd() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }

func ep(addr, pool string, rank, outstanding int) Endpoint {
	return Endpoint{Address: addr, Pool: pool, PoolRank: rank, Outstanding: outstanding}
}

func TestPick(t *testing.T) {
	cases := []struct {
		name   string
		policy Policy
		eps    []Endpoint
		req    Request
		want   string
	}{
		{name: "least request", eps: []Endpoint{ep("a", "", 0, 3), ep("b", "", 0, 1), ep("c", "", 0, 2)}, want: "b"},
		{name: "excluded skipped", eps: []Endpoint{ep("a", "", 0, 3), {Address: "b", Excluded: true}, ep("c", "", 0, 2)}, want: "c"},
		{
			name: "scraped queue counts",
			eps: []Endpoint{
				{Address: "a", Outstanding: 1, Scraped: true, Running: 4, Waiting: 6},
				{Address: "b", Outstanding: 2, Scraped: true, Running: 2},
			},
			want: "b",
		},
		{
			name: "kv use breaks a tie",
			eps: []Endpoint{
				{Address: "a", Outstanding: 2, Scraped: true, Running: 2, KVUsage: 0.9},
				{Address: "b", Outstanding: 2, Scraped: true, Running: 2, KVUsage: 0.1},
			},
			want: "b",
		},
		{
			name:   "pool preference keeps the cheap pool below saturation",
			policy: Policy{PoolPreference: true, Saturation: 4},
			eps:    []Endpoint{ep("cloud", "elastic", 1, 0), ep("idc", "idc", 0, 3)},
			want:   "idc",
		},
		{
			name:   "pool preference spills above saturation",
			policy: Policy{PoolPreference: true, Saturation: 4},
			eps:    []Endpoint{ep("cloud", "elastic", 1, 2), ep("idc", "idc", 0, 4)},
			want:   "cloud",
		},
		{
			name:   "all saturated: least loaded anywhere",
			policy: Policy{PoolPreference: true, Saturation: 4},
			eps:    []Endpoint{ep("cloud", "elastic", 1, 9), ep("idc", "idc", 0, 5)},
			want:   "idc",
		},
		{
			name:   "without preference: least loaded",
			policy: Policy{},
			eps:    []Endpoint{ep("cloud", "elastic", 1, 0), ep("idc", "idc", 0, 3)},
			want:   "cloud",
		},
		{
			name:   "round robin ignores load",
			policy: Policy{Algorithm: RoundRobin},
			eps:    []Endpoint{ep("a", "", 0, 0), ep("b", "", 0, 100)},
			req:    Request{Sequence: 1},
			want:   "b",
		},
		{
			name:   "p2c with two: the less loaded",
			policy: Policy{Algorithm: PowerOfTwo},
			eps:    []Endpoint{ep("a", "", 0, 5), ep("b", "", 0, 1)},
			want:   "b",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			i := Pick(tc.policy, tc.eps, tc.req, rnd())
			if i < 0 {
				t.Fatal("no pick")
			}
			if got := tc.eps[i].Address; got != tc.want {
				t.Errorf("picked %s, want %s", got, tc.want)
			}
		})
	}
}

func TestPickNone(t *testing.T) {
	if i := Pick(Policy{}, nil, Request{}, rnd()); i != -1 {
		t.Errorf("empty: %d", i)
	}
	if i := Pick(Policy{}, []Endpoint{{Address: "a", Excluded: true}}, Request{}, rnd()); i != -1 {
		t.Errorf("all excluded: %d", i)
	}
}

func TestTiesSpread(t *testing.T) {
	eps := []Endpoint{ep("a", "", 0, 0), ep("b", "", 0, 0), ep("c", "", 0, 0)}
	r := rnd()
	got := map[string]int{}
	for range 3000 {
		got[eps[Pick(Policy{}, eps, Request{}, r)].Address]++
	}
	for a, n := range got {
		if n < 800 || n > 1200 {
			t.Errorf("%s picked %d of 3000 times; ties should spread evenly", a, n)
		}
	}
}

func TestP2CNeverPicksTheWorst(t *testing.T) {
	eps := []Endpoint{ep("a", "", 0, 1), ep("b", "", 0, 2), ep("c", "", 0, 9)}
	r := rnd()
	for range 1000 {
		if eps[Pick(Policy{Algorithm: PowerOfTwo}, eps, Request{}, r)].Address == "c" {
			t.Fatal("p2c picked the most loaded of three")
		}
	}
}

func TestPrefixAffinity(t *testing.T) {
	p := Policy{PrefixAffinity: true, LoadFactor: 1.5}
	eps := []Endpoint{ep("10.0.0.1:8080", "", 0, 1), ep("10.0.0.2:8080", "", 0, 1), ep("10.0.0.3:8080", "", 0, 1), ep("10.0.0.4:8080", "", 0, 1)}
	// The same prefix always lands on the same replica; different prefixes spread.
	homes := map[string]int{}
	for i := range 200 {
		prefix := []byte(fmt.Sprintf("system prompt %d", i))
		first := Pick(p, eps, Request{Prefix: prefix}, rnd())
		for range 3 {
			if again := Pick(p, eps, Request{Prefix: prefix}, rnd()); again != first {
				t.Fatalf("prefix %d moved from %d to %d", i, first, again)
			}
		}
		homes[eps[first].Address]++
	}
	if len(homes) != 4 {
		t.Errorf("prefixes landed on %d replicas, want 4: %v", len(homes), homes)
	}
	// Bounded load: the home replica overloaded -> the next one in the prefix's order.
	prefix := []byte("system prompt 7")
	home := Pick(p, eps, Request{Prefix: prefix}, rnd())
	loaded := append([]Endpoint(nil), eps...)
	loaded[home].Outstanding = 10
	next := Pick(p, loaded, Request{Prefix: prefix}, rnd())
	if next == home {
		t.Fatal("affinity ignored the load bound")
	}
	// Removing an unrelated replica does not move the prefix (consistency).
	var fewer []Endpoint
	for i, e := range eps {
		if i != home && len(fewer) < 2 {
			continue
		}
		fewer = append(fewer, e)
	}
	if got := fewer[Pick(p, fewer, Request{Prefix: prefix}, rnd())].Address; got != eps[home].Address {
		t.Errorf("prefix moved to %s after removing other replicas, want %s", got, eps[home].Address)
	}
}

func TestLoad(t *testing.T) {
	// Scraped with 4 requests at the engine while the gateway had 1 there:
	// 3 are other clients'; the gateway has 2 there now.
	e := Endpoint{Outstanding: 2, OutstandingAtScrape: 1, Scraped: true, Running: 3, Waiting: 1, KVUsage: 0.5}
	// A replica scraped busy with this gateway's own requests, drained since:
	// its load is what is in flight now, not the stale count.
	drained := Endpoint{Outstanding: 0, OutstandingAtScrape: 10, Scraped: true, Running: 10}
	got := []float64{e.Load(Policy{}), e.Load(Policy{QueueWeight: -1, KVWeight: -1}), Endpoint{Outstanding: 2}.Load(Policy{}), drained.Load(Policy{})}
	if d := cmp.Diff([]float64{2 + 3 + 1 + 2, 2 + 3, 2, 0}, got); d != "" {
		t.Errorf("Load (-want,+got):\n%s", d)
	}
}

func TestParseAlgorithm(t *testing.T) {
	for in, want := range map[string]Algorithm{"": LeastRequest, "P2C": PowerOfTwo, "round-robin": RoundRobin} {
		if got, err := ParseAlgorithm(in); err != nil || got != want {
			t.Errorf("ParseAlgorithm(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseAlgorithm("random"); err == nil {
		t.Error("unknown algorithm accepted")
	}
}

func BenchmarkPick(b *testing.B) {
	eps := make([]Endpoint, 16)
	for i := range eps {
		eps[i] = Endpoint{Address: fmt.Sprintf("10.0.0.%d:8080", i), PoolRank: i % 2, Outstanding: i % 5, Scraped: true, Running: float64(i % 3)}
	}
	p := Policy{PoolPreference: true, PrefixAffinity: true}
	r := rnd()
	req := Request{Prefix: []byte(`[{"role":"system","content":"You are a helpful assistant."}]`)}
	for b.Loop() {
		Pick(p, eps, req, r)
	}
}
