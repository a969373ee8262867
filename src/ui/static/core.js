// vmq ui, the core: the live store fed by server-sent events, the API with its token and
// CSRF header, the router and small helpers. No framework: plain DOM, one global `vmq`.
"use strict";
(() => {
  const params = new URLSearchParams(location.search);
  // The token arrives once in the address (?token=) and is kept for this tab only.
  if (params.get("token")) {
    sessionStorage.setItem("vmq-token", params.get("token"));
    params.delete("token");
    const q = params.toString();
    history.replaceState(null, "", location.pathname + (q ? `?${q}` : "") + location.hash);
  }
  const token = sessionStorage.getItem("vmq-token") || "";

  const S = {
    hosts: new Map(),
    vms: new Map(),
    events: [],
    stats: [],
    hostTtlMs: 0,
    csrf: "",
    /** server clock minus ours, so ages are right on a browser with a skewed clock */
    skew: 0,
    live: false,
  };
  const listeners = new Set();
  const emit = (what) => listeners.forEach((fn) => fn(what));

  const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const now = () => Date.now() + S.skew;
  const age = (iso) => {
    const ms = now() - Date.parse(iso);
    if (!Number.isFinite(ms)) return "-";
    if (ms < 60_000) return `${Math.max(0, Math.round(ms / 1000))}s`;
    if (ms < 3_600_000) return `${Math.round(ms / 60_000)}m`;
    return `${Math.round(ms / 3_600_000)}h`;
  };
  const withToken = (path) =>
    token ? `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : path;

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (method !== "GET") {
      headers["Content-Type"] = "application/json";
      headers["X-Vmq-Csrf"] = S.csrf;
    }
    const res = await fetch(`/api/${path}`, {
      method,
      headers,
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) {
      const e = data.error || { code: "ui::internal", message: res.statusText };
      throw Object.assign(new Error(`${e.message} [${e.code}]`), e);
    }
    return data;
  }

  function apply(d) {
    for (const { key, host } of d.hosts || []) S.hosts.set(key, host);
    for (const key of d.hostsRemoved || []) S.hosts.delete(key);
    for (const v of d.vms || []) S.vms.set(v.vmId, v);
    for (const id of d.vmsRemoved || []) S.vms.delete(id);
    if (d.events?.length) {
      S.events.push(...d.events);
      if (S.events.length > 1000) S.events.splice(0, S.events.length - 1000);
    }
    if (d.stats) S.stats = d.stats;
    if (d.hostTtlMs) S.hostTtlMs = d.hostTtlMs;
  }

  function connect() {
    const es = new EventSource(withToken("/api/stream"));
    const conn = document.getElementById("conn");
    es.addEventListener("snapshot", (m) => {
      S.hosts.clear();
      S.vms.clear();
      S.events = [];
      apply(JSON.parse(m.data));
      S.live = true;
      conn.textContent = "live";
      conn.className = "conn live";
      emit("snapshot");
    });
    es.addEventListener("delta", (m) => {
      const d = JSON.parse(m.data);
      apply(d);
      emit(d);
    });
    es.addEventListener("stats", (m) => {
      const d = JSON.parse(m.data);
      S.stats = d.stats;
      S.skew = d.now - Date.now();
      emit("stats");
    });
    es.onerror = () => {
      S.live = false;
      conn.textContent = "reconnecting…";
      conn.className = "conn";
    };
  }

  const routes = [];
  let current = null;
  function route(pattern, page) {
    routes.push({ pattern, page });
  }
  function navigate() {
    const hash = location.hash || "#/vms";
    for (const a of document.querySelectorAll("header nav a"))
      a.classList.toggle("active", hash.startsWith(a.getAttribute("href")));
    for (const r of routes) {
      const m = r.pattern.exec(hash);
      if (!m) continue;
      current?.leave?.();
      const el = document.getElementById("app");
      el.innerHTML = "";
      current = r.page(el, ...m.slice(1).map(decodeURIComponent)) || null;
      return;
    }
    location.hash = "#/vms";
  }
  listeners.add((what) => current?.update?.(what));

  /** A VM that needs a look: state unknown, or a command past its deadline. */
  const stuck = (v) =>
    v.state === "unknown" || Boolean(v.pending && Date.parse(v.pending.deadline) < now());

  function outcomeHtml(r) {
    const o = r.outcome || {};
    const bad = o.type === "vm.command-rejected" || o.type === "vm.command-failed";
    const detail = o.code ? ` — ${esc(o.code)}: ${esc(o.message)}` : "";
    return `<div class="outcome ${bad ? "bad" : ""}" data-outcome="${esc(o.type)}">${esc(
      o.type,
    )} → state <b>${esc(o.state)}</b>${detail} <span class="muted">(command ${esc(
      r.commandId,
    )})</span></div>`;
  }
  const errorHtml = (e) =>
    `<div class="outcome bad" data-error="${esc(e.code)}">${esc(e.message)}${
      e.hint ? ` <span class="muted">— ${esc(e.hint)}</span>` : ""
    }</div>`;

  window.vmq = { S, api, esc, age, now, route, stuck, withToken, outcomeHtml, errorHtml };

  addEventListener("DOMContentLoaded", async () => {
    try {
      const s = await api("GET", "session");
      S.csrf = s.csrf;
      S.hostTtlMs = s.hostTtlMs || 0;
    } catch (e) {
      document.getElementById("app").innerHTML = errorHtml(e);
      return;
    }
    connect();
    addEventListener("hashchange", navigate);
    navigate();
  });
})();
