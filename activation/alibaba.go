package activation

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/iotgate/iotgate/registry/regions"
)

// Alibaba's codes for the pre-auth and bootstrap answers (reference:
// activation.md). The HTTP status is always 200: the C SDK reads the
// JSON code.
const (
	codeOK          = 200
	codeBadSign     = 401
	codeBadParam    = 460
	codeServerError = 500
	codeNoDevice    = 5001
	codeAuthType    = 6200
)

// Reply buffers of the device SDKs: iotkit 3.0 reads the pre-auth answer
// into 300 bytes and Link SDK 4.x the bootstrap answer into 192; each
// must fit with room for the C string's NUL.
const (
	maxPreAuthReply   = 299
	maxBootstrapReply = 191
)

type mqttResource struct {
	Host string `json:"host"`
	Port int    `json:"port"`
}

type resources struct {
	MQTT mqttResource `json:"mqtt"`
}

type preAuthData struct {
	IotID     string    `json:"iotId"`
	IotToken  string    `json:"iotToken"`
	Resources resources `json:"resources"`
}

type bootstrapData struct {
	Resources resources `json:"resources"`
}

type aliReply struct {
	Code    int    `json:"code"`
	Data    any    `json:"data,omitempty"`
	Message string `json:"message,omitempty"`
}

// aliCode maps a domain error to Alibaba's code and a message that names
// the problem without revealing more than the code does.
func aliCode(err error) (int, string) {
	var pe *regions.ParamError
	switch {
	case errors.As(err, &pe):
		return codeBadParam, pe.Error()
	case errors.Is(err, regions.ErrBadSign):
		return codeBadSign, "sign check failed"
	case errors.Is(err, regions.ErrUnknownDevice):
		return codeNoDevice, "device not found"
	case errors.Is(err, regions.ErrAuthType):
		return codeAuthType, "device does not authenticate with a secret"
	}
	return codeServerError, "server error"
}

// writeAli writes an Alibaba answer, refusing (500) one the device's
// buffer would not hold.
func writeAli(w http.ResponseWriter, log *slog.Logger, max int, r aliReply) {
	b, err := json.Marshal(r)
	if err == nil && len(b) > max {
		log.Error("answer longer than the device SDK's buffer; check activation.regions[].mqtt_host", "bytes", len(b), "max", max)
		b, err = json.Marshal(aliReply{Code: codeServerError, Message: "server error"})
	}
	if err != nil {
		http.Error(w, "encoding", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	_, _ = w.Write(b)
}
