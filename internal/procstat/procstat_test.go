package procstat

import (
	"testing"
	"time"
)

// TestCPUTicks: this process's CPU time grows while it works; a missing
// process is an error.
func TestCPUTicks(t *testing.T) {
	before, err := CPUTicks("self")
	if err != nil {
		t.Fatal(err)
	}
	x := 0
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		for i := range 1 << 20 {
			x += i
		}
		after, err := CPUTicks("self")
		if err != nil {
			t.Fatal(err)
		}
		if after > before {
			return
		}
	}
	t.Errorf("CPU ticks still %d after 5s of work (%d)", before, x)
}

func TestCPUTicksMissingProcess(t *testing.T) {
	if _, err := CPUTicks("0"); err == nil {
		t.Error("pid 0: no error")
	}
}
