package fdbudget

import (
	"fmt"
	"math"
	"os"
	"syscall"
)

// RaiseLimit raises the process's soft limit on open files
// (RLIMIT_NOFILE) to its hard limit, as servers that hold many
// connections do, and returns both as then in force. Go's runtime
// raises it the same way as it starts (restoring the original for the
// processes it runs); raising it here makes the budget independent of
// that, and the figures it returns are what the budget is cut from. If
// the kernel refuses the raise, the soft limit stays and is returned
// with no error: the budget is then cut from it.
func RaiseLimit() (soft, hard uint64, err error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, fmt.Errorf("read RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = lim.Max
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			lim = raised
		}
	}
	return lim.Cur, lim.Max, nil
}

// Usable is a soft limit as a count of descriptors: RLIM_INFINITY and
// anything past an int32 are taken as math.MaxInt32.
func Usable(soft uint64) int {
	return int(min(soft, math.MaxInt32))
}

// DefaultReserve is the descriptors kept out of the budget when the
// configuration names no reserve: a quarter of the limit, at most 1,024.
// Badger holds one descriptor per table and value-log file (a store of
// tens of gigabytes has a few hundred), the PostgreSQL pool its size
// (32 by default), forwarding a few per action, NATS and the logs a
// handful; 1,024 covers them with room, and a quarter keeps a small
// limit (1,024 when the hard limit cannot be raised) usable.
func DefaultReserve(limit int) int {
	return min(1024, limit/4)
}

// OpenDescriptors counts the descriptors the process holds now (Linux's
// /proc/self/fd); ok is false where that cannot be read.
func OpenDescriptors() (n int, ok bool) {
	f, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return 0, false
	}
	// Less the one the count itself opened.
	return len(names) - 1, true
}
