package transport

import (
	"container/list"
	"net/netip"
)

// knownAddrs remembers the IP addresses of the last clients that
// completed a handshake, least recently first dropped. Such an address
// has proved it receives (a handshake needs pion's cookie echoed), and
// an NB-IoT device mostly comes back from the address it left, so its
// new handshakes need not queue behind a flood of ClientHellos from
// spoofed addresses (see newConnLocked). Not safe for concurrent use:
// the mux guards it.
type knownAddrs struct {
	max   int
	order list.List // of netip.Addr, most recent last
	at    map[netip.Addr]*list.Element
}

func newKnownAddrs(max int) *knownAddrs {
	return &knownAddrs{max: max, at: make(map[netip.Addr]*list.Element)}
}

// add records a that completed a handshake.
func (k *knownAddrs) add(a netip.Addr) {
	if k.max <= 0 {
		return
	}
	if e := k.at[a]; e != nil {
		k.order.MoveToBack(e)
		return
	}
	if k.order.Len() >= k.max {
		old := k.order.Front()
		delete(k.at, old.Value.(netip.Addr))
		k.order.Remove(old)
	}
	k.at[a] = k.order.PushBack(a)
}

func (k *knownAddrs) has(a netip.Addr) bool { return k.at[a] != nil }
