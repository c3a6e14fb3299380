package api

import (
	"encoding/json"
	"net/http"

	"github.com/iotgate/iotgate/registry"
	"github.com/labstack/echo/v4"
)

func (s *Server) productRoutes(g *echo.Group) {
	g.POST("/products", s.createProduct)
	g.GET("/products", s.listProducts)
	g.GET("/products/:product_id", s.showProduct)
	g.PUT("/products/:product_id", s.updateProduct)
	g.DELETE("/products/:product_id", s.deleteProduct)
	g.POST("/products/:product_id/reset-secret", s.resetProductSecret)
}

type productBody struct {
	ProductID           *string         `json:"product_id"`
	Name                *string         `json:"name"`
	DeviceType          *string         `json:"device_type"`
	ProtocolType        *string         `json:"protocol_type"`
	DataFormat          *string         `json:"data_format"`
	ManufacturerName    *string         `json:"manufacturer_name"`
	Industry            *string         `json:"industry"`
	Description         *string         `json:"description"`
	ServiceCapabilities json.RawMessage `json:"service_capabilities"`
	// Alibaba-style product authentication (see README).
	ProductSecret       *string `json:"product_secret"`
	DynamicRegistration *bool   `json:"dynamic_registration"`
	PreregistrationFree *bool   `json:"preregistration_free"`
	NodeType            *string `json:"node_type"`
}

type productView struct {
	AppID               string          `json:"app_id"`
	AppName             string          `json:"app_name"`
	ProductID           string          `json:"product_id"`
	Name                string          `json:"name"`
	DeviceType          string          `json:"device_type"`
	ProtocolType        string          `json:"protocol_type"`
	DataFormat          string          `json:"data_format"`
	ManufacturerName    string          `json:"manufacturer_name,omitempty"`
	Industry            string          `json:"industry,omitempty"`
	Description         string          `json:"description,omitempty"`
	ServiceCapabilities json.RawMessage `json:"service_capabilities,omitempty"`
	CreateTime          string          `json:"create_time"`
	ProductSecret       string          `json:"product_secret,omitempty"`
	DynamicRegistration bool            `json:"dynamic_registration"`
	PreregistrationFree bool            `json:"preregistration_free"`
	NodeType            string          `json:"node_type"`
}

// defaultAppName is the single resource space every project has here.
const defaultAppName = "DefaultApp"

func viewProduct(p *registry.Product, full bool) productView {
	v := productView{
		AppID: p.ProjectID, AppName: defaultAppName, ProductID: p.ProductID, Name: p.Name,
		DeviceType: p.DeviceType, ProtocolType: p.ProtocolType, DataFormat: p.DataFormat,
		ManufacturerName: p.ManufacturerName, Industry: p.Industry, Description: p.Description,
		CreateTime: compact(p.CreateTime), DynamicRegistration: p.DynamicRegistration,
		PreregistrationFree: p.PreregistrationFree, NodeType: p.NodeType,
	}
	if full {
		v.ProductSecret = p.ProductSecret
		v.ServiceCapabilities = p.ServiceCapabilities
		if len(v.ServiceCapabilities) == 0 {
			v.ServiceCapabilities = json.RawMessage("[]")
		}
	}
	return v
}

func (s *Server) createProduct(c echo.Context) error {
	var b productBody
	if err := decode(c, &b); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		v    *string
	}{{"name", b.Name}, {"device_type", b.DeviceType}, {"protocol_type", b.ProtocolType}} {
		if f.v == nil {
			return badInput("invalid %s: is required", f.name)
		}
	}
	if b.ServiceCapabilities == nil {
		return badInput("invalid service_capabilities: is required")
	}
	p, err := s.reg.CreateProduct(c.Request().Context(), registry.Product{
		ProjectID: project(c), ProductID: str(b.ProductID), Name: str(b.Name), DeviceType: str(b.DeviceType),
		ProtocolType: str(b.ProtocolType), DataFormat: str(b.DataFormat), ManufacturerName: str(b.ManufacturerName),
		Industry: str(b.Industry), Description: str(b.Description), ServiceCapabilities: b.ServiceCapabilities,
		ProductSecret: str(b.ProductSecret), NodeType: str(b.NodeType),
		DynamicRegistration: b.DynamicRegistration != nil && *b.DynamicRegistration,
		PreregistrationFree: b.PreregistrationFree != nil && *b.PreregistrationFree,
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, viewProduct(p, true))
}

func (s *Server) showProduct(c echo.Context) error {
	p, err := s.reg.Product(c.Request().Context(), project(c), c.Param("product_id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewProduct(p, true))
}

func (s *Server) listProducts(c echo.Context) error {
	pg, err := page(c)
	if err != nil {
		return err
	}
	l, err := s.reg.ListProducts(c.Request().Context(), project(c), c.QueryParam("product_name"), pg)
	if err != nil {
		return err
	}
	out := struct {
		Products []productView `json:"products"`
		Page     pageInfo      `json:"page"`
	}{Products: []productView{}, Page: pageInfo{Count: l.Count, Marker: l.Marker}}
	for _, p := range l.Products {
		out.Products = append(out.Products, viewProduct(p, false))
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) updateProduct(c echo.Context) error {
	var b productBody
	if err := decode(c, &b); err != nil {
		return err
	}
	if b.ProductID != nil && *b.ProductID != c.Param("product_id") {
		return badInput("invalid product_id: cannot be changed")
	}
	p, err := s.reg.UpdateProduct(c.Request().Context(), project(c), c.Param("product_id"), registry.ProductUpdate{
		Name: b.Name, DeviceType: b.DeviceType, ProtocolType: b.ProtocolType, DataFormat: b.DataFormat,
		ManufacturerName: b.ManufacturerName, Industry: b.Industry, Description: b.Description,
		ServiceCapabilities: b.ServiceCapabilities, ProductSecret: b.ProductSecret, NodeType: b.NodeType,
		DynamicRegistration: b.DynamicRegistration, PreregistrationFree: b.PreregistrationFree,
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewProduct(p, true))
}

// resetProductSecret serves POST /products/{id}/reset-secret: a new random
// product secret, returned once here (and by show product).
func (s *Server) resetProductSecret(c echo.Context) error {
	secret, err := s.reg.ResetProductSecret(c.Request().Context(), project(c), c.Param("product_id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]string{"product_id": c.Param("product_id"), "product_secret": secret})
}

func (s *Server) deleteProduct(c echo.Context) error {
	if err := s.reg.DeleteProduct(c.Request().Context(), project(c), c.Param("product_id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
