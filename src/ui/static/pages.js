// vmq ui, the list pages: Fleet, VMs (with the prepare form), Events (with the plot), DLQ.
"use strict";
(() => {
  const { S, api, esc, age, now, route, stuck, outcomeHtml, errorHtml } = window.vmq;
  const PAGE = 50;

  // ---- Fleet ---------------------------------------------------------------------------------
  route(/^#\/fleet$/, (el) => {
    el.innerHTML = `<h2>Fleet</h2><table><thead><tr><th>Host</th><th>Role</th><th>State</th>
      <th>Backends</th><th>Accelerator</th><th>Labels</th><th>VMs (record / view)</th>
      <th>In flight</th><th>Heartbeat</th><th>Version</th></tr></thead><tbody></tbody></table>`;
    const body = el.querySelector("tbody");
    const draw = () => {
      const perHost = new Map();
      for (const v of S.vms.values()) perHost.set(v.host, (perHost.get(v.host) || 0) + 1);
      const ttl = S.hostTtlMs || 15_000;
      body.innerHTML = [...S.hosts]
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([key, h]) => {
          const expired = now() - Date.parse(h.heartbeatAt) > ttl;
          const role = h.role || (key.includes(".standby.") ? "standby" : "-");
          const labels = Object.entries(h.labels || {})
            .map(([k, v]) => `<span class="badge">${esc(k)}=${esc(v)}</span>`)
            .join("");
          return `<tr data-host="${esc(h.host)}" class="${expired ? "expired" : ""}">
            <td>${esc(h.host)}</td><td>${esc(role)}</td><td>${esc(h.state)}</td>
            <td>${h.backends.map((b) => `<span class="badge">${esc(b)}</span>`).join("")}</td>
            <td>${esc(h.accelerator || "-")}</td><td>${labels}</td>
            <td>${h.vmCount} / ${perHost.get(h.host) || 0}</td><td>${h.inFlight}</td>
            <td>${age(h.heartbeatAt)} ago${expired ? ' <span class="badge bad">expired</span>' : ""}</td>
            <td>${esc(h.version)}</td></tr>`;
        })
        .join("");
    };
    draw();
    const tick = setInterval(draw, 1000);
    return { update: draw, leave: () => clearInterval(tick) };
  });

  // ---- VMs -----------------------------------------------------------------------------------
  const f = { host: "", state: "", name: "", sort: "vmId", dir: 1, page: 0 };
  route(/^#\/vms$/, (el) => {
    el.innerHTML = `<h2>VMs</h2>
      <div class="counts" id="counts"></div>
      <div class="filters">
        <input id="f-name" placeholder="name or id" value="${esc(f.name)}">
        <select id="f-host"></select>
        <select id="f-state"></select>
        <span class="muted" id="shown"></span>
      </div>
      <table><thead><tr>
        <th data-sort="vmId">VM</th><th data-sort="host">Host</th><th data-sort="state">State</th>
        <th data-sort="pending">Pending</th><th data-sort="lastEventSeq">Version</th>
        <th data-sort="updatedAt">Updated</th></tr></thead><tbody id="rows"></tbody></table>
      <div class="pager"><button id="prev">‹ prev</button><span id="pageno"></span>
        <button id="next">next ›</button></div>
      <details><summary>Prepare a VM</summary>
        <form class="form" id="prepare">
          <input name="vmId" placeholder="vmId" required>
          <input name="image" placeholder="image path" required>
          <input name="vcpus" type="number" min="1" value="1" style="width:4em">
          <input name="memoryMb" type="number" min="64" value="512" style="width:6em">
          <select name="host" id="p-host"><option value="">placement</option></select>
          <button class="primary" type="submit">Prepare</button>
        </form><div id="p-out"></div></details>`;
    const $ = (id) => el.querySelector(`#${id}`);
    const rows = $("rows");
    const options = (sel, values, label) => {
      const cur = sel.value;
      sel.innerHTML = `<option value="">${label}</option>${values
        .map((v) => `<option>${esc(v)}</option>`)
        .join("")}`;
      sel.value = values.includes(cur) ? cur : "";
    };
    const draw = () => {
      const all = [...S.vms.values()];
      const counts = {};
      for (const v of all) counts[v.state] = (counts[v.state] || 0) + 1;
      const nStuck = all.filter(stuck).length;
      $("counts").innerHTML =
        Object.entries(counts)
          .sort()
          .map(([s, n]) => `<span class="badge" data-state="${esc(s)}">${esc(s)} ${n}</span>`)
          .join("") + (nStuck ? `<span class="badge bad">stuck ${nStuck}</span>` : "");
      const hosts = [...new Set(all.map((v) => v.host))].sort();
      if ($("f-host").options.length !== hosts.length + 1) options($("f-host"), hosts, "all hosts");
      const states = Object.keys(counts).sort();
      if ($("f-state").options.length !== states.length + 1)
        options($("f-state"), states, "all states");
      const hs = [...new Set([...S.hosts.values()].map((h) => h.host))].sort();
      if ($("p-host").options.length !== hs.length + 1) options($("p-host"), hs, "placement");
      const q = f.name.toLowerCase();
      const list = all.filter(
        (v) =>
          (!f.host || v.host === f.host) &&
          (!f.state || v.state === f.state) &&
          (!q || v.vmId.toLowerCase().includes(q)),
      );
      const key = (v) => (f.sort === "pending" ? v.pending?.type || "" : v[f.sort]);
      list.sort((a, b) => {
        const x = key(a);
        const y = key(b);
        return (x < y ? -1 : x > y ? 1 : a.vmId < b.vmId ? -1 : 1) * f.dir;
      });
      const pages = Math.max(1, Math.ceil(list.length / PAGE));
      f.page = Math.min(f.page, pages - 1);
      $("pageno").textContent = `page ${f.page + 1} of ${pages}`;
      $("shown").textContent = `${list.length} of ${all.length}`;
      rows.innerHTML = list
        .slice(f.page * PAGE, (f.page + 1) * PAGE)
        .map((v) => {
          const p = v.pending;
          const late = p && Date.parse(p.deadline) < now();
          return `<tr data-vm="${esc(v.vmId)}" data-state="${esc(v.state)}" class="${
            stuck(v) ? "stuck" : ""
          }"><td><a href="#/vm/${encodeURIComponent(v.vmId)}">${esc(v.vmId)}</a></td>
            <td>${esc(v.host)}</td><td class="state">${esc(v.state)}</td>
            <td>${p ? `${esc(p.type)} ${late ? '<span class="badge bad">past deadline</span>' : `until ${esc(p.deadline.slice(11, 19))}`}` : ""}</td>
            <td>${v.lastEventSeq}</td><td>${age(v.updatedAt)} ago</td></tr>`;
        })
        .join("");
    };
    $("f-name").addEventListener("input", (e) => {
      f.name = e.target.value;
      f.page = 0;
      draw();
    });
    for (const k of ["host", "state"])
      $(`f-${k}`).addEventListener("change", (e) => {
        f[k] = e.target.value;
        f.page = 0;
        draw();
      });
    $("counts").addEventListener("click", (e) => {
      const s = e.target.dataset?.state;
      if (s === undefined) return;
      f.state = f.state === s ? "" : s;
      options(
        $("f-state"),
        [...$("f-state").options].slice(1).map((o) => o.value),
        "all states",
      );
      $("f-state").value = f.state;
      draw();
    });
    el.querySelector("thead").addEventListener("click", (e) => {
      const s = e.target.dataset?.sort;
      if (!s) return;
      f.dir = f.sort === s ? -f.dir : 1;
      f.sort = s;
      draw();
    });
    $("prev").addEventListener("click", () => {
      f.page = Math.max(0, f.page - 1);
      draw();
    });
    $("next").addEventListener("click", () => {
      f.page++;
      draw();
    });
    $("prepare").addEventListener("submit", async (e) => {
      e.preventDefault();
      const d = Object.fromEntries(new FormData(e.target));
      $("p-out").innerHTML = '<div class="outcome">preparing…</div>';
      try {
        const r = await api("POST", `vms/${encodeURIComponent(d.vmId)}/prepare`, d);
        $("p-out").innerHTML = `${outcomeHtml(r)}<a href="#/vm/${encodeURIComponent(
          d.vmId,
        )}">open ${esc(d.vmId)}</a>`;
      } catch (err) {
        $("p-out").innerHTML = errorHtml(err);
      }
    });
    draw();
    // Ages and deadlines move on their own: redraw now and then even without changes.
    const tick = setInterval(draw, 5000);
    return { update: draw, leave: () => clearInterval(tick) };
  });

  // ---- Events and the plot ------------------------------------------------------------------
  const ef = { type: "", host: "", vm: "" };
  route(/^#\/events$/, (el) => {
    el.innerHTML = `<h2>Events</h2>
      <div id="plot"></div>
      <div class="filters">
        <input id="e-type" placeholder="type (e.g. started)" value="${esc(ef.type)}">
        <input id="e-host" placeholder="host" value="${esc(ef.host)}">
        <input id="e-vm" placeholder="vmId" value="${esc(ef.vm)}">
      </div>
      <table><thead><tr><th>Seq</th><th>At</th><th>Host</th><th>VM</th><th>Type</th>
        <th>State</th><th>Command</th><th>Detail</th></tr></thead><tbody></tbody></table>`;
    const body = el.querySelector("tbody");
    const draw = () => {
      const list = S.events
        .filter(
          ({ event: e }) =>
            (!ef.type || e.type.includes(ef.type)) &&
            (!ef.host || e.host === ef.host) &&
            (!ef.vm || e.vmId.includes(ef.vm)),
        )
        .slice(-200)
        .reverse();
      body.innerHTML = list
        .map(({ seq, event: e }) => {
          const detail =
            e.type === "vm.command-accepted"
              ? `${e.command.type} until ${e.deadline.slice(11, 19)}`
              : e.code
                ? `${e.code}: ${e.message}`
                : e.type === "vm.state-observed"
                  ? `${e.previous} → ${e.observed}`
                  : "";
          return `<tr data-seq="${seq}"><td>${seq}</td><td>${esc(e.at.slice(11, 23))}</td>
            <td>${esc(e.host)}</td><td><a href="#/vm/${encodeURIComponent(e.vmId)}">${esc(
              e.vmId,
            )}</a></td><td>${esc(e.type)}</td><td>${esc(e.state)}</td>
            <td class="muted">${esc(e.causationId ? e.causationId.slice(0, 8) : "")}</td>
            <td class="wrap">${esc(detail)}</td></tr>`;
        })
        .join("");
      el.querySelector("#plot").innerHTML = plot(S.stats);
    };
    for (const k of ["type", "host", "vm"])
      el.querySelector(`#e-${k}`).addEventListener("input", (e) => {
        ef[k] = e.target.value.trim();
        draw();
      });
    draw();
    return { update: draw };
  });

  /** Commands per second (bars) and mean outcome latency (line), the last five minutes. */
  function plot(stats) {
    const W = 900;
    const H = 140;
    const n = stats.length || 1;
    const bw = W / n;
    const maxC = Math.max(1, ...stats.map((s) => s.commands));
    const maxL = Math.max(1, ...stats.map((s) => s.meanMs || 0));
    const bars = stats
      .map((s, i) =>
        s.commands
          ? `<rect class="c" x="${(i * bw).toFixed(1)}" y="${(H - (s.commands / maxC) * H).toFixed(1)}" width="${Math.max(1, bw - 0.5).toFixed(1)}" height="${((s.commands / maxC) * H).toFixed(1)}"/>`
          : "",
      )
      .join("");
    const pts = stats
      .map((s, i) =>
        s.meanMs === null
          ? null
          : `${(i * bw + bw / 2).toFixed(1)},${(H - (s.meanMs / maxL) * H).toFixed(1)}`,
      )
      .filter(Boolean)
      .join(" ");
    const total = stats.reduce((a, s) => a + s.commands, 0);
    return `<svg class="plot" id="activity" viewBox="0 0 ${W} ${H + 18}" width="100%" height="${H + 18}">
      ${bars}<polyline class="l" points="${pts}"/>
      <text x="4" y="${H + 14}" font-size="11">commands/s (bars, max ${maxC}) and mean outcome latency (line, max ${maxL} ms) — last 5 minutes, ${total} commands</text></svg>`;
  }

  // ---- DLQ -----------------------------------------------------------------------------------
  route(/^#\/dlq$/, (el) => {
    el.innerHTML = `<h2>Dead letters</h2>
      <div class="filters"><button id="reload">Reload</button>
        <label><input type="checkbox" id="newid"> new commandId</label>
        <label><input type="checkbox" id="force"> force</label></div>
      <div id="dlq-out"></div>
      <table><thead><tr><th>Seq</th><th>At</th><th>Subject</th><th>Code</th><th>Attempts</th>
        <th>Reason</th><th></th></tr></thead><tbody></tbody></table><pre id="shown" hidden></pre>`;
    const body = el.querySelector("tbody");
    const out = el.querySelector("#dlq-out");
    const load = async () => {
      try {
        const list = await api("GET", "dlq");
        body.innerHTML = list
          .map((e) => {
            const h = e.headers;
            return `<tr data-dlq="${e.seq}"><td>${e.seq}</td><td>${esc(h["Vmq-Dlq-At"] || e.time)}</td>
              <td>${esc(h["Vmq-Dlq-Subject"])}</td><td>${esc(h["Vmq-Dlq-Code"])}</td>
              <td>${esc(h["Vmq-Dlq-Attempts"])}</td><td class="wrap">${esc(h["Vmq-Dlq-Reason"])}</td>
              <td><button data-act="show">Show</button> <button data-act="retry" class="primary">Retry</button>
              <button data-act="drop" class="danger">Drop</button></td></tr>`;
          })
          .join("");
        if (!list.length)
          body.innerHTML = '<tr><td colspan="7" class="muted">no dead letters</td></tr>';
      } catch (e) {
        out.innerHTML = errorHtml(e);
      }
    };
    body.addEventListener("click", async (e) => {
      const act = e.target.dataset?.act;
      const seq = e.target.closest("tr")?.dataset.dlq;
      if (!act || !seq) return;
      try {
        if (act === "show") {
          const d = await api("GET", `dlq/${seq}`);
          const pre = el.querySelector("#shown");
          pre.hidden = false;
          pre.textContent = JSON.stringify(d, null, 2);
          return;
        }
        if (act === "drop" && !confirm(`Drop dead letter ${seq} for good?`)) return;
        const r = await api("POST", `dlq/${seq}/${act}`, {
          newCommandId: el.querySelector("#newid").checked,
          force: el.querySelector("#force").checked,
        });
        out.innerHTML = `<div class="outcome" data-done="${act}">${
          act === "retry"
            ? `re-published ${seq} to ${esc(r.subject)} (stream sequence ${r.commandSeq})`
            : `dropped ${seq}`
        }</div>`;
      } catch (err) {
        out.innerHTML = errorHtml(err);
      }
      await load();
    });
    el.querySelector("#reload").addEventListener("click", load);
    void load();
  });
})();
