package api

import (
	"encoding/json"
	"net/http"

	"github.com/iotgate/iotgate/registry"
	"github.com/labstack/echo/v4"
)

// shadowSection is a shadow's desired or reported section
// (DeviceShadowProperties).
type shadowSection struct {
	Properties map[string]json.RawMessage `json:"properties"`
	EventTime  string                     `json:"event_time,omitempty"`
}

// shadowData is one service's shadow (DeviceShadowData), plus delta: the
// desired properties the device has not reported yet.
type shadowData struct {
	ServiceID string                     `json:"service_id"`
	Desired   *shadowSection             `json:"desired,omitempty"`
	Reported  *shadowSection             `json:"reported,omitempty"`
	Version   int64                      `json:"version"`
	Delta     map[string]json.RawMessage `json:"delta,omitempty"`
}

// shadowView is ShowDeviceShadowResponse (and the answer to a desired
// update, UpdateDeviceShadowDesiredDataResponse).
type shadowView struct {
	DeviceID string       `json:"device_id"`
	Shadow   []shadowData `json:"shadow"`
}

func viewShadow(sh *registry.Shadow) shadowView {
	out := shadowView{DeviceID: sh.DeviceID, Shadow: []shadowData{}}
	for _, sv := range sh.Services {
		d := shadowData{ServiceID: sv.ServiceID, Version: sv.Version, Delta: sv.Delta()}
		if len(sv.Desired) > 0 {
			d.Desired = &shadowSection{Properties: sv.Desired, EventTime: compact(sv.DesiredTime)}
		}
		if sv.Properties != nil {
			d.Reported = &shadowSection{Properties: sv.Properties, EventTime: compact(sv.EventTime)}
		}
		out.Shadow = append(out.Shadow, d)
	}
	return out
}

// GET /devices/{id}/shadow
func (s *Server) showShadow(c echo.Context) error {
	sh, err := s.reg.DeviceShadow(c.Request().Context(), project(c), c.Param("device_id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewShadow(sh))
}

// PUT /devices/{id}/shadow {"shadow":[{"service_id", "desired":{...},
// "version"?}]}: desired:{} clears a service's desired section, a null
// property deletes one; a version that is not the service's current one
// refuses the whole update.
func (s *Server) updateDesired(c echo.Context) error {
	var b struct {
		Shadow []struct {
			ServiceID *string         `json:"service_id"`
			Desired   json.RawMessage `json:"desired"`
			Version   *int64          `json:"version"`
		} `json:"shadow"`
	}
	if err := decode(c, &b); err != nil {
		return err
	}
	if len(b.Shadow) == 0 {
		return badInput("invalid shadow: is required and must name at least one service")
	}
	ups := make([]registry.DesiredUpdate, len(b.Shadow))
	for i, sv := range b.Shadow {
		var desired map[string]json.RawMessage
		if len(sv.Desired) == 0 || json.Unmarshal(sv.Desired, &desired) != nil || desired == nil {
			return badInput("invalid shadow[%d].desired: is required and must be a JSON object", i)
		}
		ups[i] = registry.DesiredUpdate{ServiceID: str(sv.ServiceID), Desired: desired, Version: sv.Version}
	}
	sh, err := s.reg.UpdateDesired(c.Request().Context(), project(c), c.Param("device_id"), ups)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewShadow(sh))
}
