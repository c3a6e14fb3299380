package main

import (
	"errors"
	"time"

	"github.com/iotgate/iotgate/api"
)

// APILimitsConfig bounds what one REST client can make the API do or
// hold (api.Limits has the details).
type APILimitsConfig struct {
	// Rate (requests a second) and Burst per credential; rate 0
	// disables.
	Rate  float64 `yaml:"rate"`
	Burst int     `yaml:"burst"`
	// UnauthenticatedRate and UnauthenticatedBurst per source address
	// (IPv4 address, IPv6 /64) for failed authentications and device
	// registrations; rate 0 disables.
	UnauthenticatedRate  float64 `yaml:"unauthenticated_rate"`
	UnauthenticatedBurst int     `yaml:"unauthenticated_burst"`
	MaxBodyBytes         int64   `yaml:"max_body_bytes"`
	MaxHeaderBytes       int     `yaml:"max_header_bytes"`
	// Timeouts against slow clients (slowloris).
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	ReadTimeout       time.Duration `yaml:"read_timeout"`
	WriteTimeout      time.Duration `yaml:"write_timeout"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"`
	// MaxConnsPerAddress caps open connections per source address; 0
	// disables.
	MaxConnsPerAddress int `yaml:"max_conns_per_address"`
}

func defaultAPILimits() APILimitsConfig { return APILimitsConfig(api.DefaultLimits()) }

func (l APILimitsConfig) api() api.Limits { return api.Limits(l) }

func (l APILimitsConfig) validate() error {
	switch {
	case l.Rate < 0 || l.UnauthenticatedRate < 0:
		return errors.New("config: limits.api rates must not be negative (0 disables)")
	case l.Rate > 0 && l.Burst < 1, l.UnauthenticatedRate > 0 && l.UnauthenticatedBurst < 1:
		return errors.New("config: limits.api bursts must be at least 1 where a rate is set")
	case l.MaxBodyBytes <= 0 || l.MaxHeaderBytes <= 0:
		return errors.New("config: limits.api.max_body_bytes and max_header_bytes must be positive")
	case l.ReadHeaderTimeout <= 0 || l.ReadTimeout <= 0 || l.WriteTimeout <= 0 || l.IdleTimeout <= 0:
		return errors.New("config: limits.api timeouts must be positive")
	case l.MaxConnsPerAddress < 0:
		return errors.New("config: limits.api.max_conns_per_address must not be negative (0 disables)")
	}
	return nil
}
