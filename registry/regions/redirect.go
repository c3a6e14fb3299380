package regions

import (
	"context"
	"errors"
	"fmt"

	"github.com/iotgate/iotgate/registry"
)

// Redirect is a moved device's new endpoint with the credentials to
// connect there, as Alibaba's thing.bootstrap.config.push carries them:
// its iotId and an iotToken issued by the new region (securemode=-1).
// It carries a credential: memory and the authenticated wire only.
type Redirect struct {
	IotID    string `json:"iotId"`
	IotToken string `json:"iotToken"`
	Host     string `json:"host"`
	Port     int    `json:"port"`
}

// ConfigPusher sends a connected Alibaba device its new endpoint
// (thing.bootstrap.config.push); the MQTT server implements it
// (registry.ErrNotConnected when the device has no session there).
type ConfigPusher interface {
	PushBootstrapConfig(ctx context.Context, d *registry.Device, iotID, iotToken, host string, port int) error
}

// IssueToken implements Region: an iotToken for the device, for the
// centre to hand it when it moves here (its sign was checked when it
// first contacted the centre, and the centre's request is
// authenticated).
func (l *Local) IssueToken(ctx context.Context, pk, dn string) (Grant, error) {
	d, err := l.device(ctx, pk, dn)
	if err != nil {
		return Grant{}, err
	}
	if l.Tokens == nil {
		return Grant{}, errors.New("this region issues no iotTokens")
	}
	if d.Auth.Type != registry.AuthSecret || d.Auth.Secret == "" {
		return Grant{}, ErrAuthType
	}
	if len(d.DeviceID) > MaxIotIDLen {
		return Grant{}, &ParamError{Param: "deviceName", Reason: fmt.Sprintf("device id longer than %d characters cannot be an iotId", MaxIotIDLen)}
	}
	return Grant{IotID: d.DeviceID, IotToken: l.Tokens.Issue(d, l.now())}, nil
}

// pushConfig sends d its new endpoint if it is connected over MQTT here;
// false when it is not (or the region has no MQTT server).
func (l *Local) pushConfig(ctx context.Context, d *registry.Device, to *Redirect) (bool, error) {
	if to == nil || l.Pusher == nil {
		return false, nil
	}
	err := l.Pusher.PushBootstrapConfig(ctx, d, to.IotID, to.IotToken, to.Host, to.Port)
	if errors.Is(err, registry.ErrNotConnected) {
		return false, nil
	}
	return err == nil, err
}
