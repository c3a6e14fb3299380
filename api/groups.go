package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/iotgate/iotgate/registry"
	"github.com/labstack/echo/v4"
)

// Static device groups (IoTDA's device-group API).

// Codes not in the reference; chosen in IoTDA's numbering and documented
// in the README.
const (
	codeGroupNotFound  = "IOTDA.014800"
	codeGroupExists    = "IOTDA.014831"
	codeHasSubGroups   = "IOTDA.014808"
	actionAddDevice    = "addDevice"
	actionRemoveDevice = "removeDevice"
)

// groupRegistry serves /device-group.
type groupRegistry interface {
	CreateGroup(ctx context.Context, project string, ng registry.NewGroup) (*registry.Group, error)
	Group(ctx context.Context, project, id string) (*registry.Group, error)
	ListGroups(ctx context.Context, project string, f registry.GroupFilter, pg registry.Page) (*registry.GroupList, error)
	UpdateGroup(ctx context.Context, project, id string, ch registry.GroupChange) (*registry.Group, error)
	DeleteGroup(ctx context.Context, project, id string) error
	AddToGroup(ctx context.Context, project, groupID, deviceID string) error
	RemoveFromGroup(ctx context.Context, project, groupID, deviceID string) error
	GroupDevices(ctx context.Context, project, id string, pg registry.Page) (*registry.MemberList, error)
}

func (s *Server) groupRoutes(g *echo.Group) {
	g.POST("/device-group", s.createGroup)
	g.GET("/device-group", s.listGroups)
	g.GET("/device-group/:group_id", s.showGroup)
	g.PUT("/device-group/:group_id", s.updateGroup)
	g.DELETE("/device-group/:group_id", s.deleteGroup)
	g.POST("/device-group/:group_id/action", s.groupAction)
	g.GET("/device-group/:group_id/devices", s.groupDevices)
}

// groupView is IoTDA's DeviceGroupResponseDTO (and summary).
type groupView struct {
	GroupID      string `json:"group_id"`
	Name         string `json:"name"`
	Description  string `json:"description,omitempty"`
	SuperGroupID string `json:"super_group_id,omitempty"`
	GroupType    string `json:"group_type"`
}

func viewGroup(g *registry.Group) groupView {
	return groupView{GroupID: g.ID, Name: g.Name, Description: g.Description, SuperGroupID: g.SuperGroupID,
		GroupType: registry.GroupStatic}
}

// createGroup is POST /device-group (IoTDA's AddDeviceGroupDTO).
func (s *Server) createGroup(c echo.Context) error {
	var b struct {
		Name             *string `json:"name"`
		Description      string  `json:"description"`
		SuperGroupID     string  `json:"super_group_id"`
		AppID            string  `json:"app_id"`
		GroupType        string  `json:"group_type"`
		DynamicGroupRule string  `json:"dynamic_group_rule"`
	}
	if err := decode(c, &b); err != nil {
		return err
	}
	if b.Name == nil {
		return badInput("invalid name: is required")
	}
	if b.DynamicGroupRule != "" && b.GroupType != registry.GroupDynamic {
		return badInput("invalid dynamic_group_rule: only a DYNAMIC group has one")
	}
	g, err := s.reg.CreateGroup(c.Request().Context(), project(c), registry.NewGroup{Name: *b.Name,
		Description: b.Description, SuperGroupID: b.SuperGroupID, AppID: b.AppID, Type: b.GroupType})
	if err != nil {
		return groupError(err)
	}
	return c.JSON(http.StatusCreated, viewGroup(g))
}

func (s *Server) showGroup(c echo.Context) error {
	g, err := s.reg.Group(c.Request().Context(), project(c), c.Param("group_id"))
	if err != nil {
		return groupError(err)
	}
	return c.JSON(http.StatusOK, viewGroup(g))
}

// listGroups is GET /device-group, filtered by name, group_type and
// last_modified_time, newest first (IoTDA's paging).
func (s *Server) listGroups(c echo.Context) error {
	pg, err := page(c)
	if err != nil {
		return err
	}
	q := c.QueryParams()
	var f registry.GroupFilter
	if v := q.Get("last_modified_time"); v != "" {
		t, err := time.Parse(compactTime, v)
		if err != nil {
			return badInput("invalid last_modified_time: must be yyyyMMdd'T'HHmmss'Z', e.g. 20151212T121212Z")
		}
		f.ModifiedAfter = t
	}
	if err := checkLen("name", q.Get("name"), 256); err != nil {
		return err
	}
	f.Name = q.Get("name")
	if id := q.Get("app_id"); id != "" && id != project(c) {
		return badInput("invalid app_id: must be this project's id %q: iotgate has one resource space per project", project(c))
	}
	out := struct {
		DeviceGroups []groupView `json:"device_groups"`
		Page         pageInfo    `json:"page"`
	}{DeviceGroups: []groupView{}}
	switch q.Get("group_type") {
	case "", registry.GroupStatic:
	case registry.GroupDynamic: // iotgate has none
		return c.JSON(http.StatusOK, out)
	default:
		return badInput("invalid group_type: must be STATIC or DYNAMIC")
	}
	l, err := s.reg.ListGroups(c.Request().Context(), project(c), f, pg)
	if err != nil {
		return err
	}
	for _, g := range l.Groups {
		out.DeviceGroups = append(out.DeviceGroups, viewGroup(g))
	}
	out.Page = pageInfo{Count: l.Count, Marker: l.Marker}
	return c.JSON(http.StatusOK, out)
}

// updateGroup is PUT /device-group/{group_id} (IoTDA's UpdateDeviceGroupDTO).
func (s *Server) updateGroup(c echo.Context) error {
	var b struct {
		Name        *string `json:"name"`
		Description *string `json:"description"`
	}
	if err := decode(c, &b); err != nil {
		return err
	}
	g, err := s.reg.UpdateGroup(c.Request().Context(), project(c), c.Param("group_id"),
		registry.GroupChange{Name: b.Name, Description: b.Description})
	if err != nil {
		return groupError(err)
	}
	return c.JSON(http.StatusOK, viewGroup(g))
}

func (s *Server) deleteGroup(c echo.Context) error {
	if err := s.reg.DeleteGroup(c.Request().Context(), project(c), c.Param("group_id")); err != nil {
		return groupError(err)
	}
	return c.NoContent(http.StatusNoContent)
}

// groupAction is POST /device-group/{group_id}/action?action_id=addDevice|removeDevice&device_id=.
func (s *Server) groupAction(c echo.Context) error {
	ctx, proj, group, dev := c.Request().Context(), project(c), c.Param("group_id"), c.QueryParam("device_id")
	if dev == "" {
		return badInput("invalid device_id: is required")
	}
	if err := checkLen("device_id", dev, 128); err != nil {
		return err
	}
	var err error
	switch c.QueryParam("action_id") {
	case actionAddDevice:
		err = s.reg.AddToGroup(ctx, proj, group, dev)
	case actionRemoveDevice:
		err = s.reg.RemoveFromGroup(ctx, proj, group, dev)
	default:
		return badInput("invalid action_id: must be %s or %s", actionAddDevice, actionRemoveDevice)
	}
	if err != nil {
		return groupError(err)
	}
	return c.NoContent(http.StatusOK)
}

// simplifyDevice is IoTDA's SimplifyDevice.
type simplifyDevice struct {
	DeviceID   string `json:"device_id"`
	NodeID     string `json:"node_id"`
	DeviceName string `json:"device_name,omitempty"`
	ProductID  string `json:"product_id"`
}

// groupDevices is GET /device-group/{group_id}/devices, the most recently
// added first.
func (s *Server) groupDevices(c echo.Context) error {
	pg, err := page(c)
	if err != nil {
		return err
	}
	l, err := s.reg.GroupDevices(c.Request().Context(), project(c), c.Param("group_id"), pg)
	if err != nil {
		return groupError(err)
	}
	out := struct {
		Devices []simplifyDevice `json:"devices"`
		Page    pageInfo         `json:"page"`
	}{Devices: make([]simplifyDevice, 0, len(l.Devices)), Page: pageInfo{Count: l.Count, Marker: l.Marker}}
	for _, d := range l.Devices {
		out.Devices = append(out.Devices, simplifyDevice{DeviceID: d.DeviceID, NodeID: d.NodeID,
			DeviceName: d.DeviceName, ProductID: d.ProductID})
	}
	return c.JSON(http.StatusOK, out)
}

// groupError maps a missing group, a taken name and a group with
// sub-groups to their codes; others go to the shared mapping.
func groupError(err error) error {
	var nf *registry.NotFoundError
	var ce *registry.ConflictError
	switch {
	case errors.As(err, &nf) && nf.Kind == registry.EntityDeviceGroup:
		return &apiError{Status: http.StatusNotFound, Code: codeGroupNotFound, Msg: nf.Error()}
	case errors.As(err, &ce) && ce.Field == registry.UniqueGroupName:
		return &apiError{Status: http.StatusBadRequest, Code: codeGroupExists, Msg: ce.Error()}
	case errors.Is(err, registry.ErrHasSubGroups):
		return &apiError{Status: http.StatusBadRequest, Code: codeHasSubGroups, Msg: err.Error()}
	}
	return err
}
