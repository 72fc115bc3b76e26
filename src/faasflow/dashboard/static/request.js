// The request view: status and controls, node timeline, node detail, result, the DAG
// coloured by node state, and the raw history; refreshed every second.

import { drawFlow, foreachPaths, showStates, staticPath } from "./graph.js";
import {
  LIVE, api, apiFlow, bytes, current, duration, enc, errorBox, flowHref, h, poll, readable,
  showError, statusBadge, time, view,
} from "./common.js";

const ACTIONS = {
  running: ["pause", "stop"],
  paused: ["resume", "stop"],
  failed: ["redrive", "stop"],
  succeeded: [],
  stopped: [],
};
const RESULT_SHOWN = 64 * 1024; // characters of a result shown on the page

function nodeDetail(path, record, now) {
  if (!record) return h("p", { class: "muted" }, "Select a node in the timeline or the DAG.");
  const end = record.finished ?? (record.state === "running" ? now : null);
  const rows = [
    ["Node", readable(path)],
    ["State", record.state],
    ["Attempt", record.attempt],
    ["Started", time(record.started)],
    ["Finished", time(record.finished)],
    ["Duration", record.started && end ? duration(end - record.started) : ""],
    ["Size in", bytes(record.size_in)],
    ["Size out", bytes(record.size_out)],
    ["Retries", record.retries ?? 0],
    ["Branches", record.branches],
    ["Calls", record.calls],
    ["Error", record.error],
  ].filter(([, value]) => value !== undefined && value !== null && value !== "");
  return h("table", { class: "detail", id: "node-detail-table" },
    h("tbody", {}, rows.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", { dataset: { field: k.toLowerCase().replace(" ", "-") } }, String(v))))));
}

function timeline(request, now, selected, onSelect) {
  const entries = Object.entries(request.nodes);
  const live = LIVE.has(request.status);
  const t0 = request.created;
  let t1 = live ? now : request.updated;
  for (const [, r] of entries) t1 = Math.max(t1, r.finished || 0, r.started || 0);
  const span = Math.max(t1 - t0, 1e-3);
  const pct = (t) => `${Math.min(100, Math.max(0, ((t - t0) / span) * 100))}%`;
  const rows = entries.map(([path, r]) => {
    const track = h("div", { class: "track" });
    if (r.started) {
      const end = r.finished ?? (r.state === "running" || r.state === "held" ? (live ? now : request.updated) : r.started);
      const bar = h("div", { class: `bar state-${r.state}`, title: `${path}: ${r.state}, ${duration(end - r.started)}` });
      bar.style.left = pct(r.started);
      bar.style.width = `max(3px, calc(${pct(end)} - ${pct(r.started)}))`;
      track.append(bar);
    } else {
      track.append(h("span", { class: `pending state-${r.state}` }, r.state));
    }
    return h("div", {
      class: `row${path === selected ? " selected" : ""}`, dataset: { node: path, state: r.state },
      role: "button", tabindex: 0, onclick: () => onSelect(path),
      onkeydown: (e) => { if (e.key === "Enter") onSelect(path); },
    }, h("span", { class: "label", title: path }, readable(path)), track);
  });
  const axis = h("div", { class: "axis" }, h("span", {}, "0"), h("span", {}, duration(span)));
  return [h("div", { class: "rows" }, rows.length ? rows : h("p", { class: "muted" }, "No node has started yet.")), axis];
}

export async function requestView(flow, rid) {
  const box = errorBox();
  const controlBox = errorBox();
  const title = h("h1", {}, "Request ", h("code", { id: "rid" }, rid));
  const summary = h("dl", { class: "summary", id: "summary" });
  const controls = h("div", { class: "controls", id: "controls" });
  const lines = h("div", { class: "timeline", id: "timeline" });
  const detailBox = h("div", { id: "node-detail" });
  const graph = h("div", { class: "graph", id: "graph" });
  const result = h("pre", { id: "result", class: "result" });
  const resultSection = h("section", { hidden: true }, h("h2", {}, "Result"), result);
  const events = h("tbody");
  view.replaceChildren(
    h("nav", { class: "crumbs" }, h("a", { href: "#/" }, "Flows"), " / ", h("a", { href: flowHref(flow) }, flow), " / ", rid),
    title, box, summary, controls, controlBox,
    h("section", {}, h("h2", {}, "Timeline"), lines),
    h("section", {}, h("h2", {}, "Node"), detailBox),
    resultSection,
    h("section", {}, h("h2", {}, "DAG"), graph),
    h("details", {}, h("summary", {}, "History"),
      h("table", { class: "grid", id: "history" }, h("thead", {}, h("tr", {}, ["Time", "Node", "Event", "Attempt", "Detail"].map((t) => h("th", {}, t)))), events)),
  );
  let exportDoc = null;
  let drawing = null;
  let selected = null;
  let last = null;
  let resultFor = null; // the status the result was fetched for: fetched once
  const mine = current.generation;

  const render = () => {
    if (!last) return;
    const { request, history, now } = last;
    summary.replaceChildren(
      h("dt", {}, "Status"), h("dd", { id: "status" }, statusBadge(request.status)),
      h("dt", {}, "Created"), h("dd", {}, time(request.created)),
      h("dt", {}, "Updated"), h("dd", {}, time(request.updated)),
      h("dt", {}, "Duration"), h("dd", {}, duration((LIVE.has(request.status) ? now : request.updated) - request.created)),
      request.failure ? [h("dt", {}, "Failure"), h("dd", { class: "failure" }, `${request.failure.node} (attempt ${request.failure.attempt}): ${request.failure.cause}`)] : [],
    );
    const allowed = ACTIONS[request.status] || [];
    controls.replaceChildren(...allowed.map((verb) =>
      h("button", { type: "button", id: `action-${verb}`, class: verb === "stop" ? "danger" : "", onclick: () => act(verb) }, verb[0].toUpperCase() + verb.slice(1))));
    lines.replaceChildren(...timeline(request, now, selected, select));
    detailBox.replaceChildren(nodeDetail(selected, selected ? request.nodes[selected] : null, now));
    if (drawing) {
      showStates(drawing, exportDoc, request.nodes);
      const foreach = foreachPaths(exportDoc);
      const chosen = selected ? staticPath(selected, foreach) : null;
      for (const [path, g] of drawing.nodes) g.classList.toggle("selected", path === chosen);
    }
    events.replaceChildren(...history.map((e) => h("tr", {},
      h("td", {}, time(e.t)), h("td", {}, e.node || "(request)"), h("td", {}, e.event), h("td", {}, e.attempt ?? ""),
      h("td", {}, e.error || (e.size_out !== undefined ? `${bytes(e.size_in)} → ${bytes(e.size_out)}` : "")))));
  };
  const select = (path) => { selected = path; render(); };

  async function act(verb) {
    for (const button of controls.querySelectorAll("button")) button.disabled = true;
    try {
      await api(`${apiFlow(flow)}/requests/${enc(rid)}/${verb}`, { method: "POST" });
      showError(controlBox, null);
      await refresh();
    } catch (error) {
      showError(controlBox, error);
      for (const button of controls.querySelectorAll("button")) button.disabled = false;
    }
  }

  async function refresh() {
    const data = await api(`${apiFlow(flow)}/requests/${enc(rid)}`);
    if (mine !== current.generation) return;
    last = data;
    const status = data.request.status;
    if (status === "succeeded" && resultFor !== status) {
      resultFor = status;
      const answer = await api(`${apiFlow(flow)}/requests/${enc(rid)}/result`, { raw: true });
      const text = await answer.text();
      result.textContent = text.length > RESULT_SHOWN ? `${text.slice(0, RESULT_SHOWN)}\n… (${text.length} characters)` : text;
      resultSection.hidden = false;
    }
    render();
  }

  api(apiFlow(flow)).then((detail) => {
    if (mine !== current.generation) return;
    exportDoc = detail.export;
    drawing = drawFlow(graph, exportDoc);
    for (const [path, g] of drawing.nodes) {
      g.addEventListener("click", (event) => {
        event.stopPropagation();
        // The first runtime instance of this static node, if it ran.
        const foreach = foreachPaths(exportDoc);
        const hit = last && Object.keys(last.request.nodes).find((p) => staticPath(p, foreach) === path);
        if (hit) select(hit);
      });
    }
    render();
  }).catch((error) => showError(box, error));
  await poll(refresh, box);
}
