package natsbus

import (
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

func TestNoticeRoundTrip(t *testing.T) {
	many := make([]string, 300)
	for i := range many {
		many[i] = strings.Repeat(string(rune('a'+i%26)), i) // lengths past one varint byte
	}
	for i, tc := range []struct {
		name   string
		origin string
		keys   []string
	}{
		{"one key", "node-a", []string{"d/abc"}},
		{"binary keys", "n1", []string{"\x00", "\xff\x00\xff", "a\x00b\xff", "\x80\x81"}},
		{"empty key", "n1", []string{""}},
		{"no keys", "n1", []string{}},
		{"long keys", "node-with-a-32-character-name-00", many},
	} {

		t.Run(tc.name, func(t *testing.T) {
			b := appendKeysNotice(nil, tc.origin, 1<<63+5, uint64(i)+1, tc.keys)
			size := 0
			for _, k := range tc.keys {
				size += keySize(k)
			}
			if got := noticeSize(tc.origin, size, len(tc.keys)); got < len(b) {
				t.Fatalf("noticeSize %d, encoded %d bytes", got, len(b))
			}
			n, err := decodeNotice(b)
			if err != nil {
				t.Fatal(err)
			}
			if n.origin != tc.origin || n.inc != 1<<63+5 || n.seq != uint64(i)+1 || n.keys == nil || !slices.Equal(n.keys, tc.keys) {
				t.Fatalf("decoded %+v, want %q %q", n, tc.origin, tc.keys)
			}
		})
	}
	n, err := decodeNotice(dropAllNotice("node-b", 7, 9))
	if err != nil || n.origin != "node-b" || n.inc != 7 || n.seq != 9 || n.keys != nil {
		t.Fatalf("drop-all decoded as %+v, %v", n, err)
	}
}

func TestNoticeMalformed(t *testing.T) {
	good := appendKeysNotice(nil, "n1", 1, 2, []string{"k1", "k2"})
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"unknown kind", append([]byte{9}, good[1:]...)},
		{"origin past the end", []byte{noticeKeys, 5, 'n'}},
		{"no incarnation", []byte{noticeKeys, 1, 'n'}},
		{"no sequence number", []byte{noticeKeys, 1, 'n', 1}},
		{"no key count", []byte{noticeKeys, 1, 'n', 1, 1}},
		{"key count beyond the bytes", []byte{noticeKeys, 1, 'n', 1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"truncated key", good[:len(good)-1]},
		{"trailing bytes", append(slices.Clone(good), 0)},
		{"drop-all with trailing bytes", append(dropAllNotice("n1", 1, 1), 1)},
		{"bad varint", []byte{noticeKeys, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if n, err := decodeNotice(tc.in); !errors.Is(err, errBadNotice) {
				t.Fatalf("decoded %+v, %v; want errBadNotice", n, err)
			}
		})
	}
}

func FuzzDecodeNotice(f *testing.F) {
	f.Add(appendKeysNotice(nil, "n1", 3, 4, []string{"a", "\x00\xff"}))
	f.Add(dropAllNotice("n2", 5, 6))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := decodeNotice(b)
		if err != nil {
			return
		}
		var again []byte
		if n.keys == nil {
			again = dropAllNotice(n.origin, n.inc, n.seq)
		} else {
			again = appendKeysNotice(nil, n.origin, n.inc, n.seq, n.keys)
		}
		// Varints may come overlong: compare what they mean.
		if m, err := decodeNotice(again); err != nil || m.origin != n.origin || m.inc != n.inc || m.seq != n.seq ||
			(m.keys == nil) != (n.keys == nil) || !slices.Equal(m.keys, n.keys) {
			t.Fatalf("%x decodes to %+v, which encodes to %x, decoding to %+v, %v", b, n, again, m, err)
		}
	})
}

// A receiver drops its cache when it sees a notice number skipped (it
// missed one, or the sender lost one), when another node says it lost
// notices, and on a malformed notice; it ignores its own notices, and
// starts the count afresh for a node it has not heard or that restarted.
func TestReceiveDropsOnGaps(t *testing.T) {
	b := &Bus{o: Options{Node: "me"}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	b.invalidator.init(b, 1)
	var got [][]string
	b.Subscribe(func(keys []string) { got = append(got, keys) })
	keys := func(origin string, inc, seq uint64, k ...string) []byte {
		return appendKeysNotice(nil, origin, inc, seq, k)
	}
	for _, step := range []struct {
		name string
		msg  []byte
		want []string // nil: a drop-all
		none bool     // nothing delivered
	}{
		{"first from a", keys("a", 1, 10, "k1"), []string{"k1"}, false},
		{"next from a", keys("a", 1, 11, "k2"), []string{"k2"}, false},
		{"first from b", keys("b", 9, 1, "k3"), []string{"k3"}, false},
		{"a skips 12", keys("a", 1, 13, "k4"), nil, false},
		{"a counts on", keys("a", 1, 14, "k5"), []string{"k5"}, false},
		{"a restarted", keys("a", 2, 1, "k6"), []string{"k6"}, false},
		{"own notice", keys("me", 3, 1, "k7"), nil, true},
		{"own notice with a gap", keys("me", 3, 5, "k8"), nil, true},
		{"b lost notices", dropAllNotice("b", 9, 2), nil, false},
		{"b after its drop-all", keys("b", 9, 3, "k9"), []string{"k9"}, false},
		{"b's drop-all lost too", keys("b", 9, 5, "k10"), nil, false},
		{"malformed", []byte{0xee}, nil, false},
	} {
		got = nil
		b.invalidator.receive(&nats.Msg{Data: step.msg})
		switch {
		case step.none && len(got) != 0:
			t.Errorf("%s: delivered %q", step.name, got)
		case step.none:
		case len(got) != 1 || (got[0] == nil) != (step.want == nil) || !slices.Equal(got[0], step.want):
			t.Errorf("%s: delivered %q, want [%q] (nil: drop-all)", step.name, got, step.want)
		}
	}
}
