// The dashboard's page: three views drawn from the JSON API, chosen by the URL's hash.
//
//   #/                          the flows, with their running and paused counts
//   #/flows/F                   the flow's DAG, an input box to execute it, its requests
//   #/flows/F/requests/ID       a request: controls, node timeline, node detail, DAG
//
// Live views poll the API about every second; a view's polling stops when another view
// replaces it.

import {
  LIVE, api, apiFlow, current, duration, errorBox, flowHref, h, poll, prose, requestHref,
  showError, statusBadge, time, view,
} from "./common.js";
import { drawFlow } from "./graph.js";
import { requestView } from "./request.js";

const PAGE_SIZE = 20;
const STATUSES = ["running", "paused", "succeeded", "failed", "stopped"];

// -- views -----------------------------------------------------------------------------

async function flowsView() {
  const box = errorBox();
  const body = h("tbody");
  view.replaceChildren(
    h("h1", {}, "Flows"),
    box,
    h("table", { id: "flows", class: "grid" },
      h("thead", {}, h("tr", {}, h("th", {}, "Flow"), h("th", {}, "Description"),
        h("th", { class: "num" }, "Running"), h("th", { class: "num" }, "Paused"))),
      body),
  );
  await poll(async () => {
    const { flows } = await api("/api/flows");
    const count = (n, more) => (n === null ? "?" : `${n}${more ? "+" : ""}`);
    body.replaceChildren(...flows.map((flow) =>
      h("tr", { dataset: { flow: flow.name } },
        h("td", {}, h("a", { href: flowHref(flow.name) }, flow.name)),
        h("td", {}, prose(flow.description || ""), flow.error ? h("span", { class: "error-inline" }, ` (${flow.error})`) : null),
        h("td", { class: "num running-count" }, count(flow.running, flow.more)),
        h("td", { class: "num paused-count" }, count(flow.paused, flow.more)))));
    if (!flows.length) body.replaceChildren(h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No flows.")));
  }, box);
}

async function flowView(flow) {
  const box = errorBox();
  view.replaceChildren(h("nav", { class: "crumbs" }, h("a", { href: "#/" }, "Flows"), " / ", flow), h("h1", {}, flow), box);
  let detail;
  try {
    detail = await api(apiFlow(flow));
  } catch (error) {
    showError(box, error);
    return;
  }
  const graph = h("div", { class: "graph", id: "graph" });
  const input = h("textarea", { id: "input", rows: 4, placeholder: "The request's input", spellcheck: "false" });
  const query = h("input", { id: "query", type: "text", placeholder: "query string (optional): a=1&b=2" });
  const execBox = errorBox();
  const execute = h("button", { id: "execute", type: "submit" }, "Execute");
  const form = h("form", { class: "execute", onsubmit: async (event) => {
    event.preventDefault();
    execute.disabled = true;
    try {
      const qs = query.value.trim().replace(/^\?/, "");
      const answer = await api(`${apiFlow(flow)}/requests${qs ? `?${qs}` : ""}`, {
        method: "POST", body: input.value, headers: { "Content-Type": "application/octet-stream" },
      });
      location.hash = requestHref(flow, answer.request_id);
    } catch (error) {
      showError(execBox, error);
    } finally {
      execute.disabled = false;
    }
  } }, h("label", { for: "input" }, "Input"), input, query, h("div", {}, execute), execBox);
  const listBox = errorBox();
  const table = h("tbody");
  const filters = h("fieldset", { class: "filters" }, h("legend", {}, "Status"),
    STATUSES.map((status) => h("label", {}, h("input", { type: "checkbox", name: "status", value: status }), ` ${status}`)));
  const older = h("button", { id: "older", type: "button" }, "Older →");
  const newer = h("button", { id: "newer", type: "button" }, "← Newer");
  const pageInfo = h("span", { class: "muted", id: "page" });
  const sync = detail.export.sync ? h("span", { class: "tag" }, "sync") : null;
  view.append(
    detail.description ? h("p", { class: "description" }, prose(detail.description)) : "",
    h("section", {}, h("h2", {}, "DAG ", sync), graph),
    h("section", {}, h("h2", {}, "Execute"), form),
    h("section", {}, h("h2", {}, "Requests"), filters, listBox,
      h("table", { id: "requests", class: "grid" },
        h("thead", {}, h("tr", {}, ["Request", "Status", "Created", "Duration", "Failure"].map((t) => h("th", {}, t)))),
        table),
      h("div", { class: "pager" }, newer, pageInfo, older)),
  );
  drawFlow(graph, detail.export);

  // Paging: `cursors` holds the `before` of each page shown so far (null: the newest).
  let cursors = [null];
  let next = null;
  const statuses = () => [...filters.querySelectorAll("input:checked")].map((c) => c.value);
  filters.addEventListener("change", () => { cursors = [null]; refresh().catch((e) => showError(listBox, e)); });
  older.addEventListener("click", () => { if (next) { cursors.push(next); refresh().catch((e) => showError(listBox, e)); } });
  newer.addEventListener("click", () => { if (cursors.length > 1) { cursors.pop(); refresh().catch((e) => showError(listBox, e)); } });
  const mine = current.generation;
  async function refresh() {
    const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
    const wanted = statuses();
    if (wanted.length) params.set("status", wanted.join(","));
    const before = cursors[cursors.length - 1];
    if (before) params.set("before", before);
    const page = await api(`${apiFlow(flow)}/requests?${params}`);
    if (mine !== current.generation) return;
    next = page.next;
    const now = Date.now() / 1000;
    table.replaceChildren(...page.requests.map((r) =>
      h("tr", { dataset: { rid: r.request_id, status: r.status } },
        h("td", {}, h("a", { href: requestHref(flow, r.request_id), class: "rid" }, r.request_id)),
        h("td", { class: "status-cell" }, statusBadge(r.status)),
        h("td", {}, time(r.created)),
        h("td", {}, duration((LIVE.has(r.status) ? now : r.updated) - r.created)),
        h("td", { class: "failure" }, r.failure ? `${r.failure.node} (attempt ${r.failure.attempt}): ${r.failure.cause}` : ""))));
    if (!page.requests.length) table.replaceChildren(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No requests.")));
    older.disabled = !next;
    newer.disabled = cursors.length <= 1;
    pageInfo.textContent = `page ${cursors.length}`;
  }
  await poll(refresh, listBox);
}
// -- routing ---------------------------------------------------------------------------

function route() {
  current.generation += 1;
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "flows" && parts.length === 2) return flowView(parts[1]);
  if (parts[0] === "flows" && parts.length === 4 && parts[2] === "requests") return requestView(parts[1], parts[3]);
  return flowsView();
}

async function header() {
  try {
    const info = await api("/api/info");
    document.getElementById("source").textContent = info.source === "gateway" ? "flows of the gateway" : "local flows";
    document.getElementById("logout").hidden = !info.auth.includes("token");
  } catch (_) { /* the views show the error */ }
}

window.addEventListener("hashchange", route);
header();
route();
