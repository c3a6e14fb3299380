//go:build race

package transport

// raceEnabled: the race detector instruments allocations too, so the
// allocation counts tests assert hold only without it.
const raceEnabled = true
