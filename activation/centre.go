package activation

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"

	"github.com/iotgate/iotgate/registry/regions"
)

// Centre is what the centre's endpoints need of the domain
// (regions.Centre).
type Centre interface {
	PreAuth(ctx context.Context, src netip.Addr, p regions.PreAuth) (regions.Grant, regions.Endpoint, error)
	Bootstrap(ctx context.Context, src netip.Addr, pk, dn string) (regions.Endpoint, error)
	Endpoint(region string) (regions.Endpoint, bool)
	Move(ctx context.Context, project, deviceID, to string) (*regions.Entry, error)
	HuaweiBootstrap(ctx context.Context, src netip.Addr, l regions.Login) (regions.Endpoint, error)
}

// AdminToken lets an operator of Project call the centre's admin
// actions with X-Auth-Token.
type AdminToken struct {
	Project string
	Token   string
}

// Guard is the abuse controls the centre's device endpoints consult
// (registry/guard): a banned source address or identity is refused
// before any region is asked, and every refused sign, password or
// unknown name counts against both.
type Guard interface {
	AddressBanned(addr netip.Addr) bool
	IdentityBanned(identity string) bool
	AuthFailed(identity string, addr netip.Addr) bool
}

// CentreOptions configures the centre's handler.
type CentreOptions struct {
	Centre Centre
	Admins []AdminToken
	// Guard nil: no bans.
	Guard  Guard
	Logger *slog.Logger
}

// codeTooMany answers a banned address or identity (Alibaba's 429, "too
// many requests").
const codeTooMany = 429

// aliIdentity is an Alibaba device's identity for the guard, as the MQTT
// listener counts it (DeviceName&ProductKey).
func aliIdentity(pk, dn string) string { return dn + "&" + pk }

// banned reports whether the guard refuses the request outright.
func banned(g Guard, identity string, addr netip.Addr) bool {
	return g != nil && (g.AddressBanned(addr) || identity != "" && g.IdentityBanned(identity))
}

// countFailure records a refusal that proves nothing was right (a wrong
// sign or password, an unknown name) against identity and addr.
func countFailure(g Guard, err error, identity string, addr netip.Addr) {
	if g != nil && (errors.Is(err, regions.ErrBadSign) || errors.Is(err, regions.ErrUnknownDevice)) {
		g.AuthFailed(identity, addr)
	}
}

// maxFormBytes bounds a device's form (iotkit sends under 300 bytes).
const maxFormBytes = 4 << 10

type centreHandler struct {
	c      Centre
	admins []AdminToken
	guard  Guard
	log    *slog.Logger
}

// NewCentreHandler returns the centre's HTTP handler.
func NewCentreHandler(o CentreOptions) http.Handler {
	h := &centreHandler{c: o.Centre, admins: o.Admins, guard: o.Guard, log: o.Logger}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /auth/devicename", h.preAuth)
	mux.HandleFunc("POST /auth/bootstrap", h.bootstrap)
	mux.HandleFunc("GET /auth/bootstrap/regionId/{id}", h.bootstrapRegion)
	mux.HandleFunc("POST /v5/iot/{project}/devices/{device}/action", h.action)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	return mux
}

// source is the address the request came from, for the rules.
func source(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func readForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	return r.ParseForm()
}

func (h *centreHandler) preAuth(w http.ResponseWriter, r *http.Request) {
	if err := readForm(w, r); err != nil {
		writeAli(w, h.log, maxPreAuthReply, aliReply{Code: codeBadParam, Message: "form: " + err.Error()})
		return
	}
	p, err := regions.ParsePreAuth(r.PostForm)
	src, id := source(r), aliIdentity(p.ProductKey, p.DeviceName)
	if banned(h.guard, id, src) {
		writeAli(w, h.log, maxPreAuthReply, aliReply{Code: codeTooMany, Message: "too many requests"})
		return
	}
	var g regions.Grant
	var ep regions.Endpoint
	if err == nil {
		g, ep, err = h.c.PreAuth(r.Context(), src, p)
		countFailure(h.guard, err, id, src)
	}
	if err != nil {
		h.refused(w, maxPreAuthReply, "pre-auth", p.ProductKey, p.DeviceName, err)
		return
	}
	writeAli(w, h.log, maxPreAuthReply, aliReply{Code: codeOK, Message: "success", Data: preAuthData{IotID: g.IotID,
		IotToken: g.IotToken, Resources: resources{MQTT: mqttResource{Host: ep.MQTTHost, Port: ep.MQTTPort}}}})
}

func (h *centreHandler) bootstrap(w http.ResponseWriter, r *http.Request) {
	if err := readForm(w, r); err != nil {
		writeAli(w, h.log, maxBootstrapReply, aliReply{Code: codeBadParam, Message: "form: " + err.Error()})
		return
	}
	pk, dn := r.PostForm.Get("productKey"), r.PostForm.Get("deviceName")
	src, id := source(r), aliIdentity(pk, dn)
	if banned(h.guard, id, src) {
		writeAli(w, h.log, maxBootstrapReply, aliReply{Code: codeTooMany, Message: "too many requests"})
		return
	}
	ep, err := h.c.Bootstrap(r.Context(), src, pk, dn)
	countFailure(h.guard, err, id, src)
	if err != nil {
		h.refused(w, maxBootstrapReply, "bootstrap", pk, dn, err)
		return
	}
	writeAli(w, h.log, maxBootstrapReply, aliReply{Code: codeOK, Data: bootstrapData{
		Resources: resources{MQTT: mqttResource{Host: ep.MQTTHost, Port: ep.MQTTPort}}}})
}

func (h *centreHandler) bootstrapRegion(w http.ResponseWriter, r *http.Request) {
	ep, ok := h.c.Endpoint(r.PathValue("id"))
	if !ok {
		writeAli(w, h.log, maxBootstrapReply, aliReply{Code: codeBadParam, Message: "unknown regionId"})
		return
	}
	writeAli(w, h.log, maxBootstrapReply, aliReply{Code: codeOK, Data: bootstrapData{
		Resources: resources{MQTT: mqttResource{Host: ep.MQTTHost, Port: ep.MQTTPort}}}})
}

func (h *centreHandler) refused(w http.ResponseWriter, max int, what, pk, dn string, err error) {
	code, msg := aliCode(err)
	level := slog.LevelInfo
	if code == codeServerError {
		level = slog.LevelWarn
	}
	h.log.Log(context.Background(), level, what+" refused", "product_key", pk, "device_name", dn, "code", code, "err", err)
	writeAli(w, h.log, max, aliReply{Code: code, Message: msg})
}

// admin reports whether the request carries the project's admin token.
func (h *centreHandler) admin(r *http.Request, project string) bool {
	tok := r.Header.Get("X-Auth-Token")
	ok := 0
	for _, a := range h.admins {
		ok |= subtle.ConstantTimeCompare([]byte(a.Token), []byte(tok)) & boolInt(a.Project == project && tok != "")
	}
	return ok == 1
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

type apiError struct {
	Code string `json:"error_code"`
	Msg  string `json:"error_msg"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// action serves POST /v5/iot/{project}/devices/{device}/action?
// action_id=moveRegion, body {"region_id":"..."}: our extension of the
// IoTDA device actions.
func (h *centreHandler) action(w http.ResponseWriter, r *http.Request) {
	project, device := r.PathValue("project"), r.PathValue("device")
	if !h.admin(r, project) {
		writeJSON(w, http.StatusUnauthorized, apiError{"IOTDA.000002", "Authentication failed: X-Auth-Token of the project required"})
		return
	}
	if id := r.URL.Query().Get("action_id"); id != "moveRegion" {
		writeJSON(w, http.StatusBadRequest, apiError{"IOTDA.000006", "Invalid input data: action_id must be moveRegion at the activation centre"})
		return
	}
	var body struct {
		RegionID string `json:"region_id"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxFormBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || body.RegionID == "" {
		writeJSON(w, http.StatusBadRequest, apiError{"IOTDA.000006", "Invalid input data: body must be {\"region_id\": \"...\"}"})
		return
	}
	e, err := h.c.Move(r.Context(), project, device, body.RegionID)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, map[string]string{"device_id": e.DeviceID, "region_id": e.Region, "from_region_id": e.From})
	case errors.Is(err, regions.ErrUnknownRegion):
		writeJSON(w, http.StatusBadRequest, apiError{"IOTDA.000006", "Invalid input data: unknown region_id"})
	case errors.Is(err, regions.ErrUnknownDevice):
		writeJSON(w, http.StatusNotFound, apiError{"IOTDA.014000", "The device does not exist or has not contacted the activation centre yet"})
	default:
		h.log.Warn("moveRegion failed", "project", project, "device_id", device, "region", body.RegionID, "err", err)
		writeJSON(w, http.StatusBadGateway, apiError{"IOTDA.000001", "A region could not complete the move; retry"})
	}
}
