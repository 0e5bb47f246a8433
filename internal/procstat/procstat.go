// Package procstat reads a process's CPU time from /proc/<pid>/stat, for
// benchmarks that say where the CPU went.
package procstat

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ClockTicks is USER_HZ, the unit of the times in /proc/<pid>/stat (100 on
// every Linux architecture Go supports).
const ClockTicks = 100

// CPUTicks is utime+stime of process pid ("self" for this one), in
// ClockTicks.
func CPUTicks(pid string) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields restart after ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, &os.PathError{Op: "parse", Path: filepath.Join("/proc", pid, "stat"), Err: os.ErrInvalid}
	}
	utime, err := strconv.ParseInt(f[11], 10, 64)
	if err != nil {
		return 0, err
	}
	stime, err := strconv.ParseInt(f[12], 10, 64)
	if err != nil {
		return 0, err
	}
	return utime + stime, nil
}
