package api

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/iotgate/iotgate/registry"
	"github.com/labstack/echo/v4"
)

// codeMessageNotFound is not in the reference; chosen in IoTDA's
// numbering next to codeCommandNotFound and documented in the README.
const codeMessageNotFound = "IOTDA.014101"

// messageRoutes are IoTDA's downlink message APIs (MQTT devices): send
// (CreateMessage), list (ListDeviceMessages), show (ShowDeviceMessage).
func (s *Server) messageRoutes(g *echo.Group) {
	g.POST("/devices/:device_id/messages", s.createMessage)
	g.GET("/devices/:device_id/messages", s.listMessages)
	g.GET("/devices/:device_id/messages/:message_id", s.showMessage)
}

// messageView is Huawei's DeviceMessage (ShowDeviceMessageResponse and
// the items of ListDeviceMessagesResponse).
type messageView struct {
	MessageID     string          `json:"message_id"`
	Name          string          `json:"name,omitempty"`
	Message       json.RawMessage `json:"message,omitempty"`
	Encoding      string          `json:"encoding"`
	PayloadFormat string          `json:"payload_format"`
	Topic         string          `json:"topic"`
	Status        string          `json:"status"`
	ErrorInfo     *errorInfoView  `json:"error_info,omitempty"`
	CreatedTime   string          `json:"created_time"`
	FinishedTime  string          `json:"finished_time,omitempty"`
}

// errorInfoView is Huawei's ErrorInfoDTO.
type errorInfoView struct {
	ErrorCode string `json:"error_code,omitempty"`
	ErrorMsg  string `json:"error_msg,omitempty"`
}

func viewMessage(m *registry.DownlinkMessage) messageView {
	v := messageView{MessageID: m.MessageID, Name: m.Name, Message: m.Message, Encoding: m.Encoding,
		PayloadFormat: m.PayloadFormat, Topic: m.Topic, Status: string(m.Status),
		CreatedTime: compact(m.CreatedTime), FinishedTime: compact(m.FinishedTime)}
	if v.Encoding == "" {
		v.Encoding = "none"
	}
	if v.PayloadFormat == "" {
		v.PayloadFormat = "standard"
	}
	if v.Topic == "" {
		v.Topic = "$oc/devices/" + m.DeviceID + "/sys/messages/down"
	}
	if m.ErrorCode != "" || m.ErrorMsg != "" {
		v.ErrorInfo = &errorInfoView{ErrorCode: m.ErrorCode, ErrorMsg: m.ErrorMsg}
	}
	return v
}

// messageError maps a missing message and a taken message_id to their own
// codes; other errors go to the shared mapping.
func messageError(err error) error {
	var nf *registry.NotFoundError
	var ce *registry.ConflictError
	switch {
	case errors.As(err, &nf) && nf.Kind == registry.EntityMessage:
		return &apiError{Status: http.StatusNotFound, Code: codeMessageNotFound, Msg: nf.Error()}
	case errors.As(err, &ce) && ce.Field == registry.UniqueMessageID:
		return badInput("invalid message_id: %s for this device", ce.Error())
	}
	return err
}

// createMessage: POST .../devices/{device_id}/messages. The message is
// delivered at once to a connected device (DELIVERED or FAILED), else held
// (PENDING) until the device connects or its ttl runs out (TIMEOUT).
func (s *Server) createMessage(c echo.Context) error {
	var b struct {
		MessageID     *string         `json:"message_id"`
		Name          *string         `json:"name"`
		Message       json.RawMessage `json:"message"`
		Encoding      *string         `json:"encoding"`
		PayloadFormat *string         `json:"payload_format"`
		Topic         *string         `json:"topic"`
		TopicFullName *string         `json:"topic_full_name"`
		TTL           *int            `json:"ttl"`
	}
	if err := decode(c, &b); err != nil {
		return err
	}
	if len(b.Message) == 0 || string(b.Message) == "null" {
		return badInput("invalid message: is required")
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
	n := registry.NewDownlinkMessage{MessageID: str(b.MessageID), Name: str(b.Name), Message: b.Message,
		Encoding: str(b.Encoding), PayloadFormat: format, Payload: payload, TTL: b.TTL}
	if n.MessageID == "" {
		n.MessageID = newID()
	}
	if format != "raw" {
		// IoTDA's default "standard" format wraps the message the way
		// the device SDKs parse it; "raw" sends it as it is.
		n.Payload, err = json.Marshal(struct {
			ObjectDeviceID string          `json:"object_device_id"`
			Name           string          `json:"name,omitempty"`
			ID             string          `json:"id"`
			Content        json.RawMessage `json:"content"`
		}{d.DeviceID, n.Name, n.MessageID, b.Message})
		if err != nil {
			return badInput("invalid message: %v", err)
		}
	}
	switch {
	case b.TopicFullName != nil:
		n.Topic = *b.TopicFullName
	case b.Topic != nil:
		n.Topic = "$oc/devices/" + d.DeviceID + "/user/" + *b.Topic
	}
	m, err := s.router.SendMessage(ctx, project(c), d, n)
	if err != nil {
		return messageError(err)
	}
	if m.Status == registry.MessageFailed && m.ErrorCode == registry.MessageErrNotSubscribed {
		// Sent to a connected device that has not subscribed to the
		// topic: IoTDA answers the request with the error itself.
		return &apiError{Status: http.StatusBadRequest, Code: m.ErrorCode, Msg: m.ErrorMsg}
	}
	type result struct {
		Status       string `json:"status"`
		CreatedTime  string `json:"created_time"`
		FinishedTime string `json:"finished_time,omitempty"`
	}
	return c.JSON(http.StatusCreated, struct {
		MessageID string `json:"message_id"`
		Result    result `json:"result"`
	}{m.MessageID, result{string(m.Status), compact(m.CreatedTime), compact(m.FinishedTime)}})
}

// listMessages: GET .../devices/{device_id}/messages, the (at most 20)
// messages the device keeps, oldest first.
func (s *Server) listMessages(c echo.Context) error {
	ms, err := s.reg.DownlinkMessages(c.Request().Context(), project(c), c.Param("device_id"))
	if err != nil {
		return err
	}
	out := struct {
		DeviceID string        `json:"device_id"`
		Messages []messageView `json:"messages"`
	}{DeviceID: c.Param("device_id"), Messages: []messageView{}}
	for _, m := range ms {
		out.Messages = append(out.Messages, viewMessage(m))
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) showMessage(c echo.Context) error {
	m, err := s.reg.DownlinkMessage(c.Request().Context(), project(c), c.Param("device_id"), c.Param("message_id"))
	if err != nil {
		return messageError(err)
	}
	return c.JSON(http.StatusOK, viewMessage(m))
}
