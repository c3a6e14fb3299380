package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"

	"github.com/iotgate/iotgate/registry"
	"github.com/labstack/echo/v4"
)

// OTA upgrade packages (IoTDA's /ota-upgrades/packages). IoTDA's create
// references a file in its object storage (file_location.obs_location);
// iotgate keeps the file itself, so the create is one multipart/form-data
// request: part "package" is IoTDA's JSON body without file_location,
// part "file" the image, and an optional part "sha256" its expected
// checksum (hex). One request makes the package with its file or
// nothing (a package never exists without its file), and the IoTDA
// fields keep their JSON shape. The body is read within
// api.limits.max_body_bytes, like every request's (the AK/SK signature
// covers it).

// Codes not in the reference; chosen in IoTDA's numbering and documented
// in the README.
const (
	codePackageNotFound = "IOTDA.014500"
	// codeFirmwareFailed is a firmwareUpgrade task item's error when the
	// device's upgrade failed (its Update Result, a refusal, a timeout).
	codeFirmwareFailed = "IOTDA.014501"
)

// packageRegistry serves /ota-upgrades/packages.
type packageRegistry interface {
	AddOTAPackage(ctx context.Context, project string, p registry.OTAPackage, file io.Reader, wantSHA256 string) (*registry.OTAPackage, error)
	OTAPackage(ctx context.Context, project, id string) (*registry.OTAPackage, error)
	OTAPackages(ctx context.Context, project string, f registry.OTAPackageFilter, pg registry.Page) (*registry.OTAPackageList, error)
	DeleteOTAPackage(ctx context.Context, project, id string) error
}

func (s *Server) packageRoutes(g *echo.Group) {
	g.POST("/ota-upgrades/packages", s.createPackage)
	g.GET("/ota-upgrades/packages", s.listPackages)
	g.GET("/ota-upgrades/packages/:package_id", s.showPackage)
	g.DELETE("/ota-upgrades/packages/:package_id", s.deletePackage)
}

// packageView is IoTDA's OtaPackageInfo (and CreateOtaPackageResponse)
// plus the stored file's size and SHA-256.
type packageView struct {
	PackageID             string   `json:"package_id"`
	AppID                 string   `json:"app_id"`
	PackageType           string   `json:"package_type"`
	ProductID             string   `json:"product_id"`
	ModuleName            string   `json:"module_name,omitempty"`
	Version               string   `json:"version"`
	SupportSourceVersions []string `json:"support_source_versions"`
	Description           string   `json:"description,omitempty"`
	CustomInfo            string   `json:"custom_info,omitempty"`
	CreateTime            string   `json:"create_time"`
	FileSize              int64    `json:"file_size"`
	FileSHA256            string   `json:"file_sha256"`
}

func viewPackage(p *registry.OTAPackage) packageView {
	v := packageView{PackageID: p.PackageID, AppID: p.ProjectID, PackageType: p.PackageType, ProductID: p.ProductID,
		ModuleName: p.ModuleName, Version: p.Version, SupportSourceVersions: p.SupportSourceVersions,
		Description: p.Description, CustomInfo: p.CustomInfo, CreateTime: p.Created.UTC().Format(compactTime),
		FileSize: p.FileSize, FileSHA256: p.FileSHA256}
	if v.SupportSourceVersions == nil {
		v.SupportSourceVersions = []string{}
	}
	return v
}

// packageBody is IoTDA's CreateOtaPackage.
type packageBody struct {
	AppID                 string          `json:"app_id"`
	PackageType           string          `json:"package_type"`
	ProductID             string          `json:"product_id"`
	ModuleName            string          `json:"module_name"`
	Version               string          `json:"version"`
	SupportSourceVersions []string        `json:"support_source_versions"`
	Description           string          `json:"description"`
	CustomInfo            string          `json:"custom_info"`
	FileLocation          json.RawMessage `json:"file_location"`
}

const multipartHint = "send multipart/form-data with a part \"package\" (the JSON body, without file_location) and a part \"file\" (the image)"

// createPackage is POST /ota-upgrades/packages.
func (s *Server) createPackage(c echo.Context) error {
	mt, params, err := mime.ParseMediaType(c.Request().Header.Get(echo.HeaderContentType))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return badInput("iotgate keeps package files itself and fetches nothing from OBS: %s", multipartHint)
	}
	body, _ := c.Get(bodyKey).([]byte)
	var (
		meta, file, sum []byte
		seen            = map[string]bool{}
	)
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return badInput("invalid multipart body: %v", err)
		}
		name := part.FormName()
		b, err := io.ReadAll(part)
		if err != nil {
			return badInput("invalid multipart body: part %q: %v", name, err)
		}
		if seen[name] {
			return badInput("invalid multipart body: part %q appears twice", name)
		}
		seen[name] = true
		switch name {
		case "package":
			meta = b
		case "file":
			file = b
		case "sha256":
			sum = bytes.TrimSpace(b)
		default:
			return badInput("invalid multipart body: unknown part %q; %s, and optionally \"sha256\"", name, multipartHint)
		}
	}
	if meta == nil || file == nil {
		return badInput("invalid multipart body: %s", multipartHint)
	}
	var b packageBody
	dec := json.NewDecoder(bytes.NewReader(meta))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return badInput("invalid package part: %v", err)
	}
	if len(b.FileLocation) > 0 && string(b.FileLocation) != "null" {
		return badInput("invalid file_location: iotgate fetches nothing from OBS; the image is the part \"file\"")
	}
	if b.AppID != "" && b.AppID != project(c) {
		return badInput("invalid app_id: must be this project's id %q: iotgate has one resource space per project", project(c))
	}
	p, err := s.reg.AddOTAPackage(c.Request().Context(), project(c), registry.OTAPackage{PackageType: b.PackageType,
		ProductID: b.ProductID, ModuleName: b.ModuleName, Version: b.Version, SupportSourceVersions: b.SupportSourceVersions,
		Description: b.Description, CustomInfo: b.CustomInfo}, bytes.NewReader(file), string(sum))
	if err != nil {
		return packageError(err)
	}
	return c.JSON(http.StatusCreated, viewPackage(p))
}

// listPackages is GET /ota-upgrades/packages?package_type=...
func (s *Server) listPackages(c echo.Context) error {
	pg, err := page(c)
	if err != nil {
		return err
	}
	q := c.QueryParams()
	f := registry.OTAPackageFilter{PackageType: q.Get("package_type"), ProductID: q.Get("product_id"), Version: q.Get("version")}
	switch f.PackageType {
	case registry.PackageTypeFirmware, registry.PackageTypeSoftware:
	case "":
		return badInput("invalid package_type: is required (firmwarePackage or softwarePackage)")
	default:
		return badInput("invalid package_type: must be firmwarePackage or softwarePackage")
	}
	if id := q.Get("app_id"); id != "" && id != project(c) {
		return badInput("invalid app_id: must be this project's id %q: iotgate has one resource space per project", project(c))
	}
	for _, k := range []string{"product_id", "version"} {
		if err := checkLen(k, q.Get(k), 256); err != nil {
			return err
		}
	}
	l, err := s.reg.OTAPackages(c.Request().Context(), project(c), f, pg)
	if err != nil {
		return err
	}
	out := struct {
		Packages []packageView `json:"packages"`
		Page     pageInfo      `json:"page"`
	}{Packages: []packageView{}, Page: pageInfo{Count: l.Count, Marker: l.Marker}}
	for _, p := range l.Packages {
		out.Packages = append(out.Packages, viewPackage(p))
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) showPackage(c echo.Context) error {
	p, err := s.reg.OTAPackage(c.Request().Context(), project(c), c.Param("package_id"))
	if err != nil {
		return packageError(err)
	}
	return c.JSON(http.StatusOK, viewPackage(p))
}

func (s *Server) deletePackage(c echo.Context) error {
	if err := s.reg.DeleteOTAPackage(c.Request().Context(), project(c), c.Param("package_id")); err != nil {
		return packageError(err)
	}
	return c.NoContent(http.StatusNoContent)
}

// packageError maps a missing package to its code; the rest as usual.
func packageError(err error) error {
	var nf *registry.NotFoundError
	if errors.As(err, &nf) && nf.Kind == registry.EntityOTAPackage {
		return &apiError{Status: http.StatusNotFound, Code: codePackageNotFound, Msg: nf.Error()}
	}
	var ce *registry.ConflictError
	if errors.As(err, &ce) && ce.Field == registry.UniquePackageVersion {
		return &apiError{Status: http.StatusConflict, Code: codeInvalidInput,
			Msg: "Operation not allowed. A package of this product and type with version " + strconv.Quote(ce.Value) + " already exists."}
	}
	return err
}
