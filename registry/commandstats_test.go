package registry

import (
	"context"
	"encoding/json"
	"testing"
	"time"
)

// commandCount is r's count of kind and status.
func commandCount(r *Registry, kind CommandKind, status string) uint64 {
	for _, c := range r.CommandCounts() {
		if c.Kind == kind && c.Status == status {
			return c.Count
		}
	}
	return 0
}

func TestCommandCountsSync(t *testing.T) {
	f := newRouterFixture(t)
	ctx := context.Background()
	rt := f.r.Router()
	// Offline, then refused (LwM2M takes no sync command), then delivered.
	_, _ = rt.SendCommand(ctx, f.device(t, "mq_m1"), Command{CommandID: "c"})
	_, _ = rt.SendCommand(ctx, f.device(t, "nb_n1"), Command{CommandID: "c"})
	if _, err := f.r.Connected(ctx, "mq_m1"); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.SendCommand(ctx, f.device(t, "mq_m1"), Command{CommandID: "c"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		status string
		want   uint64
	}{{syncNotConnected, 1}, {syncRefused, 1}, {syncSuccessful, 1}, {syncTimeout, 0}, {syncFailed, 0}} {
		if got := commandCount(f.r, CommandSync, tc.status); got != tc.want {
			t.Errorf("sync %s: %d, want %d", tc.status, got, tc.want)
		}
	}
}

func TestSyncOutcome(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, syncSuccessful},
		{ErrTimeout, syncTimeout},
		{context.DeadlineExceeded, syncTimeout},
		{ErrNotConnected, syncNotConnected},
		{&RefusedError{Kind: DeliverCommand}, syncRefused},
		{ErrNodeUnreachable, syncFailed},
	} {
		if got := syncOutcome(tc.err); got != tc.want {
			t.Errorf("%v: %s, want %s", tc.err, got, tc.want)
		}
	}
}

func TestCommandCountsAsync(t *testing.T) {
	r, clock := newAsyncFixture(t)
	ctx := context.Background()
	create := func(expire int64) *AsyncCommand {
		t.Helper()
		c, err := r.CreateAsyncCommand(ctx, "proj", "nb_n1", NewAsyncCommand{Paras: json.RawMessage(`{}`), ExpireTime: expire})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	start := func(c *AsyncCommand) {
		t.Helper()
		if _, err := r.StartAsyncCommand(ctx, c.CommandID, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	ok, failed, timedOut := create(60), create(60), create(60)
	create(5) // expires
	for _, c := range []*AsyncCommand{ok, failed, timedOut} {
		start(c)
	}
	// DELIVERED is not final: not counted.
	if err := r.FinishAsyncCommand(ctx, ok.CommandID, AsyncDelivered, nil); err != nil {
		t.Fatal(err)
	}
	if err := r.FinishAsyncCommand(ctx, ok.CommandID, AsyncSuccessful, nil); err != nil {
		t.Fatal(err)
	}
	if err := r.FinishAsyncCommand(ctx, failed.CommandID, AsyncFailed, nil); err != nil {
		t.Fatal(err)
	}
	clock.Advance(20*time.Second + asyncTimeoutGrace)
	if n, err := r.SweepAsyncCommands(ctx); err != nil || n != 2 {
		t.Fatalf("sweep: %d %v", n, err)
	}
	for _, tc := range []struct {
		status AsyncStatus
		want   uint64
	}{{AsyncSuccessful, 1}, {AsyncFailed, 1}, {AsyncTimeout, 1}, {AsyncExpired, 1}} {
		if got := commandCount(r, CommandAsync, string(tc.status)); got != tc.want {
			t.Errorf("async %s: %d, want %d", tc.status, got, tc.want)
		}
	}
	var total uint64
	for _, c := range r.CommandCounts() {
		total += c.Count
	}
	if total != 4 {
		t.Errorf("%d commands counted, want 4 (DELIVERED is not final)", total)
	}
}
