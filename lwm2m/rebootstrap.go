package lwm2m

import (
	"context"
	"log/slog"

	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/iotgate/iotgate/registry"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// Resources of the LwM2M Server object (1) a re-bootstrap executes.
const (
	resRegistrationUpdateTrigger = 8
	resBootstrapRequestTrigger   = 9 // LwM2M 1.1
)

// NotifyBootstrap tells the device, registered here, to bootstrap again
// (the activation centre moved it to another region; regions.Notifier).
// It executes the Bootstrap-Request Trigger (/1/x/9, LwM2M 1.1), after
// which the client bootstraps. A client without it (LwM2M 1.0, Wakaama:
// 4.05) is de-registered instead: its registration ends here (the device
// goes offline) and the Registration Update Trigger (/1/x/8) has it send
// an Update now, answered 4.04; a client whose registration fails
// bootstraps again (Bootstrap on Registration Failure, /1/x/16, true by
// default). An asleep client is de-registered and learns at its next
// Update. registry.ErrNotConnected (ErrNotRegistered) when the device has
// no registration here.
func (s *Server) NotifyBootstrap(ctx context.Context, d *registry.Device) error {
	e := s.store.device(d.DeviceID)
	if e == nil {
		return ErrNotRegistered
	}
	inst := serverInstance(e.reg.Load())
	if e.awake(s.now(), s.o.QueueWindow) {
		resp, err := s.perform(ctx, e, &Operation{Name: OpExecute, Path: format.NewPath(1, inst, resBootstrapRequestTrigger)})
		if err == nil && resp.Code == codes.Changed {
			s.log.Info("lwm2m client told to bootstrap again", "device_id", e.deviceID, "how", "bootstrap-request trigger")
			return nil
		}
	}
	// Hold the session before the registration goes, so the trigger
	// still reaches the client; the Update it sends then finds nothing.
	cc, release, herr := s.hold(e)
	if s.store.remove(e) {
		s.end(e, "moved to another region", false, slog.LevelInfo)
	}
	if herr != nil {
		return nil // the next Update finds no registration
	}
	defer release()
	if !e.awake(s.now(), s.o.QueueWindow) {
		return nil
	}
	req, err := cc.NewPostRequest(ctx, format.NewPath(1, inst, resRegistrationUpdateTrigger).String(), message.TextPlain, nil)
	if err != nil {
		return nil
	}
	defer cc.ReleaseMessage(req)
	s.stats.messagesOut.Add(1)
	resp, err := cc.Do(req)
	if err != nil {
		s.log.Info("lwm2m client de-registered; its update trigger got no answer", "device_id", e.deviceID, "err", err)
		return nil
	}
	defer cc.ReleaseMessage(resp)
	s.log.Info("lwm2m client told to bootstrap again", "device_id", e.deviceID, "how", "de-registration and update trigger",
		"code", resp.Code().String())
	return nil
}

// serverInstance is the Server object instance the client registered
// (the one for this server: a client that registers with one server
// lists one), 0 when it lists none.
func serverInstance(r *Registration) uint16 {
	for _, l := range r.Objects {
		if l.Path.Depth() == 2 && l.Path.Object == 1 {
			return uint16(l.Path.Instance)
		}
	}
	return 0
}
