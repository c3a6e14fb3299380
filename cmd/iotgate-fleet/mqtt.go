package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// mqttDriver connects IoTDA MQTT devices (secret authentication) over
// MQTT or MQTTS.
type mqttDriver struct {
	spec      workerSpec
	ids       identities
	tls       *tls.Config
	onAck     func(time.Duration)
	onCommand func(string)
}

func newMQTTDriver(spec workerSpec, onAck func(time.Duration), onCommand func(string)) (*mqttDriver, error) {
	d := &mqttDriver{spec: spec, ids: identities{prefix: spec.Prefix, seed: spec.Seed}, onAck: onAck, onCommand: onCommand}
	if spec.Protocol == protoMQTTS {
		host, _, err := net.SplitHostPort(spec.Target)
		if err != nil {
			return nil, err
		}
		d.tls = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		if spec.CAFile == "" {
			// A load generator on loopback: the server's identity is not
			// what is measured. -cafile makes the fleet verify it.
			d.tls.InsecureSkipVerify = true
		} else {
			pem, err := os.ReadFile(spec.CAFile)
			if err != nil {
				return nil, fmt.Errorf("cafile: %w", err)
			}
			d.tls.RootCAs = x509.NewCertPool()
			if !d.tls.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("cafile %s holds no PEM certificate", spec.CAFile)
			}
		}
	}
	return d, nil
}

func (d *mqttDriver) connect(ctx context.Context, i int, _ *timing) (session, error) {
	id := d.ids.deviceID(d.spec.Protocol, i)
	c, err := dialMQTT(ctx, mqttConfig{
		addr:      d.spec.Target,
		local:     sourceIP(i, d.spec.Spread),
		tls:       d.tls,
		clientID:  mqttClientID(id, d.spec.Timestamp),
		username:  id,
		password:  mqttPassword(d.ids.secret(id), d.spec.Timestamp),
		keepalive: uint16(d.spec.Keepalive),
		timeout:   d.spec.Timeout,
	}, d.onAck, d.onCommand)
	if err != nil {
		return nil, err
	}
	return &mqttSession{c: c, topic: "$oc/devices/" + id + "/sys/properties/report", qos1: d.spec.QoS > 0,
		idle: time.Duration(d.spec.Keepalive) * time.Second}, nil
}

func (d *mqttDriver) close() {}

type mqttSession struct {
	c     *mqttConn
	topic string
	qos1  bool
	idle  time.Duration // the keepalive
}

// uplink publishes an IoTDA properties report carrying its publish time
// (for the receiver mode's added latency).
func (s *mqttSession) uplink(seq int64) (bool, error) {
	return true, s.c.publish(s.topic, uplinkPayload(seq, time.Now()), s.qos1)
}

func uplinkPayload(seq int64, now time.Time) []byte {
	b := make([]byte, 0, 96)
	b = append(b, `{"services":[{"service_id":"Fleet","properties":{"seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"`+stampKey+`":`...)
	b = strconv.AppendInt(b, now.UnixMicro(), 10)
	return append(b, "}}]}"...)
}

func (s *mqttSession) keepalive() error { return s.c.pingIfIdle(s.idle) }

func (s *mqttSession) close(_ context.Context, graceful bool) error { return s.c.close(graceful) }
