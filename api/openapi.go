package api

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"
	"gopkg.in/yaml.v3"
)

// openAPIYAML describes every route New registers; TestOpenAPIRoutes
// keeps the two in step.
//
//go:embed openapi.yaml
var openAPIYAML []byte

// openAPIJSON is the description as served: JSON, which every OpenAPI
// tool reads, from YAML, which people can edit (anchors share the error
// answers between operations).
func openAPIJSON() ([]byte, error) {
	var doc any
	if err := yaml.Unmarshal(openAPIYAML, &doc); err != nil {
		return nil, fmt.Errorf("api: openapi.yaml: %w", err)
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("api: openapi.yaml as JSON: %w", err)
	}
	return b, nil
}

// openAPIRoutes serves the description, unauthenticated (it holds no
// secret, and clients read it before they have a credential).
func (s *Server) openAPIRoutes(e *echo.Echo) {
	e.GET("/openapi.json", func(c echo.Context) error {
		return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, s.openapi)
	})
}
