package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/iotgate/iotgate/registry"
	"github.com/labstack/echo/v4"
)

// The event stream is our extension (IoTDA pushes events through routing
// rules instead): an application reads its project's events in order
// from a cursor, and may register a named consumer whose acknowledged
// cursor the platform keeps and whose backlog it keeps until acknowledged.
//
// Codes not in the reference; chosen in IoTDA's numbering and documented
// in the README.
const (
	codeEventsTrimmed    = "IOTDA.014600"
	codeConsumerNotFound = "IOTDA.014601"
)

// Paging of GET /events.
const (
	defaultEventsLimit = 100
	maxEventsLimit     = registry.MaxEventsPage
)

func (s *Server) eventRoutes(g *echo.Group) {
	g.GET("/events", s.listEvents)
	g.PUT("/event-consumers/:name", s.addEventConsumer)
	g.GET("/event-consumers/:name", s.showEventConsumer)
	g.POST("/event-consumers/:name/ack", s.ackEvents)
	g.DELETE("/event-consumers/:name", s.deleteEventConsumer)
}

// eventView is an event as IoTDA pushes it, plus its place in the stream
// (cursor) and its per-device seq.
type eventView struct {
	EventID     string          `json:"event_id"`
	Cursor      string          `json:"cursor"`
	Seq         uint64          `json:"seq"`
	Resource    string          `json:"resource"`
	Event       string          `json:"event"`
	EventTime   string          `json:"event_time"`
	EventTimeMs string          `json:"event_time_ms"`
	NotifyData  eventNotifyData `json:"notify_data"`
}

type eventNotifyData struct {
	Header registry.EventHeader `json:"header"`
	Body   json.RawMessage      `json:"body"`
}

// eventTimeMs is IoTDA's event_time_ms, yyyy-MM-dd'T'HH:mm:ss.SSS'Z'.
const eventTimeMs = "2006-01-02T15:04:05.000Z"

func viewEvent(e registry.Event) eventView {
	return eventView{EventID: e.ID, Cursor: formatCursor(e.Position), Seq: e.Seq, Resource: e.Resource, Event: e.Event,
		EventTime: compact(e.Time), EventTimeMs: e.Time.UTC().Format(eventTimeMs),
		NotifyData: eventNotifyData{Header: e.Header, Body: e.Body}}
}

func formatCursor(pos uint64) string { return strconv.FormatUint(pos, 10) }

// parseCursor reads a cursor given back by a client; empty is the start.
func parseCursor(v string) (uint64, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, badInput("invalid cursor: %q is not a cursor this API returned (a decimal number)", v)
	}
	return n, nil
}

// listEvents is GET /events?cursor=C&limit=N[&consumer=NAME]: up to N
// (1–1000, default 100) of the project's events after C, oldest first,
// and next_cursor to read on from. Without cursor it reads after the
// named consumer's acknowledged cursor, or from the oldest event kept.
func (s *Server) listEvents(c echo.Context) error {
	ctx := c.Request().Context()
	limit := defaultEventsLimit
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxEventsLimit {
			return &apiError{Status: http.StatusBadRequest, Code: codeLimitRange,
				Msg: "invalid limit: must be an integer from 1 to " + strconv.Itoa(maxEventsLimit)}
		}
		limit = n
	}
	cursor, err := parseCursor(c.QueryParam("cursor"))
	if err != nil {
		return err
	}
	if name := c.QueryParam("consumer"); name != "" && c.QueryParam("cursor") == "" {
		con, err := s.reg.EventConsumer(ctx, project(c), name)
		if err != nil {
			return eventError(err)
		}
		cursor = con.Cursor
	}
	page, err := s.reg.Events(ctx, project(c), cursor, limit)
	if err != nil {
		return eventError(err)
	}
	out := struct {
		Events     []eventView `json:"events"`
		NextCursor string      `json:"next_cursor"`
	}{Events: make([]eventView, 0, len(page.Events)), NextCursor: formatCursor(page.Next)}
	for _, e := range page.Events {
		out.Events = append(out.Events, viewEvent(e))
	}
	return c.JSON(http.StatusOK, out)
}

type consumerView struct {
	Name        string `json:"name"`
	Cursor      string `json:"cursor"`
	CreatedTime string `json:"created_time"`
}

func viewConsumer(c *registry.EventConsumer) consumerView {
	return consumerView{Name: c.Name, Cursor: formatCursor(c.Cursor), CreatedTime: compact(c.Created)}
}

// addEventConsumer is PUT /event-consumers/{name}: registers the consumer
// (or returns it, if it exists).
func (s *Server) addEventConsumer(c echo.Context) error {
	con, err := s.reg.AddEventConsumer(c.Request().Context(), project(c), c.Param("name"))
	if err != nil {
		return eventError(err)
	}
	return c.JSON(http.StatusOK, viewConsumer(con))
}

func (s *Server) showEventConsumer(c echo.Context) error {
	con, err := s.reg.EventConsumer(c.Request().Context(), project(c), c.Param("name"))
	if err != nil {
		return eventError(err)
	}
	return c.JSON(http.StatusOK, viewConsumer(con))
}

// ackEvents is POST /event-consumers/{name}/ack {"cursor": C}: the
// consumer has processed every event up to C.
func (s *Server) ackEvents(c echo.Context) error {
	var b struct {
		Cursor *string `json:"cursor"`
	}
	if err := decode(c, &b); err != nil {
		return err
	}
	if b.Cursor == nil || *b.Cursor == "" {
		return badInput("invalid cursor: is required")
	}
	cursor, err := parseCursor(*b.Cursor)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if err := s.reg.AckEvents(ctx, project(c), c.Param("name"), cursor); err != nil {
		return eventError(err)
	}
	con, err := s.reg.EventConsumer(ctx, project(c), c.Param("name"))
	if err != nil {
		return eventError(err)
	}
	return c.JSON(http.StatusOK, viewConsumer(con))
}

func (s *Server) deleteEventConsumer(c echo.Context) error {
	if err := s.reg.DeleteEventConsumer(c.Request().Context(), project(c), c.Param("name")); err != nil {
		return eventError(err)
	}
	return c.NoContent(http.StatusNoContent)
}

// eventError maps the stream's errors to their codes; others go to the
// shared mapping.
func eventError(err error) error {
	var nf *registry.NotFoundError
	switch {
	case errors.As(err, &nf) && nf.Kind == registry.EntityEventConsumer:
		return &apiError{Status: http.StatusNotFound, Code: codeConsumerNotFound, Msg: nf.Error()}
	case errors.Is(err, registry.ErrCursorAhead):
		return badInput("invalid cursor: %s", err.Error())
	case errors.Is(err, registry.ErrEventsTrimmed):
		return &apiError{Status: http.StatusBadRequest, Code: codeEventsTrimmed,
			Msg: "Events after the cursor were trimmed (acknowledged by every consumer or past retention): " + err.Error()}
	}
	return err
}
