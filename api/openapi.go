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
	b, err := yamlToJSON(openAPIYAML)
	if err != nil {
		return nil, fmt.Errorf("api: openapi.yaml: %w", err)
	}
	return b, nil
}

// yamlToJSON converts a YAML document to JSON, anchors and merge keys
// resolved. A plain scalar that YAML reads as a timestamp (2026-12-07)
// stays the string it was written as: JSON has no time type, and an
// example or a description must not be rewritten.
func yamlToJSON(data []byte) ([]byte, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, err
	}
	var plain func(n *yaml.Node)
	plain = func(n *yaml.Node) {
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!timestamp" {
			n.Tag = "!!str"
		}
		for _, c := range n.Content {
			plain(c)
		}
	}
	plain(&root)
	var doc any
	if err := root.Decode(&doc); err != nil {
		return nil, err
	}
	return json.Marshal(doc)
}

// openAPIRoutes serves the description, unauthenticated (it holds no
// secret, and clients read it before they have a credential).
func (s *Server) openAPIRoutes(e *echo.Echo) {
	spec, err := openAPIJSON()
	if err != nil {
		// The description is compiled in and TestOpenAPISpec serves it:
		// this cannot fail in a tested build.
		panic(err)
	}
	e.GET("/openapi.json", func(c echo.Context) error {
		return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, spec)
	})
}
