// An Alibaba device that bootstraps at the activation centre and then
// connects with Alibaba's own Node device SDK (npm
// alibabacloud-iot-device-sdk, unmodified), for test/activation_test.go.
//
// The SDK has no bootstrap of its own (its endpoints are brokerUrl and
// registerURL), so this script sends POST /auth/bootstrap the way Link
// SDK 4.x and iotkit 3.1 do (an unsigned form: productKey, deviceName,
// clientId=pk.dn, resources=mqtt), reads data.resources.mqtt.host and
// port from the answer, and hands mqtt://host:port to the SDK as its
// brokerUrl: the SDK then connects with the DeviceSecret (securemode 3)
// and posts a property.
//
// Usage: node alibaba-bootstrap.js <centreURL> <productKey> <deviceName>
//        <deviceSecret> <power>
// Prints one JSON line {host, port, bytes, postReply}, then exits 0; any
// failure exits 1 with the reason on stderr.
'use strict';

const http = require('http');
const iot = require('alibabacloud-iot-device-sdk');

const [centre, productKey, deviceName, deviceSecret, power] = process.argv.slice(2);
if (!power) {
  console.error('usage: node alibaba-bootstrap.js <centreURL> <productKey> <deviceName> <deviceSecret> <power>');
  process.exit(2);
}

function fail(what, err) {
  console.error(what + ': ' + (err instanceof Error ? err.stack : JSON.stringify(err)));
  process.exit(1);
}

setTimeout(() => fail('timeout', 'no result within 30 s'), 30000).unref();

function bootstrap() {
  const body = 'productKey=' + productKey + '&deviceName=' + deviceName +
    '&clientId=' + productKey + '.' + deviceName + '&resources=mqtt';
  const u = new URL(centre + '/auth/bootstrap');
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: u.hostname, port: u.port, path: u.pathname, method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded;charset=utf-8', 'Content-Length': Buffer.byteLength(body) },
    }, (res) => {
      let data = '';
      res.on('data', (c) => { data += c; });
      res.on('end', () => resolve(data));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function main() {
  const raw = await bootstrap();
  const answer = JSON.parse(raw);
  if (answer.code !== 200 || !answer.data || !answer.data.resources || !answer.data.resources.mqtt) {
    fail('bootstrap', answer);
  }
  const { host, port } = answer.data.resources.mqtt;

  const device = iot.device({ productKey, deviceName, deviceSecret, brokerUrl: 'mqtt://' + host + ':' + port, signAlgorithm: 'sha1' });
  device.on('error', (err) => fail('mqtt', err));
  await new Promise((resolve) => device.on('connect', resolve));
  const postReply = await new Promise((resolve) => {
    device.postProps({ Power: Number(power) }, resolve);
  });
  await new Promise((resolve) => device.end(false, resolve));
  console.log(JSON.stringify({ host, port, bytes: Buffer.byteLength(raw), postReply: postReply && postReply.code }));
}

main().catch((err) => fail('script', err));
