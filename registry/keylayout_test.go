package registry

import (
	"net/netip"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/guard"
	"github.com/iotgate/iotgate/registry/kv"
	"github.com/iotgate/iotgate/registry/kv/kvtest"
)

// Every family of keys.go is declared, and the layout is well formed.
func TestStoreLayoutDeclaresEveryFamily(t *testing.T) {
	layout := StoreLayout()
	if err := kv.CheckLayout(layout); err != nil {
		t.Fatal(err)
	}
	declared := map[string]bool{}
	for _, f := range layout {
		declared[f.Name] = true
	}
	consts := kvtest.FamConstants(t, "keys.go")
	if len(consts) < 50 {
		t.Fatalf("found %d fam constants in keys.go: the parser missed them", len(consts))
	}
	for name, v := range consts {
		if !declared[v] {
			t.Errorf("%s (%q) is not declared in StoreLayout (keylayout.go)", name, v)
		}
	}
	// The deadline indexes are byte prefixes, not fam constants.
	for _, p := range [][]byte{expiryPrefix, asyncDeadlinePrefix, downlinkDeadlinePrefix} {
		if !declared[string(p[:len(p)-1])] {
			t.Errorf("deadline family %q is not declared", p)
		}
	}
}

// Keys the registry builds, with its own functions, split by their
// family's layout and put back together, give the same bytes; every
// declared family is exercised.
func TestStoreLayoutRoundTrips(t *testing.T) {
	// Times and positions whose bytes hold 0s and separators.
	at := time.Unix(0, 0x0100_0000_0000_0001)
	pkg := &OTAPackage{ProductID: "prod", PackageType: "firmwarePackage", Version: "v1.0"}
	keys := [][]byte{
		deviceKey("dev_1"), nodeKey("node-1"), productNodeKey("prod", "node-1"), fingerprintKey("ab12"),
		projectDeviceKey("proj", "0011aa"), productDeviceKey("prod", "0011aa"), gatewayDeviceKey("gw", "0011aa"),
		statusTimeKey("dev_1"), expiryKey(at, "dev_1"), productKey("prod"), projectProductKey("proj", "01"),
		certKey("proj", "cert"), projectCountKey("proj"), counterShard(nil, projectCountKey("proj")),
		productCountKey("prod"), counterShard(nil, productCountKey("prod")), counterShard(nil, gatewayCountKey("gw")),
		counterShard(nil, groupCountKey("proj")), counterShard(nil, memberCountKey("grp")),
		asyncKey("cmd"), asyncDeviceKey("dev", "01"), asyncPendingKey("dev", "01"), asyncDeadlineKey(at, "cmd"),
		asyncCountKey("dev"), messageKey("dev", "01"), messageCountKey("dev"), shadowKey("dev"), desiredKey("dev"),
		tagKey("proj", Tag{Key: "k", Value: "值"}, "01"), tagKey("proj", Tag{Key: "k"}, "01"),
		downlinkKey("dev", "msg"), downlinkListKey("dev", "01"), downlinkHeldKey("dev", "01"),
		downlinkDeadlineKey(at, "dev", "msg"), downlinkMetaKey("dev"),
		eventStreamKey(0x0000_0100_0000_0000), eventKey("proj", 0x0000_0000_0000_0100), eventKey("proj", 0),
		eventSeqKey("dev"), eventHorizonKey("proj"), eventConsumerKey("proj", "c"), eventPositionKey,
		eventOutboxKey("dev", 1), eventOutboxKey("dev", 0x0100_0000_0000_0000),
		leaseKey("sweep"), keyCheckKey(), nodeBeatKey("node-a"), presenceKey("dev"),
		banKey(guard.Target{Identity: "client-1"}), banKey(guard.Target{Prefix: netip.MustParsePrefix("10.0.0.0/8")}), routingRuleKey("proj", "r"), ruleActionKey("proj", "a"),
		flowPolicyKey("proj", "f"), backlogPolicyKey("proj", "b"), sessionRecordKey("dev"), sessionHandleKey("h"),
		groupKey("proj", "grp"), groupNameKey("proj", "名前"), subGroupKey("sup", "grp"), groupMemberKey("grp", "01"),
		deviceGroupKey("dev", "grp"), packageKey("proj", "pkg"), packageVersionKey(pkg), packageChunkKey("pkg", 0),
		packageChunkKey("pkg", 256), upgradeKey("proj", "up"), upgradeItemKey("up", "dev"), firmwareSlotsKey("t:task"),
	}
	kvtest.LayoutRoundTrips(t, StoreLayout(), keys)
}
