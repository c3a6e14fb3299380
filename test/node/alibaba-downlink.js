// Drives Alibaba's own Node device SDK (npm alibabacloud-iot-device-sdk,
// unmodified) as the receiving end of the platform's downlinks, for
// test/alibaba_downlink_test.go:
//
//  - onProps: every property set is printed and answered on
//    /sys/{pk}/{dn}/thing/service/property/set_reply with the request's id:
//    code 200, or 9201 "property rejected" when the set names "Reject";
//  - onService('reboot'): every call is printed and answered the
//    synchronous way (reply(..., 'sync'), on rrpc/response/{messageId})
//    with code 200 and data {rebooted: true, delay: <the call's delay>};
//  - a subscription to its custom topic /{pk}/{dn}/user/get: every message
//    there is printed.
//
// Usage: node alibaba-downlink.js <brokerUrl> <productKey> <deviceName>
//        <deviceSecret>
// Prints {"event":"ready"} once connected and subscribed, then one JSON
// line per request or message received; exits when stdin closes. Any failure exits 1 with the reason
// on stderr.
'use strict';

const iot = require('alibabacloud-iot-device-sdk');

const [brokerUrl, productKey, deviceName, deviceSecret] = process.argv.slice(2);
if (!deviceSecret) {
  console.error('usage: node alibaba-downlink.js <brokerUrl> <productKey> <deviceName> <deviceSecret>');
  process.exit(2);
}

function fail(what, err) {
  console.error(what + ': ' + (err instanceof Error ? err.stack : JSON.stringify(err)));
  process.exit(1);
}

function print(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// The SDK signs with HMAC-SHA1 whatever signAlgorithm says, so ask for that.
const device = iot.device({ productKey, deviceName, deviceSecret, brokerUrl, signAlgorithm: 'sha1' });
device.on('error', (err) => fail('mqtt', err));

device.onProps((req) => {
  print({ event: 'props', method: req.method, params: req.params });
  const reply = req.params && 'Reject' in req.params
    ? { id: req.id, code: 9201, message: 'property rejected', version: '1.0' }
    : { id: req.id, code: 200, data: {}, version: '1.0' };
  device.publish('/sys/' + productKey + '/' + deviceName + '/thing/service/property/set_reply', JSON.stringify(reply));
});

device.onService('reboot', (req, reply) => {
  print({ event: 'service', method: req.method, params: req.params });
  reply({ code: 200, data: { rebooted: true, delay: req.params.delay } }, 'sync');
});

const custom = '/' + productKey + '/' + deviceName + '/user/get';
device.on('message', (topic, payload) => {
  if (topic === custom) {
    print({ event: 'message', topic, payload: payload.toString() });
  }
});
device.on('connect', () => {
  device.subscribe(custom, { qos: 1 }, (err) => (err ? fail('subscribe', err) : print({ event: 'ready' })));
});

process.stdin.resume();
process.stdin.on('end', () => device.end(false, () => process.exit(0)));
