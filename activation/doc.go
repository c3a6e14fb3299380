// Package activation is the HTTP face of the activation centre and of a
// region towards it (the domain is registry/regions):
//
//   - NewCentreHandler serves devices at the centre's one global address:
//     Alibaba's signed pre-auth (POST /auth/devicename) and bootstrap
//     (POST /auth/bootstrap, GET /auth/bootstrap/regionId/{id}), each
//     answering with the assigned region's endpoint; the operator's
//     moveRegion action; (BootstrapMQTT) Huawei IoTDP-style bootstrap
//     over MQTT; and (BootstrapLwM2M) an LwM2M Bootstrap server, over
//     NoSec and DTLS-PSK, that writes a device its region's server
//     account (a PSK one over DTLS only).
//   - NewRegionHandler serves a region's devices' business to the centre,
//     server to server, under a bearer token (/activation/v1/...);
//     RegionClient is the centre's client of it.
//
// It imports no other adapter and no storage engine; of the LwM2M
// adapter only its leaves, which know no LwM2M server: its codecs
// (lwm2m/format) and its CoAP-over-DTLS transport (lwm2m/transport,
// lwm2m/ratelog) (test/layers_test.go).
package activation
