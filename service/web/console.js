// docqa console: knowledge bases, their documents (upload, list, read, delete) and how each was chunked.
// Plain JavaScript, no build step, no third-party code; every request goes to this server's API with the
// key the user gave, so the page can do exactly what that key may do.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "docqa.apiKey"; // the chat page's: one key per tab
const PAGE = 20;
const ZH = (navigator.language || "").toLowerCase().startsWith("zh");
const T = {
  title: ["docqa 控制台", "docqa console"], chat: ["问答", "Chat"], api: ["API", "API"],
  needKey: ["此服务需要 API 密钥。", "This server requires an API key."], use: ["使用", "Use"],
  kbs: ["知识库", "Knowledge bases"], name: ["名称", "Name"], status: ["状态", "Status"], docs: ["文档", "Documents"],
  units: ["单元", "Units"], generation: ["版本", "Generation"], updated: ["最后提交", "Last commit"],
  buildCol: ["构建", "Build"], docsOf: ["文档", "Documents"], docTitle: ["标题", "Title"], added: ["加入时间", "Added"],
  flags: ["标记", "Flags"], search: ["按名称查找", "Find by name"], prev: ["上一页", "Previous"], next: ["下一页", "Next"],
  drop: ["把文件拖到这里，或按回车选择文件", "Drop files here, or press Enter to choose files"],
  groups: ["可读分组（逗号分隔，留空为全部）", "Groups that may read them (comma-separated; empty: everyone)"],
  meta: ["元数据（JSON）", "Metadata (JSON)"], parsed: ["解析出的全文", "Parsed text"], unitsOf: ["切分单元", "Units"],
  level: ["层级", "Level"], label: ["定位", "Pinpoint"], page: ["页", "Page"], text: ["内容", "Text"], more: ["更多", "More"],
  open: ["打开", "Open"], view: ["查看", "View"], del: ["删除", "Delete"], broken: ["损坏", "broken"], ok: ["正常", "ok"],
  repair: ["修复：", "Repair: "], confirmDel: ["确定删除文档", "Delete the document"], queued: ["排队中", "queued"],
  uploading: ["上传中", "uploading"], ingesting: ["处理中", "ingesting"], done: ["完成", "done"], failed: ["失败", "failed"],
  duplicate: ["已存在，未改动", "already there, unchanged"], badMeta: ["元数据须为 JSON 对象", "Metadata must be a JSON object"],
  loopback: ["本机管理员（未配置密钥）", "local admin (no API keys)"], of: ["共", "of"],
  probe: ["检索测试", "Retrieval test"], run: ["检索", "Search"], passage: ["段落", "Passage"], fused: ["融合分", "Fused"],
  denseCol: ["向量 名次（相似度）", "Dense rank (cosine)"], keywordCol: ["关键词 名次（BM25）", "Keyword rank (BM25)"],
  rerankCol: ["重排", "Rerank"], wouldAnswer: ["问答会这样回答", "What the chat would answer"],
  probeQ: ["输入一个问题，看检索到哪些段落、为什么", "A question: which passages come back, and why"],
  refused: ["拒答", "Refused"], answered: ["作答", "Answered"], fallback: ["兜底回复", "Fallback reply"],
  keysTitle: ["API 密钥", "API keys"], keyName: ["名称", "Name"], role: ["角色", "Role"],
  keyKbs: ["知识库（逗号分隔，* 为全部）", "Knowledge bases (comma-separated, * for all)"],
  expires: ["到期日", "Expires"], groupsCol: ["分组", "Groups"], create: ["创建", "Create"], copy: ["复制", "Copy"], copied: ["已复制", "Copied"],
  shownOnce: ["新密钥只显示这一次，请立即复制保存：", "The new key is shown this once: copy it now."],
  revoke: ["吊销", "Revoke"], confirmRevoke: ["确定吊销密钥", "Revoke the key"],
  loopbackKeys: ["未配置密钥（仅本机模式）：第一个密钥请在服务器上用 `docqa keys create` 创建。",
                 "No API keys yet (loopback-only mode): create the first one on the server with `docqa keys create`."],
  evalTitle: ["评测", "Evaluation"], evalSet: ["评测集（JSONL 或 JSON 数组：question、answer…）",
    "Eval set (JSONL or a JSON array: question, answer, ...)"], compareCol: ["对比", "Compare"],
  started: ["开始", "Started"], rows: ["题数", "Rows"], compare: ["对比所选两次", "Compare the two selected"],
  metric: ["指标", "Metric"], delta: ["变化", "Change"], badSet: ["评测集读不出：", "Cannot read the eval set: "],
  running: ["评测中", "evaluating"], runOf: ["评测", "Run"],
  badFilters: ["筛选条件须为 JSON 对象", "Filters must be a JSON object"],
  asGroups: ["以某分组的密钥身份测试：分组，逗号分隔（留空为本密钥；- 为无分组）",
             "Test as a key with groups: comma-separated (empty: this key; - for no group)"],
  ocr: ["识别置信度", "OCR confidence"], threshold: ["阈值", "threshold"], reading: ["读取中", "reading"],
  read: ["已读取", "read"], ingested: ["已入库", "ingested"], unchanged: ["未改动", "unchanged"], committing: ["写入索引", "committing"],
  evidence: ["证据分", "evidence score"], basis: ["依据", "decided by"], notFound: ["（未检索到）", "(not found)"],
};
const t = (k) => (T[k] ? T[k][ZH ? 0 : 1] : k);

let me = null; // GET /v1/whoami
let state = { kb: null, offset: 0, total: 0, q: "", doc: null, unitOffset: 0 };

function apiKey() { return sessionStorage.getItem(KEY_STORE) || ""; }
function auth() { return apiKey() ? { Authorization: "Bearer " + apiKey() } : {}; }
async function errorText(resp) {
  try { return (await resp.json()).error.message; } catch { return `HTTP ${resp.status}`; }
}
function showError(msg) { $("error").hidden = !msg; $("error").textContent = msg || ""; }

// Every API call: a 401 (no key, or an expired or revoked one) sends the user back to the key prompt.
async function api(path, opts = {}) {
  const resp = await fetch(path, { ...opts, headers: { ...auth(), ...(opts.headers || {}) } });
  if (resp.status === 401) {
    const msg = apiKey() ? await errorText(resp) : "";
    sessionStorage.removeItem(KEY_STORE);
    askForKey(msg);
    throw new Error("unauthorized");
  }
  return resp;
}

function askForKey(msg) {
  for (const s of ["kbs", "keys", "eval", "probe", "docs", "doc"]) $(s).hidden = true;
  $("key-form").hidden = false; $("key-error").textContent = msg || ""; $("who").textContent = "";
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  if (text instanceof Node) td.append(text); else td.textContent = text ?? "";
  if (cls) td.className = cls;
  tr.append(td);
  return td;
}
function button(label, onClick) {
  const b = document.createElement("button"); b.type = "button"; b.textContent = label; b.onclick = onClick; return b;
}
const canEdit = () => me && (me.role === "editor" || me.role === "admin");

async function start() {
  document.documentElement.lang = ZH ? "zh-CN" : "en";
  for (const el of document.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
  for (const el of document.querySelectorAll("[data-tp]")) el.placeholder = t(el.dataset.tp);
  showError("");
  let resp;
  try { resp = await api("/v1/whoami"); } catch { return; }
  if (!resp.ok) { showError(await errorText(resp)); return; }
  me = await resp.json();
  $("key-form").hidden = true;
  $("who").textContent = me.mode === "loopback" ? t("loopback") : `${me.key_id} · ${me.role}`;
  await loadKbs();
  if (me.role === "admin") await loadKeys();
  const m = location.hash.match(/^#kb=([^&]+)(?:&doc=(.+))?$/);
  if (m) { await openKb(decodeURIComponent(m[1])); if (m[2]) await openDoc(decodeURIComponent(m[2])); }
}

async function loadKbs() {
  const resp = await api("/v1/kbs");
  if (!resp.ok) { showError(await errorText(resp)); return; }
  const kbs = (await resp.json()).kbs; // read before the table is emptied: it is never seen half-filled
  const body = $("kb-table").querySelector("tbody");
  body.replaceChildren();
  for (const kb of kbs) {
    const tr = document.createElement("tr");
    if (kb.status !== "ok") tr.className = "broken";
    cell(tr, kb.status === "ok" ? button(kb.name, () => openKb(kb.name)) : kb.name);
    if (kb.status === "ok") cell(tr, t("ok"));
    else {
      const box = document.createElement("span");
      const code = document.createElement("code"); code.textContent = `docqa repair --kb ${kb.name}`;
      box.append(`${t("broken")}: ${kb.error} · ${t("repair")}`, code);
      cell(tr, box);
    }
    cell(tr, kb.counts?.docs ?? ""); cell(tr, kb.counts?.units ?? ""); cell(tr, kb.generation ?? "");
    cell(tr, when(kb.updated_at || kb.created_at));
    const b = kb.build || {};
    cell(tr, [b.embed_model, b.chunker, b.keyword_engine].filter(Boolean).join(" · "));
    body.append(tr);
  }
  $("kbs").hidden = false;
}

// A reader's console is search only (as its chat is): documents, upload and delete are for editors and admins.
async function openKb(name) {
  state = { ...state, kb: name, offset: 0, q: $("doc-search").value.trim() };
  $("docs-kb").textContent = name; $("probe-kb").textContent = name; $("doc").hidden = true;
  $("probe").hidden = false;
  $("probe-as").hidden = me.role !== "admin";
  $("upload").hidden = !canEdit();
  location.hash = "kb=" + encodeURIComponent(name);
  if (canEdit()) await loadDocs(); else $("docs").hidden = true;
  if (me.role === "admin") await loadRuns(); else $("eval").hidden = true;
}

// --- evaluation (admin): `docqa eval run` as a job on an uploaded set; runs listed, opened, compared ---
function parseSet(text) {
  const s = text.trim();
  if (s.startsWith("[")) return JSON.parse(s);
  return s.split(/\r?\n/).filter((l) => l.trim()).map((l, i) => {
    try { return JSON.parse(l); } catch { throw new Error(`line ${i + 1}: not JSON`); }
  });
}

async function startEval(file) {
  let rows;
  try { rows = parseSet(await file.text()); if (!Array.isArray(rows) || !rows.length) throw new Error("no rows"); }
  catch (err) { showError(t("badSet") + err.message); return; }
  const resp = await api(`/v1/kbs/${encodeURIComponent(state.kb)}/eval`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ rows }) });
  if (!resp.ok) { showError(await errorText(resp)); return; }
  showError("");
  const job = await resp.json();
  for (;;) { // progress, as `docqa eval run` prints it
    const r = await api(job.url);
    if (!r.ok) { showError(await errorText(r)); return; }
    const j = await r.json();
    $("eval-progress").textContent = `${t("running")} ${j.progress.done}/${j.progress.total} · ${j.status}`;
    if (j.status === "done" || j.status === "failed") {
      if (j.status === "failed") showError(j.error);
      await loadRuns();
      if (j.status === "done") await showRuns([j]);
      return;
    }
    await new Promise((res) => setTimeout(res, 500));
  }
}

async function loadRuns() {
  $("eval-kb").textContent = state.kb; $("eval").hidden = false;
  const resp = await api(`/v1/jobs?kind=eval&kb=${encodeURIComponent(state.kb)}&limit=20`);
  if (!resp.ok) { showError(await errorText(resp)); return; }
  const jobs = (await resp.json()).jobs;
  const body = $("run-table").querySelector("tbody");
  body.replaceChildren();
  for (const j of jobs) {
    const tr = document.createElement("tr");
    tr.dataset.job = j.id;
    const box = document.createElement("input");
    box.type = "checkbox"; box.value = j.id; box.disabled = j.status !== "done"; box.setAttribute("aria-label", j.id);
    box.onchange = () => { $("compare").disabled = selectedRuns().length !== 2; };
    cell(tr, box); cell(tr, when(j.created)); cell(tr, j.status + (j.error ? `: ${j.error}` : ""));
    cell(tr, j.progress.total);
    cell(tr, j.status === "done" ? button(t("open"), () => showRuns([j])) : "");
    tr.job = j;
    body.append(tr);
  }
  $("compare").disabled = true;
}

function selectedRuns() {
  return [...$("run-table").querySelectorAll("input:checked")].map((b) => b.closest("tr").job);
}

function num(v) { return typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(3)) : String(v ?? ""); }

// One run: its metrics, plots and report; two runs: their metrics side by side with the change.
function flat(m, prefix = "") { // nested metrics ({"recall": {"5": .9}}) as "recall.5"
  const out = {};
  for (const [k, v] of Object.entries(m || {})) {
    if (v && typeof v === "object" && !Array.isArray(v)) Object.assign(out, flat(v, `${prefix}${k}.`));
    else out[prefix + k] = v;
  }
  return out;
}

async function showRuns(runs) {
  runs = [...runs].sort((a, b) => (a.created || 0) - (b.created || 0)); // older first: the change is new - old
  const metrics = runs.map((j) => flat(j.result && j.result.metrics));
  const names = [...new Set(metrics.flatMap((m) => Object.keys(m)))]
    .filter((k) => metrics.some((m) => typeof m[k] === "number"));
  const head = $("metric-table").querySelector("thead");
  head.replaceChildren();
  const hr = document.createElement("tr");
  for (const h of [t("metric"), ...runs.map((j) => `${t("runOf")} ${when(j.created)}`), ...(runs.length === 2 ? [t("delta")] : [])]) {
    const th = document.createElement("th"); th.textContent = h; hr.append(th);
  }
  head.append(hr);
  const body = $("metric-table").querySelector("tbody");
  body.replaceChildren();
  for (const k of names) {
    const tr = document.createElement("tr");
    tr.dataset.metric = k;
    cell(tr, k);
    for (const m of metrics) cell(tr, num(m[k]));
    if (runs.length === 2 && typeof metrics[0][k] === "number" && typeof metrics[1][k] === "number") {
      const d = metrics[1][k] - metrics[0][k];
      cell(tr, (d > 0 ? "+" : "") + num(d), "delta");
    } else if (runs.length === 2) cell(tr, "");
    body.append(tr);
  }
  $("run-title").textContent = runs.map((j) => `${t("runOf")} ${when(j.created)}`).join(" → ");
  const plots = $("plots");
  plots.replaceChildren(); $("report").textContent = "";
  if (runs.length === 1) {
    const files = (runs[0].result && runs[0].result.files) || {};
    for (const [name, url] of Object.entries(files)) {
      const r = await api(url);
      if (!r.ok) continue;
      if (name.endsWith(".png")) { // the key goes in a header, so the image is fetched, not linked
        const img = document.createElement("img");
        img.alt = name; img.src = URL.createObjectURL(await r.blob()); img.className = "plot";
        plots.append(img);
      } else if (name === "report.md") $("report").textContent = await r.text();
    }
  }
  $("run").hidden = false;
}

// --- keys (admin): create (shown once), list, revoke; the API refuses what this admin may not give ---
async function loadKeys() {
  $("keys").hidden = false;
  if (me.mode === "loopback") {
    $("key-create").hidden = true; $("key-table").hidden = true; showError(t("loopbackKeys")); return;
  }
  const resp = await api("/v1/keys");
  if (!resp.ok) { showError(await errorText(resp)); return; }
  const keys = (await resp.json()).keys;
  const body = $("key-table").querySelector("tbody");
  body.replaceChildren();
  for (const k of keys) {
    const tr = document.createElement("tr");
    tr.dataset.key = k.id;
    cell(tr, k.id); cell(tr, k.name); cell(tr, k.role); cell(tr, (k.kbs || []).join(", "));
    cell(tr, (k.groups || []).join(", ")); cell(tr, k.expires || ""); cell(tr, k.status);
    const actions = cell(tr, "");
    if (k.status === "active" && k.id !== me.key_id) actions.append(button(t("revoke"), () => revokeKey(k)));
    body.append(tr);
  }
}

const list = (v) => v.split(",").map((x) => x.trim()).filter(Boolean);

async function createKey(e) {
  e.preventDefault();
  const req = { name: $("new-name").value.trim(), role: $("new-role").value, kbs: list($("new-kbs").value),
                groups: list($("new-groups").value) };
  if ($("new-expires").value) req.expires = $("new-expires").value;
  const resp = await api("/v1/keys", { method: "POST", headers: { "Content-Type": "application/json" },
                                       body: JSON.stringify(req) });
  if (!resp.ok) { showError(await errorText(resp)); return; }
  showError("");
  $("new-key-value").textContent = (await resp.json()).key;
  $("new-key").hidden = false;
  $("key-create").reset();
  await loadKeys();
}

async function revokeKey(k) {
  if (!confirm(`${t("confirmRevoke")} ${k.id}${k.name ? ` (${k.name})` : ""}?`)) return;
  const resp = await api(`/v1/keys/${encodeURIComponent(k.id)}`, { method: "DELETE" });
  if (!resp.ok) { showError(await errorText(resp)); return; }
  await loadKeys();
}

async function copyKey() {
  const text = $("new-key-value").textContent;
  try { await navigator.clipboard.writeText(text); } catch { // no clipboard API (http, older browsers): select it
    const range = document.createRange(); range.selectNodeContents($("new-key-value"));
    const sel = getSelection(); sel.removeAllRanges(); sel.addRange(range); document.execCommand("copy");
  }
  $("copy-key").textContent = t("copied");
}

// A unit that is a Markdown table (how docqa keeps tables: ingest/loaders/tables.py) shown as a table.
function tableOf(text) {
  const lines = (text || "").trim().split("\n").filter((l) => l.trim());
  if (lines.length < 2 || !lines.every((l) => l.trim().startsWith("|")) || !/^\|?\s*:?-{3,}/.test(lines[1].trim()))
    return null;
  const cells = (l) => l.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((c) => c.trim());
  const table = document.createElement("table");
  table.className = "md";
  lines.filter((_, i) => i !== 1).forEach((l, i) => {
    const tr = document.createElement("tr");
    for (const c of cells(l)) { const td = document.createElement(i ? "td" : "th"); td.textContent = c; tr.append(td); }
    table.append(tr);
  });
  return table;
}

function rank(r, score, digits) {
  return r == null ? t("notFound") : `${r} (${score == null ? "?" : Number(score).toFixed(digits)})`;
}

async function probe(e) {
  e.preventDefault();
  const query = $("probe-q").value.trim();
  if (!query || !state.kb) return;
  const json = { "Content-Type": "application/json" };
  const k = Math.max(1, Math.min(20, Number($("probe-k").value) || 5));
  let filters;
  if ($("probe-filters").value.trim()) {
    try { filters = JSON.parse($("probe-filters").value); } catch { showError(t("badFilters")); return; }
  }
  // an admin may test as a key with other groups would see it ("-": a key of no group, KB-wide documents only)
  const as = $("probe-as").value.trim();
  const as_groups = me.role !== "admin" || !as ? undefined
    : as === "-" ? [] : as.split(",").map((g) => g.trim()).filter(Boolean);
  const [found, chat] = await Promise.all([
    api("/v1/search", { method: "POST", headers: json,
                        body: JSON.stringify({ query, kb: state.kb, k, mode: $("probe-mode").value, filters, as_groups }) }),
    api("/v1/chat", { method: "POST", headers: json,
                      body: JSON.stringify({ question: query, kb: state.kb, filters, as_groups }) }),
  ]);
  if (!found.ok) { showError(await errorText(found)); return; }
  showError("");
  const hits = (await found.json()).hits;
  const body = $("probe-table").querySelector("tbody");
  body.replaceChildren();
  hits.forEach((h, i) => {
    const tr = document.createElement("tr");
    tr.className = "hit";
    cell(tr, i + 1);
    cell(tr, [baseName(h.source), h.label || (h.heading_path || []).join(" › "), h.page ? `p. ${h.page}` : ""]
      .filter(Boolean).join(" · "));
    cell(tr, Number(h.score).toFixed(4));
    cell(tr, rank(h.dense_rank, h.dense_score, 3), "dense");
    cell(tr, rank(h.lexical_rank, h.lexical_score, 2), "keyword");
    cell(tr, h.rerank_score == null ? "" : Number(h.rerank_score).toFixed(3));
    cell(tr, h.text.length > 160 ? h.text.slice(0, 160) + "…" : h.text, "text");
    body.append(tr);
  });
  $("probe-table").hidden = false;
  if (!chat.ok) { $("probe-answer").hidden = false; $("probe-verdict").textContent = await errorText(chat); return; }
  const a = await chat.json();
  const verdict = a.refused ? t("refused") : a.fallback ? t("fallback") : t("answered");
  const bar = a.threshold == null ? "" : (a.evidence_score >= a.threshold ? " ≥ " : " < ") +
    `${t("threshold")} ${Number(a.threshold).toFixed(3)}`;
  $("probe-verdict").textContent = `${verdict} · ${t("evidence")} ${Number(a.evidence_score).toFixed(3)}${bar} · ` +
    `${t("basis")} ${a.basis}` + (a.reason ? ` · ${a.reason}` : "");
  $("probe-verdict").dataset.refused = a.refused ? "true" : "false";
  $("probe-text").textContent = a.answer;
  $("probe-answer").hidden = false;
}

function baseName(source) { return (source || "").split("#")[0].split("/").pop(); }
function when(x) { // the API's times: Unix seconds (or ISO text)
  if (x == null || x === "") return "";
  const d = typeof x === "number" ? new Date(x * 1000) : new Date(x);
  return isNaN(d) ? String(x) : d.toLocaleString(ZH ? "zh-CN" : "en-GB");
}

async function loadDocs() {
  const p = new URLSearchParams({ offset: state.offset, limit: PAGE });
  if (state.q) p.set("q", state.q);
  const resp = await api(`/v1/kbs/${encodeURIComponent(state.kb)}/documents?${p}`);
  if (!resp.ok) { showError(await errorText(resp)); return; }
  showError("");
  const data = await resp.json();
  state.total = data.total;
  const body = $("doc-table").querySelector("tbody");
  body.replaceChildren();
  for (const d of data.documents) {
    const tr = document.createElement("tr");
    tr.dataset.doc = d.doc_id;
    cell(tr, d.name + (d.record ? ` #${d.record}` : "")); cell(tr, d.title); cell(tr, d.units);
    cell(tr, when(d.added_at)); cell(tr, (d.flags || d.flagged || []).join(", "));
    const actions = cell(tr, button(t("view"), () => openDoc(d.doc_id)));
    if (canEdit()) actions.append(" ", button(t("del"), () => deleteDoc(d)));
    body.append(tr);
  }
  const last = Math.min(state.offset + PAGE, state.total);
  $("page-info").textContent = state.total ? `${state.offset + 1}–${last} ${t("of")} ${state.total}` : "0";
  $("prev").disabled = state.offset === 0; $("next").disabled = last >= state.total;
  $("docs").hidden = false;
}

async function deleteDoc(d) {
  if (!confirm(`${t("confirmDel")} ${d.name}?`)) return;
  const resp = await api(`/v1/kbs/${encodeURIComponent(state.kb)}/documents/${encodeURIComponent(d.doc_id)}`,
                         { method: "DELETE" });
  if (!resp.ok) { showError(await errorText(resp)); return; }
  await loadDocs(); await loadKbs();
}

async function openDoc(docId) {
  const base = `/v1/kbs/${encodeURIComponent(state.kb)}/documents/${encodeURIComponent(docId)}`;
  const resp = await api(base);
  if (!resp.ok) { showError(await errorText(resp)); return; }
  const d = await resp.json();
  state.doc = docId; state.unitOffset = 0;
  location.hash = `kb=${encodeURIComponent(state.kb)}&doc=${encodeURIComponent(docId)}`;
  $("doc-title").textContent = d.title || d.name;
  const meta = Object.entries(d.meta || {}).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(", ") : v}`);
  $("doc-meta").textContent = [d.name, d.format, d.pages ? `${d.pages} p.` : "", ...meta].filter(Boolean).join(" · ");
  $("doc-text").textContent = d.text;
  $("unit-table").querySelector("tbody").replaceChildren();
  $("doc").hidden = false;
  await loadUnits();
  $("doc").scrollIntoView();
}

async function loadUnits() {
  const url = `/v1/kbs/${encodeURIComponent(state.kb)}/documents/${encodeURIComponent(state.doc)}/units` +
              `?offset=${state.unitOffset}&limit=100`;
  const resp = await api(url);
  if (!resp.ok) { showError(await errorText(resp)); return; }
  const data = await resp.json();
  const body = $("unit-table").querySelector("tbody");
  for (const u of data.units) {
    const tr = document.createElement("tr");
    tr.className = "unit " + u.level;
    cell(tr, u.level); cell(tr, u.label || (u.heading_path || []).join(" › ")); cell(tr, u.page ?? "");
    cell(tr, u.ocr_confidence == null ? "" : Number(u.ocr_confidence).toFixed(2), "ocr");
    cell(tr, (u.flags || []).join(", "), "flags");
    cell(tr, tableOf(u.text) || u.text, "text");
    body.append(tr);
  }
  state.unitOffset += data.units.length;
  $("more-units").hidden = state.unitOffset >= data.total;
}

// --- upload: checked by the server before anything is taken; then a background job, polled for progress ---
async function upload(files) {
  if (!files.length || !state.kb) return;
  let meta = $("meta").value.trim();
  if (meta) {
    try { if (typeof JSON.parse(meta) !== "object" || Array.isArray(JSON.parse(meta))) throw 0; }
    catch { showError(t("badMeta")); return; }
  }
  showError("");
  const list = $("upload-list");
  const rows = new Map();
  for (const f of files) {
    const li = document.createElement("li"); li.textContent = `${f.name} — ${t("uploading")}`;
    li.dataset.name = f.name; list.append(li); rows.set(f.name, li);
  }
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  if ($("groups").value.trim()) form.append("groups", $("groups").value.trim());
  if (meta) form.append("meta", meta);
  let resp;
  try { resp = await api(`/v1/kbs/${encodeURIComponent(state.kb)}/documents`, { method: "POST", body: form }); }
  catch { return; }
  if (!resp.ok) { // nothing was taken: the message names the file and why
    const msg = await errorText(resp);
    for (const li of rows.values()) { li.className = "failed"; li.textContent = `${li.dataset.name} — ${msg}`; }
    return;
  }
  const body = await resp.json();
  const lis = [...rows.values()];
  rows.clear(); // by the name the server filed each under (names are made safe), in upload order
  (body.documents || []).forEach((d, i) => { if (lis[i]) { lis[i].dataset.name = d.name; rows.set(d.name, lis[i]); } });
  for (const d of body.documents || []) {
    const li = rows.get(d.name);
    if (li) li.textContent = `${d.name} — ${d.status === "duplicate" ? t("duplicate") : t("queued")}`;
    if (li && d.status === "duplicate") li.className = "done";
  }
  if (body.job_id) await follow(body.url || `/v1/jobs/${body.job_id}`, rows);
  await loadDocs(); await loadKbs();
}

async function follow(url, rows) {
  for (;;) {
    const resp = await api(url);
    if (!resp.ok) { showError(await errorText(resp)); return; }
    const job = await resp.json();
    const pending = [...rows.values()].filter((li) => !li.className);
    if (job.status === "done" || job.status === "failed") {
      const outcome = new Map(((job.result && job.result.documents) || []).map((d) => [d.name, d]));
      for (const li of pending) {
        const d = outcome.get(li.dataset.name);
        const failed = job.status === "failed" || (d && d.status === "failed");
        li.className = failed ? "failed" : "done";
        li.textContent = `${li.dataset.name} — ${failed ? `${t("failed")}: ${(d && d.reason) || job.error}`
                                                        : `${t("done")}${d && d.units ? ` (${d.units} ${t("units")})` : ""}`}`;
      }
      return;
    }
    // each file as the job goes (reading, its OCR pages, read or failed with why), then the commit of them all
    const files = new Map((job.files || []).map((f) => [f.name, f]));
    const p = job.progress || {};
    for (const li of pending) {
      const f = files.get(li.dataset.name);
      const what = f ? (f.status === "read" && job.note ? t("committing") : t(f.status)) : t("ingesting");
      li.dataset.status = f ? f.status : "";
      li.textContent = `${li.dataset.name} — ${what}` + (f && f.detail ? `: ${f.detail}` : "") +
                       ` · ${p.done ?? 0}/${p.total ?? "?"}`;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem(KEY_STORE, $("key").value.trim()); $("key").value = "";
  start();
});
$("probe-form").addEventListener("submit", probe);
$("eval-file").addEventListener("change", () => { const f = $("eval-file").files[0]; $("eval-file").value = "";
                                                  if (f) startEval(f); });
$("compare").onclick = () => showRuns(selectedRuns());
$("key-create").addEventListener("submit", createKey);
$("copy-key").onclick = copyKey;
$("prev").onclick = () => { state.offset = Math.max(0, state.offset - PAGE); loadDocs(); };
$("next").onclick = () => { state.offset += PAGE; loadDocs(); };
$("more-units").onclick = () => loadUnits();
let searchTimer = null;
$("doc-search").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => { state.q = $("doc-search").value.trim(); state.offset = 0; loadDocs(); }, 250);
});
const drop = $("drop");
drop.addEventListener("click", () => $("files").click());
drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("files").click(); } });
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); upload([...e.dataTransfer.files]); });
$("files").addEventListener("change", () => { upload([...$("files").files]); $("files").value = ""; });
start();
