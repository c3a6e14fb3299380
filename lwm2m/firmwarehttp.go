package lwm2m

import (
	"bytes"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/iotgate/iotgate/registry"
)

// HTTP(S) pull: a device whose object 5 lists HTTP 1.1 or HTTPS 1.1 in
// /5/0/8 and no CoAP it can use gets a Package URI on the API listener,
// {coap.firmware.http_url}/fw/{token}, served by FirmwareHTTP, which
// cmd/iotgate mounts beside the API (this package imports no other
// adapter). The token is the CoAP resource's: 160 random bits, valid
// while its item downloads. Over CoAP the request must also come from
// the device's own session or address; over HTTP it cannot (a device may
// reach the API through another NAT binding or a proxy), so the token
// alone admits the download.

// FirmwareHTTPPath is the path prefix FirmwareHTTP serves, and the
// Package URI's after the base URL: {base}/fw/{token}.
const FirmwareHTTPPath = "/fw/"

// Firmware Update Protocol Support (/5/0/8) values (LwM2M 1.1, object 5
// 1.1): 4 (CoAP over TCP) and 5 (CoAP over TLS) iotgate does not serve.
const (
	fwProtoCoAP  = 0
	fwProtoCoAPS = 1
	fwProtoHTTP  = 2 // HTTP 1.1
	fwProtoHTTPS = 3 // HTTPS 1.1
)

// pullScheme picks the scheme of a pulling device's Package URI from
// protocols, its /5/0/8 (nil: it says nothing), whether it registered
// over DTLS, and httpScheme, that of coap.firmware.http_url ("" when
// unset). CoAP on the transport the device registered on is kept
// whenever the device allows it (it says nothing, or lists it): that
// download is checked against its session. Otherwise HTTP(S), when the
// URL's scheme is one the device lists; else the error says what is
// missing.
func pullScheme(protocols []int, secure bool, httpScheme string) (string, error) {
	scheme, coap, transport := "coap", fwProtoCoAP, "NoSec"
	if secure {
		scheme, coap, transport = "coaps", fwProtoCoAPS, "DTLS"
	}
	if len(protocols) == 0 || slices.Contains(protocols, coap) {
		return scheme, nil
	}
	plain, tls := slices.Contains(protocols, fwProtoHTTP), slices.Contains(protocols, fwProtoHTTPS)
	switch {
	case !plain && !tls:
		return "", fmt.Errorf("the device supports no download protocol iotgate offers it: /5/0/8 lists %v; registered over %s it can download by %s (%d), HTTP (%d) or HTTPS (%d)",
			protocols, transport, strings.ToUpper(scheme), coap, fwProtoHTTP, fwProtoHTTPS)
	case httpScheme == "":
		return "", fmt.Errorf("the device supports only HTTP(S) download (/5/0/8 lists %v) and coap.firmware.http_url is not set", protocols)
	case httpScheme == "https" && tls, httpScheme == "http" && plain:
		return httpScheme, nil
	case tls:
		return "", fmt.Errorf("the device supports only HTTPS download (/5/0/8 lists %v) and coap.firmware.http_url is an http URL, not https", protocols)
	default:
		return "", fmt.Errorf("the device supports only plain HTTP download (/5/0/8 lists %v) and coap.firmware.http_url is an https URL", protocols)
	}
}

// ValidFirmwareHTTPURL checks a FirmwareOptions.HTTPURL: "" or an
// absolute http or https URL with a host, and no query, fragment or user
// information (it is the start of every HTTP(S) Package URI).
func ValidFirmwareHTTPURL(raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return fmt.Errorf("%q is not a URL: %w", raw, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q: want an absolute http:// or https:// URL", raw)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("%q has no host", raw)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return fmt.Errorf("%q: no query or fragment (the Package URI is the URL and /fw/{token})", raw)
	case u.User != nil:
		return fmt.Errorf("%q: no user information (every device is given the URL)", raw)
	}
	return nil
}

// FirmwareHTTP serves GET and HEAD {FirmwareHTTPPath}{token}: the
// package of the item the token names, while it downloads, with
// http.ServeContent (so Range and If-Range let a device that rebooted
// resume), Content-Type application/octet-stream and the package's
// SHA-256 as ETag. An unknown or retired token gets a 404 that says
// nothing about which tokens exist; a banned address (the guard shared
// with every listener) a 403. No API credential is asked for: the token
// is the credential.
func (s *Server) FirmwareHTTP() http.Handler { return http.HandlerFunc(s.serveFirmwareHTTP) }

func (s *Server) serveFirmwareHTTP(w http.ResponseWriter, r *http.Request) {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil && s.o.Guard.AddressBanned(ap.Addr().Unmap()) {
		http.Error(w, http.StatusText(http.StatusForbidden), http.StatusForbidden)
		return
	}
	tok, ok := strings.CutPrefix(r.URL.Path, FirmwareHTTPPath)
	if !ok || tok == "" || strings.Contains(tok, "/") {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		return
	}
	it, img := s.fw.download(tok)
	if img == nil {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", "no-store") // the URL is a credential
	if sum := img.pkg.FileSHA256; sum != "" {
		h.Set("ETag", `"`+sum+`"`)
	}
	// The API's write timeout (a minute by default) would cut a slow
	// device's download short; a valid token bounds it as the item's
	// download is bounded instead.
	if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.fw.o.DownloadTimeout)); err != nil {
		s.log.Debug("lwm2m firmware: http download keeps the listener's write timeout", "err", err)
	}
	s.log.Debug("lwm2m firmware: http download", "device_id", it.d.DeviceID, "upgrade_id", it.d.UpgradeID,
		"method", r.Method, "range", r.Header.Get("Range"))
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(img.data))
}

// download returns the item a download token names and its image while
// the item downloads: from its start (the Package URI is written then)
// until its device holds the package (step Downloaded), or its end.
func (f *firmware) download(tok string) (*fwItem, *fwImage) {
	f.mu.Lock()
	defer f.mu.Unlock()
	it := f.tokens[tok]
	if it == nil || it.img == nil || (it.step != registry.StepQueued && it.step != registry.StepDownloading) {
		return nil, nil
	}
	return it, it.img
}
