package registry

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

func TestMatchSecret(t *testing.T) {
	// IoTDA's published vector: secret 12345678, timestamp 2025041401.
	huawei := HMACProof{Hash: sha256.New, Data: []byte("2025041401")}
	vector, _ := hex.DecodeString("c75150e6cb841417396819e4d2ee4358a416344a03a083e3a8567074ddec820a")

	aliSign := func(secret string) []byte {
		m := hmac.New(sha1.New, []byte(secret))
		m.Write([]byte("clientIdc1deviceNamednproductKeypk"))
		return m.Sum(nil)
	}
	ali := HMACProof{Hash: sha1.New, Data: []byte("clientIdc1deviceNamednproductKeypk"), SecretIsKey: true}

	dev := func(primary, secondary string) *Device {
		return &Device{Auth: AuthInfo{Type: AuthSecret, Secret: primary, SecondarySecret: secondary}}
	}
	tests := []struct {
		name     string
		d        *Device
		p        HMACProof
		mac      []byte
		wantSlot SecretSlot
		wantOK   bool
	}{
		{"vector primary", dev("12345678", "othersecret"), huawei, vector, Primary, true},
		{"vector secondary", dev("othersecret", "12345678"), huawei, vector, Secondary, true},
		{"wrong secret", dev("87654321", ""), huawei, vector, "", false},
		{"other timestamp", dev("12345678", ""), HMACProof{Hash: sha256.New, Data: []byte("2025041402")}, vector, "", false},
		{"truncated mac", dev("12345678", ""), huawei, vector[:31], "", false},
		{"empty mac", dev("12345678", ""), huawei, nil, "", false},
		{"no secrets", &Device{Auth: AuthInfo{Type: AuthCertificates}}, huawei, vector, "", false},
		// The empty secondary must not match the HMAC of an empty secret.
		{"empty secondary", dev("12345678", ""), huawei, HMACProof{Hash: sha256.New, Data: []byte("2025041401")}.sum(""), "", false},
		{"secret as key", dev("alisecret", ""), ali, aliSign("alisecret"), Primary, true},
		{"secret as key, wrong direction", dev("alisecret", ""), HMACProof{Hash: sha1.New, Data: ali.Data}, aliSign("alisecret"), "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			slot, ok := tt.d.MatchSecret(tt.p, tt.mac)
			if slot != tt.wantSlot || ok != tt.wantOK {
				t.Fatalf("MatchSecret = %q, %v; want %q, %v", slot, ok, tt.wantSlot, tt.wantOK)
			}
		})
	}
}
