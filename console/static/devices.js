// The device list (live status, product filter, paging) and the device
// creation form with the connection details shown once.
import { call, query, enc } from './api.js';
import { h, replace, errorBox, field, statusBadge, copyable } from './dom.js';

const POLL_MS = 3000;
const PAGE = 20;

// productOptions fills a <select> with the project's products (the
// newest 50, the API's largest page).
async function productOptions(select, first) {
  const r = await call('GET', `/products${query({ limit: 50 })}`);
  const opts = (r.products || []).map((p) => h('option', { value: p.product_id, 'data-protocol': p.protocol_type },
    `${p.product_id} (${p.protocol_type})`));
  replace(select, first, opts);
  return r.products || [];
}

export function devicesPage(main) {
  const product = h('select', { id: 'filter-product' }, h('option', { value: '' }, 'All products'));
  const table = h('div', { id: 'devices' });
  const pageInfo = h('span', { id: 'page-info' });
  const updated = h('span', { class: 'note', id: 'updated' });
  // markers[i] is the marker of page i (page 0 has none): going back
  // reuses the marker that fetched that page.
  let markers = [''];
  let next = '';
  const prev = h('button', { type: 'button', class: 'plain', id: 'prev', onclick: () => { markers.pop(); load(); } }, 'Previous');
  const nextBtn = h('button', { type: 'button', class: 'plain', id: 'next', onclick: () => { markers.push(next); load(); } }, 'Next');
  product.addEventListener('change', () => { markers = ['']; load(); });

  let busy = false;
  async function load() {
    if (busy) return;
    busy = true;
    try {
      const r = await call('GET', `/devices${query({ product_id: product.value, limit: PAGE, marker: markers[markers.length - 1] })}`);
      const devices = r.devices || [];
      next = (r.page && r.page.marker) || '';
      const rows = devices.map((d) => h('tr', { 'data-device': d.device_id },
        h('td', {}, h('a', { href: `#/device/${enc(d.device_id)}` }, d.device_id)),
        h('td', {}, d.node_id), h('td', {}, d.device_name || ''), h('td', {}, d.product_id),
        h('td', {}, statusBadge(d.status))));
      replace(table, rows.length ? h('table', {},
        h('thead', {}, h('tr', {}, ['Device id', 'Node id', 'Name', 'Product', 'Status'].map((t) => h('th', {}, t)))),
        h('tbody', {}, rows)) : h('p', { class: 'note' }, 'No devices.'));
      const total = r.page ? r.page.count : devices.length;
      pageInfo.textContent = `Page ${markers.length}, ${devices.length} shown, ${total} in all`;
      prev.disabled = markers.length <= 1;
      nextBtn.disabled = !next || devices.length < PAGE;
      updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      replace(table, errorBox(err));
    } finally {
      busy = false;
    }
  }

  replace(main,
    h('h1', {}, 'Devices'),
    h('div', { class: 'toolbar' }, h('label', { for: 'filter-product' }, 'Product'), product,
      h('a', { href: '#/devices/new' }, 'New device'), updated),
    table,
    h('div', { class: 'pager' }, prev, nextBtn, pageInfo));
  productOptions(product, h('option', { value: '' }, 'All products')).catch((err) => main.appendChild(errorBox(err)));
  load();
  const timer = setInterval(load, POLL_MS);
  return () => clearInterval(timer);
}

// hourStamp is the UTC hour as YYYYMMDDHH, the timestamp of Huawei's
// MQTT client id and password.
function hourStamp(d = new Date()) {
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getUTCFullYear()}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}`;
}

// shellQuote quotes a value for a POSIX shell.
function shellQuote(s) {
  return `'${String(s).replace(/'/g, `'\\''`)}'`;
}

// connectDetails are the instructions for a new device, by protocol.
export function connectDetails(d, protocol, ports) {
  const host = location.hostname || 'localhost';
  const secret = d.auth_info && d.auth_info.secret;
  const secure = !d.auth_info || d.auth_info.secure_access !== false;
  if (protocol === 'CoAP') {
    const lines = [`Endpoint name: ${d.node_id}`];
    if (ports.dtls) lines.push(`DTLS-PSK: coaps://${host}:${ports.dtls}/rd?ep=${d.node_id}&lt=300&lwm2m=1.1&b=U`,
      `  PSK identity: ${d.node_id}`, `  PSK key: the secret hex-decoded (${secret || 'the secret'})`);
    if (!secure && ports.coap) lines.push(`NoSec: coap://${host}:${ports.coap}/rd?ep=${d.node_id}&lt=300&lwm2m=1.1&b=U`);
    if (secure) lines.push('NoSec is refused: the device has secure_access on.');
    return [h('h2', {}, 'LwM2M (CoAP) connection'), copyable(lines.join('\n'), 'connect-lwm2m')];
  }
  const ts = hourStamp();
  const lines = [];
  if (ports.mqtts) lines.push(`MQTTS: ${host}:${ports.mqtts} (trust the gate's CA, data_dir/tls/ca.pem, unless configured otherwise)`);
  if (ports.mqtt && !secure) lines.push(`MQTT:  ${host}:${ports.mqtt} (plain TCP)`);
  if (secure) lines.push('Plain MQTT is refused: the device has secure_access on.');
  lines.push(
    `Client id: ${d.device_id}_0_0_{YYYYMMDDHH}   (UTC hour, now ${d.device_id}_0_0_${ts})`,
    `Username:  ${d.device_id}`,
    'Password:  hex(HMAC-SHA256(key = the same YYYYMMDDHH, message = secret))',
  );
  const port = secure ? ports.mqtts : (ports.mqtt || ports.mqtts);
  const tls = secure || !ports.mqtt ? ' --cafile data/tls/ca.pem' : '';
  const example = [
    `SECRET=${shellQuote(secret || '')}`,
    'TS=$(date -u +%Y%m%d%H)',
    'PW=$(printf %s "$SECRET" | openssl dgst -sha256 -hmac "$TS" | cut -d" " -f2)',
    `mosquitto_pub -h ${host} -p ${port}${tls} -i "${d.device_id}_0_0_$TS" -u ${shellQuote(d.device_id)} -P "$PW" \\`,
    `  -q 1 -t '$oc/devices/${d.device_id}/sys/properties/report' -m '{"services":[]}'`,
  ].join('\n');
  return [h('h2', {}, 'MQTT connection'), copyable(lines.join('\n'), 'connect-mqtt'),
    h('h2', {}, 'Try it from a shell'), copyable(example, 'connect-example')];
}

let portsCache = null;
export async function endpoints() {
  if (!portsCache) {
    const res = await fetch('endpoints.json', { cache: 'no-store' });
    portsCache = res.ok ? await res.json() : {};
  }
  return portsCache;
}

export function newDevicePage(main) {
  const product = h('select', { id: 'new-product', required: true }, h('option', { value: '' }, 'Choose a product'));
  const node = h('input', { id: 'new-node', required: true, placeholder: 'meter-0001' });
  const name = h('input', { id: 'new-name', placeholder: 'optional' });
  const secure = h('input', { id: 'new-secure', type: 'checkbox', checked: true });
  const out = h('div', { id: 'created' });
  let products = [];
  const form = h('form', {
    class: 'card', id: 'new-device',
    onsubmit: async (e) => {
      e.preventDefault();
      const submit = form.querySelector('button[type=submit]');
      submit.disabled = true;
      try {
        const body = { node_id: node.value.trim(), product_id: product.value, auth_info: { secure_access: secure.checked } };
        if (name.value.trim()) body.device_name = name.value.trim();
        const d = await call('POST', '/devices', body);
        const p = products.find((x) => x.product_id === d.product_id);
        const ports = await endpoints();
        replace(out,
          h('section', {},
            h('h2', {}, 'Device created: ', h('a', { href: `#/device/${enc(d.device_id)}`, id: 'created-id' }, d.device_id)),
            h('p', { class: 'warn' }, 'The secret is shown here once: copy it now.'),
            h('label', {}, 'Secret'), copyable(d.auth_info ? d.auth_info.secret : '', 'secret'),
            connectDetails(d, p ? p.protocol_type : 'MQTT', ports)));
        form.reset();
        secure.checked = true;
      } catch (err) {
        replace(out, errorBox(err));
      } finally {
        submit.disabled = false;
      }
    },
  },
  h('h1', {}, 'New device'),
  field('Product', product), field('Node id', node), field('Device name', name),
  h('label', { class: 'check', for: 'new-secure' }, secure, 'Secure access only (MQTTS / DTLS); untick for plain MQTT or NoSec LwM2M'),
  h('p', { class: 'note' }, 'The secret is generated by the gate (32 hex characters).'),
  h('div', {}, h('button', { type: 'submit' }, 'Create device')));
  replace(main, form, out);
  productOptions(product, h('option', { value: '' }, 'Choose a product'))
    .then((ps) => { products = ps; })
    .catch((err) => out.appendChild(errorBox(err)));
}
