// Draws a flow's JSON export (docs/export-format.md) as SVG, top to bottom.
//
// The layout is a small layered one of our own, applied at every level of nesting:
// a node's box is measured first (a sub-DAG, foreach or conditional node is a cluster
// holding the layout of its inner DAGs), then each DAG is laid out in layers by longest
// path from its start node. Edges that skip layers get a waypoint in every layer they
// cross, node order within a layer follows the barycentre of the neighbours (a few
// sweeps down and up, to untangle fan-out and fan-in), and x positions are pulled
// towards the neighbours while keeping boxes apart.
//
// Every node of the flow, at any depth, is one <g class="node"> with data-path set to
// its static path, so the request page can colour nodes by state.

const SVG_NS = "http://www.w3.org/2000/svg";
const CHAR_W = 7.4; // width of one character of the 12px labels (an estimate, no DOM)
const PAD = 12; // inside a cluster
const TITLE_H = 22; // a cluster's title line
const GAP_X = 26; // between boxes of one layer
const GAP_Y = 34; // between layers
const OP_H = 18; // one operation row of a task node
const DIAMOND = { w: 96, h: 34 };
const JOIN_R = 7;
const DUMMY_W = 6;

function textWidth(text) {
  return text.length * CHAR_W;
}

// -- measuring -------------------------------------------------------------------------

function measure(node) {
  if (node.kind === "subdag") {
    const inner = layoutDag(node.subdag);
    const w = Math.max(inner.w + 2 * PAD, textWidth(titleOf(node)) + 2 * PAD);
    return { node, w, h: TITLE_H + inner.h + PAD, inner };
  }
  if (node.kind === "foreach" || node.kind === "conditional") {
    const keys = node.kind === "foreach" ? ["*"] : node.branch_keys;
    const branches = keys.map((key) => {
      const dag = node.kind === "foreach" ? node.foreach : node.branches[key];
      const inner = layoutDag(dag);
      const label = node.kind === "foreach" ? "each item" : key;
      const w = Math.max(inner.w + 2 * PAD, textWidth(label) + 2 * PAD);
      return { key, label, dag, inner, w, h: TITLE_H + inner.h + PAD };
    });
    const row = branches.reduce((sum, b) => sum + b.w, 0) + GAP_X * (branches.length - 1);
    const w = Math.max(row, DIAMOND.w, textWidth(titleOf(node))) + 2 * PAD;
    const rowH = Math.max(0, ...branches.map((b) => b.h));
    const h = TITLE_H + DIAMOND.h + GAP_Y + rowH + GAP_Y + 2 * JOIN_R + PAD;
    return { node, w, h, branches, rowH };
  }
  const labels = node.operations.map((op) => op.label);
  const widest = Math.max(textWidth(node.id) + 20, ...labels.map((l) => textWidth(l) + 28));
  const h = labels.length ? 26 + labels.length * OP_H + 4 : 26;
  return { node, w: Math.max(labels.length ? 90 : 48, widest), h };
}

function titleOf(node) {
  return `${node.id} · ${node.kind}`;
}

// -- layered layout of one DAG ---------------------------------------------------------

function layoutDag(dag) {
  const byId = new Map(dag.nodes.map((node) => [node.id, node]));
  const items = dag.nodes.map((node) => ({ id: node.id, box: measure(node), preds: [], succs: [] }));
  const itemOf = new Map(items.map((item) => [item.id, item]));
  const edges = [];
  for (const node of dag.nodes) {
    for (const child of node.children) {
      if (byId.has(child.target)) edges.push({ from: node.id, to: child.target, child });
    }
  }
  // Longest path from the sources: every edge goes at least one layer down.
  const layerOf = new Map();
  const indegree = new Map(items.map((item) => [item.id, 0]));
  for (const edge of edges) indegree.set(edge.to, indegree.get(edge.to) + 1);
  const queue = items.filter((item) => indegree.get(item.id) === 0).map((item) => item.id);
  for (const id of queue) layerOf.set(id, 0);
  while (queue.length) {
    const id = queue.shift();
    for (const edge of edges.filter((e) => e.from === id)) {
      layerOf.set(edge.to, Math.max(layerOf.get(edge.to) ?? 0, layerOf.get(id) + 1));
      indegree.set(edge.to, indegree.get(edge.to) - 1);
      if (indegree.get(edge.to) === 0) queue.push(edge.to);
    }
  }
  for (const item of items) if (!layerOf.has(item.id)) layerOf.set(item.id, 0); // (a cycle: invalid anyway)
  const depth = Math.max(0, ...layerOf.values()) + 1;
  const layers = Array.from({ length: depth }, () => []);
  for (const item of items) {
    item.layer = layerOf.get(item.id);
    item.w = item.box.w;
    item.h = item.box.h;
    layers[item.layer].push(item);
  }
  // Long edges get one waypoint per layer they cross.
  const routes = edges.map((edge) => {
    const chain = [itemOf.get(edge.from)];
    for (let layer = layerOf.get(edge.from) + 1; layer < layerOf.get(edge.to); layer++) {
      const dummy = { id: `${edge.from}->${edge.to}#${layer}`, dummy: true, layer, w: DUMMY_W, h: 0, preds: [], succs: [] };
      layers[layer].push(dummy);
      chain.push(dummy);
    }
    chain.push(itemOf.get(edge.to));
    for (let i = 1; i < chain.length; i++) {
      chain[i - 1].succs.push(chain[i]);
      chain[i].preds.push(chain[i - 1]);
    }
    return { edge, chain };
  });
  orderLayers(layers);
  placeX(layers);
  // y: layers stacked, each as tall as its tallest box, boxes centred in their layer.
  let y = 0;
  for (const layer of layers) {
    const height = Math.max(0, ...layer.map((item) => item.h));
    for (const item of layer) {
      item.top = y;
      item.y = y + (height - item.h) / 2;
      item.bottom = y + height;
    }
    y += height + GAP_Y;
  }
  const all = layers.flat();
  const minX = Math.min(...all.map((item) => item.cx - item.w / 2));
  for (const item of all) item.cx -= minX;
  const w = Math.max(...all.map((item) => item.cx + item.w / 2));
  const h = y - GAP_Y;
  const placed = items.map((item) => ({ box: item.box, x: item.cx - item.w / 2, y: item.y }));
  const lines = routes.map(({ edge, chain }) => {
    const points = [];
    const first = chain[0];
    points.push([first.cx, first.y + first.h]);
    for (const step of chain.slice(1, -1)) {
      points.push([step.cx, step.top], [step.cx, step.bottom]);
    }
    const last = chain[chain.length - 1];
    points.push([last.cx, last.y]);
    return { points, child: edge.child, from: edge.from, to: edge.to };
  });
  return { w, h, placed, lines };
}

function orderLayers(layers) {
  layers.forEach((layer) => layer.forEach((item, i) => (item.order = i)));
  const barycentre = (item, side) => {
    const others = item[side];
    if (!others.length) return item.order;
    return others.reduce((sum, other) => sum + other.order, 0) / others.length;
  };
  const sortBy = (layer, side) => {
    const keyed = layer.map((item) => [barycentre(item, side), item.order, item]);
    keyed.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    keyed.forEach(([, , item], i) => { layer[i] = item; item.order = i; });
  };
  for (let sweep = 0; sweep < 4; sweep++) {
    for (let l = 1; l < layers.length; l++) sortBy(layers[l], "preds");
    for (let l = layers.length - 2; l >= 0; l--) sortBy(layers[l], "succs");
  }
}

function placeX(layers) {
  for (const layer of layers) {
    let cursor = 0;
    for (const item of layer) {
      item.cx = cursor + item.w / 2;
      cursor += item.w + GAP_X;
    }
  }
  const pull = (layer, side) => {
    const wanted = layer.map((item) =>
      item[side].length ? item[side].reduce((s, o) => s + o.cx, 0) / item[side].length : item.cx);
    let previous = null;
    layer.forEach((item, i) => {
      const least = previous ? previous.cx + (previous.w + item.w) / 2 + GAP_X : -Infinity;
      item.cx = Math.max(wanted[i], least);
      previous = item;
    });
    // The pass only pushes right: move the whole layer back so it sits on its wishes.
    const drift = layer.reduce((s, item, i) => s + item.cx - wanted[i], 0) / (layer.length || 1);
    for (const item of layer) item.cx -= drift;
  };
  for (let sweep = 0; sweep < 4; sweep++) {
    for (let l = 1; l < layers.length; l++) pull(layers[l], "preds");
    for (let l = layers.length - 2; l >= 0; l--) pull(layers[l], "succs");
  }
}

// -- drawing ---------------------------------------------------------------------------

function el(name, attrs = {}, parent = null) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (parent) parent.appendChild(node);
  return node;
}

function text(parent, x, y, content, cls) {
  const node = el("text", { x, y, class: cls }, parent);
  node.textContent = content;
  return node;
}

function curve(points) {
  let d = `M${points[0][0]},${points[0][1]}`;
  for (let i = 1; i < points.length; i++) {
    const [x0, y0] = points[i - 1];
    const [x1, y1] = points[i];
    const mid = (y1 - y0) / 2;
    d += ` C${x0},${y0 + mid} ${x1},${y1 - mid} ${x1},${y1}`;
  }
  return d;
}

function drawEdge(parent, points, { dashed = false, label = null } = {}) {
  el("path", { d: curve(points), class: dashed ? "edge exec-only" : "edge", "marker-end": "url(#arrow)" }, parent);
  if (label) {
    const [a, b] = [points[0], points[points.length - 1]];
    text(parent, (a[0] + b[0]) / 2 + 4, (a[1] + b[1]) / 2, label, "edge-label");
  }
}

function drawDag(parent, layout, ox, oy) {
  const g = el("g", { transform: `translate(${ox},${oy})` }, parent);
  for (const line of layout.lines) {
    drawEdge(g, line.points, {
      dashed: line.child.execution_only,
      label: line.child.has_forwarder ? "forwarder" : null,
    });
  }
  for (const { box, x, y } of layout.placed) drawBox(g, box, x, y);
  return g;
}

function describe(node) {
  const lines = [`${node.path} (${node.kind})`];
  for (const op of node.operations) lines.push(`${op.kind}: ${op.label}`);
  if (node.has_aggregator) lines.push("aggregator");
  return lines.join("\n");
}

function drawBox(parent, box, x, y) {
  const { node, w, h } = box;
  const g = el("g", {
    class: `node kind-${node.kind}`, "data-path": node.path, "data-kind": node.kind,
    transform: `translate(${x},${y})`, tabindex: 0,
  }, parent);
  el("title", {}, g).textContent = describe(node);
  if (node.kind === "task") {
    el("rect", { width: w, height: h, rx: 7, class: node.operations.length ? "shape" : "shape pass" }, g);
    text(g, w / 2, 17, node.id, "node-id");
    node.operations.forEach((op, i) => {
      const top = 26 + i * OP_H;
      el("rect", { x: 7, y: top, width: w - 14, height: OP_H - 3, rx: 3, class: `op op-${op.kind}` }, g);
      text(g, w / 2, top + 11.5, op.label, "op-label");
    });
    el("text", { x: w - 6, y: 13, class: "badge" }, g);
    return;
  }
  el("rect", { width: w, height: h, rx: 9, class: "shape cluster" }, g);
  text(g, PAD, 15, titleOf(node), "cluster-title");
  el("text", { x: w - 6, y: 15, class: "badge" }, g);
  if (node.kind === "subdag") {
    drawDag(g, box.inner, (w - box.inner.w) / 2, TITLE_H);
    return;
  }
  // A dynamic node: its condition (or foreach) fans out to its branches, which join again.
  const cx = w / 2;
  const top = TITLE_H;
  el("polygon", {
    points: `${cx},${top} ${cx + DIAMOND.w / 2},${top + DIAMOND.h / 2} ${cx},${top + DIAMOND.h} ${cx - DIAMOND.w / 2},${top + DIAMOND.h / 2}`,
    class: "diamond",
  }, g);
  text(g, cx, top + DIAMOND.h / 2 + 4, node.kind === "foreach" ? "foreach" : "condition", "diamond-label");
  const rowTop = top + DIAMOND.h + GAP_Y;
  const joinY = rowTop + box.rowH + GAP_Y + JOIN_R;
  const row = box.branches.reduce((s, b) => s + b.w, 0) + GAP_X * (box.branches.length - 1);
  let left = (w - row) / 2;
  for (const branch of box.branches) {
    const bg = el("g", { class: "branch", "data-dag": branch.dag.id, transform: `translate(${left},${rowTop})` }, g);
    el("rect", { width: branch.w, height: branch.h, rx: 7, class: "branch-box" }, bg);
    text(bg, PAD, 15, branch.label, "branch-label");
    drawDag(bg, branch.inner, (branch.w - branch.inner.w) / 2, TITLE_H);
    const mid = left + branch.w / 2;
    drawEdge(g, [[cx, top + DIAMOND.h], [mid, rowTop]]);
    drawEdge(g, [[mid, rowTop + branch.h], [cx, joinY - JOIN_R]]);
    left += branch.w + GAP_X;
  }
  el("circle", { cx, cy: joinY, r: JOIN_R, class: "join" }, g);
}

/**
 * Draw `flow` (the export document) into `container`, replacing what was there.
 * Returns {svg, nodes}: nodes maps each static node path to its <g>.
 */
export function drawFlow(container, flow) {
  const layout = layoutDag(flow.dag);
  const margin = 10;
  const width = Math.ceil(layout.w + 2 * margin);
  const height = Math.ceil(layout.h + 2 * margin);
  const svg = el("svg", {
    class: "dag", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `the DAG of flow ${flow.flow}`,
  });
  const defs = el("defs", {}, svg);
  const marker = el("marker", {
    id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7,
    orient: "auto-start-reverse",
  }, defs);
  el("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow" }, marker);
  drawDag(svg, layout, margin, margin);
  container.replaceChildren(svg);
  const nodes = new Map();
  for (const g of svg.querySelectorAll("g.node")) nodes.set(g.dataset.path, g);
  return { svg, nodes };
}

/** Every foreach node's static path: runtime paths put a branch key where these have `*`. */
export function foreachPaths(flow) {
  const found = new Set();
  const walk = (dag) => {
    for (const node of dag.nodes) {
      if (node.kind === "foreach") { found.add(node.path); walk(node.foreach); }
      if (node.subdag) walk(node.subdag);
      if (node.branches) Object.values(node.branches).forEach(walk);
    }
  };
  walk(flow.dag);
  return found;
}

/** The static path of a runtime node path (`C[c1]/F[go]/n1` → `C[c1]/F[*]/n1`). */
export function staticPath(runtime, foreach) {
  const out = [];
  for (const part of runtime.split("/")) {
    const match = /^(.*?)\[(.*)\]$/.exec(part);
    if (match && foreach.has([...out, match[1]].join("/"))) out.push(`${match[1]}[*]`);
    else out.push(part);
  }
  return out.join("/");
}

const RANK = { failed: 4, running: 3, held: 2, done: 1 };

/**
 * Colour the drawn nodes by the request's node table: a static node takes the most
 * telling state of its runtime instances (failed, running, held, done) and shows how
 * many instances ran when a foreach ran it more than once.
 */
export function showStates(drawing, flow, table) {
  const foreach = foreachPaths(flow);
  const merged = new Map();
  for (const [path, record] of Object.entries(table)) {
    const key = staticPath(path, foreach);
    const seen = merged.get(key) || { state: null, count: 0 };
    seen.count += 1;
    if (!seen.state || (RANK[record.state] || 0) > (RANK[seen.state] || 0)) seen.state = record.state;
    merged.set(key, seen);
  }
  for (const [path, g] of drawing.nodes) {
    const seen = merged.get(path);
    for (const cls of [...g.classList]) if (cls.startsWith("state-")) g.classList.remove(cls);
    if (seen && seen.state) g.classList.add(`state-${seen.state}`);
    g.dataset.state = seen ? seen.state : "";
    const badge = g.querySelector(":scope > text.badge");
    if (badge) badge.textContent = seen && seen.count > 1 ? `×${seen.count}` : "";
  }
}
