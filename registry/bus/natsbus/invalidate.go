package natsbus

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// maxNoticeBytes caps one invalidation message (under NATS' own 1 MiB
// default max_payload): notices queued together travel in as few
// messages as fit.
const maxNoticeBytes = 64 << 10

// invalidator is the Bus's registry.Invalidator half. Publish only
// queues; one sender goroutine hands notices to NATS in commit order,
// because nats.go writes to the socket inline once its buffer fills,
// and a commit must never wait on the network.
type invalidator struct {
	b     *Bus
	queue chan []string // nil: send a drop-all now
	quit  chan struct{}
	done  chan struct{}
	buf   []byte // the sender's encoding buffer
	inc   uint64 // this bus's incarnation, random
	seq   uint64 // the last message number the sender used

	// lost: some of this node's notices may not have reached the other
	// nodes; the sender sends a drop-all before its next notice.
	lost atomic.Bool
	// dropping: a local drop-all is on its way to the subscribers.
	dropping atomic.Bool

	published, lostKeys, received, dropAlls atomic.Uint64
	lossLogged                              atomic.Int64 // unix nanos of the last loss warning

	subsMu    sync.Mutex
	subs      []func(keys []string)
	deliverMu sync.Mutex // subscribers see notices one at a time; guards peers
	// peers holds the last message seen from each other node, to tell a
	// missed one by the gap in numbers.
	peers map[string]peerSeq
	sub   *nats.Subscription
}

type peerSeq struct{ inc, seq uint64 }

// Stats counts what the invalidator did since Open.
type Stats struct {
	PublishedKeys uint64 // keys handed to NATS in notices
	// LostKeys counts keys whose notice may not have reached the other
	// nodes (the queue or NATS' reconnect buffer was full, or NATS
	// refused the message); each loss is followed by a drop-all.
	LostKeys     uint64
	ReceivedKeys uint64 // keys other nodes' notices brought
	// LocalDropAlls counts the times this node dropped its cache because
	// notices may have been lost (a reconnection, another node's
	// drop-all, a slow consumer, a malformed notice).
	LocalDropAlls uint64
}

// Stats returns the invalidator's counters.
func (b *Bus) Stats() Stats {
	v := &b.invalidator
	return Stats{PublishedKeys: v.published.Load(), LostKeys: v.lostKeys.Load(),
		ReceivedKeys: v.received.Load(), LocalDropAlls: v.dropAlls.Load()}
}

func (v *invalidator) init(b *Bus, queue int) {
	v.b = b
	v.queue = make(chan []string, queue)
	v.inc = rand.Uint64()
	v.peers = map[string]peerSeq{}
	v.quit = make(chan struct{})
	v.done = make(chan struct{})
}

// start subscribes to the other nodes' notices and starts the sender.
func (v *invalidator) start() error {
	sub, err := v.b.nc.Subscribe(v.b.inval, v.receive)
	if err != nil {
		return fmt.Errorf("natsbus: subscribe %s: %w", v.b.inval, err)
	}
	// A burst of notices may outrun a subscriber busy dropping its cache;
	// beyond this backlog NATS drops them and asyncError calls a drop-all.
	if err := sub.SetPendingLimits(1<<16, 64<<20); err != nil {
		return fmt.Errorf("natsbus: subscription limits: %w", err)
	}
	v.sub = sub
	if v.b.nc.IsConnected() {
		// Subscribed on the server when Open returns (best effort: a
		// connection lost meanwhile resubscribes when it is back).
		_ = v.b.nc.FlushTimeout(v.b.o.ConnectTimeout)
	}
	go v.run()
	return nil
}

// Publish queues a notice that keys changed, for every other node. It
// never blocks: if the queue is full the notice is counted lost and the
// other nodes are later told to drop everything.
func (b *Bus) Publish(keys []string) {
	v := &b.invalidator
	if len(keys) == 0 {
		return
	}
	if b.closed.Load() {
		v.lostKeys.Add(uint64(len(keys)))
		return
	}
	select {
	case v.queue <- slices.Clone(keys): // the caller may reuse its slice
	default:
		v.lostKeys.Add(uint64(len(keys)))
		v.lost.Store(true)
		v.logLoss("invalidation queue full", nil)
	}
}

// Subscribe has fn called with the keys other nodes' notices carry, and
// with nil when notices may have been lost. Calls are one at a time.
func (b *Bus) Subscribe(fn func(keys []string)) {
	v := &b.invalidator
	v.subsMu.Lock()
	v.subs = append(v.subs, fn)
	v.subsMu.Unlock()
}

// resync makes up for notices lost while the connection was down: this
// node drops its cache, and tells the others to drop theirs; its stream
// readers read, for the event hints they missed.
func (b *Bus) resync() {
	b.eventHints.missed()
	v := &b.invalidator
	v.lost.Store(true)
	select {
	case v.queue <- nil: // wake the sender
	default: // it is busy: it sends the drop-all before its next notice
	}
	v.dropLocal(true)
}

// lostIncoming drops this node's cache: notices to it were dropped.
func (v *invalidator) lostIncoming() { v.dropLocal(false) }

// dropLocal has the subscribers drop everything, off the caller's
// goroutine (a NATS callback); drops asked for while one is on its way
// are the same drop. After a reconnection it first waits for the server
// to have our subscription back (a ping's round trip): a record cached
// after the drop can then only miss a notice the subscription gets, and
// the numbers of the notices missed before it are forgotten.
func (v *invalidator) dropLocal(resubscribed bool) {
	if v.dropping.Swap(true) {
		return
	}
	go func() {
		if resubscribed {
			_ = v.b.nc.FlushTimeout(v.b.o.ConnectTimeout) // lost again: the next reconnection drops again
		}
		v.dropping.Store(false)
		v.deliverMu.Lock()
		defer v.deliverMu.Unlock()
		if resubscribed {
			clear(v.peers)
		}
		v.deliverLocked(nil)
	}()
}

func (v *invalidator) receive(m *nats.Msg) {
	if v.b.closed.Load() {
		return
	}
	n, err := decodeNotice(m.Data)
	v.deliverMu.Lock()
	defer v.deliverMu.Unlock()
	if err != nil {
		v.b.log.Warn("natsbus: dropping the cache after a malformed notice", "err", err)
		v.deliverLocked(nil)
		return
	}
	if n.origin == v.b.o.Node {
		return
	}
	last, known := v.peers[n.origin]
	v.peers[n.origin] = peerSeq{n.inc, n.seq}
	// A node seen for the first time (or restarted) starts the count.
	if known && last.inc == n.inc && n.seq != last.seq+1 {
		v.b.log.Warn("natsbus: invalidation notices missed; dropping the cache",
			"from", n.origin, "missed", n.seq-last.seq-1)
		v.deliverLocked(nil)
		return
	}
	if n.keys == nil { // the origin lost notices
		v.deliverLocked(nil)
		return
	}
	v.received.Add(uint64(len(n.keys)))
	v.deliverLocked(n.keys)
}

// deliverLocked calls the subscribers; v.deliverMu is held.
func (v *invalidator) deliverLocked(keys []string) {
	v.subsMu.Lock()
	subs := v.subs
	v.subsMu.Unlock()
	if keys == nil {
		v.dropAlls.Add(1)
	}
	for _, fn := range subs {
		fn(keys)
	}
}

// run is the sender: it batches what is queued into messages of at
// most maxNoticeBytes and publishes them, in order.
func (v *invalidator) run() {
	defer close(v.done)
	var batch []string
	size := 0
	flush := func() {
		v.send(batch)
		batch, size = batch[:0], 0
	}
	add := func(keys []string) {
		for _, k := range keys {
			ks := keySize(k)
			if len(batch) > 0 && noticeSize(v.b.o.Node, size+ks, len(batch)+1) > maxNoticeBytes {
				flush()
			}
			batch = append(batch, k)
			size += ks
		}
	}
	// drain adds whatever else is queued, then sends it all.
	drain := func() {
		for {
			select {
			case keys := <-v.queue:
				add(keys)
			default:
				flush()
				return
			}
		}
	}
	for {
		select {
		case keys := <-v.queue:
			add(keys)
			drain()
		case <-v.quit:
			drain()
			return
		}
	}
}

// send publishes a drop-all first if notices were lost, then batch.
// Every message takes the next number, sent or not: a loss leaves a gap
// the other nodes see even if the drop-all is lost too.
func (v *invalidator) send(batch []string) {
	nc := v.b.nc
	if v.lost.Swap(false) {
		v.seq++
		if err := nc.Publish(v.b.inval, dropAllNotice(v.b.o.Node, v.inc, v.seq)); err != nil {
			v.lost.Store(true) // try again with the next notice or reconnection
		}
	}
	if len(batch) == 0 {
		return
	}
	v.seq++
	v.buf = appendKeysNotice(v.buf[:0], v.b.o.Node, v.inc, v.seq, batch)
	err := error(nil)
	if max := nc.MaxPayload(); max > 0 && int64(len(v.buf)) > max {
		err = fmt.Errorf("a %d-byte notice is over the server's max_payload %d", len(v.buf), max)
	} else {
		err = nc.Publish(v.b.inval, v.buf) // copies v.buf
	}
	if err != nil {
		v.lostKeys.Add(uint64(len(batch)))
		v.lost.Store(true)
		v.logLoss("NATS refused a notice", err)
		return
	}
	v.published.Add(uint64(len(batch)))
}

// logLoss warns of lost notices, at most every 10 s (Stats counts them
// all).
func (v *invalidator) logLoss(why string, err error) {
	now := time.Now().UnixNano()
	last := v.lossLogged.Load()
	if now-last < int64(10*time.Second) || !v.lossLogged.CompareAndSwap(last, now) {
		return
	}
	v.b.log.Warn("natsbus: invalidation notices lost; the other nodes will be told to drop their caches",
		"why", why, "err", err, "lost_keys_total", v.lostKeys.Load())
}

// stop hands what is queued to NATS and stops the sender.
func (v *invalidator) stop(deadline time.Time) {
	close(v.quit)
	select {
	case <-v.done:
	case <-time.After(time.Until(deadline)):
	}
}
