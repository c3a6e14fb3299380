package pgkv_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
	"github.com/iotgate/iotgate/registry/kv/pgkv"
	"github.com/iotgate/iotgate/registry/kv/pgkv/pgtest"
)

// cutProxy relays TCP connections to PostgreSQL and can break them: all
// at once (cutAll), or the one carrying the next COMMIT (cutAtCommit:
// the batch's last round trip, which carries its writes, recognised by a
// value written, and COMMIT):
// after the server has it but before its answer reaches the client, or
// before the server has it. While down, it refuses new connections.
type cutProxy struct {
	l        net.Listener
	target   string
	atCommit atomic.Int32 // a commitCut
	down     atomic.Bool
	mu       sync.Mutex
	conns    []net.Conn
}

type commitCut int32

const (
	noCut             commitCut = iota
	cutAfterDelivery            // the server commits; its answer is lost
	cutBeforeDelivery           // the server never sees COMMIT
)

func newCutProxy(t *testing.T, target string) *cutProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{l: l, target: target}
	t.Cleanup(func() { l.Close(); p.cutAll() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.relay(c)
		}
	}()
	return p
}

func (p *cutProxy) addr() string { return p.l.Addr().String() }

func (p *cutProxy) track(c ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns = append(p.conns, c...)
}

// cutAll closes every relayed connection.
func (p *cutProxy) cutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// cutAtCommit arms the proxy for the next COMMIT of a batch writing
// commitValue.
func (p *cutProxy) cutAtCommit(c commitCut) { p.atCommit.Store(int32(c)) }

// commitValue is the value the tests that cut a COMMIT write.
const commitValue = "value-sent-with-COMMIT"

func (p *cutProxy) relay(client net.Conn) {
	if p.down.Load() {
		client.Close()
		return
	}
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	p.track(client, server)
	var mute atomic.Bool // drop the server's answers
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := server.Read(buf)
			if n > 0 && !mute.Load() {
				if _, err := client.Write(buf[:n]); err != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		client.Close()
		server.Close()
	}()
	buf := make([]byte, 32<<10)
	// armed: the batch writing commitValue went through with the cut
	// armed; the cut applies to the read that carries its COMMIT, which
	// TCP may deliver in a later read than the value.
	armed := noCut
	for {
		n, err := client.Read(buf)
		if n > 0 {
			if bytes.Contains(buf[:n], []byte(commitValue)) {
				armed = commitCut(p.atCommit.Swap(int32(noCut)))
			}
			cut := noCut
			if armed != noCut && bytes.Contains(buf[:n], []byte("COMMIT\x00")) {
				cut, armed = armed, noCut
			}
			if cut == cutBeforeDelivery {
				break
			}
			if cut == cutAfterDelivery {
				mute.Store(true)
			}
			if _, err := server.Write(buf[:n]); err != nil {
				break
			}
			if cut == cutAfterDelivery {
				client.Close()
				// Let the server answer (and so commit) before it sees EOF.
				time.Sleep(200 * time.Millisecond)
				break
			}
		}
		if err != nil {
			break
		}
	}
	client.Close()
	server.Close()
}

// openThroughProxy opens a store on a fresh database, through a proxy.
func openThroughProxy(t *testing.T, o pgkv.Options) (*pgkv.Store, *cutProxy) {
	srv := needServer(t)
	u, err := srv.Database(testContext(t), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p := newCutProxy(t, "127.0.0.1:"+strconv.Itoa(srv.Port()))
	pu, _ := url.Parse(u)
	pu.Host = p.addr()
	o.URL = pu.String()
	s, err := pgkv.Open(testContext(t), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, p
}

func mustGet(t *testing.T, s kv.Store, k string) (string, error) {
	t.Helper()
	var v []byte
	err := s.View(testContext(t), func(r kv.Reader) error {
		var err error
		v, err = r.Get([]byte(k))
		return err
	})
	return string(v), err
}

// Retry until the store answers again: the pool drops dead connections
// as it meets them.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A connection lost in the middle of an Update fails it with
// ErrUnavailable and keeps none of its writes; the store then recovers.
func TestConnectionLostBeforeCommit(t *testing.T) {
	s, p := openThroughProxy(t, pgkv.Options{})
	ctx := testContext(t)
	if err := s.Update(ctx, func(t kv.Txn) error { return t.Set([]byte("a"), []byte("1")) }); err != nil {
		t.Fatal(err)
	}
	err := s.Update(ctx, func(tx kv.Txn) error {
		if err := tx.Set([]byte("b"), []byte("2")); err != nil {
			return err
		}
		p.cutAll()
		_, err := tx.Get([]byte("a"))
		if err == nil {
			return errors.New("a read over a cut connection succeeded")
		}
		return nil // even if fn ignores the failed read, the Update must fail
	})
	if !errors.Is(err, pgkv.ErrUnavailable) {
		t.Fatalf("Update over a cut connection: %v, want pgkv.ErrUnavailable", err)
	}
	eventually(t, "update after the cut", func() error {
		return s.Update(ctx, func(t kv.Txn) error { return t.Set([]byte("c"), []byte("3")) })
	})
	if _, err := mustGet(t, s, "b"); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("the write of the failed Update: %v, want kv.ErrNotFound", err)
	}
	if v, err := mustGet(t, s, "c"); err != nil || v != "3" {
		t.Fatalf("write after recovery: %q, %v", v, err)
	}
	// A View over a cut connection fails too.
	err = s.View(ctx, func(r kv.Reader) error {
		p.cutAll()
		_, err := r.Get([]byte("a"))
		return err
	})
	if !errors.Is(err, pgkv.ErrUnavailable) {
		t.Fatalf("View over a cut connection: %v, want pgkv.ErrUnavailable", err)
	}
}

// A connection lost while COMMIT is in flight: the committer learns the
// outcome from the batch's marker and reports it. Delivered, the write
// committed: the Update succeeds and its OnCommit runs. Not delivered,
// the transaction never commits: the Update fails with ErrUnavailable
// and nothing is kept.
func TestConnectionLostDuringCommit(t *testing.T) {
	for _, c := range []struct {
		name      string
		cut       commitCut
		committed bool
	}{
		{"answer lost", cutAfterDelivery, true},
		{"commit lost", cutBeforeDelivery, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, p := openThroughProxy(t, pgkv.Options{})
			ctx := testContext(t)
			p.cutAtCommit(c.cut)
			hook := false
			err := s.Update(ctx, func(t kv.Txn) error {
				t.OnCommit(func() { hook = true })
				return t.Set([]byte("k"), []byte(commitValue))
			})
			if c.committed && (err != nil || !hook) {
				t.Fatalf("Update whose COMMIT's answer was lost: %v (OnCommit ran: %v), want success", err, hook)
			}
			if !c.committed && (!errors.Is(err, pgkv.ErrUnavailable) || hook) {
				t.Fatalf("Update whose COMMIT never arrived: %v (OnCommit ran: %v), want pgkv.ErrUnavailable", err, hook)
			}
			if st := s.Stats(); st.Resolved != 1 {
				t.Errorf("stats %+v: want one commit resolved", st)
			}
			v, err := mustGet(t, s, "k")
			if c.committed && (err != nil || v != commitValue) {
				t.Fatalf("the committed write reads %q, %v", v, err)
			}
			if !c.committed && !errors.Is(err, kv.ErrNotFound) {
				t.Fatalf("the write that did not commit reads %q, %v", v, err)
			}
			// The markers are cleaned up by the next write.
			if err := s.Update(ctx, func(t kv.Txn) error { return t.Set([]byte("next"), nil) }); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// When the outcome cannot be learnt (the database stays unreachable for
// BatchTimeout), the Update reports ErrCommitUnknown: not success, and
// not a failure, since the write may be kept (here it was).
func TestCommitOutcomeUnknown(t *testing.T) {
	s, p := openThroughProxy(t, pgkv.Options{BatchTimeout: 2 * time.Second})
	ctx := testContext(t)
	p.cutAtCommit(cutAfterDelivery)
	p.down.Store(true)
	hook := false
	err := s.Update(ctx, func(t kv.Txn) error {
		t.OnCommit(func() { hook = true })
		return t.Set([]byte("k"), []byte(commitValue))
	})
	if !errors.Is(err, pgkv.ErrCommitUnknown) || errors.Is(err, pgkv.ErrUnavailable) || errors.Is(err, kv.ErrConflict) {
		t.Fatalf("Update whose outcome cannot be learnt: %v, want only pgkv.ErrCommitUnknown", err)
	}
	if hook {
		t.Fatal("OnCommit ran for a commit not known to have happened")
	}
	p.down.Store(false)
	eventually(t, "read after the database is back", func() error {
		v, err := mustGet(t, s, "k")
		if err == nil && v != commitValue {
			err = fmt.Errorf("value %q", v)
		}
		return err
	})
}

// The server crashes (stopped with -m immediate: no checkpoint, as a
// power cut; nothing fsynced is lost) during a burst of writes and comes
// back a moment later: every acknowledged write is there, none reported
// failed is, the outcome of every commit cut off by the crash was
// learnt (none is left unknown), and the same Store serves again without
// being reopened.
func TestServerCrashDuringWrites(t *testing.T) {
	needServer(t)
	srv, err := pgtest.New()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Remove()
	u, err := srv.Database(testContext(t), "crash")
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	s, err := pgkv.Open(ctx, pgkv.Options{URL: u})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var acked, failed, unknown sync.Map
	var n atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				k := fmt.Sprintf("w/%02d/%05d", w, i)
				err := s.Update(ctx, func(t kv.Txn) error { return t.Set([]byte(k), []byte(k)) })
				switch {
				case err == nil:
					acked.Store(k, true)
					n.Add(1)
				case errors.Is(err, pgkv.ErrCommitUnknown):
					unknown.Store(k, err)
				default:
					failed.Store(k, err)
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	for n.Load() < 300 {
		time.Sleep(5 * time.Millisecond)
	}
	if err := srv.Stop(pgtest.Immediate); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	before := n.Load()
	eventually(t, "writes after the restart", func() error {
		if n.Load() < before+100 {
			return errors.New("fewer than 100 writes acknowledged since")
		}
		return nil
	})
	stop.Store(true)
	wg.Wait()
	eventually(t, "write after the restart", func() error {
		return s.Update(ctx, func(t kv.Txn) error { return t.Set([]byte("after"), nil) })
	})
	var stored map[string]bool
	eventually(t, "read after the restart", func() error {
		stored = map[string]bool{}
		return s.View(ctx, func(r kv.Reader) error {
			return r.Scan([]byte("w/"), nil, false, func(k, _ []byte) (bool, error) {
				stored[string(k)] = true
				return true, nil
			})
		})
	})
	nAcked, nFailed, nUnknown := 0, 0, 0
	acked.Range(func(k, _ any) bool {
		nAcked++
		if !stored[k.(string)] {
			t.Errorf("acknowledged write %s lost in the crash", k)
		}
		return true
	})
	failed.Range(func(k, v any) bool {
		nFailed++
		if stored[k.(string)] {
			t.Errorf("write %s reported failed (%v) was kept", k, v)
		}
		if !errors.Is(v.(error), pgkv.ErrUnavailable) {
			t.Errorf("write %s failed with %v, want pgkv.ErrUnavailable", k, v)
		}
		return true
	})
	unknown.Range(func(k, v any) bool {
		nUnknown++
		t.Errorf("write %s: %v: the outcome was not learnt though the server came back", k, v)
		return true
	})
	if nFailed == 0 && s.Stats().Resolved == 0 {
		t.Error("no write failed and no commit was cut off: the crash did not strike during the burst")
	}
	t.Logf("%d acknowledged, %d failed, %d unknown; %d stored; %d commits cut off and resolved", nAcked, nFailed, nUnknown, len(stored), s.Stats().Resolved)
}
