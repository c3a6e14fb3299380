// DOM building without HTML parsing: text always goes in as text nodes
// (the same as textContent), so nothing the API returns can become
// markup or script. There is deliberately no innerHTML anywhere.

// h creates an element. attrs: "class", "for", data-*, aria-* and other
// attributes are set with setAttribute; "on*" functions become event
// listeners; other keys (value, checked, disabled, type, …) are
// properties. Children are nodes, strings (text), or arrays of them;
// null/undefined/false are skipped.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (/html/i.test(k)) {
      throw new Error(`h: ${k} is not allowed: text goes in as text nodes`);
    } else if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v);
    } else if (k === 'class' || k === 'for' || k === 'href' || k === 'id' || k === 'name' || k.startsWith('data-') || k.startsWith('aria-')) {
      el.setAttribute(k, String(v));
    } else {
      el[k] = v;
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

// replace empties el and appends the children.
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function errorBox(err) {
  return h('p', { class: 'error', role: 'alert' }, err instanceof Error ? err.message : String(err));
}

export function statusBadge(status) {
  const s = String(status || 'UNKNOWN');
  return h('span', { class: `status status-${s.replace(/[^A-Z]/g, '')}`, 'data-status': s }, s);
}

// copyable is a <pre> with a Copy button that puts its text on the
// clipboard.
export function copyable(text, id) {
  const pre = h('pre', { id }, text);
  const btn = h('button', {
    type: 'button', class: 'plain',
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(pre.textContent);
        btn.textContent = 'Copied';
      } catch {
        // No clipboard (not a secure context): select it for Ctrl+C.
        const r = document.createRange();
        r.selectNodeContents(pre);
        const sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(r);
        btn.textContent = 'Selected: press Ctrl+C';
      }
    },
  }, 'Copy');
  return h('div', {}, pre, btn);
}

export function field(label, input) {
  return [h('label', { for: input.id }, label), input];
}

export function json(v) {
  return JSON.stringify(v, null, 2);
}
