package transport

import (
	"crypto/rand"
	"hash/fnv"
)

// On a cluster, the DTLS Connection IDs a node hands out begin with its
// node tag: a node that receives a record whose CID another node issued
// finds that node by the tag and forwards the datagram to it (see
// Forwarder), so that a non-sticky UDP load balancer may send a session's
// records to any node. The rest of the CID is random. pion parses CID
// records by length, so every CID of a node, tagged or not, has one
// length.

// NodeTagSize is the length of the node tag at the head of a CID.
const NodeTagSize = 2

// NodeTag is the tag of the node named node: the 16-bit FNV-1a hash of
// its name, folded. Two node names can share a tag (about one pair in
// 65,536); Forwarder.SetPeers reports such a pair, and one of the nodes
// must be renamed.
type NodeTag uint16

// TagOf is the tag of the node named node.
func TagOf(node string) NodeTag {
	h := fnv.New32a()
	_, _ = h.Write([]byte(node))
	s := h.Sum32()
	return NodeTag(s>>16 ^ s&0xffff)
}

// TaggedCIDGenerator is a pion ConnectionIDGenerator for a node of a
// cluster: CIDs of size bytes (more than NodeTagSize), the node's tag
// first, then random bytes.
func TaggedCIDGenerator(tag NodeTag, size int) func() []byte {
	return func() []byte {
		cid := make([]byte, size)
		cid[0], cid[1] = byte(tag>>8), byte(tag)
		if _, err := rand.Read(cid[NodeTagSize:]); err != nil {
			// crypto/rand does not fail on the platforms Go supports; a CID
			// that is not random would let sessions collide.
			panic("transport: crypto/rand: " + err.Error())
		}
		return cid
	}
}

// cidTag is the node tag at the head of cid (false: too short to have one).
func cidTag(cid string) (NodeTag, bool) {
	if len(cid) < NodeTagSize {
		return 0, false
	}
	return NodeTag(cid[0])<<8 | NodeTag(cid[1]), true
}
