// vmq ui, one VM: its detail page (spec, handle, pending intent, history, lifecycle buttons)
// and its serial console (xterm.js over a websocket to the server's console relay bridge).
"use strict";
(() => {
  const { S, api, esc, now, route, stuck, withToken, outcomeHtml, errorHtml } = window.vmq;

  route(/^#\/vm\/([^/]+)$/, (el, vmId) => {
    el.innerHTML = `<h2>VM ${esc(vmId)} <a class="muted" href="#/console/${encodeURIComponent(vmId)}">console</a></h2>
      <div class="filters" id="actions">
        <button data-act="start" class="primary">Start</button>
        <button data-act="stop">Stop</button>
        <label>timeout ms <input id="stop-timeout" type="number" min="0" style="width:6em"></label>
        <select id="stop-force"><option value="">force: default</option><option>never</option>
          <option>after-timeout</option><option>now</option></select>
        <button data-act="suspend">Suspend</button><button data-act="resume">Resume</button>
        <button data-act="destroy" class="danger">Destroy…</button>
      </div>
      <div id="out"></div><div id="summary"></div>
      <h3>Spec</h3><pre id="spec"></pre>
      <h3>Events</h3><table><thead><tr><th>Seq</th><th>At</th><th>Type</th><th>State</th>
        <th>Caused by</th><th>Detail</th></tr></thead><tbody id="history"></tbody></table>`;
    const $ = (id) => el.querySelector(`#${id}`);
    let detail = null;
    const summary = () => {
      const v = S.vms.get(vmId) || detail?.view;
      if (!v) {
        $("summary").innerHTML =
          '<p class="muted">not in the view (destroyed and compacted, or never prepared)</p>';
        return;
      }
      const p = v.pending;
      $("summary").innerHTML = `<div class="grid" data-state="${esc(v.state)}">
        <span>state</span><b id="vm-state" class="${stuck(v) ? "badge bad" : ""}">${esc(v.state)}</b>
        <span>host</span><span>${esc(v.host)}</span>
        <span>version</span><span>${v.lastEventSeq}</span>
        <span>pending</span><span>${p ? `${esc(p.type)} (command ${esc(p.commandId)}) since ${esc(p.since)}, deadline ${esc(p.deadline)}${Date.parse(p.deadline) < now() ? ' <span class="badge bad">past deadline</span>' : ""}` : "none"}</span>
        <span>handle</span><span><code>${esc(JSON.stringify(v.handle))}</code></span></div>`;
    };
    const byCommand = () => {
      const m = new Map();
      for (const { event: e } of detail?.history || [])
        if (e.type === "vm.command-accepted") m.set(e.command.commandId, e.command.type);
      return m;
    };
    const drawHistory = () => {
      const cmds = byCommand();
      $("spec").textContent = detail?.spec
        ? JSON.stringify(detail.spec, null, 2)
        : "(no spec recorded)";
      $("history").innerHTML = (detail?.history || [])
        .map(({ seq, event: e }) => {
          const cause = e.causationId
            ? `${cmds.get(e.causationId) || "command"} ${e.causationId}`
            : "observed";
          const d = e.code
            ? `${e.code}: ${e.message}`
            : e.type === "vm.stopped"
              ? `how=${e.how}`
              : "";
          return `<tr data-type="${esc(e.type)}"><td>${seq}</td><td>${esc(e.at)}</td><td>${esc(e.type)}</td>
            <td>${esc(e.state)}</td><td class="muted">${esc(cause)}</td><td class="wrap">${esc(d)}</td></tr>`;
        })
        .join("");
    };
    let loading = null;
    const load = () =>
      (loading ??= api("GET", `vms/${encodeURIComponent(vmId)}`)
        .then((d) => {
          detail = d;
          summary();
          drawHistory();
        })
        .catch((e) => {
          if (!detail) $("out").innerHTML = errorHtml(e);
        })
        .finally(() => (loading = null)));
    $("actions").addEventListener("click", async (e) => {
      const act = e.target.dataset?.act;
      if (!act) return;
      if (
        act === "destroy" &&
        !confirm(`Destroy VM ${vmId}? Its disk and state are gone for good.`)
      )
        return;
      const body = {};
      const host = (S.vms.get(vmId) || detail?.view)?.host;
      if (host) body.host = host;
      if ((act === "stop" || act === "destroy") && $("stop-timeout").value)
        body.timeoutMs = Number($("stop-timeout").value);
      if (act === "stop" && $("stop-force").value) body.force = $("stop-force").value;
      $("out").innerHTML =
        `<div class="outcome" data-waiting="${act}">${act}: waiting for the outcome…</div>`;
      try {
        $("out").innerHTML = outcomeHtml(
          await api("POST", `vms/${encodeURIComponent(vmId)}/${act}`, body),
        );
      } catch (err) {
        $("out").innerHTML = errorHtml(err);
      }
      void load();
    });
    void load();
    return {
      update: (d) => {
        summary();
        // Only this VM's new events mean a new history.
        if (d === "snapshot" || d?.events?.some((x) => x.event.vmId === vmId)) void load();
      },
    };
  });

  route(/^#\/console\/([^/?]+)(?:\?.*)?$/, (el, vmId) => {
    el.innerHTML = `<h2>Console of <a href="#/vm/${encodeURIComponent(vmId)}">${esc(vmId)}</a>
      <span id="c-state" class="muted">connecting…</span></h2><div id="term"></div>`;
    const host =
      new URLSearchParams(location.hash.split("?")[1] || "").get("host") ||
      S.vms.get(vmId)?.host ||
      "";
    const term = new window.Terminal({ convertEol: false, cursorBlink: true, fontSize: 14 });
    term.open(el.querySelector("#term"));
    const q = `vmId=${encodeURIComponent(vmId)}${host ? `&host=${encodeURIComponent(host)}` : ""}&csrf=${encodeURIComponent(S.csrf)}`;
    const ws = new WebSocket(
      `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${withToken(`/api/console?${q}`)}`,
    );
    ws.binaryType = "arraybuffer";
    const st = el.querySelector("#c-state");
    ws.onopen = () => {
      st.textContent = "connected";
      term.focus();
    };
    ws.onmessage = (m) => term.write(new Uint8Array(m.data));
    ws.onclose = (c) => {
      st.textContent = `closed${c.reason ? `: ${c.reason}` : ""}`;
    };
    const enc = new TextEncoder();
    term.onData((d) => ws.readyState === 1 && ws.send(enc.encode(d)));
    return {
      leave: () => {
        ws.close();
        term.dispose();
      },
    };
  });
})();
