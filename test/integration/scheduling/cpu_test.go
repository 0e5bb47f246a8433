package scheduling

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/<pid>/stat (100
// on every Linux architecture Go supports).
const clockTicks = 100

// cpuTimes reads the CPU time (user+system) of this process and of the
// control plane's etcd and kube-apiserver (found by their executable in
// the assets directory), so a measurement can say where the CPU went.
func cpuTimes() map[string]time.Duration {
	out := map[string]time.Duration{"test process": procCPU("self")}
	assets := ""
	if env != nil {
		assets, _ = filepath.Abs(env.AssetsDir)
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil {
			continue
		}
		switch base := filepath.Base(exe); base {
		case "etcd", "kube-apiserver", "kube-controller-manager":
			if filepath.Dir(exe) == assets {
				out[base] += procCPU(e.Name())
			}
		}
	}
	return out
}

// procCPU is utime+stime of /proc/<pid>/stat.
func procCPU(pid string) time.Duration {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; fields restart after ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// cpuDelta formats after-before per process.
func cpuDelta(before, after map[string]time.Duration) string {
	var parts []string
	var total time.Duration
	for _, k := range []string{"test process", "kube-apiserver", "etcd", "kube-controller-manager"} {
		d := after[k] - before[k]
		total += d
		parts = append(parts, fmt.Sprintf("%s %.2fs", k, d.Seconds()))
	}
	return fmt.Sprintf("CPU %.2fs (%s)", total.Seconds(), strings.Join(parts, ", "))
}

// settle waits (up to 15s) until the control plane and this process used
// under 5% of a CPU over half a second, after a garbage collection here:
// each measurement then starts from a quiet machine rather than in the
// tail of the previous one's deletions and events.
func settle() {
	runtime.GC()
	deadline := time.Now().Add(15 * time.Second)
	prev := cpuTimes()
	for time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		cur := cpuTimes()
		var used time.Duration
		for k, v := range cur {
			used += v - prev[k]
		}
		prev = cur
		if used < 25*time.Millisecond {
			return
		}
	}
}
