// The REST API client: every call carries the session's token in the
// X-Auth-Token header (never a cookie, so another site cannot make the
// browser send it) and goes to this origin's /v5/iot/{project_id}.

const KEY = 'iotgate.console.session';

export function session() {
  try {
    const s = JSON.parse(sessionStorage.getItem(KEY) || 'null');
    return s && typeof s.project === 'string' && typeof s.token === 'string' ? s : null;
  } catch {
    return null;
  }
}

export function saveSession(project, token) {
  sessionStorage.setItem(KEY, JSON.stringify({ project, token }));
}

export function clearSession() {
  sessionStorage.removeItem(KEY);
}

// APIError is a refused call: the HTTP status and IoTDA's error_code and
// error_msg.
export class APIError extends Error {
  constructor(status, code, msg) {
    super(code ? `${msg} (${code}, HTTP ${status})` : `${msg} (HTTP ${status})`);
    this.status = status;
    this.code = code || '';
  }
}

// call sends one request under the project's base path and returns the
// decoded JSON answer (null when empty); a non-2xx answer throws APIError.
export async function call(method, path, body, s = session()) {
  if (!s) throw new APIError(401, '', 'not signed in');
  const init = {
    method,
    headers: { 'X-Auth-Token': s.token, Accept: 'application/json' },
    credentials: 'omit',
    cache: 'no-store',
  };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(`/v5/iot/${encodeURIComponent(s.project)}${path}`, init);
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    throw new APIError(res.status, data && data.error_code, (data && data.error_msg) || text || res.statusText);
  }
  return data;
}

// query builds "?k=v&…" from the non-empty values.
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

export const enc = encodeURIComponent;
