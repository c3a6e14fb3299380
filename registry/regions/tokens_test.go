package regions

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry"
)

func TestTokens(t *testing.T) {
	now := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	toks := NewTokens([]byte("master key of region one 0123456"), 0)
	d := &registry.Device{DeviceID: "a1TESTPK001_dev1", Auth: registry.AuthInfo{Secret: "s1"}}
	tok := toks.Issue(d, now)
	if len(tok) > 64 {
		t.Fatalf("token %q is %d characters; iotkit keeps 64", tok, len(tok))
	}
	if err := toks.Check(d, tok, now.Add(DefaultTokenTTL-time.Second)); err != nil {
		t.Fatalf("fresh token refused: %v", err)
	}
	other := *d
	other.DeviceID = "a1TESTPK001_dev2"
	reset := *d
	reset.Auth.Secret = "s2"
	exp, sig, _ := strings.Cut(tok, ".")
	tests := []struct {
		name  string
		d     *registry.Device
		token string
		at    time.Time
	}{
		{"expired", d, tok, now.Add(DefaultTokenTTL)},
		{"another device", &other, tok, now},
		{"secret reset", &reset, tok, now},
		{"another region's key", d, NewTokens([]byte("master key of region two 0123456"), 0).Issue(d, now), now},
		{"expiry extended", d, "zzzzzz." + sig, now},
		{"no dot", d, exp + sig, now},
		{"empty", d, "", now},
		{"flipped byte", d, tok[:len(tok)-1] + "A", now},
	}
	for _, tt := range tests {
		if tt.name == "flipped byte" && strings.HasSuffix(tok, "A") {
			tt.token = tok[:len(tok)-1] + "B"
		}
		if err := toks.Check(tt.d, tt.token, tt.at); !errors.Is(err, ErrBadToken) {
			t.Errorf("%s: Check = %v, want ErrBadToken", tt.name, err)
		}
	}
}
