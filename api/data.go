package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/iotgate/iotgate/registry"
	"github.com/labstack/echo/v4"
)

// codeNotSubscribed: a message names a topic the device has not
// subscribed to (reference §0.1; HTTP status not documented, 400 chosen).
const codeNotSubscribed = "IOTDA.014112"

// dataRoutes are the device data and command APIs: shadow, stored uplink
// messages, synchronous commands and downlink messages.
func (s *Server) dataRoutes(g *echo.Group) {
	g.GET("/devices/:device_id/shadow", s.showShadow)
	g.GET("/devices/:device_id/device-messages", s.listUplinks)
	g.POST("/devices/:device_id/commands", s.syncCommand)
	g.POST("/devices/:device_id/messages", s.downMessage)
}

func (s *Server) showShadow(c echo.Context) error {
	sh, err := s.reg.DeviceShadow(c.Request().Context(), project(c), c.Param("device_id"))
	if err != nil {
		return err
	}
	type reported struct {
		Properties map[string]json.RawMessage `json:"properties"`
		EventTime  string                     `json:"event_time"`
	}
	type service struct {
		ServiceID string   `json:"service_id"`
		Reported  reported `json:"reported"`
	}
	out := struct {
		DeviceID string    `json:"device_id"`
		Shadow   []service `json:"shadow"`
	}{DeviceID: sh.DeviceID, Shadow: []service{}}
	for _, sv := range sh.Services {
		out.Shadow = append(out.Shadow, service{ServiceID: sv.ServiceID,
			Reported: reported{Properties: sv.Properties, EventTime: compact(sv.EventTime)}})
	}
	return c.JSON(http.StatusOK, out)
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
	if d.Status != registry.StatusOnline || s.commands == nil {
		return fromRegistry(registry.ErrNotConnected)
	}
	cmd := registry.Command{CommandID: newID(), ServiceID: str(b.ServiceID), CommandName: str(b.CommandName), Paras: b.Paras}
	wctx, cancel := context.WithTimeout(ctx, s.cmdWait)
	defer cancel()
	resp, err := s.commands.SendCommand(wctx, d, cmd)
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

func (s *Server) downMessage(c echo.Context) error {
	var b struct {
		MessageID     *string         `json:"message_id"`
		Name          *string         `json:"name"`
		Message       json.RawMessage `json:"message"`
		Encoding      *string         `json:"encoding"`
		PayloadFormat *string         `json:"payload_format"`
		Topic         *string         `json:"topic"`
		TopicFullName *string         `json:"topic_full_name"`
	}
	if err := decode(c, &b); err != nil {
		return err
	}
	if len(b.Message) == 0 {
		return badInput("invalid message: is required")
	}
	if err := checkLen("message_id", str(b.MessageID), 100); err != nil {
		return err
	}
	if b.Topic != nil && b.TopicFullName != nil {
		return badInput("invalid topic: give topic or topic_full_name, not both")
	}
	// A JSON string is sent as its text; any other JSON value as itself.
	payload := []byte(b.Message)
	var text string
	if json.Unmarshal(b.Message, &text) == nil {
		payload = []byte(text)
	}
	switch str(b.Encoding) {
	case "", "none":
	case "base64":
		raw, err := base64.StdEncoding.DecodeString(text)
		if err != nil {
			return badInput("invalid message: encoding is base64 but the message is not base64 text")
		}
		payload = raw
	default:
		return badInput("invalid encoding: must be none or base64")
	}
	format := str(b.PayloadFormat)
	if format != "" && format != "standard" && format != "raw" {
		return badInput("invalid payload_format: must be standard or raw")
	}
	ctx := c.Request().Context()
	d, err := s.reg.ProjectDevice(ctx, project(c), c.Param("device_id"))
	if err != nil {
		return err
	}
	m := registry.DownMessage{MessageID: str(b.MessageID), Name: str(b.Name), Payload: payload}
	if m.MessageID == "" {
		m.MessageID = newID()
	}
	if format != "raw" {
		// IoTDA's default "standard" format wraps the message the way
		// the device SDKs parse it; "raw" sends it as it is.
		m.Payload, err = json.Marshal(struct {
			ObjectDeviceID string          `json:"object_device_id"`
			Name           string          `json:"name,omitempty"`
			ID             string          `json:"id"`
			Content        json.RawMessage `json:"content"`
		}{d.DeviceID, m.Name, m.MessageID, b.Message})
		if err != nil {
			return badInput("invalid message: %v", err)
		}
	}
	switch {
	case b.TopicFullName != nil:
		m.Topic = *b.TopicFullName
	case b.Topic != nil:
		m.Topic = "$oc/devices/" + d.DeviceID + "/user/" + *b.Topic
	}
	if d.Status != registry.StatusOnline || s.messages == nil {
		return fromRegistry(registry.ErrNotConnected)
	}
	if err := s.messages.SendMessage(ctx, d, m); err != nil {
		if errors.Is(err, registry.ErrNotSubscribed) {
			return &apiError{Status: http.StatusBadRequest, Code: codeNotSubscribed,
				Msg: "Operation not allowed. The device has not subscribed to the topic."}
		}
		return err
	}
	return c.JSON(http.StatusCreated, map[string]any{"message_id": m.MessageID,
		"result": map[string]any{"status": "DELIVERED", "created_time": iso(time.Now())}})
}
