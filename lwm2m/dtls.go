package lwm2m

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/iotgate/iotgate/lwm2m/transport"
	"github.com/iotgate/iotgate/registry/guard"
	"github.com/pion/dtls/v2"
)

// cidLength is the length of the DTLS Connection IDs this server hands out.
// The mux routes records by CID only when all CIDs have one length; 8 random
// bytes make collisions between live sessions negligible (6 on a cluster,
// after the node tag: still negligible).
const cidLength = 8

// pskCipherSuites are the PSK suites offered: the two Huawei names plus the
// GCM and CCM variants pion implements.
var pskCipherSuites = []dtls.CipherSuiteID{
	dtls.TLS_PSK_WITH_AES_128_CCM_8,
	dtls.TLS_PSK_WITH_AES_128_CBC_SHA256,
	dtls.TLS_PSK_WITH_AES_128_CCM,
	dtls.TLS_PSK_WITH_AES_128_GCM_SHA256,
}

// errBannedIdentity fails the handshake of a banned PSK identity.
var errBannedIdentity = errors.New("psk identity is banned")

// dtlsConfig is the server side of DTLS 1.2 with PSKs from the security
// store, Connection IDs and HelloVerifyRequest cookies (pion's default,
// kept on: InsecureSkipVerifyHello stays false).
//
// On a node of a cluster (node not ""), the Connection IDs begin with the
// node's tag, so that any node can tell whose a record is.
func dtlsConfig(sec SecurityStore, g guard.Guard, handshakeTimeout time.Duration, node string, log *slog.Logger) *dtls.Config {
	cids := dtls.RandomCIDGenerator(cidLength)
	if node != "" {
		cids = transport.TaggedCIDGenerator(transport.TagOf(node), cidLength)
	}
	return &dtls.Config{
		PSK: func(identity []byte) ([]byte, error) {
			// A banned identity fails before its key is looked up.
			if g.IdentityBanned(string(identity)) {
				return nil, errBannedIdentity
			}
			ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
			defer cancel()
			key, err := pskLookup(ctx, sec, identity)
			if err != nil {
				log.Warn("dtls: psk lookup failed", "identity", string(identity), "err", err)
			}
			return key, err
		},
		// A server must name a hint for pion to run PSK key exchange with
		// clients that send none; LwM2M clients ignore it.
		PSKIdentityHint:       []byte("iotgate"),
		CipherSuites:          pskCipherSuites,
		ExtendedMasterSecret:  dtls.RequestExtendedMasterSecret,
		ConnectionIDGenerator: cids,
		ConnectContextMaker: func() (context.Context, func()) {
			return context.WithTimeout(context.Background(), handshakeTimeout)
		},
		// One logger for every session, into the platform's log
		// (transport.PionLogger).
		LoggerFactory: transport.NewPionLogger(log),
	}
}
