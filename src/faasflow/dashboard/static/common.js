// What the views share: API calls, element building, formatting, polling.

export const POLL_MS = 1000;
export const LIVE = new Set(["running", "paused"]);

export const view = document.getElementById("view");

// Bumped by every view change: a poller started by an older view sees it and stops.
export const current = { generation: 0 };

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function api(path, options = {}) {
  const headers = { "X-Faasflow-Dashboard": "1", ...(options.headers || {}) };
  const answer = await fetch(path, { ...options, headers, credentials: "same-origin" });
  if (!answer.ok) {
    let message = `${answer.status} ${answer.statusText}`;
    try {
      message = (await answer.json()).error || message;
    } catch (_) { /* not JSON: keep the status line */ }
    if (answer.status === 401) message += " (sign in again: reload the page)";
    throw new ApiError(answer.status, message);
  }
  return options.raw ? answer : answer.json();
}

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const enc = encodeURIComponent;
export const flowHref = (flow) => `#/flows/${enc(flow)}`;
export const requestHref = (flow, rid) => `#/flows/${enc(flow)}/requests/${enc(rid)}`;
export const apiFlow = (flow) => `/api/flows/${enc(flow)}`;

export function time(epoch) {
  if (!epoch) return "";
  const d = new Date(epoch * 1000);
  return d.toLocaleString(undefined, { hour12: false });
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export function bytes(n) {
  if (n === null || n === undefined) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

// A flow description comes from a docstring: show its ``literals`` as code.
export function prose(text) {
  return text.split("``").map((part, i) => (i % 2 ? h("code", {}, part) : part));
}

// Runtime paths percent-encode foreach keys: show them decoded.
export function readable(path) {
  try {
    return decodeURIComponent(path);
  } catch (_) {
    return path;
  }
}

export function statusBadge(status) {
  return h("span", { class: `status status-${status}` }, status);
}

export function showError(box, error) {
  box.textContent = error ? String(error.message || error) : "";
  box.hidden = !error;
}

export function errorBox() {
  return h("p", { class: "error", role: "alert", hidden: true });
}

// Run `step` now and then every POLL_MS until the view changes; a failed step shows its
// error in `box` and polling goes on (a restarting flow server comes back).
export function poll(step, box) {
  const mine = current.generation;
  const run = async () => {
    if (mine !== current.generation) return;
    try {
      await step();
      if (box) showError(box, null);
    } catch (error) {
      if (mine === current.generation && box) showError(box, error);
    }
    if (mine === current.generation) setTimeout(run, POLL_MS);
  };
  return run();
}
