package activation

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iotgate/iotgate/registry/regions"
)

// BootstrapMQTT is the centre's Huawei IoTDP-style bootstrap listener
// (reference activation.md, Huawei docs iot_03_0003): a device connects
// as it would to IoTDA (ClientId {device_id}_0_{0|1}_{YYYYMMDDHH},
// username its device id, password hex HMAC-SHA256(key = timestamp,
// secret)), subscribes to $oc/devices/{device_id}/sys/bootstrap/down,
// publishes on .../sys/bootstrap/up, and receives
// {"address":"host:port"} of its region on the down topic. The
// credential is checked by the region holding the device (the centre
// holds no secret). A connection may do nothing else, and is closed
// BootstrapLinger after it got its answer.
type BootstrapMQTT struct {
	broker *mochi.Server
}

// BootstrapLinger is how long a bootstrap connection stays open after
// its answer was sent.
const BootstrapLinger = 5 * time.Second

// BootstrapOptions configures NewBootstrapMQTT.
type BootstrapOptions struct {
	Centre Centre
	// Listen (MQTT) and TLSListen (MQTTS, with TLS) are TCP addresses;
	// empty disables one.
	Listen    string
	TLSListen string
	TLS       *tls.Config
	// TimestampSkew bounds a sign_type 1 ClientId timestamp's distance
	// from our clock; 0 means one hour.
	TimestampSkew time.Duration
	// Guard nil: no bans.
	Guard  Guard
	Logger *slog.Logger
	// Descriptors, when set, wraps both listeners (ListenerWrapper).
	Descriptors ListenerWrapper
}

// NewBootstrapMQTT builds the listener; Start binds it.
func NewBootstrapMQTT(o BootstrapOptions) (*BootstrapMQTT, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.TimestampSkew <= 0 {
		o.TimestampSkew = time.Hour
	}
	caps := mochi.NewDefaultServerCapabilities()
	caps.MaximumQos = 1
	caps.RetainAvailable = 0
	caps.MaximumSessionExpiryInterval = 0
	caps.SharedSubAvailable = 0
	caps.MaximumPacketSize = 4 << 10
	b := &BootstrapMQTT{broker: mochi.New(&mochi.Options{Capabilities: caps, InlineClient: true,
		Logger: slog.New(slog.DiscardHandler)})}
	h := &bootstrapHook{centre: o.Centre, broker: b.broker, skew: o.TimestampSkew, guard: o.Guard, log: o.Logger,
		answers: map[*mochi.Client]regions.Endpoint{}}
	if err := b.broker.AddHook(h, nil); err != nil {
		return nil, err
	}
	tcp := func(id, address string, tc *tls.Config) listeners.Listener {
		if o.Descriptors != nil {
			return newWrappedTCP(id, address, tc, o.Descriptors)
		}
		return listeners.NewTCP(listeners.Config{ID: id, Address: address, TLSConfig: tc})
	}
	if o.Listen != "" {
		if err := b.broker.AddListener(tcp("bootstrap", o.Listen, nil)); err != nil {
			return nil, err
		}
	}
	if o.TLSListen != "" {
		if err := b.broker.AddListener(tcp("bootstrap-tls", o.TLSListen, o.TLS)); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// Start binds the listeners and serves.
func (b *BootstrapMQTT) Start(context.Context) error { return b.broker.Serve() }

// Shutdown closes the listeners and connections.
func (b *BootstrapMQTT) Shutdown(context.Context) error { return b.broker.Close() }

type bootstrapHook struct {
	mochi.HookBase
	centre Centre
	broker *mochi.Server
	skew   time.Duration
	guard  Guard
	log    *slog.Logger

	mu      sync.Mutex
	answers map[*mochi.Client]regions.Endpoint // of authenticated connections
}

func (h *bootstrapHook) ID() string { return "iotgate-bootstrap" }

func (h *bootstrapHook) Provides(b byte) bool {
	switch b {
	case mochi.OnConnectAuthenticate, mochi.OnACLCheck, mochi.OnPublished, mochi.OnDisconnect:
		return true
	}
	return false
}

// parseLogin reads an IoTDA ClientId {device_id}_0_{0|1}_{YYYYMMDDHH}
// whose device id is the username.
func parseLogin(clientID, username, password string) (regions.Login, bool, error) {
	rest, ok := strings.CutPrefix(clientID, username+"_0_")
	if !ok || username == "" {
		return regions.Login{}, false, errors.New("client id is not {device_id}_0_{sign_type}_{YYYYMMDDHH} of the username")
	}
	signType, ts, ok := strings.Cut(rest, "_")
	if !ok || (signType != "0" && signType != "1") || len(ts) != 10 {
		return regions.Login{}, false, errors.New("client id has no sign type 0 or 1 and YYYYMMDDHH timestamp")
	}
	return regions.Login{DeviceID: username, Timestamp: ts, Password: password}, signType == "1", nil
}

func (h *bootstrapHook) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	src := remoteAddr(cl)
	if banned(h.guard, string(pk.Connect.Username), src) {
		h.log.Debug("bootstrap refused: banned", "client_id", pk.Connect.ClientIdentifier)
		return false
	}
	l, checkTime, err := parseLogin(pk.Connect.ClientIdentifier, string(pk.Connect.Username), string(pk.Connect.Password))
	if err == nil && checkTime {
		t, perr := time.Parse("2006010215", l.Timestamp)
		if perr != nil || time.Since(t).Abs() > h.skew {
			err = fmt.Errorf("sign_type 1 timestamp %s is not within %v of platform time", l.Timestamp, h.skew)
		}
	}
	var ep regions.Endpoint
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		ep, err = h.centre.HuaweiBootstrap(ctx, src, l)
		cancel()
		countFailure(h.guard, err, l.DeviceID, src)
	}
	if err != nil {
		level := slog.LevelInfo
		var re *regions.RegionError
		if errors.As(err, &re) {
			level = slog.LevelWarn
		}
		h.log.Log(context.Background(), level, "bootstrap refused", "client_id", pk.Connect.ClientIdentifier, "err", err)
		return false
	}
	h.mu.Lock()
	h.answers[cl] = ep
	h.mu.Unlock()
	return true
}

func remoteAddr(cl *mochi.Client) netip.Addr {
	ap, err := netip.ParseAddrPort(cl.Net.Remote)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func bootstrapTopic(id, dir string) string { return "$oc/devices/" + id + "/sys/bootstrap/" + dir }

// OnACLCheck lets a device publish only on its up topic and subscribe
// only to its down topic.
func (h *bootstrapHook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	id := string(cl.Properties.Username)
	if write {
		return topic == bootstrapTopic(id, "up")
	}
	return topic == bootstrapTopic(id, "down")
}

// OnPublished answers a device's bootstrap request on its down topic.
// The request's body (empty, or {"baseStrategyKeyword":...}) selects
// nothing here: the region is the device's assignment.
func (h *bootstrapHook) OnPublished(cl *mochi.Client, pk packets.Packet) {
	id := string(cl.Properties.Username)
	if pk.TopicName != bootstrapTopic(id, "up") {
		return
	}
	h.mu.Lock()
	ep, ok := h.answers[cl]
	h.mu.Unlock()
	if !ok {
		return
	}
	b, _ := json.Marshal(map[string]string{"address": ep.Address})
	if err := h.broker.Publish(bootstrapTopic(id, "down"), b, false, 1); err != nil {
		h.log.Warn("bootstrap answer not sent", "device_id", id, "err", err)
		return
	}
	h.log.Info("device bootstrapped over MQTT", "device_id", id, "address", ep.Address)
	time.AfterFunc(BootstrapLinger, func() { cl.Stop(errors.New("bootstrap answered")) })
}

func (h *bootstrapHook) OnDisconnect(cl *mochi.Client, _ error, _ bool) {
	h.mu.Lock()
	delete(h.answers, cl)
	h.mu.Unlock()
}
