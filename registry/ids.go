package registry

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"sync/atomic"
	"time"
)

// seqGen makes IoTDA-style 24-hex markers: 4 bytes of seconds then an
// 8-byte counter, so markers sort by creation and never repeat within a
// process; the counter starts from the clock so restarts keep increasing.
type seqGen struct{ n atomic.Uint64 }

func newSeqGen(now time.Time) *seqGen {
	g := &seqGen{}
	g.n.Store(uint64(now.UnixNano()))
	return g
}

func (g *seqGen) next(now time.Time) string {
	var b [12]byte
	binary.BigEndian.PutUint32(b[:4], uint32(now.Unix()))
	binary.BigEndian.PutUint64(b[4:], g.n.Add(1))
	return hex.EncodeToString(b[:])
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
