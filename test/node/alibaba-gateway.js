// Drives Alibaba's own Node device SDK (npm alibabacloud-iot-device-sdk,
// unmodified) as a gateway, for test/alibaba_downlink_test.go:
//
//  1. iot.gateway connects, attaches its sub-device (addTopo) and logs it
//     in (login); the sub-device's onProps answers every property set
//     with code 200 on its set_reply, its onService('reboot') answers the
//     synchronous way with data {rebooted: true};
//  2. on the stdin line "topo" it reads its topology (getTopo), removes
//     the sub-device from it (removeTopo) and reads it again.
//
// Usage: node alibaba-gateway.js <brokerUrl> <productKey> <deviceName>
//        <deviceSecret> <subProductKey> <subDeviceName> <subDeviceSecret>
// Prints {"event":"ready"} once the sub-device is logged in, then one JSON
// line per request received or topology answer; exits when stdin closes.
// Any failure exits 1 with the reason on stderr.
'use strict';

const readline = require('readline');
const iot = require('alibabacloud-iot-device-sdk');

const [brokerUrl, productKey, deviceName, deviceSecret, subPk, subDn, subDs] = process.argv.slice(2);
if (!subDs) {
  console.error('usage: node alibaba-gateway.js <brokerUrl> <productKey> <deviceName> <deviceSecret> <subProductKey> <subDeviceName> <subDeviceSecret>');
  process.exit(2);
}

function fail(what, err) {
  console.error(what + ': ' + (err instanceof Error ? err.stack : JSON.stringify(err)));
  process.exit(1);
}

function print(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const sub = { productKey: subPk, deviceName: subDn, deviceSecret: subDs };
// The SDK signs with HMAC-SHA1 whatever signAlgorithm says, so ask for that.
const gateway = iot.gateway({ productKey, deviceName, deviceSecret, brokerUrl, signAlgorithm: 'sha1' });
gateway.on('error', (err) => fail('mqtt', err));

gateway.on('connect', () => {
  gateway.addTopo([sub], (res) => {
    if (!res || res.code !== 200) {
      fail('addTopo', res);
    }
    const device = gateway.login(sub, (resp) => {
      if (!resp || resp.code !== 200) {
        fail('login', resp);
      }
      print({ event: 'ready' });
    });
    device.onProps((req) => {
      print({ event: 'props', method: req.method, params: req.params });
      device.publish('/sys/' + subPk + '/' + subDn + '/thing/service/property/set_reply',
        JSON.stringify({ id: req.id, code: 200, data: {}, version: '1.0' }));
    });
    device.onService('reboot', (req, reply) => {
      print({ event: 'service', method: req.method, params: req.params });
      reply({ code: 200, data: { rebooted: true } }, 'sync');
    });
  });
});

function getTopo() {
  return new Promise((resolve) => gateway.getTopo(resolve));
}

async function topo() {
  const before = await getTopo();
  const removed = await new Promise((resolve) => gateway.removeTopo([{ productKey: subPk, deviceName: subDn }], resolve));
  const after = await getTopo();
  print({ event: 'topo', before, removed, after });
}

readline.createInterface({ input: process.stdin })
  .on('line', (line) => {
    if (line.trim() === 'topo') {
      topo().catch((err) => fail('topo', err));
    }
  })
  .on('close', () => gateway.end(false, () => process.exit(0)));
