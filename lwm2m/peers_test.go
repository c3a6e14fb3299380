package lwm2m

import (
	"net"
	"net/netip"
	"runtime"
	"testing"
)

func TestPeerIndex(t *testing.T) {
	x := newPeerIndex()
	a, b := &entry{id: "a"}, &entry{id: "b"}
	p1, p2 := netip.MustParseAddrPort("10.0.0.1:5683"), netip.MustParseAddrPort("10.0.0.1:5684")
	x.put(p1, netip.AddrPort{}, a)
	if x.get(p1) != a || x.get(p2) != nil {
		t.Fatal("put/get")
	}
	x.put(p2, p1, a) // a moved: its old address leads nowhere
	if x.get(p1) != nil || x.get(p2) != a {
		t.Fatal("move")
	}
	x.put(p2, netip.AddrPort{}, b) // b took the address over
	x.drop(p2, a)                  // a's end does not drop b
	if x.get(p2) != b {
		t.Fatal("drop of a removed b")
	}
	x.drop(p2, b)
	if x.get(p2) != nil {
		t.Fatal("drop")
	}
	// An IPv4-mapped IPv6 address is its IPv4 one.
	mapped := &net.UDPAddr{IP: net.ParseIP("::ffff:10.0.0.1"), Port: 5683}
	if addrPortOf(mapped) != p1 || addrPortOf((*net.UDPAddr)(nil)).IsValid() {
		t.Fatal("addrPortOf")
	}
}

// BenchmarkPeerIndexMemory reports the heap an index of b.N NoSec
// registrations takes, per registration (BENCHMARKS.md; run with
// -benchtime=100000x).
func BenchmarkPeerIndexMemory(b *testing.B) {
	es := make([]entry, b.N)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	x := newPeerIndex()
	for i := range es {
		ap := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), uint16(40000+i%1000))
		x.put(ap, netip.AddrPort{}, &es[i])
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(b.N), "bytes/registration")
	runtime.KeepAlive(x)
}
