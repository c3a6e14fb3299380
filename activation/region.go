package activation

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/iotgate/iotgate/registry/regions"
)

// The region endpoint's error codes (JSON "code"): Alibaba's where one
// exists (reference activation.md), 520 ("no session") for an offline
// device.
const codeOffline = 520

// regionPrefix is the path of every region endpoint.
const regionPrefix = "/activation/v1/"

// maxRegionBody bounds a request body of the region endpoint.
const maxRegionBody = 64 << 10

type regionError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	// Param names the parameter of a 460.
	Param string `json:"param,omitempty"`
}

// NewRegionHandler serves region r to the centre. Every request must
// carry "Authorization: Bearer {token}".
func NewRegionHandler(r regions.Region, token string, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &regionHandler{r: r, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+regionPrefix+"preauth", h.preAuth)
	mux.HandleFunc("GET "+regionPrefix+"devices/{pk}/{dn}", h.device)
	mux.HandleFunc("GET "+regionPrefix+"devices/{pk}/{dn}/export", h.export)
	mux.HandleFunc("PUT "+regionPrefix+"devices", h.importDevice)
	mux.HandleFunc("DELETE "+regionPrefix+"devices/{pk}/{dn}", h.delete)
	mux.HandleFunc("POST "+regionPrefix+"devices/{pk}/{dn}/notify", h.notify)
	mux.HandleFunc("POST "+regionPrefix+"devices/{pk}/{dn}/token", h.issueToken)
	mux.HandleFunc("POST "+regionPrefix+"login", h.login)
	mux.HandleFunc("GET "+regionPrefix+"lwm2m/{ep}", h.lwm2mDevice)
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if token == "" || subtle.ConstantTimeCompare([]byte(req.Header.Get("Authorization")), want) != 1 {
			http.Error(w, "bearer token required", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, req)
	})
}

type regionHandler struct {
	r   regions.Region
	log *slog.Logger
}

func (h *regionHandler) fail(w http.ResponseWriter, err error) {
	e := regionError{Code: codeServerError, Message: "server error"}
	status := http.StatusInternalServerError
	var pe *regions.ParamError
	switch {
	case errors.As(err, &pe):
		e, status = regionError{Code: codeBadParam, Message: pe.Reason, Param: pe.Param}, http.StatusBadRequest
	case errors.Is(err, regions.ErrBadSign):
		e, status = regionError{Code: codeBadSign, Message: "sign check failed"}, http.StatusForbidden
	case errors.Is(err, regions.ErrUnknownDevice):
		e, status = regionError{Code: codeNoDevice, Message: "device not found"}, http.StatusNotFound
	case errors.Is(err, regions.ErrAuthType):
		e, status = regionError{Code: codeAuthType, Message: "device does not authenticate with a secret"}, http.StatusConflict
	case errors.Is(err, regions.ErrOffline):
		e, status = regionError{Code: codeOffline, Message: "device not online"}, http.StatusConflict
	default:
		h.log.Warn("activation request failed", "err", err)
	}
	writeJSON(w, status, e)
}

func (h *regionHandler) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRegionBody))
	if err := dec.Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, regionError{Code: codeBadParam, Message: "body: " + err.Error()})
		return false
	}
	return true
}

func (h *regionHandler) preAuth(w http.ResponseWriter, r *http.Request) {
	var p regions.PreAuth
	if !h.decode(w, r, &p) {
		return
	}
	g, err := h.r.PreAuth(r.Context(), p)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, g)
}

func (h *regionHandler) device(w http.ResponseWriter, r *http.Request) {
	d, err := h.r.Device(r.Context(), r.PathValue("pk"), r.PathValue("dn"))
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (h *regionHandler) export(w http.ResponseWriter, r *http.Request) {
	t, err := h.r.Export(r.Context(), r.PathValue("pk"), r.PathValue("dn"))
	if err != nil {
		h.fail(w, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, t)
}

func (h *regionHandler) importDevice(w http.ResponseWriter, r *http.Request) {
	var t regions.Transfer
	if !h.decode(w, r, &t) {
		return
	}
	if strings.TrimSpace(t.DeviceID) == "" || t.ProductKey == "" || t.DeviceName == "" || t.Secret == "" {
		h.fail(w, &regions.ParamError{Param: "device", Reason: "deviceId, productKey, deviceName and secret are required"})
		return
	}
	if err := h.r.Import(r.Context(), t); err != nil {
		h.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *regionHandler) delete(w http.ResponseWriter, r *http.Request) {
	if err := h.r.Delete(r.Context(), r.PathValue("pk"), r.PathValue("dn")); err != nil {
		h.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// notify tells the device to bootstrap again; a body (a
// regions.Redirect) is pushed to an MQTT device first.
func (h *regionHandler) notify(w http.ResponseWriter, r *http.Request) {
	var to *regions.Redirect
	if r.ContentLength != 0 {
		to = &regions.Redirect{}
		if !h.decode(w, r, to) {
			return
		}
	}
	if err := h.r.NotifyBootstrap(r.Context(), r.PathValue("pk"), r.PathValue("dn"), to); err != nil {
		h.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// issueToken issues an iotToken for a device moving here (it carries a
// credential: not cached).
func (h *regionHandler) issueToken(w http.ResponseWriter, r *http.Request) {
	g, err := h.r.IssueToken(r.Context(), r.PathValue("pk"), r.PathValue("dn"))
	if err != nil {
		h.fail(w, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, g)
}

func (h *regionHandler) login(w http.ResponseWriter, r *http.Request) {
	var l regions.Login
	if !h.decode(w, r, &l) {
		return
	}
	held, err := h.r.CheckLogin(r.Context(), l)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, held)
}

// lwm2mDevice answers the centre's LwM2M bootstrap server with the
// device's account, secret included (SECURITY.md, "LwM2M bootstrap").
func (h *regionHandler) lwm2mDevice(w http.ResponseWriter, r *http.Request) {
	a, err := h.r.LwM2MDevice(r.Context(), r.PathValue("ep"))
	if err != nil {
		h.fail(w, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, a)
}
