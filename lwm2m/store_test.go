package lwm2m

import (
	"fmt"
	"math/rand"
	"testing"
	"time"
)

func testEntry(id, endpoint, device string) *entry {
	return newEntry(&Registration{ID: id, Endpoint: endpoint, DeviceID: device}, false, 0)
}

func TestLwM2MRegStoreIndexesAndReplacement(t *testing.T) {
	s := newRegStore()
	t0 := time.Unix(1000, 0)
	a := testEntry("a", "urn:imei:1", "dev1")
	if old := s.add(a, t0.Add(time.Minute)); old != nil {
		t.Fatalf("replaced %v", old.id)
	}
	if s.get("a") != a || s.endpoint("urn:imei:1") != a || s.device("dev1") != a {
		t.Fatal("lookups")
	}
	// The same device under its other endpoint spelling replaces it.
	b := testEntry("b", "1", "dev1")
	if old := s.add(b, t0.Add(time.Hour)); old != a {
		t.Fatalf("replaced %v, want a", old)
	}
	if !a.removed.Load() || s.get("a") != nil || s.endpoint("urn:imei:1") != nil || s.device("dev1") != b || s.len() != 1 {
		t.Fatal("old registration still indexed")
	}
	if s.renew(a, t0) {
		t.Fatal("renewed a removed registration")
	}
	if !s.remove(b) || s.remove(b) || s.len() != 0 || len(s.deadlines) != 0 {
		t.Fatal("remove")
	}
}

func TestLwM2MRegStoreExpiresInDeadlineOrder(t *testing.T) {
	s := newRegStore()
	t0 := time.Unix(1000, 0)
	rng := rand.New(rand.NewSource(1))
	const n = 2000
	entries := make([]*entry, n)
	for i := range entries {
		entries[i] = testEntry(fmt.Sprint("r", i), fmt.Sprint("ep", i), fmt.Sprint("d", i))
		s.add(entries[i], t0.Add(time.Duration(rng.Intn(3600))*time.Second))
	}
	// Renew half of them far into the future.
	for i := 0; i < n; i += 2 {
		if !s.renew(entries[i], t0.Add(10*time.Hour)) {
			t.Fatal("renew failed")
		}
	}
	if got := s.expire(t0.Add(-time.Second), 10); len(got) != 0 {
		t.Fatalf("expired %d before any deadline", len(got))
	}
	var last time.Time
	total := 0
	for {
		due := s.expire(t0.Add(time.Hour), 64)
		for _, e := range due {
			if e.deadline.Before(last) {
				t.Fatal("not in deadline order")
			}
			last = e.deadline
			if i := indexOf(entries, e); i%2 == 0 {
				t.Fatalf("renewed registration %s expired", e.id)
			}
		}
		total += len(due)
		if len(due) < 64 {
			break
		}
	}
	if total != n/2 || s.len() != n/2 {
		t.Fatalf("expired %d, kept %d", total, s.len())
	}
}

func indexOf(es []*entry, e *entry) int {
	for i, x := range es {
		if x == e {
			return i
		}
	}
	return -1
}

func BenchmarkRegStoreRenew(b *testing.B) {
	s := newRegStore()
	t0 := time.Unix(1000, 0)
	const n = 100000
	entries := make([]*entry, n)
	for i := range entries {
		entries[i] = testEntry(fmt.Sprint("r", i), fmt.Sprint("ep", i), fmt.Sprint("d", i))
		s.add(entries[i], t0.Add(time.Duration(i)*time.Second))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.renew(entries[i%n], t0.Add(time.Duration(n+i)*time.Second))
	}
}
