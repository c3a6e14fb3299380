#!/usr/bin/env node
// A third-party LwM2M client for iotgate's interop test: lwm2m-node-lib
// registers over CoAP (NoSec) and answers the server's requests from its
// object registry. It prints "REGISTERED <location>" once registered and
// runs until killed.
//
// usage: node lwm2m-client.js <host> <port> <endpoint> <manufacturer>
'use strict';

const client = require('lwm2m-node-lib').client;

const [host, port, endpoint, manufacturer] = process.argv.slice(2);
if (!manufacturer) {
    console.error('usage: lwm2m-client.js <host> <port> <endpoint> <manufacturer>');
    process.exit(64);
}

client.init({
    client: {
        lifetime: '300',
        version: '1.0',
        logLevel: 'FATAL',
        observe: { period: 3000 },
        ipProtocol: 'udp4',
        serverProtocol: 'udp4',
        formats: [{ name: 'lightweightm2m/text', value: 1541 }],
        writeFormat: 'lightweightm2m/text'
    }
});

function fail(step, err) {
    console.error(step + ' FAILED ' + err);
    process.exit(2);
}

client.registry.create('/3/0', (err) => {
    if (err) {
        return fail('CREATE', err);
    }
    client.registry.setResource('/3/0', '0', manufacturer, (err) => {
        if (err) {
            return fail('SET', err);
        }
        client.register(host, port, '', endpoint, (err, info) => {
            if (err) {
                return fail('REGISTER', err);
            }
            console.log('REGISTERED ' + info.location);
        });
    });
});

process.on('SIGTERM', () => process.exit(0));
