package lwm2m

import (
	"hash/maphash"
	"net"
	"net/netip"
	"sync"
)

// peerIndex finds a NoSec registration by the address its client last
// registered or updated from, for requests that name no registration (a
// Send on /dp): a DTLS client is known by its session, a NoSec one only by
// its address. Sharded, so a register storm does not serialise on it. An
// entry may outlive its registration's move to another address; lookups
// check it against the registration (see sender).
type peerIndex struct {
	seed   maphash.Seed
	shards [32]struct {
		mu sync.Mutex
		m  map[netip.AddrPort]*entry
	}
}

func newPeerIndex() *peerIndex {
	x := &peerIndex{seed: maphash.MakeSeed()}
	for i := range x.shards {
		x.shards[i].m = make(map[netip.AddrPort]*entry)
	}
	return x
}

func (x *peerIndex) shard(ap netip.AddrPort) int {
	return int(maphash.Comparable(x.seed, ap) % uint64(len(x.shards)))
}

// put makes e the registration at ap, and forgets e at prev (its former
// address) when it moved.
func (x *peerIndex) put(ap, prev netip.AddrPort, e *entry) {
	if prev.IsValid() && prev != ap {
		x.drop(prev, e)
	}
	sh := &x.shards[x.shard(ap)]
	sh.mu.Lock()
	sh.m[ap] = e
	sh.mu.Unlock()
}

func (x *peerIndex) get(ap netip.AddrPort) *entry {
	sh := &x.shards[x.shard(ap)]
	sh.mu.Lock()
	e := sh.m[ap]
	sh.mu.Unlock()
	return e
}

// drop forgets ap if it still leads to e.
func (x *peerIndex) drop(ap netip.AddrPort, e *entry) {
	if !ap.IsValid() {
		return
	}
	sh := &x.shards[x.shard(ap)]
	sh.mu.Lock()
	if sh.m[ap] == e {
		delete(sh.m, ap)
	}
	sh.mu.Unlock()
}

// addrPortOf is a UDP address as a map key (invalid for anything else);
// IPv4-mapped IPv6 addresses count as IPv4, as a dual-stack socket
// reports them either way.
func addrPortOf(a net.Addr) netip.AddrPort {
	ua, ok := a.(*net.UDPAddr)
	if !ok || ua == nil {
		return netip.AddrPort{}
	}
	ap := ua.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
