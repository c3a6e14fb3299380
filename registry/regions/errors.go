package regions

import (
	"errors"
	"fmt"
)

// Errors a region or the centre reports; adapters map them to the
// protocol's codes (Alibaba's in parentheses).
var (
	// ErrUnknownDevice: no region holds the device (5001).
	ErrUnknownDevice = errors.New("device not found")
	// ErrBadSign: the sign does not match the device's secret (401).
	ErrBadSign = errors.New("sign does not match")
	// ErrAuthType: the device does not authenticate with a secret
	// (6200).
	ErrAuthType = errors.New("device does not authenticate with a secret")
	// ErrOffline: the device has no session in the region.
	ErrOffline = errors.New("device is not online in the region")
	// ErrUnknownRegion: no region has this id.
	ErrUnknownRegion = errors.New("unknown region")
	// ErrBadToken: an iotToken that is not one the region issued for
	// this device and secret, or that expired.
	ErrBadToken = errors.New("iotToken invalid or expired")
)

// ParamError is a request parameter that is missing or malformed (460).
type ParamError struct {
	Param  string
	Reason string
}

func (e *ParamError) Error() string { return fmt.Sprintf("parameter %s: %s", e.Param, e.Reason) }

// RegionError is a region that could not be asked (unreachable, or an
// answer that makes no sense); nothing was changed by the request.
type RegionError struct {
	Region string
	Err    error
}

func (e *RegionError) Error() string { return fmt.Sprintf("region %s: %v", e.Region, e.Err) }
func (e *RegionError) Unwrap() error { return e.Err }
