// kolfeed dashboard: fetches the service's JSON reports and draws plain SVG charts (no libraries,
// no network beyond this service). Every chart carries data-chart="exp-<name>-<metric>" and gets
// data-rendered="true" once drawn, so a headless-browser test can check it.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const COLORS = ["#1f6feb", "#e8590c", "#2b8a3e", "#9c36b5", "#c92a2a", "#0b7285"];
const METRICS = [
  { key: "ctr", title: "CTR (clicks / impressions)" },
  { key: "buy_conversion", title: "Buy conversion (buyers / users)" },
];
const params = new URLSearchParams(window.location.search);
const COMMISSION = params.has("commission") ? Number(params.get("commission")) : 0.1;
const KOL_LIMIT = params.has("limit") ? Number(params.get("limit")) : 20;

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

async function getJSON(url) {
  const r = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status} ${body.detail || ""}`);
  return body;
}

const fin = (x) => typeof x === "number" && isFinite(x);
const pct = (x, d = 2) => (fin(x) ? `${(100 * x).toFixed(d)}%` : "—");
const num = (x, d = 2) =>
  fin(x) ? x.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d }) : "—";
const int = (x) => (fin(x) ? Math.round(x).toLocaleString("en-US") : "—");
const signedPct = (x, d = 1) => (fin(x) ? `${x >= 0 ? "+" : ""}${(100 * x).toFixed(d)}%` : "—");

function dateLabel(ts, bucketSeconds) {
  const d = new Date(ts * 1000);
  const md = `${String(d.getUTCMonth() + 1).padStart(2, "0")}-${String(d.getUTCDate()).padStart(2, "0")}`;
  return bucketSeconds < 86400 ? `${md} ${String(d.getUTCHours()).padStart(2, "0")}h` : md;
}

// series: [{name, color, points: [{t, v, lo, hi}]}]
function drawChart(holder, chartId, title, series, bucketSeconds) {
  const W = 560, H = 270, L = 58, R = 30, T = 26, B = 40;
  const svg = svgEl("svg", {
    class: "chart", width: W, height: H, viewBox: `0 0 ${W} ${H}`, "data-chart": chartId,
    role: "img", "aria-label": title,
  });
  holder.appendChild(svg);
  svg.appendChild(svgEl("text", { x: L, y: 16, class: "title" }, title));
  const pts = series.flatMap((s) => s.points.filter((p) => fin(p.v)));
  if (pts.length === 0) {
    svg.appendChild(svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no data yet"));
    svg.setAttribute("data-rendered", "true");
    svg.setAttribute("data-points", "0");
    return;
  }
  let t0 = Math.min(...pts.map((p) => p.t)), t1 = Math.max(...pts.map((p) => p.t));
  if (t1 === t0) { t0 -= bucketSeconds; t1 += bucketSeconds; }
  const ys = pts.flatMap((p) => [p.v, p.lo, p.hi]).filter(fin);
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  const pad = (y1 - y0) * 0.08 || Math.abs(y1) * 0.1 || 0.01;
  y0 = Math.max(0, y0 - pad); y1 = y1 + pad;
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - (v - y0) / (y1 - y0)) * (H - T - B);

  for (let i = 0; i <= 4; i++) {  // horizontal grid + y labels
    const v = y0 + ((y1 - y0) * i) / 4;
    svg.appendChild(svgEl("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "gridline" }));
    svg.appendChild(svgEl("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, pct(v, 1)));
  }
  const times = [...new Set(pts.map((p) => p.t))].sort((a, b) => a - b);
  const step = Math.max(1, Math.ceil(times.length / 7));
  times.forEach((t, i) => {
    if (i % step !== 0 && i !== times.length - 1) return;
    svg.appendChild(svgEl("line", { x1: x(t), x2: x(t), y1: H - B, y2: H - B + 4, class: "axis" }));
    svg.appendChild(svgEl("text", { x: x(t), y: H - B + 16, "text-anchor": "middle" },
      dateLabel(t, bucketSeconds)));
  });
  svg.appendChild(svgEl("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }));
  svg.appendChild(svgEl("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }));
  svg.appendChild(svgEl("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle" },
    "cumulative to end of " + (bucketSeconds < 86400 ? "hour" : "day") + " (UTC)"));

  let drawn = 0;
  for (const s of series) {
    const ok = s.points.filter((p) => fin(p.v));
    const band = ok.filter((p) => fin(p.lo) && fin(p.hi));
    if (band.length > 0) {
      const upper = band.map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.hi).toFixed(1)}`);
      const lower = band.slice().reverse().map((p) => `L${x(p.t).toFixed(1)},${y(p.lo).toFixed(1)}`);
      svg.appendChild(svgEl("path", {
        d: upper.concat(lower).join(" ") + " Z", fill: s.color, "fill-opacity": 0.14, stroke: "none",
        "data-band": s.name,
      }));
    }
    if (ok.length > 0) {
      const d = ok.map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
      svg.appendChild(svgEl("path", {
        d, fill: "none", stroke: s.color, "stroke-width": 2.2, "data-line": s.name,
      }));
      for (const p of ok) {
        svg.appendChild(svgEl("circle", { cx: x(p.t), cy: y(p.v), r: 2.6, fill: s.color }));
      }
      drawn += ok.length;
    }
  }
  svg.setAttribute("data-points", String(drawn));
  svg.setAttribute("data-rendered", "true");
}

function liftCell(cmp) {
  const td = el("td");
  if (!cmp) { td.textContent = "—"; return td; }
  const p = fin(cmp.p_value) ? (cmp.p_value < 0.0001 ? "p<0.0001" : `p=${cmp.p_value.toFixed(4)}`) : "p=—";
  td.textContent = `${signedPct(cmp.lift)} [${signedPct(cmp.lift_ci_low)}, ${signedPct(cmp.lift_ci_high)}]` +
    ` ${p}`;
  if (cmp.significant) td.className = cmp.lift >= 0 ? "sig-up" : "sig-down";
  return td;
}

function estimate(e, fmt) {
  return e && fin(e.value) ? `${fmt(e.value)} [${fmt(e.ci_low)}, ${fmt(e.ci_high)}]` : "—";
}

function armTable(exp, report) {
  const table = el("table", { class: "grid", "data-table": `exp-${exp.name}` });
  const head = el("tr");
  for (const h of ["arm", "variant", "share", "users", "impressions", "CTR [CI]", "buy conv. [CI]",
    "GMV/user [CI]", "CTR lift vs control", "buy conv. lift vs control"]) {
    head.appendChild(el("th", { class: h === "arm" || h === "variant" ? "l" : "" }, h));
  }
  table.appendChild(head);
  for (const a of report.arms) {
    const tr = el("tr", { "data-arm": a.name });
    tr.appendChild(el("td", { class: "l" }, a.name + (a.is_control && a.name !== "control" ? " (control)" : "")));
    tr.appendChild(el("td", { class: "l" }, a.variant));
    tr.appendChild(el("td", {}, pct(a.share, 0)));
    tr.appendChild(el("td", {}, int(a.users)));
    tr.appendChild(el("td", {}, int(a.impressions)));
    tr.appendChild(el("td", {}, estimate(a.ctr, (v) => pct(v))));
    tr.appendChild(el("td", {}, estimate(a.buy_conversion, (v) => pct(v, 1))));
    tr.appendChild(el("td", {}, estimate(a.gmv_per_user, (v) => num(v))));
    tr.appendChild(a.is_control ? el("td", {}, "—") : liftCell(a.vs_control.ctr));
    tr.appendChild(a.is_control ? el("td", {}, "—") : liftCell(a.vs_control.buy_conversion));
    table.appendChild(tr);
  }
  return table;
}

async function renderExperiment(section, exp) {
  const box = el("div", { class: "experiment", "data-experiment": exp.name });
  section.appendChild(box);
  const state = exp.active ? "active" : "not active";
  box.appendChild(el("h3", {}, `${exp.name} — ${state}`));
  const shares = exp.arms.map((a) => `${a.name}=${a.variant} ${Math.round(a.share * 100)}%`).join(", ");
  const facts = [`control: ${exp.control}`, `arms: ${shares}`,
    `window: ${exp.start || "−∞"} → ${exp.stop || "+∞"}`];
  if (exp.description) facts.unshift(exp.description);
  box.appendChild(el("p", { class: "sub" }, facts.join(" · ")));
  let report, series;
  try {
    [report, series] = await Promise.all([
      getJSON(`/v1/experiments/${encodeURIComponent(exp.name)}/report`),
      getJSON(`/v1/experiments/${encodeURIComponent(exp.name)}/timeseries`),
    ]);
  } catch (err) {
    box.appendChild(el("p", { class: "error" }, String(err.message || err)));
    return 1;
  }
  if (report.srm_warning) {
    box.appendChild(el("div", { class: "banner", "data-srm": "warning" }, "⚠ " + report.srm.message));
  }
  const legend = el("div", { class: "legend" });
  series.arm_names.forEach((name, i) => {
    const item = el("span");
    item.appendChild(el("span", { class: "swatch", style: `background:${COLORS[i % COLORS.length]}` }));
    const isControl = name === series.control && name !== "control";
    item.appendChild(document.createTextNode(name + (isControl ? " (control)" : "")));
    legend.appendChild(item);
  });
  box.appendChild(legend);
  const charts = el("div", { class: "charts" });
  box.appendChild(charts);
  for (const m of METRICS) {
    const lines = series.arm_names.map((name, i) => ({
      name,
      color: COLORS[i % COLORS.length],
      points: series.points.filter((p) => p.arms[name]).map((p) => {
        const e = p.arms[name][m.key];
        return { t: p.ts, v: e.value, lo: e.ci_low, hi: e.ci_high };
      }),
    }));
    drawChart(charts, `exp-${exp.name}-${m.key}`, m.title, lines, series.bucket_seconds);
  }
  box.appendChild(armTable(exp, report));
  box.appendChild(el("p", { class: "sub" }, `${Math.round(report.confidence * 100)}% intervals. ` +
    `SRM check: ${report.srm.message}`));
  return 0;
}

async function renderKols() {
  const table = document.getElementById("kol-table");
  const summary = document.getElementById("kol-summary");
  let board;
  try {
    board = await getJSON(`/v1/kols/leaderboard?limit=${KOL_LIMIT}&commission=${COMMISSION}`);
  } catch (err) {
    summary.textContent = String(err.message || err);
    summary.className = "error";
    return 1;
  }
  summary.textContent =
    `${int(board.log_buys)} buys, GMV ${num(board.log_gmv)} in the log; attributed ` +
    `${num(board.attributed_gmv)} (${board.balanced ? "balanced" : "NOT balanced"}); unattributed ` +
    `${num(board.unattributed.gmv)}. Top ${board.kols.length} of ${board.kols_total} KOLs, commission ` +
    `${pct(board.commission_rate, 0)}; "via share" = GMV from share cascades (≤ ${board.depth_limit} hops); ` +
    `ROI = commission / creator cost${board.costs_known ? "" : " (no creator costs configured: KOLFEED_KOL_COSTS_PATH)"}.`;
  const head = el("tr");
  const cols = ["#", "KOL", "impressions", "clicks", "shares", "buys", "GMV", "via-share GMV", "CTR",
    "buys/click", "commission", "ROI"];
  for (const h of cols) head.appendChild(el("th", { class: h === "KOL" ? "l" : "" }, h));
  table.appendChild(head);
  board.kols.forEach((k, i) => {
    const tr = el("tr", { "data-kol": String(k.kol_id) });
    const via = k.gmv > 0 ? ` (${pct(k.share_gmv / k.gmv, 0)})` : "";
    const cells = [String(i + 1), `@${k.kol_id}`, int(k.impressions), int(k.clicks), int(k.shares),
      int(k.buys), num(k.gmv), num(k.share_gmv) + via, pct(k.click_rate, 1), pct(k.buy_per_click, 1),
      num(k.commission), fin(k.roi) ? num(k.roi) : "—"];
    cells.forEach((c, j) => tr.appendChild(el("td", { class: j === 1 ? "l" : "" }, c)));
    table.appendChild(tr);
  });
  table.setAttribute("data-rendered", "true");
  return 0;
}

async function main() {
  const section = document.getElementById("experiments");
  let errors = 0;
  const kolsDone = renderKols();
  try {
    const experiments = await getJSON("/v1/experiments");
    if (experiments.length === 0) section.appendChild(el("p", { class: "sub" }, "No experiments configured."));
    for (const exp of experiments) errors += await renderExperiment(section, exp);
  } catch (err) {
    section.appendChild(el("p", { class: "error" }, String(err.message || err)));
    errors += 1;
  }
  errors += await kolsDone;
  document.getElementById("status").textContent =
    `updated ${new Date().toISOString().slice(0, 19).replace("T", " ")} UTC` + (errors ? ` · ${errors} error(s)` : "");
  document.body.setAttribute("data-errors", String(errors));
  document.body.setAttribute("data-loaded", "true");
}

main();
