package api

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/iotgate/iotgate/registry"
	"github.com/labstack/echo/v4"
)

func (s *Server) deviceRoutes(g *echo.Group) {
	g.POST("/devices", s.createDevice)
	g.GET("/devices", s.listDevices)
	g.GET("/devices/:device_id", s.showDevice)
	g.PUT("/devices/:device_id", s.updateDevice)
	g.DELETE("/devices/:device_id", s.deleteDevice)
	g.POST("/devices/:device_id/action", s.deviceAction)
	g.POST("/devices/:device_id/reset-fingerprint", s.resetFingerprint)
	g.POST("/devices/:device_id/freeze", s.freeze(true))
	g.POST("/devices/:device_id/unfreeze", s.freeze(false))
	g.GET("/devices/:device_id/client-ids", s.listClientIDs)
	g.POST("/devices/:device_id/client-ids/:client_id/keep", s.keepClientID)
	g.DELETE("/devices/:device_id/client-ids", s.clearClientIDs)
}

// Preregistration-free devices: the physical devices (ClientIDs) sharing
// a device name. Keep one (the console's Switch) or clear them all.

func clientIDsView(d *registry.Device) map[string]any {
	ids := make([]map[string]string, 0, len(d.ClientIDs))
	for _, c := range d.ClientIDs {
		ids = append(ids, map[string]string{"client_id": c.ClientID, "create_time": iso(c.CreateTime)})
	}
	return map[string]any{"device_id": d.DeviceID, "client_ids": ids, "kept": d.ClientIDKept}
}

func (s *Server) listClientIDs(c echo.Context) error {
	d, err := s.reg.ProjectDevice(c.Request().Context(), project(c), c.Param("device_id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, clientIDsView(d))
}

func (s *Server) keepClientID(c echo.Context) error {
	d, err := s.reg.KeepClientID(c.Request().Context(), project(c), c.Param("device_id"), c.Param("client_id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, clientIDsView(d))
}

func (s *Server) clearClientIDs(c echo.Context) error {
	d, err := s.reg.ClearClientIDs(c.Request().Context(), project(c), c.Param("device_id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, clientIDsView(d))
}

type authInfoBody struct {
	AuthType     *string `json:"auth_type"`
	Secret       *string `json:"secret"`
	Fingerprint  *string `json:"fingerprint"`
	SecureAccess *bool   `json:"secure_access"`
	Timeout      *int64  `json:"timeout"`
}

type deviceBody struct {
	DeviceID      *string         `json:"device_id"`
	NodeID        *string         `json:"node_id"`
	DeviceName    *string         `json:"device_name"`
	ProductID     *string         `json:"product_id"`
	GatewayID     *string         `json:"gateway_id"`
	Description   *string         `json:"description"`
	ExtensionInfo json.RawMessage `json:"extension_info"`
	AuthInfo      *authInfoBody   `json:"auth_info"`
	Tags          *[]tagBody      `json:"tags"`
}

type authInfoView struct {
	AuthType             string `json:"auth_type"`
	Secret               string `json:"secret,omitempty"`
	SecondarySecret      string `json:"secondary_secret,omitempty"`
	Fingerprint          string `json:"fingerprint,omitempty"`
	SecondaryFingerprint string `json:"secondary_fingerprint,omitempty"`
	SecureAccess         bool   `json:"secure_access"`
	Timeout              *int64 `json:"timeout,omitempty"`
}

type deviceView struct {
	AppID                      string          `json:"app_id"`
	AppName                    string          `json:"app_name"`
	DeviceID                   string          `json:"device_id"`
	NodeID                     string          `json:"node_id"`
	GatewayID                  string          `json:"gateway_id"`
	DeviceName                 string          `json:"device_name,omitempty"`
	NodeType                   string          `json:"node_type"`
	Description                string          `json:"description,omitempty"`
	FwVersion                  string          `json:"fw_version,omitempty"`
	SwVersion                  string          `json:"sw_version,omitempty"`
	DeviceSDKVersion           string          `json:"device_sdk_version,omitempty"`
	AuthInfo                   *authInfoView   `json:"auth_info,omitempty"`
	ProductID                  string          `json:"product_id"`
	ProductName                string          `json:"product_name,omitempty"`
	Status                     string          `json:"status"`
	CreateTime                 string          `json:"create_time,omitempty"`
	ConnectionStatusUpdateTime string          `json:"connection_status_update_time,omitempty"`
	ActiveTime                 string          `json:"active_time,omitempty"`
	Tags                       []tagView       `json:"tags"`
	ExtensionInfo              json.RawMessage `json:"extension_info,omitempty"`
}

// viewDevice renders a device; full adds what list-devices omits
// (credentials and times), as IoTDA does.
func (s *Server) viewDevice(ctx context.Context, d *registry.Device, full bool) deviceView {
	v := deviceView{
		AppID: d.ProjectID, AppName: defaultAppName, DeviceID: d.DeviceID, NodeID: d.NodeID,
		GatewayID: d.EffectiveGatewayID(), DeviceName: d.DeviceName, NodeType: registry.NodeEndpoint,
		Description: d.Description, ProductID: d.ProductID, Status: string(d.Status), Tags: viewTags(d.Tags),
	}
	if p, err := s.reg.Product(ctx, d.ProjectID, d.ProductID); err == nil {
		v.ProductName, v.NodeType = p.Name, p.NodeType
	}
	if !full {
		return v
	}
	v.CreateTime = compact(d.CreateTime)
	v.ConnectionStatusUpdateTime = iso(d.StatusTime)
	v.ActiveTime = iso(d.ActiveTime)
	v.ExtensionInfo = d.ExtensionInfo
	a := &authInfoView{
		AuthType: string(d.Auth.Type), Secret: d.Auth.Secret, SecondarySecret: d.Auth.SecondarySecret,
		Fingerprint: d.Auth.Fingerprint, SecondaryFingerprint: d.Auth.SecondaryFingerprint,
		SecureAccess: d.Auth.SecureAccess,
	}
	if d.Auth.TimeoutSet {
		t := d.Auth.Timeout
		a.Timeout = &t
	}
	v.AuthInfo = a
	return v
}

func (s *Server) createDevice(c echo.Context) error {
	var b deviceBody
	if err := decode(c, &b); err != nil {
		return err
	}
	if b.NodeID == nil {
		return badInput("invalid node_id: is required")
	}
	if b.ProductID == nil {
		return badInput("invalid product_id: is required")
	}
	n := registry.NewDevice{
		ProjectID: project(c), DeviceID: str(b.DeviceID), NodeID: *b.NodeID, ProductID: *b.ProductID,
		GatewayID: str(b.GatewayID), DeviceName: str(b.DeviceName), Description: str(b.Description),
		ExtensionInfo: b.ExtensionInfo, Tags: tagsOf(b.Tags),
		// Secure by default: plain MQTT and NoSec LwM2M devices opt out.
		Auth: registry.AuthInfo{SecureAccess: true},
	}
	if a := b.AuthInfo; a != nil {
		n.Auth.Type = registry.AuthType(str(a.AuthType))
		n.Auth.Secret = str(a.Secret)
		n.Auth.Fingerprint = str(a.Fingerprint)
		if a.SecureAccess != nil {
			n.Auth.SecureAccess = *a.SecureAccess
		}
		if a.Timeout != nil {
			n.Auth.Timeout, n.Auth.TimeoutSet = *a.Timeout, true
		}
	}
	d, err := s.reg.CreateDevice(c.Request().Context(), n)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, s.viewDevice(c.Request().Context(), d, true))
}

func (s *Server) showDevice(c echo.Context) error {
	d, err := s.reg.ProjectDevice(c.Request().Context(), project(c), c.Param("device_id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s.viewDevice(c.Request().Context(), d, true))
}

func (s *Server) listDevices(c echo.Context) error {
	pg, err := page(c)
	if err != nil {
		return err
	}
	f := registry.DeviceFilter{
		ProductID: c.QueryParam("product_id"), NodeID: c.QueryParam("node_id"),
		DeviceName: c.QueryParam("device_name"), GatewayID: c.QueryParam("gateway_id"),
	}
	for _, q := range []struct{ name, v string }{{"product_id", f.ProductID}, {"node_id", f.NodeID}, {"gateway_id", f.GatewayID}} {
		if err := checkLen(q.name, q.v, 128); err != nil {
			return err
		}
	}
	l, err := s.reg.ListDevices(c.Request().Context(), project(c), f, pg)
	if err != nil {
		return err
	}
	out := struct {
		Devices []deviceView `json:"devices"`
		Page    pageInfo     `json:"page"`
	}{Devices: []deviceView{}, Page: pageInfo{Count: l.Count, Marker: l.Marker}}
	for _, d := range l.Devices {
		out.Devices = append(out.Devices, s.viewDevice(c.Request().Context(), d, false))
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) updateDevice(c echo.Context) error {
	var b deviceBody
	if err := decode(c, &b); err != nil {
		return err
	}
	u := registry.DeviceUpdate{DeviceName: b.DeviceName, Description: b.Description, ExtensionInfo: b.ExtensionInfo}
	if b.Tags != nil {
		tags := tagsOf(b.Tags)
		u.Tags = &tags
	}
	if a := b.AuthInfo; a != nil {
		if a.Secret != nil || a.AuthType != nil || a.Fingerprint != nil {
			return badInput("invalid auth_info: only secure_access and timeout can be updated; use resetSecret or reset-fingerprint for credentials")
		}
		u.SecureAccess, u.Timeout = a.SecureAccess, a.Timeout
	}
	d, err := s.reg.UpdateDevice(c.Request().Context(), project(c), c.Param("device_id"), u)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s.viewDevice(c.Request().Context(), d, true))
}

func (s *Server) deleteDevice(c echo.Context) error {
	if err := s.reg.DeleteDevice(c.Request().Context(), project(c), c.Param("device_id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// deviceAction serves POST /devices/{id}/action?action_id=...; IoTDA
// multiplexes device actions on one path.
func (s *Server) deviceAction(c echo.Context) error {
	switch a := c.QueryParam("action_id"); a {
	case "resetSecret":
		return s.resetSecret(c)
	case "resetThing":
		d, err := s.reg.ResetThing(c.Request().Context(), project(c), c.Param("device_id"))
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, s.viewDevice(c.Request().Context(), d, true))
	case "":
		return badInput("invalid action_id: is required")
	default:
		return badInput("invalid action_id: %q is not supported (resetSecret, resetThing)", a)
	}
}

func (s *Server) resetSecret(c echo.Context) error {
	var b struct {
		Secret          *string `json:"secret"`
		ForceDisconnect bool    `json:"force_disconnect"`
		SecretType      *string `json:"secret_type"`
	}
	if err := decodeOptional(c, &b); err != nil {
		return err
	}
	slot := registry.SecretSlot(str(b.SecretType))
	secret, err := s.reg.ResetSecret(c.Request().Context(), project(c), c.Param("device_id"), slot, str(b.Secret), b.ForceDisconnect)
	if err != nil {
		return err
	}
	if slot == "" {
		slot = registry.Primary
	}
	return c.JSON(http.StatusOK, map[string]string{"device_id": c.Param("device_id"), "secret": secret, "secret_type": string(slot)})
}

func (s *Server) resetFingerprint(c echo.Context) error {
	var b struct {
		Fingerprint     *string `json:"fingerprint"`
		ForceDisconnect bool    `json:"force_disconnect"`
		FingerprintType *string `json:"fingerprint_type"`
	}
	if err := decodeOptional(c, &b); err != nil {
		return err
	}
	slot := registry.SecretSlot(str(b.FingerprintType))
	fp, err := s.reg.ResetFingerprint(c.Request().Context(), project(c), c.Param("device_id"), slot, str(b.Fingerprint), b.ForceDisconnect)
	if err != nil {
		return err
	}
	if slot == "" {
		slot = registry.Primary
	}
	return c.JSON(http.StatusOK, map[string]string{"device_id": c.Param("device_id"), "fingerprint": fp, "fingerprint_type": string(slot)})
}

func (s *Server) freeze(frozen bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := s.reg.SetFrozen(c.Request().Context(), project(c), c.Param("device_id"), frozen); err != nil {
			return err
		}
		return c.NoContent(http.StatusNoContent)
	}
}
