package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/iotgate/iotgate/registry"
	"github.com/labstack/echo/v4"
)

// propertyRoutes are the synchronous property APIs: an application reads
// (GET) or writes (PUT) a connected MQTT device's properties, the device
// answering within the command timeout.
func (s *Server) propertyRoutes(g *echo.Group) {
	g.GET("/devices/:device_id/properties", s.getProperties)
	g.PUT("/devices/:device_id/properties", s.setProperties)
}

// GET /devices/{id}/properties?service_id=
func (s *Server) getProperties(c echo.Context) error {
	sid := c.QueryParam("service_id")
	if sid == "" {
		return badInput("invalid service_id: is required")
	}
	if err := checkLen("service_id", sid, 64); err != nil {
		return err
	}
	return s.sendProperties(c, registry.PropertiesRequest{Op: registry.PropertiesGet, ServiceID: sid})
}

// PUT /devices/{id}/properties {"services":[{"service_id", "properties"}]}
func (s *Server) setProperties(c echo.Context) error {
	var b struct {
		Services json.RawMessage `json:"services"`
	}
	if err := decode(c, &b); err != nil {
		return err
	}
	if err := checkServices(b.Services); err != nil {
		return err
	}
	return s.sendProperties(c, registry.PropertiesRequest{Op: registry.PropertiesSet, Services: b.Services})
}

// checkServices requires what a properties set carries: a non-empty array
// of objects whose service_id, where given, is a string of at most 64
// characters and whose properties, where given, are an object. The rest
// of their shape is the application's agreement with its device (IoTDA
// passes it through).
func checkServices(raw json.RawMessage) error {
	var services []map[string]json.RawMessage
	if len(raw) == 0 || json.Unmarshal(raw, &services) != nil || len(services) == 0 {
		return badInput("invalid services: is required and must be a non-empty array of objects")
	}
	for i, sv := range services {
		if sv == nil {
			return badInput("invalid services[%d]: must be an object", i)
		}
		if v, ok := sv["service_id"]; ok {
			var id string
			if json.Unmarshal(v, &id) != nil {
				return badInput("invalid services[%d].service_id: must be a string", i)
			}
			if err := checkLen("service_id", id, 64); err != nil {
				return err
			}
		}
		if v, ok := sv["properties"]; ok {
			var obj map[string]json.RawMessage
			if json.Unmarshal(v, &obj) != nil || obj == nil {
				return badInput("invalid services[%d].properties: must be a JSON object", i)
			}
		}
	}
	return nil
}

// sendProperties delivers p to the device and answers IoTDA's
// {request_id, response}; a device that does not answer in time is HTTP
// 200 with IOTDA.014111, as for commands.
func (s *Server) sendProperties(c echo.Context, p registry.PropertiesRequest) error {
	ctx := c.Request().Context()
	d, err := s.reg.ProjectDevice(ctx, project(c), c.Param("device_id"))
	if err != nil {
		return err
	}
	p.RequestID = newID()
	wctx, cancel := context.WithTimeout(ctx, s.cmdWait)
	defer cancel()
	resp, err := s.router.SendProperties(wctx, d, p)
	if errors.Is(err, registry.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
		return c.JSON(http.StatusOK, map[string]any{"request_id": p.RequestID, "error_code": codeCmdTimeout,
			"error_msg": "Properties request timed out. Check whether the device returns a response within the specified time after receiving the request."})
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"request_id": p.RequestID, "response": resp})
}
