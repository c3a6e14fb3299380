package api

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/iotgate/iotgate/registry"
	"github.com/labstack/echo/v4"
)

// asyncCommandRoutes are IoTDA's asynchronous command APIs, the way
// applications reach NB-IoT (LwM2M) devices.
func (s *Server) asyncCommandRoutes(g *echo.Group) {
	g.POST("/devices/:device_id/async-commands", s.createAsyncCommand)
	g.GET("/devices/:device_id/async-commands", s.listAsyncCommands)
	g.GET("/devices/:device_id/async-commands/:command_id", s.showAsyncCommand)
}

// asyncCommandView is Huawei's ShowAsyncDeviceCommandResponse (and, less
// the result, its create and list shapes).
type asyncCommandView struct {
	DeviceID      string          `json:"device_id"`
	CommandID     string          `json:"command_id"`
	ServiceID     string          `json:"service_id,omitempty"`
	CommandName   string          `json:"command_name,omitempty"`
	Paras         json.RawMessage `json:"paras,omitempty"`
	ExpireTime    int64           `json:"expire_time"`
	Status        string          `json:"status"`
	Result        json.RawMessage `json:"result,omitempty"`
	CreatedTime   string          `json:"created_time"`
	SentTime      string          `json:"sent_time,omitempty"`
	DeliveredTime string          `json:"delivered_time,omitempty"`
	ResponseTime  string          `json:"response_time,omitempty"`
	SendStrategy  string          `json:"send_strategy"`
}

func viewAsyncCommand(c *registry.AsyncCommand) asyncCommandView {
	return asyncCommandView{
		DeviceID: c.DeviceID, CommandID: c.CommandID, ServiceID: c.ServiceID, CommandName: c.CommandName,
		Paras: c.Paras, ExpireTime: c.ExpireTime, Status: string(c.Status), Result: c.Result,
		CreatedTime: compact(c.CreatedTime), SentTime: compact(c.SentTime), DeliveredTime: compact(c.DeliveredTime),
		ResponseTime: compact(c.ResponseTime), SendStrategy: c.SendStrategy,
	}
}

func (s *Server) createAsyncCommand(c echo.Context) error {
	var b struct {
		ServiceID    *string         `json:"service_id"`
		CommandName  *string         `json:"command_name"`
		Paras        json.RawMessage `json:"paras"`
		ExpireTime   *int64          `json:"expire_time"`
		SendStrategy *string         `json:"send_strategy"`
	}
	if err := decode(c, &b); err != nil {
		return err
	}
	n := registry.NewAsyncCommand{ServiceID: str(b.ServiceID), CommandName: str(b.CommandName), Paras: b.Paras,
		SendStrategy: str(b.SendStrategy)}
	if b.ExpireTime != nil {
		n.ExpireTime = *b.ExpireTime
	}
	ctx := c.Request().Context()
	d, err := s.reg.ProjectDevice(ctx, project(c), c.Param("device_id"))
	if err != nil {
		return err
	}
	cmd, err := s.router.CreateAsyncCommand(ctx, project(c), d, n)
	if err != nil {
		return err
	}
	v := viewAsyncCommand(cmd)
	v.Result, v.DeliveredTime, v.ResponseTime = nil, "", ""
	return c.JSON(http.StatusCreated, v)
}

func (s *Server) showAsyncCommand(c echo.Context) error {
	cmd, err := s.reg.AsyncCommand(c.Request().Context(), project(c), c.Param("device_id"), c.Param("command_id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewAsyncCommand(cmd))
}

// listAsyncCommands: GET .../async-commands?limit&marker&offset&start_time
// &end_time&status&command_name, newest first.
func (s *Server) listAsyncCommands(c echo.Context) error {
	pg, err := page(c)
	if err != nil {
		return err
	}
	var f registry.AsyncCommandFilter
	if v := c.QueryParam("status"); v != "" {
		f.Status = registry.AsyncStatus(v)
		switch f.Status {
		case registry.AsyncPending, registry.AsyncExpired, registry.AsyncSent, registry.AsyncDelivered,
			registry.AsyncSuccessful, registry.AsyncFailed, registry.AsyncTimeout:
		default:
			return badInput("invalid status: must be one of PENDING, EXPIRED, SENT, DELIVERED, SUCCESSFUL, FAILED, TIMEOUT")
		}
	}
	f.CommandName = c.QueryParam("command_name")
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{{"start_time", &f.From}, {"end_time", &f.To}} {
		if v := c.QueryParam(t.name); v != "" {
			at, err := time.Parse(compactTime, v)
			if err != nil {
				return &apiError{Status: http.StatusBadRequest, Code: "IOTDA.000009", Msg: "invalid " + t.name + ": must be yyyyMMdd'T'HHmmss'Z'"}
			}
			*t.dst = at
		}
	}
	if !f.From.IsZero() && !f.To.IsZero() && f.From.After(f.To) {
		return &apiError{Status: http.StatusBadRequest, Code: "IOTDA.000010", Msg: "start_time must be earlier than end_time"}
	}
	l, err := s.reg.ListAsyncCommands(c.Request().Context(), project(c), c.Param("device_id"), f, pg)
	if err != nil {
		return err
	}
	out := struct {
		Commands []asyncCommandView `json:"commands"`
		Page     pageInfo           `json:"page"`
	}{Commands: []asyncCommandView{}, Page: pageInfo{Count: l.Count, Marker: l.Marker}}
	for _, cmd := range l.Commands {
		// Huawei's list shape carries neither paras nor result.
		v := viewAsyncCommand(cmd)
		v.Paras, v.Result = nil, nil
		out.Commands = append(out.Commands, v)
	}
	return c.JSON(http.StatusOK, out)
}
