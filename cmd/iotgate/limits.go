package main

import (
	"fmt"
	"time"

	"github.com/iotgate/iotgate/mqtt"
	"github.com/iotgate/iotgate/registry/guard"
)

// LimitsConfig holds the abuse controls (configs/iotgate.yaml, limits:):
// the guard's (failed authentications, flapping, bans) and each
// protocol's (API: apilimits.go).
type LimitsConfig struct {
	// AuthFailures and AddressAuthFailures ban an identity, or a source
	// address (IPv4 address, IPv6 /64), for Ban once Max failed
	// authentications fall within Window; Flapping does the same for an
	// identity's accepted connections. Max 0 disables one.
	AuthFailures        WindowConfig `yaml:"auth_failures"`
	AddressAuthFailures WindowConfig `yaml:"address_auth_failures"`
	Flapping            WindowConfig `yaml:"flapping"`
	// MaxTrackedKeys bounds the identities and addresses each counter
	// tracks; MaxBans the automatic bans held, MaxManualBans the manual.
	MaxTrackedKeys int `yaml:"max_tracked_keys"`
	MaxBans        int `yaml:"max_bans"`
	MaxManualBans  int `yaml:"max_manual_bans"`
	// RefusalLogRate and RefusalLogBurst bound the info lines a second
	// that refusals (refused connections, CONNECTs and publishes, bans)
	// write; the lines over it are counted in the next one.
	RefusalLogRate  float64          `yaml:"refusal_log_rate"`
	RefusalLogBurst int              `yaml:"refusal_log_burst"`
	MQTT            MQTTLimitsConfig `yaml:"mqtt"`
	API             APILimitsConfig  `yaml:"api"`
	// Descriptors shares the limit on open files between accepted
	// connections and the rest of the process (descriptors.go).
	Descriptors DescriptorsConfig `yaml:"descriptors"`
}

// WindowConfig is guard.Window in the configuration.
type WindowConfig struct {
	Max    int           `yaml:"max"`
	Window time.Duration `yaml:"window"`
	Ban    time.Duration `yaml:"ban"`
}

// MQTTLimitsConfig bounds what MQTT clients can make the server hold or
// do (mqtt.Limits).
type MQTTLimitsConfig struct {
	MaxConnectBytes      int     `yaml:"max_connect_bytes"`
	MaxPending           int     `yaml:"max_pending"`
	MaxPendingPerAddress int     `yaml:"max_pending_per_address"`
	ConnectRate          float64 `yaml:"connect_rate"`
	ConnectBurst         int     `yaml:"connect_burst"`
	MaxUserProperties    int     `yaml:"max_user_properties"`
	MaxTopicBytes        int     `yaml:"max_topic_bytes"`
	UplinkRate           float64 `yaml:"uplink_rate"`
	UplinkBurst          int     `yaml:"uplink_burst"`
	UplinkBytes          int     `yaml:"uplink_bytes"`
}

func defaultLimits() LimitsConfig {
	g, m := guard.Defaults(), mqtt.DefaultLimits()
	w := func(x guard.Window) WindowConfig { return WindowConfig{Max: x.Max, Window: x.Window, Ban: x.Ban} }
	return LimitsConfig{
		AuthFailures: w(g.IdentityFailures), AddressAuthFailures: w(g.AddressFailures), Flapping: w(g.Flapping),
		MaxTrackedKeys: g.MaxTracked, MaxBans: g.MaxBans, MaxManualBans: g.MaxManualBans,
		RefusalLogRate: m.RefusalLogRate, RefusalLogBurst: m.RefusalLogBurst,
		API: defaultAPILimits(),
		MQTT: MQTTLimitsConfig{
			MaxConnectBytes: m.MaxConnectBytes, MaxPending: m.MaxPending, MaxPendingPerAddress: m.MaxPendingPerAddress,
			ConnectRate: m.ConnectRate, ConnectBurst: m.ConnectBurst, MaxUserProperties: m.MaxUserProperties,
			MaxTopicBytes: m.MaxTopicBytes, UplinkRate: m.UplinkRate, UplinkBurst: m.UplinkBurst, UplinkBytes: m.UplinkBytes,
		},
	}
}

func (l LimitsConfig) validate() error {
	if err := l.Descriptors.validate(); err != nil {
		return err
	}
	for name, w := range map[string]WindowConfig{"auth_failures": l.AuthFailures,
		"address_auth_failures": l.AddressAuthFailures, "flapping": l.Flapping} {
		if w.Max < 0 {
			return fmt.Errorf("config: limits.%s.max must not be negative", name)
		}
		if w.Max > 0 && (w.Window <= 0 || w.Ban <= 0) {
			return fmt.Errorf("config: limits.%s: window and ban must be positive when max is set", name)
		}
	}
	m := l.MQTT
	if m.MaxConnectBytes != 0 && m.MaxConnectBytes < 128 {
		return fmt.Errorf("config: limits.mqtt.max_connect_bytes %d is too small for a CONNECT (at least 128)", m.MaxConnectBytes)
	}
	if m.MaxTopicBytes != 0 && m.MaxTopicBytes < 64 {
		return fmt.Errorf("config: limits.mqtt.max_topic_bytes %d is too small for the platform's topics (at least 64)", m.MaxTopicBytes)
	}
	for name, v := range map[string]float64{"refusal_log_rate": l.RefusalLogRate, "mqtt.connect_rate": m.ConnectRate,
		"mqtt.uplink_rate": m.UplinkRate} {
		if v < 0 {
			return fmt.Errorf("config: limits.%s must not be negative", name)
		}
	}
	return nil
}

// guardConfig is the node-local guard's configuration.
func (l LimitsConfig) guardConfig() guard.Config {
	w := func(x WindowConfig) guard.Window { return guard.Window{Max: x.Max, Window: x.Window, Ban: x.Ban} }
	return guard.Config{IdentityFailures: w(l.AuthFailures), AddressFailures: w(l.AddressAuthFailures),
		Flapping: w(l.Flapping), MaxTracked: l.MaxTrackedKeys, MaxBans: l.MaxBans, MaxManualBans: l.MaxManualBans}
}

// mqttLimits is the MQTT server's limits (zero fields take its defaults).
func (l LimitsConfig) mqttLimits() mqtt.Limits {
	m := l.MQTT
	return mqtt.Limits{MaxConnectBytes: m.MaxConnectBytes, MaxPending: m.MaxPending,
		MaxPendingPerAddress: m.MaxPendingPerAddress, ConnectRate: m.ConnectRate, ConnectBurst: m.ConnectBurst,
		MaxUserProperties: m.MaxUserProperties, MaxTopicBytes: m.MaxTopicBytes, UplinkRate: m.UplinkRate,
		UplinkBurst: m.UplinkBurst, UplinkBytes: m.UplinkBytes,
		RefusalLogRate: l.RefusalLogRate, RefusalLogBurst: l.RefusalLogBurst}
}
