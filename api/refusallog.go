package api

import (
	"log/slog"
	"sync"
	"time"
)

// refusalLog writes refusals (throttled, oversized, failed
// authentication, connections over the per-address cap) at info, at
// most one line a second: a flood cannot fill the disk, and each line
// says how many refusals it left out since the previous one.
type refusalLog struct {
	log *slog.Logger

	mu      sync.Mutex
	next    time.Time
	dropped int
}

func (r *refusalLog) refused(now time.Time, msg string, attrs ...any) {
	r.mu.Lock()
	if now.Before(r.next) {
		r.dropped++
		r.mu.Unlock()
		return
	}
	r.next = now.Add(time.Second)
	dropped := r.dropped
	r.dropped = 0
	r.mu.Unlock()
	r.log.Info(msg, append(attrs, "refusals_not_logged", dropped)...)
}
