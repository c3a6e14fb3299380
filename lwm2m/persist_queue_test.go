package lwm2m

import (
	"slices"
	"testing"
)

func TestPersisterQueue(t *testing.T) {
	e1 := &entry{id: "r1", deviceID: "d"}
	e2 := &entry{id: "r2", deviceID: "d"}
	other := &entry{id: "r3", deviceID: "x"}
	for _, tc := range []struct {
		name  string
		ops   func(p *persister)
		put   *entry
		drops []string
	}{
		{"register", func(p *persister) { p.dirty(e1) }, e1, nil},
		{"register then de-register", func(p *persister) { p.dirty(e1); p.gone(e1) }, nil, []string{"r1"}},
		{"re-register: old dropped, new stored", func(p *persister) { p.gone(e1); p.dirty(e2) }, e2, []string{"r1"}},
		{"a late end of the old one leaves the new one", func(p *persister) { p.dirty(e2); p.gone(e1) }, e2, []string{"r1"}},
		{"two ended", func(p *persister) { p.dirty(e1); p.gone(e1); p.dirty(e2); p.gone(e2) }, nil, []string{"r1", "r2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPersister()
			tc.ops(p)
			p.dirty(other)
			q := p.take()
			if len(q) != 2 || q["x"].put != other {
				t.Fatalf("queue %+v", q)
			}
			ps := q["d"]
			if ps.put != tc.put || !slices.Equal(ps.drops(), tc.drops) {
				t.Fatalf("put %v drops %v, want %v %v", ps.put, ps.drops(), tc.put, tc.drops)
			}
			if p.take() != nil {
				t.Fatal("take left work queued")
			}
			// A failed round is queued again behind what came since.
			p.dirty(e2)
			p.requeue(q)
			again := p.take()
			if again["d"].put != e2 || !slices.Equal(again["d"].drops(), tc.drops) || again["x"].put != other {
				t.Fatalf("requeued %+v", again)
			}
		})
	}
}
