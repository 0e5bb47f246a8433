package gctune

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestPercent(t *testing.T) {
	const mb = 1 << 20
	for _, c := range []struct {
		live, headroom uint64
		want           int
	}{
		{4 * mb, 32 * mb, 800},   // small live heap: the headroom rules
		{32 * mb, 32 * mb, 100},  // equal: GOGC=100 gives the same growth
		{300 * mb, 32 * mb, 100}, // large: never below base
		{3 * mb, 32 * mb, 1000},  // 1066 %: capped
		{0, 32 * mb, 100},        // no collection yet: nothing known
		{10 * mb, 15 * mb, 150},  // exact ratio
		{7 * mb, 10 * mb, 142},   // rounded down
		{1 << 40, 32 * mb, 100},  // no overflow
		{1, 1 << 62, 1000},       // no overflow either
	} {
		if got := Percent(c.live, c.headroom, 100, 1000); got != c.want {
			t.Errorf("Percent(%d MB, %d MB) = %d, want %d", c.live/mb, c.headroom/mb, got, c.want)
		}
	}
	if got := Percent(1*mb, 32*mb, 200, 150); got != 200 { // base beats a lower ceiling
		t.Errorf("base 200, ceiling 150: %d", got)
	}
}

func TestTunerSetsThePercent(t *testing.T) {
	// A real run: with a small live heap and a 256 MB headroom the percent
	// goes to the ceiling, and the runtime reports it in force.
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	runtime.GC()
	tu := &Tuner{Headroom: 256 << 20, Ceiling: 700}
	if got := tu.Step(); got != 700 {
		t.Fatalf("Step = %d, want 700", got)
	}
	if in := debug.SetGCPercent(700); in != 700 {
		t.Errorf("the runtime's percent is %d, want 700", in)
	}
	tu.Headroom = 0 // no headroom: back to base
	if got := tu.Step(); got != 100 {
		t.Errorf("Step without headroom = %d, want 100", got)
	}
}
