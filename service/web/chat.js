// docqa chat page: plain JavaScript, no build step, no third-party code, no request leaves this server.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "docqa.apiKey"; // sessionStorage: the key is forgotten when the tab closes
let history = []; // [{role, content}] of this conversation, sent with each question
let busy = false;

function apiKey() { return sessionStorage.getItem(KEY_STORE) || ""; }

function headers(json = true) {
  const h = json ? { "Content-Type": "application/json" } : {};
  if (apiKey()) h.Authorization = "Bearer " + apiKey();
  return h;
}

function status(text) { $("status").textContent = text || ""; }

async function errorText(resp) {
  try { return (await resp.json()).error.message; } catch { return `HTTP ${resp.status}`; }
}

async function loadKbs() {
  const resp = await fetch("/v1/kbs", { headers: headers(false) });
  if (resp.status === 401) {
    $("key-form").hidden = false;
    $("key-error").textContent = apiKey() ? await errorText(resp) : "";
    status("需要 API 密钥 · API key required");
    return false;
  }
  if (!resp.ok) { status(await errorText(resp)); return false; }
  $("key-form").hidden = true;
  const select = $("kb");
  const previous = select.value;
  select.replaceChildren();
  for (const kb of (await resp.json()).kbs) {
    const opt = document.createElement("option");
    opt.value = kb.name;
    opt.textContent = kb.status === "ok" ? `${kb.name} (${kb.counts?.docs ?? "?"} 文档 docs)` : `${kb.name} — ${kb.status}`;
    opt.disabled = kb.status !== "ok";
    select.append(opt);
  }
  if (previous) select.value = previous;
  status(select.options.length ? "就绪 · ready" : "没有知识库 · no knowledge base yet");
  return true;
}

function label(c) {
  if (c.label) return c.label; // pinpoint label, e.g. 《劳动合同法》第十九条第一款
  const path = (c.heading_path || []).join(" › ");
  return path || c.title || c.source;
}

function baseName(source) { return (source || "").split("#")[0].split("/").pop(); }

function showPassage(c) {
  $("passage").hidden = false;
  $("passage-label").textContent = `[${c.n}] ${label(c)}`;
  $("passage-source").textContent = baseName(c.source) + (c.page ? ` · 第 ${c.page} 页 p. ${c.page}` : "");
  $("passage-text").textContent = c.text;
}

// the answer's text with each [n] made a button that opens its passage
function renderAnswer(el, result) {
  el.replaceChildren();
  const byN = new Map(result.citations.map((c) => [c.n, c]));
  const parts = result.answer.split(/(\[\d+\])/);
  for (const part of parts) {
    const m = /^\[(\d+)\]$/.exec(part);
    const c = m && byN.get(Number(m[1]));
    if (c) {
      const b = document.createElement("button");
      b.type = "button"; b.className = "cite"; b.textContent = part; b.title = label(c);
      b.addEventListener("click", () => showPassage(c));
      el.append(b);
    } else {
      el.append(document.createTextNode(part));
    }
  }
  el.classList.remove("streaming");
  el.classList.toggle("refused", !!result.refused);
  el.classList.toggle("fallback", !!result.fallback);
  el.classList.add("done");
  if (result.refused) el.dataset.refused = "true";
  if (result.citations.length) {
    const list = document.createElement("ol");
    list.className = "sources";
    for (const c of result.citations) {
      const li = document.createElement("li");
      li.value = c.n;
      const b = document.createElement("button");
      b.type = "button"; b.textContent = `${label(c)} — ${baseName(c.source)}`;
      b.addEventListener("click", () => showPassage(c));
      li.append(b);
      list.append(li);
    }
    el.after(list);
  }
}

// server-sent events from a fetch() body: yields {event, data}
async function* sseEvents(resp) {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message"; const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trim());
      }
      if (data.length) yield { event, data: data.join("\n") };
    }
  }
}

async function ask(question) {
  const turn = document.createElement("div");
  turn.className = "turn";
  const q = document.createElement("div");
  q.className = "question"; q.textContent = question;
  const a = document.createElement("div");
  a.className = "answer streaming";
  turn.append(q, a);
  $("conversation").append(turn);
  turn.scrollIntoView({ block: "end" });
  const body = { question, kb: $("kb").value || null, stream: true, history };
  const resp = await fetch("/v1/chat", { method: "POST", headers: headers(), body: JSON.stringify(body) });
  if (!resp.ok) {
    a.classList.remove("streaming"); a.classList.add("error", "done");
    a.textContent = await errorText(resp);
    if (resp.status === 401) loadKbs();
    return;
  }
  let final = null;
  for await (const ev of sseEvents(resp)) {
    const data = JSON.parse(ev.data);
    if (ev.event === "delta") { a.textContent += data.text; turn.scrollIntoView({ block: "end" }); }
    else if (ev.event === "done") final = data;
    else if (ev.event === "error") { a.classList.add("error"); a.textContent = data.error.message; }
  }
  if (final) {
    renderAnswer(a, final);
    history.push({ role: "user", content: question }, { role: "assistant", content: final.answer });
    history = history.slice(-20);
  } else {
    a.classList.remove("streaming"); a.classList.add("done");
  }
}

$("ask").addEventListener("submit", async (e) => {
  e.preventDefault();
  const question = $("question").value.trim();
  if (!question || busy) return;
  busy = true; $("send").disabled = true; $("question").value = "";
  status("回答中… answering");
  try { await ask(question); status("就绪 · ready"); }
  catch (err) { status(`出错 error: ${err.message}`); }
  finally { busy = false; $("send").disabled = false; $("question").focus(); }
});

$("question").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); $("ask").requestSubmit(); }
});

$("key-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  sessionStorage.setItem(KEY_STORE, $("key").value.trim());
  $("key").value = "";
  await loadKbs();
});

$("new-chat").addEventListener("click", () => {
  history = []; $("conversation").replaceChildren(); $("passage").hidden = true;
});
$("close-passage").addEventListener("click", () => { $("passage").hidden = true; });

loadKbs().catch((err) => status(`出错 error: ${err.message}`));
