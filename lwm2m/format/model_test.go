package format

import "testing"

func TestDefaultModel(t *testing.T) {
	m := DefaultModel()
	tests := []struct {
		obj, res int32
		want     Kind
		ok       bool
	}{
		{0, 0, KindString, true},    // LwM2M Server URI
		{0, 1, KindBoolean, true},   // Bootstrap-Server
		{0, 3, KindOpaque, true},    // Public Key or Identity
		{0, 10, KindInteger, true},  // Short Server ID
		{0, 13, KindUnsigned, true}, // Matching Type
		{0, 17, KindObjLink, true},  // OSCORE Security Mode
		{0, 30, KindString, true},   // RDS Application ID
		{0, 31, KindNone, false},    // beyond the object
		{1, 1, KindInteger, true},   // Lifetime
		{1, 4, KindNone, false},     // Disable (executable)
		{1, 7, KindString, true},    // Binding
		{1, 12, KindTime, true},     // Last Bootstrapped
		{1, 27, KindUnsigned, true}, // Profile ID Hash Algorithm
		{3, 0, KindString, true},    // Manufacturer
		{3, 4, KindNone, false},     // Reboot
		{3, 13, KindTime, true},     // Current Time
		{3, 22, KindObjLink, true},  // ExtDevInfo
		{4, 4, KindString, true},    // IP Addresses
		{4, 13, KindInteger, true},  // Coverage Enhancement Level
		{5, 0, KindOpaque, true},    // Package
		{5, 4, KindNone, false},     // not defined
		{5, 14, KindBoolean, true},  // Automatic Upgrade at Download
		{19, 0, KindOpaque, true},   // Data
		{19, 2, KindTime, true},     // Data Creation Time
		{19, 6, KindNone, false},    // beyond the object
		{2, 0, KindNone, false},     // Access Control: not in the model
		{3, -1, KindNone, false},    // no resource
		{65535, 0, KindNone, false}, // unknown object
		{3, 65535, KindNone, false}, // unknown resource
		{-1, -1, KindNone, false},   // nonsense
		{19, 1 << 20, KindNone, false},
	}
	for _, tc := range tests {
		k, ok := m.Kind(tc.obj, tc.res)
		if k != tc.want || ok != tc.ok {
			t.Errorf("Kind(%d, %d) = %s, %v; want %s, %v", tc.obj, tc.res, k, ok, tc.want, tc.ok)
		}
	}
}

func TestSingleValue(t *testing.T) {
	for _, tc := range []struct {
		p    Path
		want bool
	}{
		{NewPath(3, 0, 0), true},        // Manufacturer
		{NewPath(3, 0, 6), false},       // Available Power Sources: multiple
		{NewPath(3, 0, 6, 0), true},     // one resource instance
		{NewPath(4, 0, 4), false},       // IP Addresses: multiple
		{NewPath(19, 0, 0), false},      // Data: multiple
		{NewPath(5, 0, 3), true},        // State
		{NewPath(3, 0, 4), false},       // Reboot: executable, no value
		{NewPath(3303, 0, 5700), false}, // unknown to the model
		{NewPath(3, 0), false},
		{NewPath(3), false},
	} {
		if got := SingleValue(tc.p); got != tc.want {
			t.Errorf("SingleValue(%s) = %v, want %v", tc.p, got, tc.want)
		}
	}
}
