// Drives Alibaba's own Node device SDK (npm alibabacloud-iot-device-sdk,
// unmodified) against iotgate, for test/alibaba_interop_test.go:
//
//  1. HTTPS dynamic registration (iot.register) at the platform's
//     registerURL, which delivers the pre-registered device's secret;
//  2. an MQTT connection with that DeviceSecret (iot.device, brokerUrl
//     mqtt://: securemode 3), a property post (answered on its _reply
//     topic) and a QoS 1 publish on the device's own custom topic;
//  3. a second registration, which the platform refuses (6289).
//
// Usage: node alibaba-device.js <registerURL> <brokerUrl> <productKey>
//        <productSecret> <deviceName> <message>
// Prints one JSON line with what happened, then exits 0; any failure
// exits 1 with the reason on stderr.
'use strict';

const iot = require('alibabacloud-iot-device-sdk');

const [registerURL, brokerUrl, productKey, productSecret, deviceName, message] = process.argv.slice(2);
if (!message) {
  console.error('usage: node alibaba-device.js <registerURL> <brokerUrl> <productKey> <productSecret> <deviceName> <message>');
  process.exit(2);
}

function fail(what, err) {
  console.error(what + ': ' + (err instanceof Error ? err.stack : JSON.stringify(err)));
  process.exit(1);
}

setTimeout(() => fail('timeout', 'no result within 30 s'), 30000).unref();

function register() {
  return new Promise((resolve) => {
    // The SDK signs with HMAC-SHA1 whatever signMethod says, so ask for that.
    iot.register({ productKey, productSecret, deviceName, registerURL, signMethod: 'hmacsha1' }, resolve);
  });
}

async function main() {
  const first = await register();
  if (!first || first.code !== 200 || !first.data || !first.data.deviceSecret) {
    fail('registration', first);
  }
  const deviceSecret = first.data.deviceSecret;

  const device = iot.device({ productKey, deviceName, deviceSecret, brokerUrl, signAlgorithm: 'sha1' });
  device.on('error', (err) => fail('mqtt', err));
  await new Promise((resolve) => device.on('connect', resolve));

  const postReply = await new Promise((resolve) => {
    device.postProps({ Power: 42 }, resolve);
  });
  if (!postReply || postReply.code !== 200) {
    fail('property post', postReply);
  }
  const topic = '/' + productKey + '/' + deviceName + '/user/update';
  await new Promise((resolve) => {
    device.publish(topic, message, { qos: 1 }, (err) => (err ? fail('publish', err) : resolve()));
  });
  await new Promise((resolve) => device.end(false, resolve));

  const second = await register();
  console.log(JSON.stringify({ deviceSecret, postReply: postReply.code, topic, second }));
}

main().catch((err) => fail('script', err));
