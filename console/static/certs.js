// Device CA certificates: the list with each one's verify code, upload
// of a PEM CA, proof of possession (a certificate the CA signed whose CN
// is the verify code) and deletion.
import { call, query, enc } from './api.js';
import { h, replace, errorBox, field, copyable } from './dom.js';

// proofRecipe is the openssl commands that make the verification
// certificate for a verify code with the CA's key.
function proofRecipe(code) {
  return [
    'openssl genrsa -out verify.key 2048',
    `openssl req -new -key verify.key -subj '/CN=${code}' -out verify.csr`,
    'openssl x509 -req -in verify.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -out verify.pem',
  ].join('\n');
}

// day shows IoTDA's compact time (20260301T080000Z) as 2026-03-01.
function day(t) {
  const m = /^(\d{4})(\d{2})(\d{2})T/.exec(t || '');
  return m ? `${m[1]}-${m[2]}-${m[3]}` : (t || '');
}

export function certsPage(main) {
  const list = h('div', { id: 'certs', class: 'list' });
  const out = h('div', { id: 'cert-result' });
  const content = h('textarea', { id: 'cert-content', required: true, placeholder: '-----BEGIN CERTIFICATE-----' });
  const form = h('form', {
    class: 'card', id: 'upload-cert',
    onsubmit: async (e) => {
      e.preventDefault();
      try {
        const c = await call('POST', '/certificates', { content: content.value.trim() });
        replace(out, h('p', {}, 'Uploaded ', h('code', {}, c.certificate_id), ' (', c.cn_name, '). Verify it with the code in the list.'));
        form.reset();
        load();
      } catch (err) {
        replace(out, errorBox(err));
      }
    },
  },
  h('h2', {}, 'Upload a CA certificate'),
  h('p', { class: 'note' }, 'The PEM of a CA that signs device certificates (at most 100 a project). It trusts nothing until verified.'),
  field('CA certificate (PEM)', content),
  h('div', {}, h('button', { type: 'submit' }, 'Upload')), out);

  // verifyForm proves possession of the CA's key for one certificate.
  function verifyForm(c) {
    const proof = h('textarea', { id: `verify-content-${c.certificate_id}`, class: 'verify-content', required: true, placeholder: '-----BEGIN CERTIFICATE-----' });
    const res = h('div', { class: 'verify-result' });
    const f = h('form', {
      class: 'card verify', 'data-cert': c.certificate_id,
      onsubmit: async (e) => {
        e.preventDefault();
        try {
          await call('POST', `/certificates/${enc(c.certificate_id)}/action${query({ action_id: 'verify' })}`, { verify_content: proof.value.trim() });
          replace(verifying);
          load();
        } catch (err) {
          replace(res, errorBox(err));
        }
      },
    },
    h('h2', {}, 'Verify ', h('code', {}, c.cn_name || c.certificate_id)),
    h('p', { class: 'note' }, 'Sign a certificate whose common name is the verify code with the CA\'s key, for example:'),
    copyable(proofRecipe(c.verify_code), `recipe-${c.certificate_id}`),
    field('Verification certificate (PEM)', proof),
    h('div', {}, h('button', { type: 'submit' }, 'Verify')), res);
    return f;
  }

  const verifying = h('div', { id: 'verifying' });
  async function load() {
    try {
      const r = await call('GET', `/certificates${query({ limit: 50 })}`);
      const certs = r.certificates || [];
      const rows = certs.map((c) => h('tr', { 'data-cert': c.certificate_id },
        h('td', {}, h('code', {}, c.certificate_id)), h('td', {}, c.cn_name),
        h('td', {}, h('span', { class: c.status ? 'status status-ONLINE' : 'status status-INACTIVE', 'data-verified': String(c.status) },
          c.status ? 'Verified' : 'Unverified')),
        h('td', {}, h('code', { class: 'verify-code' }, c.verify_code)),
        h('td', { title: c.effective_date }, day(c.effective_date)), h('td', { title: c.expiry_date }, day(c.expiry_date)),
        h('td', {},
          c.status ? null : h('button', { type: 'button', class: 'plain verify-open', onclick: () => replace(verifying, verifyForm(c)) }, 'Verify'),
          h('button', {
            type: 'button', class: 'danger cert-delete',
            onclick: async () => {
              if (!confirm(`Delete CA certificate ${c.certificate_id}? Devices it signed can no longer connect.`)) return;
              try {
                await call('DELETE', `/certificates/${enc(c.certificate_id)}`);
                replace(verifying);
              } catch (err) {
                replace(out, errorBox(err));
              }
              load();
            },
          }, 'Delete'))));
      replace(list, rows.length ? h('table', {},
        h('thead', {}, h('tr', {}, ['Certificate id', 'CN', 'Status', 'Verify code', 'Valid from', 'Expires', ''].map((t) => h('th', {}, t)))),
        h('tbody', {}, rows)) : h('p', { class: 'note' }, 'No CA certificates yet.'),
      r.page && r.page.count > rows.length ? h('p', { class: 'note' }, `Showing ${rows.length} of ${r.page.count}.`) : null);
    } catch (err) {
      replace(list, errorBox(err));
    }
  }
  replace(main, h('h1', {}, 'CA certificates'), list, verifying, form);
  load();
}
