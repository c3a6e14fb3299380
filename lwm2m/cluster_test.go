package lwm2m

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/iotgate/iotgate/lwm2m/transport"
	"github.com/iotgate/iotgate/registry"
)

func TestForwardPeers(t *testing.T) {
	adv := func(a string) map[string]string { return map[string]string{AdvertiseCoAPForward: a, "other": "x"} }
	for _, tc := range []struct {
		name  string
		nodes []registry.NodeInfo
		peers []transport.Peer
		bad   []string
	}{
		{"none", nil, []transport.Peer{}, nil},
		{"ipv4 and ipv6", []registry.NodeInfo{{Node: "a", Advertise: adv("10.0.0.1:7001")}, {Node: "b", Advertise: adv("[fd00::2]:7001")}},
			[]transport.Peer{{Node: "a", Forward: netip.MustParseAddrPort("10.0.0.1:7001")}, {Node: "b", Forward: netip.MustParseAddrPort("[fd00::2]:7001")}}, nil},
		{"no forward address", []registry.NodeInfo{{Node: "a"}, {Node: "b", Advertise: map[string]string{"other": "1.2.3.4:5"}}},
			[]transport.Peer{{Node: "a"}, {Node: "b"}}, nil},
		{"bad addresses left out", []registry.NodeInfo{{Node: "a", Advertise: adv("host:7001")}, {Node: "b", Advertise: adv("10.0.0.2:0")},
			{Node: "c", Advertise: adv("10.0.0.3:7001")}},
			[]transport.Peer{{Node: "c", Forward: netip.MustParseAddrPort("10.0.0.3:7001")}}, []string{"a", "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			peers, bad := forwardPeers(tc.nodes)
			var badNames []string
			for _, n := range bad {
				badNames = append(badNames, n.Node)
			}
			if !slices.Equal(peers, tc.peers) || !slices.Equal(badNames, tc.bad) {
				t.Fatalf("peers %v bad %v, want %v %v", peers, badNames, tc.peers, tc.bad)
			}
		})
	}
}
