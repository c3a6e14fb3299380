package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
)

// sendAndFinish takes a device's command through SENT to SUCCESSFUL.
func sendAndFinish(t testing.TB, r *Registry, id string) {
	t.Helper()
	ctx := context.Background()
	if _, err := r.StartAsyncCommand(ctx, id, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := r.FinishAsyncCommand(ctx, id, AsyncSuccessful, nil); err != nil {
		t.Fatal(err)
	}
}

func pendingIDs(t *testing.T, r *Registry, dev string) []string {
	t.Helper()
	p, err := r.PendingAsyncCommands(context.Background(), dev, 100)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range p {
		ids = append(ids, c.CommandID)
	}
	return ids
}

// The look for a device's pending commands starts at its oldest pending
// one, past the entries of the commands sent before; commands leaving
// PENDING out of order move the start only when the oldest leaves.
func TestPendingLookSeeksToOldestPending(t *testing.T) {
	r, rec := recordedRegistry(t, prefixKey("ap", "nb_n1"), nil)
	ctx := context.Background()
	mustProduct(t, r, "proj", "nb", "CoAP")
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "n1", ProductID: "nb"}); err != nil {
		t.Fatal(err)
	}
	for range 20 { // a history of sent commands
		sendAndFinish(t, r, mustCommand(t, r, 3600))
	}
	var c [3]*AsyncCommand
	for i := range c {
		var err error
		if c[i], err = r.AsyncCommand(ctx, "proj", "nb_n1", mustCommand(t, r, 3600)); err != nil {
			t.Fatal(err)
		}
	}
	look := func(want ...*AsyncCommand) {
		t.Helper()
		got := pendingIDs(t, r, "nb_n1")
		if len(got) != len(want) {
			t.Fatalf("pending %v, want %d", got, len(want))
		}
		for i := range want {
			if got[i] != want[i].CommandID {
				t.Fatalf("pending %v, want %s at %d", got, want[i].CommandID, i)
			}
		}
		if len(want) == 0 {
			return
		}
		if from := rec.lastFrom(); !bytes.Equal(from, asyncPendingKey("nb_n1", want[0].Seq)) {
			t.Fatalf("look read from %q, want the oldest pending, %s", from, want[0].Seq)
		}
	}
	look(c[0], c[1], c[2])
	sendAndFinish(t, r, c[1].CommandID) // out of order: the start stays
	look(c[0], c[2])
	sendAndFinish(t, r, c[0].CommandID) // the oldest: the start moves past c[1]
	look(c[2])
	sendAndFinish(t, r, c[2].CommandID)
	n := len(rec.froms)
	look()
	if len(rec.froms) != n {
		t.Fatal("a device whose record says none is pending was scanned")
	}
	if ok, err := r.HasPendingAsyncCommands(ctx, "nb_n1"); err != nil || ok {
		t.Fatalf("has pending: %v %v", ok, err)
	}
}

// Dropping the oldest finished command seeks to the oldest kept one.
func TestCommandTrimSeeksToOldestKept(t *testing.T) {
	r, rec := recordedRegistry(t, prefixKey("al", "nb_n1"), nil)
	ctx := context.Background()
	mustProduct(t, r, "proj", "nb", "CoAP")
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "n1", ProductID: "nb"}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range AsyncCommandsKept + 5 {
		id := mustCommand(t, r, 3600)
		sendAndFinish(t, r, id)
		ids = append(ids, id)
	}
	if len(rec.froms) < 5 { // each trim finds its victim, then the next oldest
		t.Fatalf("%d scans of the list for 5 trims", len(rec.froms))
	}
	for i, from := range rec.froms {
		if len(from) == 0 {
			t.Fatalf("trim %d read the list from its start", i)
		}
	}
	l, err := r.ListAsyncCommands(ctx, "proj", "nb_n1", AsyncCommandFilter{}, Page{Limit: 2000})
	if err != nil {
		t.Fatal(err)
	}
	if int(l.Count) != AsyncCommandsKept || len(l.Commands) != AsyncCommandsKept {
		t.Fatalf("kept %d (%d listed)", l.Count, len(l.Commands))
	}
	for _, id := range ids[:5] {
		if _, err := r.AsyncCommand(ctx, "proj", "nb_n1", id); err == nil {
			t.Fatalf("command %s should have been dropped", id)
		}
	}
}

// A #a record of an earlier version ("kept" alone) still works, and the
// next create learns the seqs.
func TestAsyncCountRecordWithoutSeqs(t *testing.T) {
	r, st := newTestRegistry(t, nil)
	ctx := context.Background()
	mustProduct(t, r, "proj", "nb", "CoAP")
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "n1", ProductID: "nb"}); err != nil {
		t.Fatal(err)
	}
	sent := mustCommand(t, r, 3600)
	sendAndFinish(t, r, sent)
	first := mustCommand(t, r, 3600)
	if err := st.Update(context.Background(), func(w kv.Txn) error { return w.Set(asyncCountKey("nb_n1"), []byte("2")) }); err != nil {
		t.Fatal(err)
	}
	if got := pendingIDs(t, r, "nb_n1"); len(got) != 1 || got[0] != first {
		t.Fatalf("pending with an old record: %v", got)
	}
	second := mustCommand(t, r, 3600)
	var m asyncMeta
	if err := st.View(context.Background(), func(rd Reader) (err error) { m, err = readAsyncMeta(rd, "nb_n1"); return err }); err != nil {
		t.Fatal(err)
	}
	cmd := func(id string) *AsyncCommand {
		c, err := r.AsyncCommand(ctx, "proj", "nb_n1", id)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if want := (asyncMeta{kept: 3, known: true, oldest: cmd(sent).Seq, oldestPending: cmd(first).Seq}); m != want {
		t.Fatalf("record %+v, want %+v", m, want)
	}
	if got := pendingIDs(t, r, "nb_n1"); len(got) != 2 || got[0] != first || got[1] != second {
		t.Fatalf("pending: %v", got)
	}
}

func BenchmarkPendingAfterHistory(b *testing.B) {
	for _, n := range []int{0, 1000, 5000} {
		b.Run(fmt.Sprintf("sent=%d", n), func(b *testing.B) {
			r, _ := newTestRegistry(b, nil)
			ctx := context.Background()
			mustProduct(b, r, "proj", "nb", "CoAP")
			if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "n1", ProductID: "nb"}); err != nil {
				b.Fatal(err)
			}
			for range n {
				c, err := r.CreateAsyncCommand(ctx, "proj", "nb_n1", NewAsyncCommand{Paras: json.RawMessage(`{}`)})
				if err != nil {
					b.Fatal(err)
				}
				sendAndFinish(b, r, c.CommandID)
			}
			if _, err := r.CreateAsyncCommand(ctx, "proj", "nb_n1", NewAsyncCommand{Paras: json.RawMessage(`{}`)}); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if p, err := r.PendingAsyncCommands(ctx, "nb_n1", 10); err != nil || len(p) != 1 {
					b.Fatal(len(p), err)
				}
			}
		})
	}
}

// Pending commands that expire in one sweep, the younger first, leave
// the record at the oldest still pending, not at one the sweep dropped.
func TestPendingStartAfterOneSweepExpiresSeveral(t *testing.T) {
	r, clock := newAsyncFixture(t)
	ctx := context.Background()
	first := mustCommand(t, r, 10)
	_ = mustCommand(t, r, 5) // due first, so the sweep handles it first
	last := mustCommand(t, r, 3600)
	clock.Advance(11 * time.Second)
	if n, err := r.SweepAsyncCommands(ctx); err != nil || n != 2 {
		t.Fatalf("sweep: %d %v", n, err)
	}
	var m asyncMeta
	if err := r.view(ctx, func(rd Reader) (err error) { m, err = readAsyncMeta(rd, "nb_n1"); return err }); err != nil {
		t.Fatal(err)
	}
	c, err := r.AsyncCommand(ctx, "proj", "nb_n1", last)
	if err != nil {
		t.Fatal(err)
	}
	if m.oldestPending != c.Seq {
		f, _ := r.AsyncCommand(ctx, "proj", "nb_n1", first)
		t.Fatalf("oldest pending %s, want %s (the first was %s)", m.oldestPending, c.Seq, f.Seq)
	}
	if got := pendingIDs(t, r, "nb_n1"); len(got) != 1 || got[0] != last {
		t.Fatalf("pending: %v", got)
	}
}

// Random sequences of creates, sends out of order, answers, expiries and
// sweeps: after each step, the look that seeks from the device's record
// finds the same pending commands, in the same order, as a read of the
// whole pending list from its start.
func TestPendingLookMatchesFullScan(t *testing.T) {
	r, clock := newAsyncFixture(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(13, 2026))
	fullScan := func() []string {
		var ids []string
		now := r.now()
		if err := r.view(ctx, func(rd Reader) error {
			return rd.Scan(prefixKey("ap", "nb_n1"), nil, false, func(_, v []byte) (bool, error) {
				c, err := getAsyncCommand(rd, string(v))
				if err != nil {
					return false, err
				}
				if c.Status == AsyncPending && c.Deadline.After(now) {
					ids = append(ids, c.CommandID)
				}
				return true, nil
			})
		}); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	var sent []string
	for step := range 600 {
		switch op := rng.IntN(10); {
		case op < 4:
			if _, err := r.CreateAsyncCommand(ctx, "proj", "nb_n1",
				NewAsyncCommand{Paras: json.RawMessage(`{}`), ExpireTime: 1 + rng.Int64N(30)}); err != nil && !errors.Is(err, ErrQuota) {
				t.Fatal(err)
			}
		case op < 6: // send any pending one, not only the oldest
			if p := fullScan(); len(p) > 0 {
				id := p[rng.IntN(len(p))]
				if _, err := r.StartAsyncCommand(ctx, id, time.Duration(1+rng.IntN(5))*time.Second); err != nil {
					t.Fatal(err)
				}
				sent = append(sent, id)
			}
		case op < 7:
			if len(sent) > 0 {
				i := rng.IntN(len(sent))
				err := r.FinishAsyncCommand(ctx, sent[i], AsyncSuccessful, nil)
				if err != nil && !errors.Is(err, ErrNotSent) {
					t.Fatal(err)
				}
				sent = append(sent[:i], sent[i+1:]...)
			}
		case op < 9:
			clock.Advance(time.Duration(rng.IntN(4000)) * time.Millisecond)
		default:
			if _, err := r.SweepAsyncCommands(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if want, got := fullScan(), pendingIDs(t, r, "nb_n1"); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("step %d: the look found %v, the whole list %v", step, got, want)
		}
	}
}
