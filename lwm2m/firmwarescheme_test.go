package lwm2m

import (
	"strings"
	"testing"
)

// TestPullScheme is the protocol choice of a pulling device's Package
// URI: CoAP of the device's transport when it says nothing or lists it,
// else HTTP(S) through coap.firmware.http_url, else a failure naming
// what is missing.
func TestPullScheme(t *testing.T) {
	for _, c := range []struct {
		name       string
		protocols  []int
		secure     bool
		httpScheme string
		want       string // scheme, or "" for an error containing fail
		fail       string
	}{
		{name: "NoSec, says nothing", want: "coap"},
		{name: "DTLS, says nothing", secure: true, want: "coaps"},
		{name: "NoSec, says nothing, URL set", httpScheme: "https", want: "coap"},
		{name: "NoSec, lists CoAP", protocols: []int{0}, want: "coap"},
		{name: "DTLS, lists CoAPS", protocols: []int{1}, secure: true, want: "coaps"},
		{name: "NoSec, lists CoAP and HTTP", protocols: []int{2, 0}, httpScheme: "http", want: "coap"},
		{name: "DTLS, lists all four", protocols: []int{0, 1, 2, 3}, secure: true, httpScheme: "https", want: "coaps"},
		{name: "NoSec, HTTP only, http URL", protocols: []int{2}, httpScheme: "http", want: "http"},
		{name: "DTLS, HTTP only, http URL", protocols: []int{2}, secure: true, httpScheme: "http", want: "http"},
		{name: "HTTPS only, https URL", protocols: []int{3}, httpScheme: "https", want: "https"},
		{name: "HTTP and HTTPS, https URL", protocols: []int{2, 3}, httpScheme: "https", want: "https"},
		{name: "HTTP and HTTPS, http URL", protocols: []int{3, 2}, httpScheme: "http", want: "http"},
		{name: "DTLS, CoAP (NoSec) and HTTPS, https URL", protocols: []int{0, 3}, secure: true, httpScheme: "https", want: "https"},
		{name: "HTTP only, no URL", protocols: []int{2},
			fail: "the device supports only HTTP(S) download (/5/0/8 lists [2]) and coap.firmware.http_url is not set"},
		{name: "HTTPS only, no URL", protocols: []int{3}, secure: true, fail: "coap.firmware.http_url is not set"},
		{name: "HTTPS only, http URL", protocols: []int{3}, httpScheme: "http",
			fail: "supports only HTTPS download (/5/0/8 lists [3]) and coap.firmware.http_url is an http URL, not https"},
		{name: "HTTP only, https URL", protocols: []int{2}, httpScheme: "https",
			fail: "supports only plain HTTP download (/5/0/8 lists [2]) and coap.firmware.http_url is an https URL"},
		{name: "NoSec, CoAPS only", protocols: []int{1}, httpScheme: "https",
			fail: "/5/0/8 lists [1]; registered over NoSec it can download by COAP (0), HTTP (2) or HTTPS (3)"},
		{name: "DTLS, CoAP only", protocols: []int{0}, secure: true,
			fail: "/5/0/8 lists [0]; registered over DTLS it can download by COAPS (1)"},
		{name: "CoAP over TCP and TLS only", protocols: []int{4, 5}, httpScheme: "http", fail: "no download protocol iotgate offers"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := pullScheme(c.protocols, c.secure, c.httpScheme)
			if c.fail != "" {
				if err == nil || !strings.Contains(err.Error(), c.fail) {
					t.Fatalf("got %q, %v; want an error containing %q", got, err, c.fail)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

func TestValidFirmwareHTTPURL(t *testing.T) {
	for _, ok := range []string{"", "http://192.0.2.1:8080", "https://iot.example.com", "https://iot.example.com/gate/", "http://[::1]:8080"} {
		if err := ValidFirmwareHTTPURL(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"iot.example.com:8080", "/fw", "ftp://iot.example.com", "coap://iot.example.com",
		"https://", "https://:443", "https://iot.example.com/?a=b", "https://iot.example.com/?", "https://iot.example.com/#x",
		"https://u:p@iot.example.com", "http://%zz"} {
		if err := ValidFirmwareHTTPURL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
