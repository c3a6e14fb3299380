// One device: details and live status, shadow, last uplink messages,
// freeze/unfreeze, secret reset, deletion and a synchronous command.
import { call, query, enc } from './api.js';
import { h, replace, errorBox, field, statusBadge, copyable, json } from './dom.js';

const POLL_MS = 3000;

// decodePayload shows a base64 payload as text when it is UTF-8, else as
// hex.
function decodePayload(b64) {
  let bytes;
  try {
    bytes = Uint8Array.from(atob(b64 || ''), (c) => c.charCodeAt(0));
  } catch {
    return b64;
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return `hex ${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
  }
}

export function devicePage(main, id) {
  const path = `/devices/${enc(id)}`;
  const details = h('dl', { id: 'details' });
  const shadow = h('div', { id: 'shadow' });
  const messages = h('div', { id: 'messages' });
  const actionsOut = h('div', { id: 'action-result' });
  const freeze = h('button', { type: 'button', class: 'plain', id: 'freeze' }, 'Freeze');
  const cmdService = h('input', { id: 'cmd-service', required: true, placeholder: 'service_id' });
  const cmdName = h('input', { id: 'cmd-name', required: true, placeholder: 'command_name' });
  const cmdParas = h('textarea', { id: 'cmd-paras', value: '{}' });
  const cmdOut = h('div', { id: 'cmd-result' });
  let device = null;

  async function act(fn) {
    replace(actionsOut);
    try {
      await fn();
    } catch (err) {
      replace(actionsOut, errorBox(err));
    }
    load();
  }

  freeze.addEventListener('click', () => act(async () => {
    const frozen = device && device.status === 'FROZEN';
    await call('POST', `${path}/${frozen ? 'unfreeze' : 'freeze'}`);
  }));
  const reset = h('button', {
    type: 'button', class: 'plain', id: 'reset-secret',
    onclick: () => act(async () => {
      if (!confirm(`Reset the primary secret of ${id}? The old one stops working.`)) return;
      const r = await call('POST', `${path}/action${query({ action_id: 'resetSecret' })}`, { secret_type: 'PRIMARY', force_disconnect: true });
      replace(actionsOut, h('p', { class: 'warn' }, 'New secret, shown once:'), copyable(r.secret, 'new-secret'));
    }),
  }, 'Reset secret');
  const del = h('button', {
    type: 'button', class: 'danger', id: 'delete',
    onclick: () => act(async () => {
      if (!confirm(`Delete ${id} and everything it has?`)) return;
      await call('DELETE', path);
      location.hash = '#/devices';
    }),
  }, 'Delete');

  const cmdForm = h('form', {
    id: 'command',
    onsubmit: async (e) => {
      e.preventDefault();
      let paras;
      try {
        paras = JSON.parse(cmdParas.value || '{}');
      } catch (err) {
        replace(cmdOut, errorBox(`paras is not JSON: ${err.message}`));
        return;
      }
      const submit = cmdForm.querySelector('button');
      submit.disabled = true;
      replace(cmdOut, h('p', { class: 'note' }, 'Waiting for the device (up to 20 s)…'));
      try {
        const r = await call('POST', `${path}/commands`, { service_id: cmdService.value.trim(), command_name: cmdName.value.trim(), paras });
        replace(cmdOut, h('pre', { id: 'cmd-answer' }, json(r)));
      } catch (err) {
        replace(cmdOut, errorBox(err));
      } finally {
        submit.disabled = false;
      }
    },
  }, field('Service id', cmdService), field('Command name', cmdName), field('Parameters (JSON object)', cmdParas),
  h('div', {}, h('button', { type: 'submit' }, 'Send command')), cmdOut);

  let busy = false;
  async function load() {
    if (busy) return;
    busy = true;
    try {
      const [d, s, m] = await Promise.all([
        call('GET', path),
        call('GET', `${path}/shadow`).catch((err) => err),
        call('GET', `${path}/device-messages${query({ limit: 10 })}`).catch((err) => err),
      ]);
      device = d;
      const rows = [['Device id', d.device_id], ['Node id', d.node_id], ['Product', `${d.product_id}${d.product_name ? ` (${d.product_name})` : ''}`],
        ['Name', d.device_name], ['Status', statusBadge(d.status)], ['Status since', d.connection_status_update_time],
        ['Created', d.create_time], ['Active since', d.active_time], ['Auth type', d.auth_info && d.auth_info.auth_type],
        ['Secure access', d.auth_info && String(d.auth_info.secure_access)], ['Firmware', d.fw_version], ['Software', d.sw_version],
        ['Tags', (d.tags || []).map((t) => `${t.tag_key}=${t.tag_value || ''}`).join(', ')]];
      replace(details, rows.filter(([, v]) => v !== undefined && v !== '').map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
      freeze.textContent = d.status === 'FROZEN' ? 'Unfreeze' : 'Freeze';
      replace(shadow, s instanceof Error ? errorBox(s) : h('pre', {}, json(s.shadow || [])));
      if (m instanceof Error) {
        replace(messages, errorBox(m));
      } else {
        const list = m.messages || [];
        replace(messages, list.length ? h('table', {},
          h('thead', {}, h('tr', {}, ['Time', 'Topic', 'Payload'].map((t) => h('th', {}, t)))),
          h('tbody', {}, list.map((x) => h('tr', {}, h('td', {}, x.create_time), h('td', {}, x.topic || ''),
            h('td', {}, h('code', {}, decodePayload(x.payload)))))))
          : h('p', { class: 'note' }, 'No uplink messages yet.'));
      }
    } catch (err) {
      replace(details, errorBox(err));
    } finally {
      busy = false;
    }
  }

  replace(main,
    h('h1', {}, 'Device ', h('code', {}, id)),
    h('section', {}, details, h('div', {}, freeze, reset, del), actionsOut),
    h('section', {}, h('h2', {}, 'Shadow'), shadow),
    h('section', {}, h('h2', {}, 'Last uplink messages'), messages),
    h('section', {}, h('h2', {}, 'Send a command (synchronous, MQTT)'), cmdForm));
  load();
  const timer = setInterval(load, POLL_MS);
  return () => clearInterval(timer);
}
