package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/iotgate/iotgate/registry/kv/badgerkv"
)

func TestProductSecretSealedAndMatched(t *testing.T) {
	r, s := newTestRegistry(t, nil)
	ctx := context.Background()
	if _, err := r.CreateProduct(ctx, Product{ProjectID: "p", ProductID: "a1TESTPK001", Name: "x", DeviceType: "x",
		ProtocolType: "MQTT", ProductSecret: "prodSecretABC"}); err != nil {
		t.Fatal(err)
	}
	_ = s.View(context.Background(), func(rd Reader) error {
		return rd.Scan(nil, nil, false, func(k, v []byte) (bool, error) {
			if bytes.Contains(v, []byte("prodSecretABC")) {
				t.Errorf("product secret in plaintext under %q", k)
			}
			return true, nil
		})
	})
	p, err := r.Product(ctx, "p", "a1TESTPK001")
	if err != nil || p.ProductSecret != "prodSecretABC" {
		t.Fatalf("product secret: %v %q", err, p.ProductSecret)
	}
	// Reference §3 vector.
	mac, _ := hex.DecodeString("1D7772FF22CC93AC220B4289323476655315B27CC92C9072527BA39FE40763D6")
	proof := HMACProof{Hash: sha256.New, SecretIsKey: true, Data: []byte("deviceNamedev1productKeya1TESTPK001random8Ygb7ULYh53B6OA")}
	if !p.MatchProductSecret(proof, mac) {
		t.Fatal("reference vector does not match")
	}
	newSecret, err := r.ResetProductSecret(ctx, "p", "a1TESTPK001")
	if err != nil || len(newSecret) != 32 {
		t.Fatal(err)
	}
	if p, _ = r.Product(ctx, "p", "a1TESTPK001"); p.MatchProductSecret(proof, mac) {
		t.Fatal("old product secret still matches after reset")
	}
}

func TestQuotas(t *testing.T) {
	s, _ := badgerkv.Open(badgerkv.Options{InMemory: true, Queues: Queues()})
	r, _ := New(Options{Store: s, MasterKey: make([]byte, 32), Quotas: Quotas{DevicesPerProduct: 3, SubDevicesPerGateway: 1}})
	defer func() { r.Close(); s.Close() }()
	ctx := context.Background()
	mustProduct(t, r, "p", "m", "MQTT")
	for _, n := range []string{"gw", "a"} {
		if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "p", ProductID: "m", NodeID: n}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "p", ProductID: "m", NodeID: "sub1", GatewayID: "m_gw"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "p", ProductID: "m", NodeID: "b"}); !errors.Is(err, ErrQuota) {
		t.Fatalf("4th device of a 3-device product: %v", err)
	}
	mustProduct(t, r, "p", "m2", "MQTT")
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "p", ProductID: "m2", NodeID: "sub2", GatewayID: "m_gw"}); !errors.Is(err, ErrQuota) {
		t.Fatalf("2nd sub-device of a 1-sub-device gateway: %v", err)
	}
	if n, _ := r.ProductDeviceCount(ctx, "m2"); n != 0 {
		t.Fatalf("refused create wrote a device: %d", n)
	}
	// Deleting the sub-device frees the slot.
	if err := r.DeleteDevice(ctx, "p", "m_sub1"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "p", ProductID: "m2", NodeID: "sub2", GatewayID: "m_gw"}); err != nil {
		t.Fatalf("after freeing the slot: %v", err)
	}
}

func TestClientIDs(t *testing.T) {
	r, _ := newTestRegistry(t, nil)
	ctx := context.Background()
	if _, err := r.CreateProduct(ctx, Product{ProjectID: "p", ProductID: "pk", Name: "x", DeviceType: "x", ProtocolType: "MQTT",
		DynamicRegistration: true}); err != nil {
		t.Fatal(err)
	}
	yes := func(*Product) bool { return true }
	if _, _, err := r.RegisterClientID(ctx, "pk", "dn", func(*Product) bool { return false }); !errors.Is(err, ErrSignature) {
		t.Fatalf("bad proof: %v", err)
	}
	if _, _, err := r.RegisterClientID(ctx, "pk", "dn", yes); !errors.Is(err, ErrDynRegDisabled) {
		t.Fatalf("preregistration-free off: %v", err)
	}
	on := true
	if _, err := r.UpdateProduct(ctx, "p", "pk", ProductUpdate{PreregistrationFree: &on}); err != nil {
		t.Fatal(err)
	}
	var ids []ClientID
	for i := 0; i < 5; i++ {
		d, c, err := r.RegisterClientID(ctx, "pk", "dn", yes)
		if err != nil {
			t.Fatal(err)
		}
		if d.DeviceID != "pk_dn" || len(c.Token) != 32 {
			t.Fatalf("registration %d: %+v %+v", i, d, c)
		}
		ids = append(ids, c)
	}
	if _, _, err := r.RegisterClientID(ctx, "pk", "dn", yes); !errors.Is(err, ErrQuota) {
		t.Fatalf("6th physical device: %v", err)
	}
	for _, c := range ids {
		if _, err := r.CheckClientToken(ctx, "pk", "dn", c.ClientID, c.Token); err != nil {
			t.Fatalf("token of %s: %v", c.ClientID, err)
		}
	}
	if _, err := r.CheckClientToken(ctx, "pk", "dn", ids[0].ClientID, ids[1].Token); !errors.Is(err, ErrClientIDRefused) {
		t.Fatalf("token of another client id accepted: %v", err)
	}
	if _, err := r.KeepClientID(ctx, "p", "pk_dn", ids[2].ClientID); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CheckClientToken(ctx, "pk", "dn", ids[0].ClientID, ids[0].Token); !errors.Is(err, ErrClientIDRefused) {
		t.Fatalf("switched-away client id accepted: %v", err)
	}
	if _, err := r.CheckClientToken(ctx, "pk", "dn", ids[2].ClientID, ids[2].Token); err != nil {
		t.Fatalf("kept client id refused: %v", err)
	}
	if _, _, err := r.RegisterClientID(ctx, "pk", "dn", yes); !errors.Is(err, ErrClientIDRefused) {
		t.Fatalf("new physical device after switch: %v", err)
	}
	if _, err := r.ClearClientIDs(ctx, "p", "pk_dn"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CheckClientToken(ctx, "pk", "dn", ids[2].ClientID, ids[2].Token); !errors.Is(err, ErrClientIDRefused) {
		t.Fatalf("cleared client id accepted: %v", err)
	}
	if _, _, err := r.RegisterClientID(ctx, "pk", "dn", yes); err != nil {
		t.Fatalf("register after clear: %v", err)
	}
}

// TestProductCacheFollowsWrites: a product read after an acknowledged
// update or delete is never the cached old one.
func TestProductCacheFollowsWrites(t *testing.T) {
	r, _ := newTestRegistry(t, nil)
	ctx := context.Background()
	mustProduct(t, r, "p", "pk", "MQTT")
	if p, err := r.Product(ctx, "p", "pk"); err != nil || p.DynamicRegistration {
		t.Fatalf("initial: %v %+v", err, p)
	}
	on := true
	if _, err := r.UpdateProduct(ctx, "p", "pk", ProductUpdate{DynamicRegistration: &on}); err != nil {
		t.Fatal(err)
	}
	if p, _ := r.ProductByID(ctx, "pk"); !p.DynamicRegistration {
		t.Fatal("cached product served after an update")
	}
	p, _ := r.ProductByID(ctx, "pk")
	p.Name = "mutated by a caller"
	if q, _ := r.ProductByID(ctx, "pk"); q.Name == p.Name {
		t.Fatal("callers share the cached product")
	}
	if err := r.DeleteProduct(ctx, "p", "pk"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ProductByID(ctx, "pk"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted product still served: %v", err)
	}
}
