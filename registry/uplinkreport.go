package registry

import (
	"context"
	"encoding/json"
	"fmt"
)

// ReportMessageAndProperties stores an uplink both as a device message
// and as reported properties, in one transaction: a device that is told
// its data was taken (an LwM2M Send's 2.04) finds both kept, and one that
// is not finds neither, so its retransmission stores nothing twice. The
// events (device.message and device.property report) go out as those of
// AddMessage and ReportProperties do.
func (r *Registry) ReportMessageAndProperties(ctx context.Context, deviceID string, m Message, reports []ServiceProperties) error {
	now := r.now().UTC()
	if m.Time.IsZero() {
		m.Time = now
	}
	seq := r.ids.Next(now)
	if m.MessageID == "" {
		m.MessageID = seq
	}
	b, err := json.Marshal(&m)
	if err != nil {
		return fmt.Errorf("encode message: %w", err)
	}
	d, err := r.Device(ctx, deviceID)
	if err != nil {
		return err
	}
	reports = append([]ServiceProperties(nil), reports...)
	for i := range reports {
		if reports[i].ServiceID == "" {
			return invalid("service_id", "is required")
		}
		if reports[i].EventTime.IsZero() {
			reports[i].EventTime = now
		}
	}
	msgEv, err := messageEvent(d, &m, now)
	if err != nil {
		return err
	}
	propEv, err := propertyEvent(d, reports, now)
	if err != nil {
		return err
	}
	var delta bool
	err = r.write(ctx, func(w Writer) error {
		if err := requireDevice(w, deviceID); err != nil {
			return err
		}
		if err := putMessage(w, deviceID, seq, b); err != nil {
			return err
		}
		var err error
		if delta, err = mergeShadow(w, deviceID, reports, now); err != nil {
			return err
		}
		last, err := r.events.lastSeq(w, deviceID)
		if err != nil {
			return err
		}
		if err := r.appendAfter(w, msgEv, last); err != nil {
			return err
		}
		return r.appendAfter(w, propEv, last+1)
	})
	if err == nil && delta {
		r.router.desiredDiffers(deviceID, true)
	}
	return err
}
