package api

import (
	"net/http"

	"github.com/iotgate/iotgate/registry"
	"github.com/labstack/echo/v4"
)

func (s *Server) certRoutes(g *echo.Group) {
	g.POST("/certificates", s.uploadCert)
	g.GET("/certificates", s.listCerts)
	g.GET("/certificates/:certificate_id", s.showCert)
	g.POST("/certificates/:certificate_id/action", s.certAction)
	g.DELETE("/certificates/:certificate_id", s.deleteCert)
}

type certView struct {
	CertificateID   string `json:"certificate_id"`
	CNName          string `json:"cn_name"`
	Owner           string `json:"owner"`
	Status          bool   `json:"status"`
	VerifyCode      string `json:"verify_code"`
	ProvisionEnable bool   `json:"provision_enable"`
	CreateDate      string `json:"create_date"`
	EffectiveDate   string `json:"effective_date"`
	ExpiryDate      string `json:"expiry_date"`
}

func viewCert(c *registry.CACert) certView {
	return certView{
		CertificateID: c.CertificateID, CNName: c.CNName, Owner: c.Owner, Status: c.Verified,
		VerifyCode: c.VerifyCode, CreateDate: compact(c.CreateTime),
		EffectiveDate: compact(c.NotBefore), ExpiryDate: compact(c.NotAfter),
	}
}

func (s *Server) uploadCert(c echo.Context) error {
	var b struct {
		Content *string `json:"content"`
	}
	if err := decode(c, &b); err != nil {
		return err
	}
	if b.Content == nil || *b.Content == "" {
		return badInput("invalid content: is required (a PEM CA certificate)")
	}
	cert, err := s.reg.AddCACert(c.Request().Context(), project(c), *b.Content)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, viewCert(cert))
}

func (s *Server) showCert(c echo.Context) error {
	cert, err := s.reg.CACert(c.Request().Context(), project(c), c.Param("certificate_id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewCert(cert))
}

func (s *Server) listCerts(c echo.Context) error {
	pg, err := page(c)
	if err != nil {
		return err
	}
	certs, err := s.reg.CACerts(c.Request().Context(), project(c))
	if err != nil {
		return err
	}
	out := struct {
		Certificates []certView `json:"certificates"`
		Page         pageInfo   `json:"page"`
	}{Certificates: []certView{}, Page: pageInfo{Count: int64(len(certs))}}
	// At most 100 per project, so paging in memory is fine.
	for i, cert := range certs {
		if i < pg.Offset {
			continue
		}
		if len(out.Certificates) == pg.Limit {
			break
		}
		out.Certificates = append(out.Certificates, viewCert(cert))
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) certAction(c echo.Context) error {
	if a := c.QueryParam("action_id"); a != "verify" {
		return badInput("invalid action_id: %q is not supported (verify)", a)
	}
	var b struct {
		VerifyContent *string `json:"verify_content"`
	}
	if err := decode(c, &b); err != nil {
		return err
	}
	if b.VerifyContent == nil || *b.VerifyContent == "" {
		return badInput("invalid verify_content: is required (a PEM certificate signed by the CA whose CN is the verify code)")
	}
	cert, err := s.reg.VerifyCACert(c.Request().Context(), project(c), c.Param("certificate_id"), *b.VerifyContent)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewCert(cert))
}

func (s *Server) deleteCert(c echo.Context) error {
	if err := s.reg.DeleteCACert(c.Request().Context(), project(c), c.Param("certificate_id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
