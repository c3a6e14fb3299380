package api

import (
	"net/http"

	"github.com/iotgate/iotgate/registry"
	"github.com/labstack/echo/v4"
)

// tagRoutes are IoTDA's tag APIs: bind tags to a resource, unbind them,
// find resources by tag. Devices are the one resource type with tags.
func (s *Server) tagRoutes(g *echo.Group) {
	g.POST("/tags/bind-resource", s.bindTags)
	g.POST("/tags/unbind-resource", s.unbindTags)
	g.POST("/tags/query-resources", s.queryByTags)
}

// tagBody is a tag in a request (TagV5DTO).
type tagBody struct {
	TagKey   *string `json:"tag_key"`
	TagValue *string `json:"tag_value"`
}

// tagView is a tag in a response (TagV5DTO).
type tagView struct {
	TagKey   string `json:"tag_key"`
	TagValue string `json:"tag_value,omitempty"`
}

func tagsOf(b *[]tagBody) []registry.Tag {
	if b == nil {
		return nil
	}
	out := make([]registry.Tag, len(*b))
	for i, t := range *b {
		out[i] = registry.Tag{Key: str(t.TagKey), Value: str(t.TagValue)}
	}
	return out
}

func viewTags(tags []registry.Tag) []tagView {
	out := make([]tagView, len(tags))
	for i, t := range tags {
		out[i] = tagView{TagKey: t.Key, TagValue: t.Value}
	}
	return out
}

// resourceDevice is the one resource_type with tags.
const resourceDevice = "device"

func checkResourceType(t *string) error {
	if t == nil || *t != resourceDevice {
		return badInput("invalid resource_type: must be %q", resourceDevice)
	}
	return nil
}

// POST /tags/bind-resource {resource_type, resource_id, tags} (BindTagsDTO).
func (s *Server) bindTags(c echo.Context) error {
	var b struct {
		ResourceType *string    `json:"resource_type"`
		ResourceID   *string    `json:"resource_id"`
		Tags         *[]tagBody `json:"tags"`
	}
	if err := decode(c, &b); err != nil {
		return err
	}
	if err := checkResourceType(b.ResourceType); err != nil {
		return err
	}
	if _, err := s.reg.BindTags(c.Request().Context(), project(c), str(b.ResourceID), tagsOf(b.Tags)); err != nil {
		return err
	}
	return c.NoContent(http.StatusOK)
}

// POST /tags/unbind-resource {resource_type, resource_id, tag_keys}
// (UnbindTagsDTO).
func (s *Server) unbindTags(c echo.Context) error {
	var b struct {
		ResourceType *string  `json:"resource_type"`
		ResourceID   *string  `json:"resource_id"`
		TagKeys      []string `json:"tag_keys"`
	}
	if err := decode(c, &b); err != nil {
		return err
	}
	if err := checkResourceType(b.ResourceType); err != nil {
		return err
	}
	if _, err := s.reg.UnbindTags(c.Request().Context(), project(c), str(b.ResourceID), b.TagKeys); err != nil {
		return err
	}
	return c.NoContent(http.StatusOK)
}

// POST /tags/query-resources?limit&marker&offset {resource_type, tags}
// (QueryResourceByTagsDTO): the devices with any of the tags, newest
// first; a tag without tag_value matches any value.
func (s *Server) queryByTags(c echo.Context) error {
	pg, err := page(c)
	if err != nil {
		return err
	}
	var b struct {
		ResourceType *string   `json:"resource_type"`
		Tags         []tagBody `json:"tags"`
	}
	if err := decode(c, &b); err != nil {
		return err
	}
	if err := checkResourceType(b.ResourceType); err != nil {
		return err
	}
	qs := make([]registry.TagQuery, len(b.Tags))
	for i, t := range b.Tags {
		qs[i] = registry.TagQuery{Key: str(t.TagKey), Value: t.TagValue}
	}
	l, err := s.reg.DevicesByTags(c.Request().Context(), project(c), qs, pg)
	if err != nil {
		return err
	}
	type resource struct {
		ResourceID string `json:"resource_id"`
	}
	out := struct {
		Resources []resource `json:"resources"`
		Page      pageInfo   `json:"page"`
	}{Resources: []resource{}, Page: pageInfo{Count: l.Count, Marker: l.Marker}}
	for _, id := range l.DeviceIDs {
		out.Resources = append(out.Resources, resource{ResourceID: id})
	}
	return c.JSON(http.StatusOK, out)
}
