// The dashboard's one way to call the HTTP API: same origin, the staff session cookie, the CSRF token on every
// change, and RFC 9457 problems turned into ProblemError so a page can show the API's own words next to the
// field they name (ui.showProblem).

export class ProblemError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.errors = problem.errors || [];
  }
}

function csrfToken() {
  const m = document.cookie.match(/(?:^|; )oms_csrf=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : "";
}

export const API = "/api/v1";

export async function api(method, path, body, { raw = false, headers = {} } = {}) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json", ...headers } };
  if (method !== "GET" && method !== "HEAD") init.headers["X-CSRF-Token"] = csrfToken();
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path.startsWith("/") ? path : `${API}/${path}`, init);
  if (res.status === 401 && !path.includes("/session")) {
    window.location.hash = `#/signin?next=${encodeURIComponent(window.location.hash)}`;
  }
  if (!res.ok) {
    let problem = { title: res.statusText };
    try { problem = await res.json(); } catch { /* not JSON */ }
    throw new ProblemError(res.status, problem);
  }
  if (raw) return res;
  if (res.status === 204) return null;
  return res.json();
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body ?? {});
export const put = (path, body) => api("PUT", path, body);
export const patch = (path, body) => api("PATCH", path, body);
export const del = (path) => api("DELETE", path);

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === "" || (Array.isArray(v) && !v.length)) continue;
    q.set(k, Array.isArray(v) ? v.join(",") : String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}
