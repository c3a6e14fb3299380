// Data forwarding: routing rules (subject, where, active) and each
// rule's actions (HTTP, NATS or Kafka destinations). Secrets (an HTTP
// token, a Kafka password) are write-only: the API never returns them
// and the page never shows what was typed once it is sent.
import { call, query, enc } from './api.js';
import { h, replace, errorBox, field } from './dom.js';

// SUBJECTS are the resource/event pairs a rule may select (README,
// Events).
const SUBJECTS = [
  ['device.message', 'report'], ['device.property', 'report'], ['device.status', 'update'],
  ['device', 'create'], ['device', 'update'], ['device', 'delete'],
  ['device.command.status', 'update'], ['device.message.status', 'update'],
];

export function rulesPage(main) {
  const list = h('div', { id: 'rules', class: 'list' });
  const out = h('div', { id: 'rule-result' });
  const name = h('input', { id: 'r-name', required: true, placeholder: 'uplinks' });
  const subject = h('select', { id: 'r-subject' },
    SUBJECTS.map(([r, e]) => h('option', { value: `${r} ${e}` }, `${r} ${e}`)));
  const where = h('input', { id: 'r-where', placeholder: 'optional, e.g. notify_data.body.content.temp > 30' });
  const desc = h('input', { id: 'r-desc', placeholder: 'optional' });
  const active = h('input', { id: 'r-active', type: 'checkbox', checked: true });
  const form = h('form', {
    class: 'card', id: 'new-rule',
    onsubmit: async (e) => {
      e.preventDefault();
      const [resource, event] = subject.value.split(' ');
      try {
        const r = await call('POST', '/routing-rule/rules', {
          rule_name: name.value.trim(), description: desc.value.trim(), subject: { resource, event },
          app_type: 'GLOBAL', where: where.value.trim(), active: active.checked,
        });
        location.hash = `#/rule/${enc(r.rule_id)}`;
      } catch (err) {
        replace(out, errorBox(err));
      }
    },
  },
  h('h2', {}, 'New rule'),
  field('Name', name), field('Subject', subject), field('Where (optional condition)', where), field('Description', desc),
  h('label', { class: 'check', for: 'r-active' }, active, 'Active: forward from now on'),
  h('p', { class: 'note' }, 'A rule forwards nothing until it has an action: add one on the rule\'s page.'),
  h('div', {}, h('button', { type: 'submit' }, 'Create rule')), out);

  async function load() {
    try {
      const r = await call('GET', `/routing-rule/rules${query({ limit: 50 })}`);
      const rules = r.rules || [];
      const rows = rules.map((x) => h('tr', { 'data-rule': x.rule_id },
        h('td', {}, h('a', { href: `#/rule/${enc(x.rule_id)}` }, x.rule_name || x.rule_id)),
        h('td', {}, h('code', {}, `${x.subject.resource} ${x.subject.event}`)),
        h('td', {}, h('code', {}, x.where || '')),
        h('td', {}, activeBadge(x.active))));
      replace(list, rows.length ? h('table', {},
        h('thead', {}, h('tr', {}, ['Rule', 'Subject', 'Where', 'Status'].map((t) => h('th', {}, t)))),
        h('tbody', {}, rows)) : h('p', { class: 'note' }, 'No routing rules yet.'),
      r.count > rows.length ? h('p', { class: 'note' }, `Showing the newest ${rows.length} of ${r.count}.`) : null);
    } catch (err) {
      replace(list, errorBox(err));
    }
  }
  replace(main, h('h1', {}, 'Routing rules'), list, form);
  load();
}

function activeBadge(active) {
  return h('span', { class: active ? 'status status-ONLINE' : 'status status-OFFLINE', 'data-active': String(active) },
    active ? 'Active' : 'Inactive');
}

// destination describes an action's target without its secrets.
function destination(a) {
  const d = a.channel_detail || {};
  if (d.http_forwarding) {
    const x = d.http_forwarding;
    return [x.url, x.cert_id ? ` (CA ${x.cert_id})` : '', x.signature_enable ? ' (signed)' : ''].join('');
  }
  if (d.nats_forwarding) {
    const x = d.nats_forwarding;
    return `${x.url} subject ${x.subject}${x.jetstream ? ' (JetStream)' : ''}`;
  }
  if (d.dms_kafka_forwarding) {
    const x = d.dms_kafka_forwarding;
    const brokers = (x.addresses || []).map((b) => `${b.domain || b.ip}:${b.port}`).join(',');
    return `${brokers} topic ${x.topic}${x.username ? ` (user ${x.username})` : ''}`;
  }
  return '';
}

// brokers parses "host:port, host:port" into IoTDA's addresses.
function brokers(text) {
  return text.split(',').map((s) => s.trim()).filter(Boolean).map((s) => {
    const i = s.lastIndexOf(':');
    const host = i < 0 ? s : s.slice(0, i).replace(/^\[|\]$/g, '');
    const port = i < 0 ? 0 : Number(s.slice(i + 1));
    return /^[0-9.:]+$/.test(host) ? { ip: host, port } : { domain: host, port };
  });
}

// actionForm adds an action to a rule: the fields of the chosen channel
// are shown; secrets are password inputs, cleared once sent.
function actionForm(ruleID, done) {
  const channel = h('select', { id: 'a-channel' },
    h('option', { value: 'HTTP_FORWARDING' }, 'HTTP push'), h('option', { value: 'NATS_FORWARDING' }, 'NATS'),
    h('option', { value: 'DMS_KAFKA_FORWARDING' }, 'Kafka'));
  const url = h('input', { id: 'a-url', placeholder: 'https://app.example/push' });
  const certID = h('input', { id: 'a-cert', placeholder: 'optional: a CA certificate id for HTTPS' });
  const sign = h('input', { id: 'a-sign', type: 'checkbox' });
  const token = h('input', { id: 'a-token', type: 'password', autocomplete: 'off', placeholder: 'signature token (write-only)' });
  const natsURL = h('input', { id: 'a-nats-url', placeholder: 'nats://127.0.0.1:4222' });
  const subject = h('input', { id: 'a-nats-subject', placeholder: 'iot.up' });
  const jetstream = h('input', { id: 'a-jetstream', type: 'checkbox' });
  const kBrokers = h('input', { id: 'a-brokers', placeholder: '127.0.0.1:9092' });
  const topic = h('input', { id: 'a-topic', placeholder: 'iot.up' });
  const mechanism = h('select', { id: 'a-mechanism' }, ['', 'PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512'].map((m) => h('option', { value: m }, m || 'no SASL')));
  const user = h('input', { id: 'a-user', autocomplete: 'off', placeholder: 'optional' });
  const password = h('input', { id: 'a-password', type: 'password', autocomplete: 'off', placeholder: 'write-only' });
  const groups = {
    HTTP_FORWARDING: h('div', {}, field('URL', url), field('CA certificate id', certID),
      h('label', { class: 'check', for: 'a-sign' }, sign, 'Sign each push'), field('Token', token)),
    NATS_FORWARDING: h('div', { hidden: true }, field('Server URL', natsURL), field('Subject', subject),
      h('label', { class: 'check', for: 'a-jetstream' }, jetstream, 'JetStream (delivered when the stream acknowledges)')),
    DMS_KAFKA_FORWARDING: h('div', { hidden: true }, field('Brokers (host:port, comma-separated)', kBrokers), field('Topic', topic),
      field('SASL mechanism', mechanism), field('Username', user), field('Password', password)),
  };
  channel.addEventListener('change', () => {
    for (const [k, g] of Object.entries(groups)) g.hidden = k !== channel.value;
  });
  const out = h('div', { id: 'action-result' });
  const form = h('form', {
    class: 'card', id: 'new-action',
    onsubmit: async (e) => {
      e.preventDefault();
      let detail;
      if (channel.value === 'HTTP_FORWARDING') {
        const x = { url: url.value.trim(), signature_enable: sign.checked };
        if (certID.value.trim()) x.cert_id = certID.value.trim();
        if (token.value) x.token = token.value;
        detail = { http_forwarding: x };
      } else if (channel.value === 'NATS_FORWARDING') {
        detail = { nats_forwarding: { url: natsURL.value.trim(), subject: subject.value.trim(), jetstream: jetstream.checked } };
      } else {
        const x = { addresses: brokers(kBrokers.value), topic: topic.value.trim() };
        if (mechanism.value) x.mechanism = mechanism.value;
        if (user.value.trim()) x.username = user.value.trim();
        if (password.value) x.password = password.value;
        detail = { dms_kafka_forwarding: x };
      }
      try {
        await call('POST', '/routing-rule/actions', { rule_id: ruleID, channel: channel.value, channel_detail: detail });
        form.reset();
        channel.dispatchEvent(new Event('change'));
        replace(out);
        done();
      } catch (err) {
        replace(out, errorBox(err));
      } finally {
        // The secrets never stay in the page.
        token.value = '';
        password.value = '';
      }
    },
  },
  h('h2', {}, 'Add an action'),
  field('Channel', channel), Object.values(groups),
  h('div', {}, h('button', { type: 'submit' }, 'Add action')), out);
  return form;
}

export function rulePage(main, id) {
  const path = `/routing-rule/rules/${enc(id)}`;
  const details = h('dl', { id: 'rule-details' });
  const actions = h('div', { id: 'actions' });
  const out = h('div', { id: 'rule-action-result' });
  const toggle = h('button', { type: 'button', class: 'plain', id: 'rule-toggle' }, 'Deactivate');
  let rule = null;

  toggle.addEventListener('click', async () => {
    try {
      await call('PUT', path, { active: !(rule && rule.active) });
      replace(out);
    } catch (err) {
      replace(out, errorBox(err));
    }
    load();
  });
  const del = h('button', {
    type: 'button', class: 'danger', id: 'rule-delete',
    onclick: async () => {
      if (!confirm(`Delete rule ${id} and its actions?`)) return;
      try {
        await call('DELETE', path);
        location.hash = '#/rules';
      } catch (err) {
        replace(out, errorBox(err));
      }
    },
  }, 'Delete rule');

  async function load() {
    try {
      const [r, a] = await Promise.all([call('GET', path), call('GET', `/routing-rule/actions${query({ rule_id: id, limit: 50 })}`)]);
      rule = r;
      replace(details, [['Rule id', r.rule_id], ['Name', r.rule_name], ['Description', r.description],
        ['Subject', `${r.subject.resource} ${r.subject.event}`], ['Where', r.where], ['Status', activeBadge(r.active)]]
        .filter(([, v]) => v !== undefined && v !== '').map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
      toggle.textContent = r.active ? 'Deactivate' : 'Activate';
      const rows = (a.actions || []).map((x) => h('tr', { 'data-action': x.action_id },
        h('td', {}, h('code', {}, x.action_id)), h('td', {}, x.channel), h('td', {}, h('code', {}, destination(x))),
        h('td', {}, h('button', {
          type: 'button', class: 'danger action-delete',
          onclick: async () => {
            if (!confirm(`Delete action ${x.action_id}?`)) return;
            try {
              await call('DELETE', `/routing-rule/actions/${enc(x.action_id)}`);
            } catch (err) {
              replace(out, errorBox(err));
            }
            load();
          },
        }, 'Delete'))));
      replace(actions, rows.length ? h('table', {},
        h('thead', {}, h('tr', {}, ['Action id', 'Channel', 'Destination', ''].map((t) => h('th', {}, t)))),
        h('tbody', {}, rows)) : h('p', { class: 'note' }, 'No actions: the rule forwards nothing.'));
    } catch (err) {
      replace(details, errorBox(err));
    }
  }

  replace(main,
    h('h1', {}, 'Rule ', h('code', {}, id)),
    h('section', {}, details, h('div', {}, toggle, del), out),
    h('section', {}, h('h2', {}, 'Actions'), actions),
    actionForm(id, load));
  load();
}
