// Products: the list and a creation form.
import { call, query } from './api.js';
import { h, replace, errorBox, field } from './dom.js';

export function productsPage(main) {
  const list = h('div', { id: 'products' });
  const out = h('div', {});
  const id = h('input', { id: 'p-id', placeholder: 'meter', required: true });
  const name = h('input', { id: 'p-name', placeholder: 'Smart meter', required: true });
  const type = h('input', { id: 'p-type', value: 'Sensor', required: true });
  const proto = h('select', { id: 'p-proto' }, h('option', { value: 'MQTT' }, 'MQTT'), h('option', { value: 'CoAP' }, 'CoAP (LwM2M)'));
  const format = h('select', { id: 'p-format' }, h('option', { value: 'json' }, 'json'), h('option', { value: 'binary' }, 'binary'));
  const service = h('input', { id: 'p-service', value: 'Basic', required: true });
  const form = h('form', {
    class: 'card', id: 'new-product',
    onsubmit: async (e) => {
      e.preventDefault();
      try {
        const p = await call('POST', '/products', {
          product_id: id.value.trim(), name: name.value.trim(), device_type: type.value.trim(),
          protocol_type: proto.value, data_format: format.value,
          service_capabilities: [{ service_id: service.value.trim(), service_type: service.value.trim() }],
        });
        replace(out, h('p', {}, 'Created product ', h('code', {}, p.product_id), '.'));
        form.reset();
        load();
      } catch (err) {
        replace(out, errorBox(err));
      }
    },
  },
  h('h2', {}, 'New product'),
  field('Product id', id), field('Name', name), field('Device type', type),
  field('Protocol', proto), field('Data format', format), field('Service id', service),
  h('div', {}, h('button', { type: 'submit' }, 'Create product')), out);

  async function load() {
    try {
      const r = await call('GET', `/products${query({ limit: 50 })}`);
      const rows = (r.products || []).map((p) => h('tr', {},
        h('td', {}, h('code', {}, p.product_id)), h('td', {}, p.name), h('td', {}, p.protocol_type),
        h('td', {}, p.data_format), h('td', {}, p.device_type), h('td', {}, p.create_time || '')));
      replace(list, rows.length ? h('table', {},
        h('thead', {}, h('tr', {}, ['Product id', 'Name', 'Protocol', 'Format', 'Type', 'Created'].map((t) => h('th', {}, t)))),
        h('tbody', {}, rows)) : h('p', { class: 'note' }, 'No products yet.'),
      r.page && r.page.count > rows.length ? h('p', { class: 'note' }, `Showing the newest ${rows.length} of ${r.page.count}.`) : null);
    } catch (err) {
      replace(list, errorBox(err));
    }
  }
  replace(main, h('h1', {}, 'Products'), list, form);
  load();
}
