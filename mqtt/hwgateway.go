package mqtt

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iotgate/iotgate/registry"
)

// hwGatewayRegistry is what an IoTDA gateway's requests need.
type hwGatewayRegistry interface {
	AddSubDevice(ctx context.Context, gatewayID string, n registry.NewSubDevice) (*registry.Device, error)
	SubDeviceOf(ctx context.Context, gatewayID, id string) (*registry.Device, error)
	DeleteSubDevice(ctx context.Context, gatewayID, id string) error
	ListDevices(ctx context.Context, project string, f registry.DeviceFilter, pg registry.Page) (*registry.DeviceList, error)
	ReportProperties(ctx context.Context, deviceID string, reports []registry.ServiceProperties) error
	AddMessage(ctx context.Context, deviceID string, m registry.Message) error
	statusRegistry
	readyRegistry
}

// The $sub_device_manager service of IoTDA's gateway events (API
// reference, "Gateway and Child Devices": iot_06_v5_30181 to 30184,
// iot_06_v5_3022, iot_06_v5_30233, iot_06_v5_3006).
const (
	subDeviceManager = "$sub_device_manager"

	eventAddSubDevices    = "add_sub_device_request"
	eventAddResponse      = "add_sub_device_response"
	eventDeleteSubDevices = "delete_sub_device_request"
	eventDeleteResponse   = "delete_sub_device_response"
	eventUpdateStatus     = "sub_device_update_status"
	eventStatusResponse   = "sub_device_update_status_response"
	eventSync             = "sub_device_sync_request"
)

// IoTDA's limits per request.
const (
	maxSubDevicesAdded     = 50  // add_sub_device_request
	maxSubDevicesDeleted   = 50  // delete_sub_device_request
	maxSubDeviceStatuses   = 100 // sub_device_update_status
	maxSubDevicesPerReport = 100 // sys/gateway/sub_devices/properties/report
	// syncChunk is how many sub-devices one add_sub_device_notify
	// answering a sync lists (IoTDA sets no number; this keeps an event
	// far below the 1 MiB packet limit).
	syncChunk = 100
)

// The error_code of a refused sub-device in a response event. IoTDA
// documents the field, not its values; these are its REST API's codes for
// the same refusals (api/errors.go), so an application and a gateway see
// one code for one cause.
const (
	hwInternal       = "IOTDA.000001"
	hwInvalidInput   = "IOTDA.000006"
	hwForbidden      = "IOTDA.001002" // a frozen sub-device
	hwProductAbsent  = "IOTDA.013000"
	hwDeviceAbsent   = "IOTDA.014000" // also: not this gateway's sub-device
	hwDeviceExists   = "IOTDA.014031"
	hwQuotaExhausted = "IOTDA.014308"
)

// hwGatewayHook serves an IoTDA gateway (reference §4.3), on its own
// topics, for the sub-devices attached to it:
//
//	sys/events/up  $sub_device_manager add_sub_device_request,
//	               delete_sub_device_request, sub_device_update_status;
//	               each answered on sys/events/down with its _response
//	               event (same event_id): successful_devices and
//	               failed_devices with error_code and error_msg;
//	               sub_device_sync_request, answered with the current
//	               sub-devices in add_sub_device_notify events
//	sys/messages/up
//	               a message whose object_device_id names a sub-device
//	               is kept as that sub-device's
//	sys/gateway/sub_devices/properties/report
//	               up to 100 sub-devices' properties, written to each
//	               sub-device's shadow, all or none
//
// A sub-device the gateway reports ONLINE has a session through the
// gateway's connection until the gateway reports it OFFLINE, the gateway's
// connection ends, or it is frozen or deleted (Server.Kick); meanwhile the
// platform's commands and property requests for it go to the gateway's
// topics with object_device_id naming it (carrier), and what was held for
// it (messages, desired properties) goes out once it is ONLINE. A device
// that is not attached to this gateway (another gateway's, another
// project's, none) is refused as absent, so a gateway learns nothing of
// others' devices. Other events and messages pass on to uplinkHook, as do
// the publishes of devices connected the Alibaba way.
type hwGatewayHook struct {
	mochi.HookBase
	reg      hwGatewayRegistry
	conns    *conns
	log      *slog.Logger
	ctx      context.Context // ends at shutdown
	now      func() time.Time
	rejected *atomic.Uint64 // uplinkHook's count of unusable uplinks
}

func (h *hwGatewayHook) ID() string { return "iotgate-hwgateway" }

func (h *hwGatewayHook) Provides(b byte) bool { return b == mochi.OnPublish }

func (h *hwGatewayHook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	c := h.conns.get(cl)
	if c == nil || !c.huawei() {
		return pk, nil
	}
	r, kind, _ := c.mayPublish(pk.TopicName)
	if r.device != c.device {
		return pk, nil
	}
	switch kind {
	case uplinkGatewayProperties:
		if err := h.reportProperties(c, pk.Payload); err != nil {
			h.rejected.Add(1)
			h.log.Info("uplink rejected", "device", c.device, "kind", kind, "err", err)
		}
		return pk, packets.CodeSuccessIgnore
	case uplinkMessage:
		sub, ok := objectDevice(pk.Payload, c.device)
		if !ok {
			return pk, nil // the gateway's own: uplinkHook's
		}
		if err := h.subMessage(c, sub, pk); err != nil {
			h.rejected.Add(1)
			h.log.Info("uplink rejected", "device", c.device, "kind", kind, "err", err)
		}
		return pk, packets.CodeSuccessIgnore
	case uplinkEvent:
		var ev hwEvents
		if json.Unmarshal(pk.Payload, &ev) != nil || !ev.manages() {
			return pk, nil // not a gateway's: uplinkHook's
		}
		for _, s := range ev.Services {
			if s.ServiceID == subDeviceManager {
				h.serve(cl, c, s)
			}
		}
		return pk, packets.CodeSuccessIgnore
	}
	return pk, nil
}

// objectDevice returns the object_device_id of a message a gateway
// reports for a sub-device (IoTDA's device message: object_device_id,
// name, id, content), false when the message is not one: not JSON (a
// message's body is free), or for the gateway itself. Only bodies that
// mention the field are decoded.
func objectDevice(payload []byte, gateway string) (string, bool) {
	if !bytes.Contains(payload, []byte(`"object_device_id"`)) {
		return "", false
	}
	var m struct {
		ObjectDeviceID string `json:"object_device_id"`
	}
	if json.Unmarshal(payload, &m) != nil || m.ObjectDeviceID == "" || m.ObjectDeviceID == gateway {
		return "", false
	}
	return m.ObjectDeviceID, true
}

// subMessage keeps a message a gateway reported for a sub-device as the
// sub-device's.
func (h *hwGatewayHook) subMessage(c *conn, sub string, pk packets.Packet) error {
	if _, err := h.reg.SubDeviceOf(h.ctx, c.device, sub); err != nil {
		return fmt.Errorf("message for object_device_id %s: %w", sub, err)
	}
	return h.reg.AddMessage(h.ctx, sub, registry.Message{Topic: pk.TopicName, Payload: pk.Payload})
}

// hwEvents is the body of sys/events/up.
type hwEvents struct {
	ObjectDeviceID string    `json:"object_device_id,omitempty"`
	Services       []hwEvent `json:"services"`
}

// hwEvent is one service event.
type hwEvent struct {
	ServiceID string          `json:"service_id"`
	EventType string          `json:"event_type"`
	EventTime string          `json:"event_time,omitempty"`
	EventID   string          `json:"event_id,omitempty"`
	Paras     json.RawMessage `json:"paras"`
}

func (e *hwEvents) manages() bool {
	for _, s := range e.Services {
		if s.ServiceID == subDeviceManager {
			return true
		}
	}
	return false
}

// hwFailure is a refused sub-device in a response event (IoTDA's Reason):
// node_id and product_id for an add, device_id otherwise.
type hwFailure struct {
	DeviceID  string `json:"device_id,omitempty"`
	NodeID    string `json:"node_id,omitempty"`
	ProductID string `json:"product_id,omitempty"`
	ErrorCode string `json:"error_code"`
	ErrorMsg  string `json:"error_msg"`
}

// serve answers one $sub_device_manager event.
func (h *hwGatewayHook) serve(cl *mochi.Client, c *conn, e hwEvent) {
	var (
		answer string
		paras  any
	)
	switch e.EventType {
	case eventAddSubDevices:
		answer, paras = eventAddResponse, h.add(c, e.Paras)
	case eventDeleteSubDevices:
		answer, paras = eventDeleteResponse, h.delete(c, e.Paras)
	case eventUpdateStatus:
		answer, paras = eventStatusResponse, h.updateStatus(c, e.Paras)
	case eventSync:
		h.sync(cl, c)
		return
	default:
		h.log.Info("gateway event not supported", "gateway", c.device, "event_type", e.EventType)
		return
	}
	if paras == nil {
		return // no sub-device could be read from it: nothing to answer
	}
	id := e.EventID
	if id == "" {
		id = newEventID() // IoTDA generates one when the request has none
	}
	type event struct {
		ServiceID string `json:"service_id"`
		EventType string `json:"event_type"`
		EventTime string `json:"event_time"`
		EventID   string `json:"event_id"`
		Paras     any    `json:"paras"`
	}
	body, err := json.Marshal(struct {
		ObjectDeviceID string  `json:"object_device_id"`
		Services       []event `json:"services"`
	}{c.device, []event{{subDeviceManager, answer, h.now().UTC().Format(eventTimeLayout), id, paras}}})
	if err == nil {
		err = writePublish(cl, eventsDownTopic(c.device), body)
	}
	if err != nil {
		h.log.Debug("gateway event response not written", "gateway", c.device, "event_type", answer, "err", err)
	}
}

// refusal maps a registry refusal of one sub-device to its error_code.
func (h *hwGatewayHook) refusal(c *conn, err error) (code, msg string) {
	var (
		nf       *registry.NotFoundError
		verr     *registry.ValidationError
		conflict *registry.ConflictError
	)
	switch {
	case errors.As(err, &nf) && nf.Kind == registry.EntityProduct:
		return hwProductAbsent, err.Error()
	case errors.As(err, &nf):
		return hwDeviceAbsent, fmt.Sprintf("device %s is not a sub-device of gateway %s", nf.ID, c.device)
	case errors.As(err, &conflict):
		return hwDeviceExists, err.Error()
	case errors.As(err, &verr), errors.Is(err, registry.ErrNotGateway):
		return hwInvalidInput, err.Error()
	case errors.Is(err, registry.ErrQuota):
		return hwQuotaExhausted, err.Error()
	case errors.Is(err, registry.ErrFrozen):
		return hwForbidden, err.Error()
	}
	h.log.Error("gateway sub-device request failed", "gateway", c.device, "err", err)
	return hwInternal, "system error"
}

// sync answers sub_device_sync_request with the gateway's current
// sub-devices, in add_sub_device_notify events of up to syncChunk each
// (one with no devices if it has none). The request's version is not
// used: no history of past changes is kept, so the whole current list is
// the answer whatever the gateway saw last, and a deletion it missed
// shows as a sub-device absent from the list.
func (h *hwGatewayHook) sync(cl *mochi.Client, c *conn) {
	var subs []*registry.Device
	pg := registry.Page{Limit: syncChunk}
	for {
		l, err := h.reg.ListDevices(h.ctx, c.project, registry.DeviceFilter{GatewayID: c.device}, pg)
		if err != nil {
			h.log.Error("sub-devices not listed for a sync", "gateway", c.device, "err", err)
			return
		}
		subs = append(subs, l.Devices...)
		if len(l.Devices) < pg.Limit {
			break
		}
		pg.Marker = l.Marker
	}
	now := h.now()
	for i := 0; i == 0 || i < len(subs); i += syncChunk {
		body, err := subDevicesNotice(c.device, registry.SubDeviceChange{Devices: subs[i:min(i+syncChunk, len(subs))]}, now)
		if err == nil {
			err = writePublish(cl, eventsDownTopic(c.device), body)
		}
		if err != nil {
			h.log.Debug("sub-device sync not written", "gateway", c.device, "err", err)
			return
		}
	}
	h.log.Debug("sub-devices synchronised", "gateway", c.device, "count", len(subs))
}

// hwSubDevice is a sub-device in add_sub_device_request (DeviceInfo) and
// in its response (with device_id, parent_device_id and status set).
type hwSubDevice struct {
	ParentDeviceID string          `json:"parent_device_id,omitempty"`
	NodeID         string          `json:"node_id"`
	DeviceID       string          `json:"device_id,omitempty"`
	Name           string          `json:"name,omitempty"`
	Description    string          `json:"description,omitempty"`
	ProductID      string          `json:"product_id,omitempty"`
	Status         string          `json:"status,omitempty"`
	ExtensionInfo  json.RawMessage `json:"extension_info,omitempty"`
}

// add serves add_sub_device_request: each sub-device is created whole or
// not at all, and answered in successful_devices or failed_devices.
func (h *hwGatewayHook) add(c *conn, raw json.RawMessage) any {
	var p struct {
		Devices []hwSubDevice `json:"devices"`
	}
	if err := json.Unmarshal(raw, &p); err != nil || len(p.Devices) == 0 {
		h.log.Info("gateway request refused", "gateway", c.device, "event_type", eventAddSubDevices,
			"reason", `"paras" is not {"devices":[{node_id, product_id, ...}]}`)
		return nil
	}
	type result struct {
		Successful []hwSubDevice `json:"successful_devices"`
		Failed     []hwFailure   `json:"failed_devices"`
	}
	res := result{Successful: []hwSubDevice{}, Failed: []hwFailure{}}
	for i, s := range p.Devices {
		fail := func(code, msg string) {
			res.Failed = append(res.Failed, hwFailure{NodeID: s.NodeID, ProductID: s.ProductID, ErrorCode: code, ErrorMsg: msg})
		}
		switch {
		case i >= maxSubDevicesAdded:
			fail(hwInvalidInput, fmt.Sprintf("at most %d sub-devices are added per request", maxSubDevicesAdded))
			continue
		case s.ParentDeviceID != "" && s.ParentDeviceID != c.device:
			fail(hwInvalidInput, fmt.Sprintf("parent_device_id %q is not the gateway %s", s.ParentDeviceID, c.device))
			continue
		}
		d, err := h.reg.AddSubDevice(h.ctx, c.device, registry.NewSubDevice{NodeID: s.NodeID, DeviceID: s.DeviceID,
			ProductID: s.ProductID, Name: s.Name, Description: s.Description, ExtensionInfo: s.ExtensionInfo})
		if err != nil {
			fail(h.refusal(c, err))
			continue
		}
		res.Successful = append(res.Successful, hwSubDevice{ParentDeviceID: c.device, NodeID: d.NodeID,
			DeviceID: d.DeviceID, Name: d.DeviceName, Description: d.Description, ProductID: d.ProductID,
			Status: string(registry.StatusInactive), ExtensionInfo: d.ExtensionInfo})
	}
	h.log.Info("sub-devices added by their gateway", "gateway", c.device, "added", len(res.Successful), "refused", len(res.Failed))
	return res
}

// delete serves delete_sub_device_request: {"devices":[device_id...]}.
func (h *hwGatewayHook) delete(c *conn, raw json.RawMessage) any {
	var p struct {
		Devices []string `json:"devices"`
	}
	if err := json.Unmarshal(raw, &p); err != nil || len(p.Devices) == 0 {
		h.log.Info("gateway request refused", "gateway", c.device, "event_type", eventDeleteSubDevices,
			"reason", `"paras" is not {"devices":[device_id, ...]}`)
		return nil
	}
	type result struct {
		Successful []string    `json:"successful_devices"`
		Failed     []hwFailure `json:"failed_devices"`
	}
	res := result{Successful: []string{}, Failed: []hwFailure{}}
	for i, id := range p.Devices {
		var err error
		switch {
		case i >= maxSubDevicesDeleted:
			res.Failed = append(res.Failed, hwFailure{DeviceID: id, ErrorCode: hwInvalidInput,
				ErrorMsg: fmt.Sprintf("at most %d sub-devices are deleted per request", maxSubDevicesDeleted)})
			continue
		case id == "":
			err = &registry.ValidationError{Field: "devices", Reason: "names an empty device_id"}
		default:
			err = h.reg.DeleteSubDevice(h.ctx, c.device, id)
		}
		if err != nil {
			code, msg := h.refusal(c, err)
			res.Failed = append(res.Failed, hwFailure{DeviceID: id, ErrorCode: code, ErrorMsg: msg})
			continue
		}
		res.Successful = append(res.Successful, id)
	}
	h.log.Info("sub-devices deleted by their gateway", "gateway", c.device, "deleted", len(res.Successful), "refused", len(res.Failed))
	return res
}

// hwStatus is a sub-device's status in sub_device_update_status.
type hwStatus struct {
	DeviceID string `json:"device_id"`
	Status   string `json:"status"`
}

// updateStatus serves sub_device_update_status: ONLINE starts the
// sub-device's session through this connection, OFFLINE ends it; either
// is a success when the sub-device already is so.
func (h *hwGatewayHook) updateStatus(c *conn, raw json.RawMessage) any {
	var p struct {
		Statuses []hwStatus `json:"device_statuses"`
	}
	if err := json.Unmarshal(raw, &p); err != nil || len(p.Statuses) == 0 {
		h.log.Info("gateway request refused", "gateway", c.device, "event_type", eventUpdateStatus,
			"reason", `"paras" is not {"device_statuses":[{device_id, status}, ...]}`)
		return nil
	}
	type result struct {
		Successful []hwStatus  `json:"successful_devices"`
		Failed     []hwFailure `json:"failed_devices"`
	}
	res := result{Successful: []hwStatus{}, Failed: []hwFailure{}}
	for i, s := range p.Statuses {
		var err error
		switch {
		case i >= maxSubDeviceStatuses:
			err = &registry.ValidationError{Field: "device_statuses",
				Reason: fmt.Sprintf("at most %d sub-devices per request", maxSubDeviceStatuses)}
		case s.Status != string(registry.StatusOnline) && s.Status != string(registry.StatusOffline):
			err = &registry.ValidationError{Field: "status", Reason: fmt.Sprintf("%q is not ONLINE or OFFLINE", s.Status)}
		default:
			err = h.setStatus(c, s)
		}
		if err != nil {
			code, msg := h.refusal(c, err)
			res.Failed = append(res.Failed, hwFailure{DeviceID: s.DeviceID, ErrorCode: code, ErrorMsg: msg})
			continue
		}
		res.Successful = append(res.Successful, s)
	}
	return res
}

// setStatus brings one sub-device's session through c in line with s.
func (h *hwGatewayHook) setStatus(c *conn, s hwStatus) error {
	if _, err := h.reg.SubDeviceOf(h.ctx, c.device, s.DeviceID); err != nil {
		return err
	}
	o := owner{a: s.DeviceID}
	if s.Status == string(registry.StatusOffline) {
		if sess, ok := h.conns.logout(c, o); ok {
			h.reg.Disconnected(sess.device, sess.session)
			h.log.Debug("sub-device offline through its gateway", "device", sess.device, "gateway", c.device)
		}
		return nil
	}
	if _, online := c.sub(o); online {
		return nil
	}
	sess, err := h.reg.Connected(h.ctx, s.DeviceID)
	if err != nil {
		return err
	}
	old, replaced, ok := h.conns.login(c, o, subSession{device: s.DeviceID, session: sess})
	if !ok { // the gateway is gone: so are its sub-devices
		h.reg.Disconnected(s.DeviceID, sess)
		return nil
	}
	if replaced { // two updates at once: the later session stands
		h.reg.Disconnected(old.device, old.session)
	}
	// Held messages and desired properties go out, through the gateway.
	h.reg.SessionReady(h.ctx, s.DeviceID)
	h.log.Debug("sub-device online through its gateway", "device", s.DeviceID, "gateway", c.device)
	return nil
}

// gatewayPropertiesReport is the body of
// sys/gateway/sub_devices/properties/report.
type gatewayPropertiesReport struct {
	Devices []struct {
		DeviceID string `json:"device_id"`
		propertiesReport
	} `json:"devices"`
}

// eventTimeMillis is the other event_time IoTDA accepts in a gateway's
// batch report: yyyy-MM-dd'T'HH:mm:ss.SSS'Z'.
const eventTimeMillis = "2006-01-02T15:04:05.000Z"

// reportProperties writes a gateway's batch report to each sub-device's
// shadow, after checking every entry: one unusable entry (not this
// gateway's sub-device, no services) refuses the report whole, as the
// gateway gets no answer to learn which part was taken. An event_time in
// neither of IoTDA's formats is taken as the time of receipt, as IoTDA
// does.
func (h *hwGatewayHook) reportProperties(c *conn, payload []byte) error {
	var rep gatewayPropertiesReport
	if err := json.Unmarshal(payload, &rep); err != nil {
		return fmt.Errorf("gateway properties report is not JSON: %w", err)
	}
	if n := len(rep.Devices); n == 0 || n > maxSubDevicesPerReport {
		return fmt.Errorf(`gateway properties report names %d sub-devices in "devices", not 1 to %d`, n, maxSubDevicesPerReport)
	}
	reports := make([][]registry.ServiceProperties, len(rep.Devices))
	for i, d := range rep.Devices {
		if _, err := h.reg.SubDeviceOf(h.ctx, c.device, d.DeviceID); err != nil {
			return fmt.Errorf("gateway properties report: %w", err)
		}
		if len(d.Services) == 0 {
			return fmt.Errorf(`gateway properties report: sub-device %s has no "services"`, d.DeviceID)
		}
		out := make([]registry.ServiceProperties, len(d.Services))
		for j, s := range d.Services {
			if s.ServiceID == "" {
				return fmt.Errorf("gateway properties report: a service of sub-device %s has no service_id", d.DeviceID)
			}
			out[j] = registry.ServiceProperties{ServiceID: s.ServiceID, Properties: s.Properties, EventTime: h.eventTime(s.EventTime)}
		}
		reports[i] = out
	}
	for i, d := range rep.Devices {
		if err := h.reg.ReportProperties(h.ctx, d.DeviceID, reports[i]); err != nil {
			return fmt.Errorf("gateway properties report for sub-device %s: %w", d.DeviceID, err)
		}
	}
	return nil
}

func (h *hwGatewayHook) eventTime(s string) time.Time {
	for _, layout := range []string{eventTimeLayout, eventTimeMillis} {
		if t, err := time.Parse(layout, s); err == nil {
			return t
		}
	}
	return h.now()
}

// The platform's notifications to a gateway (iot_06_v5_3019, 3020).
const (
	eventAddNotify    = "add_sub_device_notify"
	eventDeleteNotify = "delete_sub_device_notify"
)

// NotifySubDevices tells an IoTDA gateway connected here that sub-devices
// were added to it or deleted (registry.SubDeviceNotifier), on its
// sys/events/down: add_sub_device_notify with each sub-device's
// DeviceInfo, delete_sub_device_notify with its parent_device_id, node_id
// and device_id. version is the notification's time in milliseconds
// since 1970, increasing from one notification to the next. A gateway
// connected the Alibaba way is not told (nil).
func (s *Server) NotifySubDevices(ctx context.Context, gatewayID string, ch registry.SubDeviceChange) error {
	cl, ok := s.session(gatewayID)
	if !ok {
		return registry.ErrNotConnected
	}
	if c := s.conns.get(cl); c == nil || !c.huawei() {
		return nil
	}
	body, err := subDevicesNotice(gatewayID, ch, s.now())
	if err != nil {
		return err
	}
	return s.deliver(ctx, gatewayID, eventsDownTopic(gatewayID), body)
}

// subDevicesNotice encodes add_sub_device_notify (or, ch.Deleted,
// delete_sub_device_notify) for a gateway.
func subDevicesNotice(gatewayID string, ch registry.SubDeviceChange, now time.Time) ([]byte, error) {
	devices := make([]hwSubDevice, len(ch.Devices))
	eventType := eventAddNotify
	if ch.Deleted {
		eventType = eventDeleteNotify
	}
	for i, d := range ch.Devices {
		devices[i] = hwSubDevice{ParentDeviceID: gatewayID, NodeID: d.NodeID, DeviceID: d.DeviceID}
		if !ch.Deleted {
			devices[i].Name, devices[i].Description, devices[i].ProductID = d.DeviceName, d.Description, d.ProductID
			devices[i].Status, devices[i].ExtensionInfo = string(d.Status), d.ExtensionInfo
		}
	}
	type event struct {
		ServiceID string `json:"service_id"`
		EventType string `json:"event_type"`
		EventTime string `json:"event_time"`
		Paras     struct {
			Devices []hwSubDevice `json:"devices"`
			Version int64         `json:"version"`
		} `json:"paras"`
	}
	ev := event{ServiceID: subDeviceManager, EventType: eventType, EventTime: now.UTC().Format(eventTimeLayout)}
	ev.Paras.Devices, ev.Paras.Version = devices, now.UnixMilli()
	body, err := json.Marshal(struct {
		ObjectDeviceID string  `json:"object_device_id"`
		Services       []event `json:"services"`
	}{gatewayID, []event{ev}})
	if err != nil {
		return nil, fmt.Errorf("mqtt: encode %s: %w", eventType, err)
	}
	return body, nil
}

// carrier returns the device whose session carries downlinks for id: the
// IoTDA gateway a sub-device is online through, else id itself.
func (s *Server) carrier(id string) string {
	if p, ok := s.conns.gatewayOf(id); ok && p.conn.huawei() {
		return p.conn.device
	}
	return id
}

// huawei reports whether the connection speaks IoTDA's topics.
func (c *conn) huawei() bool { return len(c.spaces) == 1 && c.spaces[0] == huaweiSpace }

func eventsDownTopic(deviceID string) string { return devicesPrefix + deviceID + "/sys/events/down" }

// newEventID is a random UUID (version 4), the form of IoTDA's event ids.
func newEventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
