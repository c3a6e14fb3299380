package lwm2m

import (
	"bytes"
	"context"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/mux"
)

// The download resource of a pull delivery: GET /fw/{token} answers the
// package's file. The answer is the whole file as far as this handler
// knows; go-coap's blockwise layer cuts out the block a request's Block2
// asks for (at the size it asks, at most 1024 bytes) from the same bytes,
// so each block request stands alone: a device that rebooted mid-way
// asks for the block it stopped at, with a new token, and gets it. The
// ETag (the first 8 bytes of the file's SHA-256) lets it check that it
// is resuming the same file.
//
// Only the device the item is for is served: over DTLS its own session,
// over NoSec the address it registered from. The token (160 random bits)
// is the rest of the check; any other request gets the 4.04 an unknown
// path gets, which says nothing about which tokens exist. A token serves
// while its item downloads (firmware.download); FirmwareHTTP serves the
// same tokens over HTTP(S) (firmwarehttp.go).

type largeAnswerKey struct{}

// largeAnswerAllowed reports whether r's answer may be larger than r
// over NoSec (see noLargerThan): a download to the address the device
// registered from.
func largeAnswerAllowed(r *pool.Message) bool {
	ok, _ := r.Context().Value(largeAnswerKey{}).(bool)
	return ok
}

func (s *Server) serveFirmware(w mux.ResponseWriter, r *mux.Message) {
	if r.Code() != codes.GET {
		respond(w, codes.MethodNotAllowed, "")
		return
	}
	it, img := s.fw.download(r.RouteParams.Vars["token"])
	if img == nil || !s.downloader(w, it) {
		respond(w, codes.NotFound, "")
		return
	}
	r.SetContext(context.WithValue(r.Context(), largeAnswerKey{}, true))
	_ = w.SetResponse(codes.Content, message.AppOctets, bytes.NewReader(img.data),
		message.Option{ID: message.ETag, Value: img.etag})
}

// downloader reports whether the request on w comes from its device.
func (s *Server) downloader(w mux.ResponseWriter, it *fwItem) bool {
	e := s.store.device(it.d.DeviceID)
	if e == nil {
		return false
	}
	st, _ := w.Conn().Context().Value(connStateKey{}).(*connState)
	if st == nil || st.secure != e.secure {
		return false
	}
	if e.secure {
		return st.entry.Load() == e
	}
	addr := e.addr.Load()
	return addr != nil && w.Conn().RemoteAddr().String() == addr.String()
}
