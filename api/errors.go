package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/iotgate/iotgate/registry"
	"github.com/labstack/echo/v4"
)

// apiError is an IoTDA error: an HTTP status plus the body
// {"error_code":"IOTDA.xxxxxx","error_msg":"..."}.
type apiError struct {
	Status int    `json:"-"`
	Code   string `json:"error_code"`
	Msg    string `json:"error_msg"`
}

func (e *apiError) Error() string { return e.Code + ": " + e.Msg }

// IoTDA error codes we answer with (reference §0.1).
const (
	codeInternal       = "IOTDA.000001"
	codeUnauthorized   = "IOTDA.000002"
	codeInvalidToken   = "IOTDA.000004"
	codeInvalidInput   = "IOTDA.000006"
	codeBadFormat      = "IOTDA.000008"
	codeLimitRange     = "IOTDA.000017"
	codeForbidden      = "IOTDA.001002"
	codeDeviceNotFound = "IOTDA.014000"
	codeNotOnline      = "IOTDA.014016"
	codeDeviceExists   = "IOTDA.014031"
	codeCmdTimeout     = "IOTDA.014111"
	codeVerifyFailed   = "IOTDA.014307"
	// Codes the reference does not list; chosen in IoTDA's numbering and
	// documented in the README.
	codeProductNotFound = "IOTDA.013000"
	codeCertNotFound    = "IOTDA.014300"
	codeHasDevices      = "IOTDA.013008"
	codeQuota           = "IOTDA.014308"
	codeProductExists   = "IOTDA.013031"
	codeCommandNotFound = "IOTDA.014100" // next to the device codes
	codeShadowVersion   = "IOTDA.014211" // a stale shadow version (HTTP 409)
)

func badInput(format string, a ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: codeInvalidInput, Msg: fmt.Sprintf(format, a...)}
}

// fromRegistry maps a domain error to its IoTDA status and code.
func fromRegistry(err error) *apiError {
	var (
		ve *registry.ValidationError
		ce *registry.ConflictError
		nf *registry.NotFoundError
		sv *registry.ShadowVersionError
	)
	switch {
	case errors.As(err, &sv):
		return &apiError{Status: http.StatusConflict, Code: codeShadowVersion, Msg: "Operation not allowed. The " + sv.Error()}
	case errors.As(err, &ve):
		return badInput("%s", ve.Error())
	case errors.As(err, &ce):
		switch ce.Field {
		case registry.UniqueProductID:
			return &apiError{Status: http.StatusBadRequest, Code: codeProductExists, Msg: ce.Error()}
		case registry.UniqueNodeID, registry.UniqueDeviceID, registry.UniqueFingerprint:
			return &apiError{Status: http.StatusBadRequest, Code: codeDeviceExists,
				Msg: "Invalid input. The device already exists: " + ce.Error()}
		}
		return &apiError{Status: http.StatusBadRequest, Code: codeDeviceExists, Msg: ce.Error()}
	case errors.As(err, &nf):
		code := codeDeviceNotFound // a device, by any of its keys
		switch nf.Kind {
		case registry.EntityProduct:
			code = codeProductNotFound
		case registry.EntityCertificate:
			code = codeCertNotFound
		case registry.EntityCommand:
			code = codeCommandNotFound
		case registry.EntityOTAPackage:
			code = codePackageNotFound
		}
		return &apiError{Status: http.StatusNotFound, Code: code, Msg: nf.Error()}
	case errors.Is(err, registry.ErrInUse):
		return &apiError{Status: http.StatusConflict, Code: codeInvalidInput, Msg: "Operation not allowed. " + err.Error()}
	case errors.Is(err, registry.ErrHasDevices):
		return &apiError{Status: http.StatusBadRequest, Code: codeHasDevices, Msg: err.Error()}
	case errors.Is(err, registry.ErrQuota):
		return &apiError{Status: http.StatusBadRequest, Code: codeQuota, Msg: err.Error()}
	case errors.Is(err, registry.ErrVerifyCode):
		return &apiError{Status: http.StatusBadRequest, Code: codeVerifyFailed,
			Msg: "Operation not allowed. The certificates verify verifyCode failed: " + err.Error()}
	case errors.Is(err, registry.ErrNotConnected):
		return &apiError{Status: http.StatusForbidden, Code: codeNotOnline, Msg: "Operation not allowed. The device is not online."}
	case errors.Is(err, registry.ErrUnsupported):
		return badInput("%s", err.Error())
	}
	if what, ok := unavailable(err); ok {
		return &apiError{Status: http.StatusServiceUnavailable, Code: codeInternal, Msg: "Service unavailable: " + what}
	}
	return nil
}

// unavailable says, for a failure of the store or of the cluster, what
// became of the request (a 503 either way).
func unavailable(err error) (string, bool) {
	switch {
	case errors.Is(err, registry.ErrNodeUnreachable):
		return "the node holding the device's session cannot be reached. The command was not delivered.", true
	case errors.Is(err, registry.ErrOutcomeUnknown):
		return "the store was lost while the write committed; it may have been applied. Read before retrying.", true
	case errors.Is(err, registry.ErrUnavailable):
		return "the store cannot be reached. Nothing was written.", true
	case errors.Is(err, registry.ErrConflict):
		return "concurrent writes to the same data kept this one from committing. Nothing was written; retry.", true
	case errors.Is(err, registry.ErrStorageFull):
		return "storage is full, writes are refused until space is freed. Nothing was written.", true
	}
	return "", false
}

// errorHandler writes every error as an IoTDA error body. Internal errors
// are logged with their detail and answered without it.
func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var ae *apiError
	var he *echo.HTTPError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &ae):
	case fromRegistry(err) != nil:
		ae = fromRegistry(err)
	case errors.As(err, &se):
		ae = &apiError{Status: http.StatusBadRequest, Code: codeBadFormat, Msg: "request body is not valid JSON: " + se.Error()}
	case errors.As(err, &he):
		ae = &apiError{Status: he.Code, Code: codeBadFormat, Msg: fmt.Sprint(he.Message)}
		if he.Code == http.StatusNotFound {
			ae.Msg = "no such API: " + c.Request().Method + " " + c.Request().URL.Path
		}
	default:
		s.log.Error("request failed", "method", c.Request().Method, "path", c.Path(), "err", err)
		ae = &apiError{Status: http.StatusInternalServerError, Code: codeInternal, Msg: "Internal server error."}
	}
	_ = c.JSON(ae.Status, ae)
}
