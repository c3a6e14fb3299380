package main

import (
	"log/slog"

	"github.com/iotgate/iotgate/api"
	"github.com/iotgate/iotgate/registry"
)

// wiring builds the protocol listeners and hands the API the interfaces
// they implement (command and message delivery). Each protocol adds
// itself here and nowhere else.
type wiring struct {
	cfg *Config
	log *slog.Logger
	reg *registry.Registry
}

func (w *wiring) listeners() ([]listener, api.Options, error) {
	var ls []listener
	var opts api.Options
	return ls, opts, nil
}
