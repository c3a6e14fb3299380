package fdbudget

import (
	"sync"
	"sync/atomic"
	"testing"
)

func TestPoolCaps(t *testing.T) {
	for _, tc := range []struct {
		name            string
		budget          int
		pools           []int // each pool's limit
		acquire         []int // pool index of each TryAcquire, in order
		want            []bool
		wantOpen        []int // per pool, after
		wantBudgetOpen  int
		wantPoolLimits  []int
		releaseThenMore int // pool index to release one from and acquire again (-1: none)
	}{
		{name: "pool cap", budget: 10, pools: []int{2}, acquire: []int{0, 0, 0},
			want: []bool{true, true, false}, wantOpen: []int{2}, wantBudgetOpen: 2, wantPoolLimits: []int{2}, releaseThenMore: 0},
		{name: "budget cap across pools", budget: 3, pools: []int{3, 3}, acquire: []int{0, 0, 1, 1, 0},
			want: []bool{true, true, true, false, false}, wantOpen: []int{2, 1}, wantBudgetOpen: 3, wantPoolLimits: []int{3, 3}, releaseThenMore: 1},
		{name: "partition keeps a share", budget: 4, pools: []int{3, 1}, acquire: []int{0, 0, 0, 0, 1},
			want: []bool{true, true, true, false, true}, wantOpen: []int{3, 1}, wantBudgetOpen: 4, wantPoolLimits: []int{3, 1}, releaseThenMore: -1},
		{name: "pool limit capped at the budget", budget: 2, pools: []int{100}, acquire: []int{0, 0, 0},
			want: []bool{true, true, false}, wantOpen: []int{2}, wantBudgetOpen: 2, wantPoolLimits: []int{2}, releaseThenMore: 0},
		{name: "empty budget", budget: 0, pools: []int{5}, acquire: []int{0},
			want: []bool{false}, wantOpen: []int{0}, wantBudgetOpen: 0, wantPoolLimits: []int{0}, releaseThenMore: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := New(tc.budget, nil, nil)
			var pools []*Pool
			for i, l := range tc.pools {
				pools = append(pools, b.Pool(string(rune('a'+i)), l))
			}
			for i, pi := range tc.acquire {
				if got := pools[pi].TryAcquire(); got != tc.want[i] {
					t.Fatalf("acquire %d (pool %d) = %v, want %v", i, pi, got, tc.want[i])
				}
			}
			for i, st := range b.Stats() {
				if st.Open != tc.wantOpen[i] || st.Limit != tc.wantPoolLimits[i] {
					t.Errorf("pool %d: open %d limit %d, want %d and %d", i, st.Open, st.Limit, tc.wantOpen[i], tc.wantPoolLimits[i])
				}
			}
			if b.Open() != tc.wantBudgetOpen {
				t.Errorf("budget open %d, want %d", b.Open(), tc.wantBudgetOpen)
			}
			if tc.releaseThenMore >= 0 {
				p := pools[tc.releaseThenMore]
				if p.TryAcquire() {
					t.Fatal("acquired past the cap before a release")
				}
				p.Release()
				if !p.TryAcquire() {
					t.Fatal("a released descriptor could not be taken again")
				}
			}
		})
	}
}

// TestPoolRaceForLastDescriptors: goroutines racing for the budget get
// exactly its size, never more (the cap holds) nor fewer (no two are
// refused for the same last descriptor).
func TestPoolRaceForLastDescriptors(t *testing.T) {
	const limit, racers = 50, 400
	b := New(limit, nil, nil)
	pools := []*Pool{b.Pool("a", limit), b.Pool("b", limit)}
	var got atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if pools[i%2].TryAcquire() {
				got.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if got.Load() != limit || b.Open() != limit {
		t.Fatalf("%d acquired, budget open %d; want %d", got.Load(), b.Open(), limit)
	}
}

// TestPoolChurnStaysWithinLimit: under concurrent acquire and release
// the pool never holds more than its limit.
func TestPoolChurnStaysWithinLimit(t *testing.T) {
	const limit = 8
	b := New(100, nil, nil)
	p := b.Pool("mqtt", limit)
	var held, peak atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 2000 {
				if !p.TryAcquire() {
					continue
				}
				n := held.Add(1)
				for {
					m := peak.Load()
					if n <= m || peak.CompareAndSwap(m, n) {
						break
					}
				}
				held.Add(-1)
				p.Release()
			}
		}()
	}
	wg.Wait()
	if peak.Load() > limit {
		t.Fatalf("peak %d held, limit %d", peak.Load(), limit)
	}
	if p.Stats().Open != 0 || b.Open() != 0 {
		t.Fatalf("open after churn: pool %d budget %d", p.Stats().Open, b.Open())
	}
}

func TestDefaultReserve(t *testing.T) {
	for _, tc := range []struct{ limit, want int }{
		{1_048_576, 1024}, {20_000, 1024}, {4096, 1024}, {1024, 256}, {300, 75}, {0, 0},
	} {
		if got := DefaultReserve(tc.limit); got != tc.want {
			t.Errorf("DefaultReserve(%d) = %d, want %d", tc.limit, got, tc.want)
		}
	}
}

func TestRaiseLimit(t *testing.T) {
	soft, hard, err := RaiseLimit()
	if err != nil {
		t.Fatal(err)
	}
	if soft != hard {
		t.Fatalf("soft limit %d not raised to the hard limit %d", soft, hard)
	}
	if n, ok := OpenDescriptors(); ok && (n < 3 || uint64(n) > soft) {
		t.Fatalf("OpenDescriptors = %d, want at least stdin, stdout and stderr and at most %d", n, soft)
	}
}
