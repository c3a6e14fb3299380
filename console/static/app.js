// The console's router: one page per location hash, rendered into
// <main>. A page may return a stop function (its polling timer); it runs
// when the hash changes.
import { call, session, saveSession, clearSession } from './api.js';
import { h, replace, errorBox, field } from './dom.js';
import { devicesPage, newDevicePage } from './devices.js';
import { devicePage } from './device.js';
import { productsPage } from './products.js';
import { certsPage } from './certs.js';
import { rulesPage, rulePage } from './routing.js';

const main = document.getElementById('main');
let stop = null;

function signInPage() {
  const project = h('input', { id: 'project', name: 'project', required: true, autocomplete: 'username' });
  const token = h('input', { id: 'token', name: 'token', type: 'password', required: true, autocomplete: 'current-password' });
  const out = h('div', { id: 'signin-result' });
  const form = h('form', {
    class: 'card', id: 'signin',
    onsubmit: async (e) => {
      e.preventDefault();
      const s = { project: project.value.trim(), token: token.value };
      try {
        // A cheap call that needs a token valid for this project.
        await call('GET', '/products?limit=1', undefined, s);
      } catch (err) {
        replace(out, errorBox(err));
        return;
      }
      saveSession(s.project, s.token);
      location.hash = '#/devices';
      route();
    },
  },
  h('h1', {}, 'Sign in'),
  h('p', { class: 'note' }, 'A project id and one of its API tokens (api.credentials in the configuration). The token stays in this tab (sessionStorage) and is sent only in the X-Auth-Token header.'),
  field('Project id', project),
  field('API token', token),
  h('div', {}, h('button', { type: 'submit' }, 'Sign in')),
  out);
  replace(main, form);
  project.focus();
}

const routes = [
  [/^#\/devices\/new$/, () => newDevicePage(main)],
  [/^#\/devices$/, () => devicesPage(main)],
  [/^#\/device\/(.+)$/, (m) => devicePage(main, decodeURIComponent(m[1]))],
  [/^#\/products$/, () => productsPage(main)],
  [/^#\/certificates$/, () => certsPage(main)],
  [/^#\/rules$/, () => rulesPage(main)],
  [/^#\/rule\/(.+)$/, (m) => rulePage(main, decodeURIComponent(m[1]))],
];

function route() {
  if (stop) {
    stop();
    stop = null;
  }
  const s = session();
  document.getElementById('nav').hidden = !s;
  document.getElementById('who').textContent = s ? `project ${s.project}` : '';
  if (!s) {
    signInPage();
    return;
  }
  const hash = location.hash || '#/devices';
  for (const [re, page] of routes) {
    const m = hash.match(re);
    if (m) {
      try {
        stop = page(m) || null;
      } catch (err) {
        replace(main, errorBox(err));
      }
      return;
    }
  }
  location.hash = '#/devices';
}

document.getElementById('signout').addEventListener('click', () => {
  clearSession();
  location.hash = '';
  route();
});
window.addEventListener('hashchange', route);
route();
