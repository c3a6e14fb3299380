package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/iotgate/iotgate/registry"
	"github.com/labstack/echo/v4"
)

// dataRoutes are the device data and command APIs: shadow (shadow.go),
// stored uplink messages and synchronous commands (downlink messages:
// messages.go).
func (s *Server) dataRoutes(g *echo.Group) {
	g.GET("/devices/:device_id/shadow", s.showShadow)
	g.PUT("/devices/:device_id/shadow", s.updateDesired)
	g.GET("/devices/:device_id/device-messages", s.listUplinks)
	g.POST("/devices/:device_id/commands", s.syncCommand)
}

// listUplinks returns the device's recent uplink messages, newest first:
// GET /devices/{id}/device-messages?limit=N (1–100, default 10).
func (s *Server) listUplinks(c echo.Context) error {
	limit := 10
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > registry.MessagesKept {
			return &apiError{Status: http.StatusBadRequest, Code: codeLimitRange, Msg: "invalid limit: must be an integer from 1 to 100"}
		}
		limit = n
	}
	msgs, err := s.reg.Messages(c.Request().Context(), project(c), c.Param("device_id"), limit)
	if err != nil {
		return err
	}
	type view struct {
		MessageID  string `json:"message_id"`
		Topic      string `json:"topic,omitempty"`
		Payload    string `json:"payload"`
		Encoding   string `json:"encoding"`
		CreateTime string `json:"create_time"`
	}
	out := struct {
		DeviceID string `json:"device_id"`
		Messages []view `json:"messages"`
	}{DeviceID: c.Param("device_id"), Messages: []view{}}
	for _, m := range msgs {
		out.Messages = append(out.Messages, view{MessageID: m.MessageID, Topic: m.Topic,
			Payload: base64.StdEncoding.EncodeToString(m.Payload), Encoding: "base64", CreateTime: iso(m.Time)})
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) syncCommand(c echo.Context) error {
	var b struct {
		ServiceID   *string         `json:"service_id"`
		CommandName *string         `json:"command_name"`
		Paras       json.RawMessage `json:"paras"`
	}
	if err := decode(c, &b); err != nil {
		return err
	}
	if err := checkLen("service_id", str(b.ServiceID), 64); err != nil {
		return err
	}
	if err := checkLen("command_name", str(b.CommandName), 128); err != nil {
		return err
	}
	var obj map[string]any
	if len(b.Paras) == 0 || json.Unmarshal(b.Paras, &obj) != nil || obj == nil {
		return badInput("invalid paras: is required and must be a JSON object")
	}
	ctx := c.Request().Context()
	d, err := s.reg.ProjectDevice(ctx, project(c), c.Param("device_id"))
	if err != nil {
		return err
	}
	cmd := registry.Command{CommandID: newID(), ServiceID: str(b.ServiceID), CommandName: str(b.CommandName), Paras: b.Paras}
	wctx, cancel := context.WithTimeout(ctx, s.cmdWait)
	defer cancel()
	resp, err := s.router.SendCommand(wctx, d, cmd)
	if errors.Is(err, registry.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
		// IoTDA answers a timed-out command with HTTP 200 and an error code.
		return c.JSON(http.StatusOK, map[string]any{"command_id": cmd.CommandID, "error_code": codeCmdTimeout,
			"error_msg": "Command request timed out. Check whether the device returns a response within the specified time after receiving the request."})
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"command_id": cmd.CommandID, "response": resp})
}
