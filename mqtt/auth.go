package mqtt

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/guard"
)

// Keepalive bounds IoTDA and Alibaba accept, in seconds.
const (
	minKeepalive = 30
	maxKeepalive = 1200
)

// authTimeout bounds the registry work of one CONNECT (a lookup, at most
// one fingerprint write).
const authTimeout = 10 * time.Second

// authRegistry is what authentication needs from the registry.
type authRegistry interface {
	Device(ctx context.Context, id string) (*registry.Device, error)
	LearnFingerprint(ctx context.Context, id, fp string) error
	VerifiedCAPool(ctx context.Context, project string) (*x509.CertPool, error)
	aliAuthRegistry
}

// authHook authenticates a CONNECT in one of two wire formats, told
// apart by their shape (an Alibaba ClientId has '|', its username '&';
// neither can appear in an IoTDA device id):
//
//   - IoTDA: the ClientId and username name the device, which proves
//     itself with an HMAC of its secret as password or, on MQTTS, with a
//     client certificate (below);
//   - Alibaba: clientId|k=v,...| and username DeviceName&ProductKey, for a
//     device secret, a DeviceToken, or a dynamic registration
//     (aliauth.go).
//
// Both check secrets through the registry (Device.MatchSecret), and both
// end in a conn: the identity and topic spaces every other hook reads.
//
// The whole check runs in OnConnect because only there can a hook answer
// with its own CONNACK code (mochi's OnConnectAuthenticate can only say
// "bad username or password", and maps it to 0x05 for MQTT 3).
// OnConnectAuthenticate then admits exactly the clients OnConnect passed:
// those with a conn. No OnConnect hook runs after this one, so every
// admitted client reaches OnSessionEstablish and, eventually,
// statusHook's end, which drops its conn.
//
// A device connection gets its device id as mochi client id. mochi keys
// sessions on the client id, so this is what makes a device's new
// connection take over its old one, whatever ClientId it used.
//
// Before any of that, the guard: a CONNECT from a banned address or for
// a banned identity, or with more user properties than the limit, is
// refused with no cryptography and no store lookup; a refusal that
// proves a credential wrong (or names an unknown device) is counted
// against the identity and the address, and an accepted connect against
// the identity's flapping budget.
type authHook struct {
	mochi.HookBase
	reg    authRegistry
	conns  *conns
	log    *slog.Logger
	ctx    context.Context // ends at shutdown
	skew   time.Duration
	now    func() time.Time
	guard  guard.Guard
	limits Limits
	logs   *refusalLog
	stats  *counters
	// iotTokens checks securemode=-1 tokens; nil refuses them.
	iotTokens IotTokenChecker
}

func (h *authHook) ID() string { return "iotgate-auth" }

func (h *authHook) Provides(b byte) bool {
	return b == mochi.OnConnect || b == mochi.OnConnectAuthenticate
}

func (h *authHook) OnConnect(cl *mochi.Client, pk packets.Packet) error {
	identity := connectIdentity(pk)
	addr := remoteAddr(cl.Net.Conn)
	c, r := h.screen(pk, identity, addr)
	if r == nil {
		ctx, cancel := context.WithTimeout(h.ctx, authTimeout)
		if isAlibaba(pk.Connect.ClientIdentifier, pk.Connect.Username) {
			c, r = h.authenticateAlibaba(ctx, cl, pk)
		} else {
			c, r = h.authenticate(ctx, cl, pk)
		}
		cancel()
	}
	if r == nil && c.registration == nil && !h.guard.Connected(identity) {
		r = bannedFlapping
		h.logs.refused("identity banned", "identity", truncate(identity), "remote", addr, "reason", guard.ReasonFlapping)
	}
	if r != nil {
		h.stats.outcomes.refused(r)
		if r.failure != notFailed && h.guard.AuthFailed(identity, addr) {
			h.logs.refused("identity or address banned after failed authentications", "identity", truncate(identity),
				"remote", addr, "listener", cl.Net.Listener)
		}
		// No secret is logged: the password never is, and the ClientId
		// and username carry none.
		if ok, n := h.logs.allow(); ok {
			h.logs.write(n, "mqtt connection refused", "client_id", truncate(pk.Connect.ClientIdentifier),
				"username", truncate(identity), "remote", addr, "listener", cl.Net.Listener,
				"code", fmt.Sprintf("0x%02x", r.code.byteFor(cl)), "reason", r.reason)
		}
		if err := r.code.send(cl); err != nil {
			h.log.Debug("connack not sent", "remote", cl.Net.Remote, "err", err)
		}
		return r.code.err
	}
	h.stats.outcomes.connects[connectAccepted].Add(1)
	cl.ID = c.device
	if c.registration != nil {
		cl.ID = registrationClientID()
	}
	h.conns.put(cl, c)
	return nil
}

// screen refuses, before any credential or store work, a CONNECT from a
// banned address or for a banned identity (not authorized, the reason
// for the log only) or with too many user properties.
func (h *authHook) screen(pk packets.Packet, identity string, addr netip.Addr) (*conn, *refusal) {
	switch {
	case h.guard.AddressBanned(addr):
		h.stats.bannedConnects.Add(1)
		return nil, bannedAddress
	case h.guard.IdentityBanned(identity):
		h.stats.bannedConnects.Add(1)
		return nil, bannedIdentity
	case len(pk.Properties.User) > h.limits.MaxUserProperties:
		h.stats.oversizedConnects.Add(1)
		return nil, refuse(tooLarge, "%d user properties, at most %d", len(pk.Properties.User), h.limits.MaxUserProperties)
	}
	return nil, nil
}

// The refusals of banned clients, made once: a flood of them allocates
// nothing for its answers.
var (
	bannedAddress  = &refusal{code: notAuthorized, reason: "address banned", banned: true}
	bannedIdentity = &refusal{code: notAuthorized, reason: "identity banned", banned: true}
	bannedFlapping = &refusal{code: notAuthorized, reason: "banned: " + guard.ReasonFlapping, banned: true}
)

// connectIdentity is what the guard counts and bans a CONNECT by: its
// username (IoTDA: the device id, which must be the ClientId's;
// Alibaba: DeviceName&ProductKey), or its ClientId if it has none. An
// IoTDA ClientId starts with the username, which is then taken from it
// without a copy (the guard copies what it keeps).
func connectIdentity(pk packets.Packet) string {
	u, cid := pk.Connect.Username, pk.Connect.ClientIdentifier
	switch {
	case len(u) == 0:
		return cid
	case len(cid) >= len(u) && cid[:len(u)] == string(u):
		return cid[:len(u)]
	}
	return string(u)
}

func (h *authHook) OnConnectAuthenticate(cl *mochi.Client, _ packets.Packet) bool {
	return h.conns.get(cl) != nil
}

// authenticate checks an IoTDA CONNECT and returns the device's
// connection, or why not. Credentials are checked before the device's
// state, so a client that cannot prove it is the device learns nothing
// about it.
func (h *authHook) authenticate(ctx context.Context, cl *mochi.Client, pk packets.Packet) (*conn, *refusal) {
	if r := checkKeepalive(pk); r != nil {
		return nil, r
	}
	cid, err := parseClientID(pk.Connect.ClientIdentifier)
	if err != nil {
		return nil, refuse(identifierRejected, "malformed client id: %v", err)
	}
	if string(pk.Connect.Username) != cid.DeviceID {
		return nil, refuse(identifierRejected, "username is not the client id's device id")
	}
	if cid.TimeChecked {
		err := checkTimestamp(cid.Timestamp, h.now().UTC(), h.skew)
		if errors.Is(err, errStaleTimestamp) {
			return nil, reject(badCredentials, failedStaleTimestamp, "sign_type 1 timestamp %s is more than %v from platform time", cid.Timestamp, h.skew)
		}
		if err != nil {
			return nil, refuse(identifierRejected, "malformed client id: %v", err)
		}
	}
	d, err := h.reg.Device(ctx, cid.DeviceID)
	if errors.Is(err, registry.ErrNotFound) {
		return nil, reject(badCredentials, failedUnknownDevice, "unknown device")
	}
	if err != nil {
		return nil, refuse(serverUnavailable, "device lookup: %v", err)
	}
	tc := tlsState(cl)
	if d.Auth.Type == registry.AuthCertificates {
		if r := h.checkCertificate(ctx, d, tc); r != nil {
			return nil, r
		}
	} else if r := h.checkSecret(d, cid, pk.Connect.Password, tc != nil); r != nil {
		return nil, r
	}
	if d.Frozen {
		return nil, refuse(notAuthorized, "device is frozen")
	}
	return &conn{device: d.DeviceID, project: d.ProjectID, self: owner{a: d.DeviceID}, spaces: huaweiSpaces}, nil
}

// checkKeepalive refuses a keepalive outside 30–1200 s (IoTDA and
// Alibaba alike) as identifier rejected.
func checkKeepalive(pk packets.Packet) *refusal {
	if ka := pk.Connect.Keepalive; ka < minKeepalive || ka > maxKeepalive {
		return refuse(identifierRejected, "keepalive %d s is outside %d–%d s", ka, minKeepalive, maxKeepalive)
	}
	return nil
}

// checkSecret verifies the password: lowercase or uppercase hex of
// HMAC-SHA256(key = ClientId timestamp, message = secret), with the
// primary or the secondary secret.
func (h *authHook) checkSecret(d *registry.Device, cid clientID, password []byte, secure bool) *refusal {
	if d.Auth.SecureAccess && !secure {
		return refuse(badCredentials, "device has secure_access and must use MQTTS")
	}
	var mac [sha256.Size]byte
	if len(password) != hex.EncodedLen(len(mac)) {
		return reject(badCredentials, failedBadSecret, "wrong password")
	}
	if _, err := hex.Decode(mac[:], password); err != nil {
		return reject(badCredentials, failedBadSecret, "wrong password")
	}
	h.stats.credentialChecks.Add(1)
	slot, ok := d.MatchSecret(registry.HMACProof{Hash: sha256.New, Data: []byte(cid.Timestamp)}, mac[:])
	if !ok {
		return reject(badCredentials, failedBadSecret, "wrong password")
	}
	if slot == registry.Secondary {
		h.log.Debug("device authenticated with its secondary secret", "device", d.DeviceID)
	}
	return nil
}

// tlsState returns the TLS state of a client's connection, nil on plain
// MQTT. The handshake is complete: mochi has read the CONNECT through it.
func tlsState(cl *mochi.Client) *tls.ConnectionState {
	nc := cl.Net.Conn
	if p, ok := nc.(*primedConn); ok {
		nc = p.Conn
	}
	c, ok := nc.(*tls.Conn)
	if !ok {
		return nil
	}
	cs := c.ConnectionState()
	return &cs
}

// refusal is a refused CONNECT: the answer, and why (for the log only;
// the client is not told more than the code).
type refusal struct {
	code   connackCode
	reason string
	// failure is why authentication failed (a credential proven wrong,
	// an unknown device), counted by the guard; notFailed for other
	// refusals.
	failure authFailure
	// banned: refused because a ban holds.
	banned bool
}

func refuse(c connackCode, format string, a ...any) *refusal {
	return &refusal{code: c, reason: fmt.Sprintf(format, a...)}
}

// reject is refuse for a failed authentication.
func reject(c connackCode, why authFailure, format string, a ...any) *refusal {
	r := refuse(c, format, a...)
	r.failure = why
	return r
}

// connackCode is a refusal as MQTT 3.1.1 return code and MQTT 5 reason
// code, the latter also as the error OnConnect returns (boxed once, so
// returning it does not allocate).
type connackCode struct {
	v3     byte
	v5     packets.Code
	err    error
	result connectResult // what Stats.Connects counts it as
}

func newConnackCode(v3 byte, v5 packets.Code, r connectResult) connackCode {
	return connackCode{v3, v5, v5, r}
}

var (
	identifierRejected = newConnackCode(0x02, packets.ErrClientIdentifierNotValid, connectIdentifierRejected) // 0x85
	serverUnavailable  = newConnackCode(0x03, packets.ErrServerUnavailable, connectServerUnavailable)         // 0x88
	badCredentials     = newConnackCode(0x04, packets.ErrBadUsernameOrPassword, connectBadCredentials)        // 0x86
	notAuthorized      = newConnackCode(0x05, packets.ErrNotAuthorized, connectNotAuthorized)                 // 0x87
	// tooLarge refuses what only MQTT 5 can send (user properties).
	tooLarge = newConnackCode(0x03, packets.ErrPacketTooLarge, connectTooLarge) // 0x95
)

func (c connackCode) byteFor(cl *mochi.Client) byte {
	if cl.Properties.ProtocolVersion == 5 {
		return c.v5.Code
	}
	return c.v3
}

// send writes the refusing CONNACK (session present 0, no properties),
// straight to the connection: nothing else writes to it before the
// CONNACK, and a flood of refusals then costs no encoding. mochi closes
// the connection after.
func (c connackCode) send(cl *mochi.Client) error {
	if cl.Net.Conn == nil {
		return mochi.ErrConnectionClosed
	}
	b := [...]byte{0x20, 2, 0, c.byteFor(cl), 0}
	n := 4
	if cl.Properties.ProtocolVersion == 5 {
		b[1], n = 3, 5 // and a zero properties length
	}
	_, err := cl.Net.Conn.Write(b[:n])
	return err
}
