package registry

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"sync/atomic"
	"time"
)

// NodeIDs is the IDGenerator of one node: IoTDA-style 24-hex markers of
// 4 bytes of seconds, 3 bytes naming the node (a hash of its id) and a
// 5-byte counter. Markers sort by creation second, never repeat within a
// node (the counter starts from the clock, so restarts keep increasing)
// and differ between nodes whose ids hash differently (a collision among
// n nodes has odds of about n²/2²⁵; ten nodes: 3 in a million, checked
// when a cluster's nodes meet).
type NodeIDs struct {
	node uint64 // 24 bits
	n    atomic.Uint64
}

var _ IDGenerator = (*NodeIDs)(nil)

// NewNodeIDs returns the generator of the named node ("" on a single node).
func NewNodeIDs(node string, now time.Time) *NodeIDs {
	g := &NodeIDs{node: nodeHash(node)}
	g.n.Store(uint64(now.UnixNano()))
	return g
}

// Next returns a new marker.
func (g *NodeIDs) Next(now time.Time) string {
	var b [12]byte
	binary.BigEndian.PutUint32(b[:4], uint32(now.Unix()))
	binary.BigEndian.PutUint64(b[4:], g.node<<40|g.n.Add(1)&(1<<40-1))
	return hex.EncodeToString(b[:])
}

// nodeHash is 24 bits of FNV-1a of a node id: the same on every node.
func nodeHash(node string) uint64 {
	h := uint32(2166136261)
	for i := 0; i < len(node); i++ {
		h = (h ^ uint32(node[i])) * 16777619
	}
	return uint64(h>>8^h&0xff) & (1<<24 - 1)
}

// NewSecret returns 32 lowercase hex characters (16 random bytes), which
// is also a valid NB-IoT DTLS pre-shared key.
func NewSecret() string { return randomHex(16) }

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b)
}
