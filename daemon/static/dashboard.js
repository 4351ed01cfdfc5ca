// ordergate dashboard: plain JS, no library. The token lives in this tab's sessionStorage only.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  let token = null;
  let oldest = null;
  let paged = false;
  const money = (v) => (v === null || v === undefined || isNaN(v)) ? "-" :
    Number(v).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const signed = (v) => (v > 0 ? "+" : "") + money(v);
  const price = (v) => (v === null || v === undefined) ? "-" :
    Number(v).toLocaleString("en-US", { minimumFractionDigits: Math.abs(v) >= 1 ? 2 : 4,
                                        maximumFractionDigits: Math.abs(v) >= 1 ? 2 : 4 });
  const qty = (v) => (v === null || v === undefined) ? "-" : Number(v).toLocaleString("en-US", { maximumFractionDigits: 4 });
  const time = (v) => v ? String(v).replace("T", " ").replace("+00:00", "").slice(0, 19) : "-";
  const text = (v) => (v === null || v === undefined || v === "") ? "-" : String(v);

  function setNumber(id, value, fmt, coloured) {
    const el = $(id);
    el.textContent = fmt(value);
    el.dataset.value = value === null || value === undefined ? "" : String(value);
    if (coloured) el.className = "value " + (value > 0.005 ? "pos" : value < -0.005 ? "neg" : "");
  }

  function table(el, columns, rows, empty) {
    el.replaceChildren();
    const head = el.createTHead().insertRow();
    for (const c of columns) {
      const th = document.createElement("th");
      th.textContent = c.title; if (c.num) th.className = "num"; head.appendChild(th);
    }
    const body = el.createTBody();
    if (!rows.length) {
      const td = body.insertRow().insertCell(); td.colSpan = columns.length; td.textContent = empty; return;
    }
    appendRows(body, columns, rows);
  }

  function appendRows(body, columns, rows) {
    for (const r of rows) {
      const tr = body.insertRow();
      for (const c of columns) {
        const td = tr.insertCell();
        const v = r[c.key];
        td.textContent = (c.fmt || text)(v);
        const cls = [c.num ? "num" : "", c.pnl && v > 0 ? "pos" : "", c.pnl && v < 0 ? "neg" : "",
                     c.outcome && v === "rejected" ? "neg" : ""].filter(Boolean).join(" ");
        if (cls) td.className = cls;
      }
    }
  }

  const POSITIONS = [
    { key: "symbol", title: "symbol" }, { key: "strategy", title: "strategy" }, { key: "direction", title: "side" },
    { key: "shares", title: "shares", num: true, fmt: qty }, { key: "entry_price", title: "entry", num: true, fmt: price },
    { key: "current_price", title: "last", num: true, fmt: price }, { key: "stop_loss", title: "stop", num: true, fmt: price },
    { key: "target_price", title: "target", num: true, fmt: price },
    { key: "unrealized_pnl", title: "unrealized", num: true, pnl: true, fmt: signed },
    { key: "sector", title: "sector" }, { key: "broker", title: "broker" }, { key: "entry_time", title: "opened", fmt: time },
  ];
  const ORDERS = [
    { key: "created_ts", title: "created", fmt: time }, { key: "symbol", title: "symbol" }, { key: "side", title: "side" },
    { key: "kind", title: "kind" }, { key: "quantity", title: "qty", num: true, fmt: qty },
    { key: "filled_qty", title: "filled", num: true, fmt: qty }, { key: "status", title: "status" },
    { key: "broker", title: "broker" }, { key: "client_order_id", title: "client order id" },
  ];
  const DECISIONS = [
    { key: "ts", title: "time", fmt: time }, { key: "ticker", title: "ticker" }, { key: "direction", title: "dir" },
    { key: "signal_type", title: "signal" }, { key: "entry_price", title: "entry", num: true, fmt: price },
    { key: "stage", title: "stopped at" }, { key: "outcome", title: "outcome", outcome: true }, { key: "reason", title: "why" },
  ];
  const ALERTS = [
    { key: "ts", title: "time", fmt: time }, { key: "severity", title: "severity" }, { key: "kind", title: "kind" },
    { key: "message", title: "message" },
  ];

  function chart(svg, points) {
    const NS = "http://www.w3.org/2000/svg";
    svg.replaceChildren();
    const W = 600, H = 160, P = 24;
    if (!points || points.length === 0) {
      const t = document.createElementNS(NS, "text"); t.setAttribute("x", W / 2); t.setAttribute("y", H / 2);
      t.setAttribute("fill", "#7a8493"); t.setAttribute("text-anchor", "middle"); t.textContent = "no closed trades yet";
      svg.appendChild(t); return;
    }
    const ys = [0, ...points.map((p) => p[1])];
    const lo = Math.min(...ys), hi = Math.max(...ys), span = hi - lo || 1;
    const x = (i) => P + (points.length === 1 ? (W - 2 * P) : i * (W - 2 * P) / (points.length - 1));
    const y = (v) => H - P - (v - lo) * (H - 2 * P) / span;
    const zero = document.createElementNS(NS, "line");
    zero.setAttribute("x1", P); zero.setAttribute("x2", W - P); zero.setAttribute("y1", y(0)); zero.setAttribute("y2", y(0));
    zero.setAttribute("stroke", "#2a323c"); svg.appendChild(zero);
    const path = document.createElementNS(NS, "polyline");
    path.setAttribute("points", points.map((p, i) => `${x(i).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" "));
    path.setAttribute("fill", "none"); path.setAttribute("stroke-width", "2");
    path.setAttribute("stroke", points[points.length - 1][1] >= 0 ? "#3fb950" : "#f85149");
    path.setAttribute("class", "curve"); svg.appendChild(path);
    for (const [v, yy] of [[hi, P - 8], [lo, H - 6]]) {
      const t = document.createElementNS(NS, "text"); t.setAttribute("x", 4); t.setAttribute("y", yy + 12);
      t.setAttribute("fill", "#7a8493"); t.setAttribute("font-size", "11"); t.textContent = signed(v); svg.appendChild(t);
    }
  }

  function render(snap) {
    const s = snap.status;
    document.body.dataset.clock = s.clock || "";
    $("clock").textContent = time(s.clock);
    setNumber("equity", s.equity, money); setNumber("cash", s.cash, money);
    setNumber("daily-pnl", s.daily_pnl, signed, true); setNumber("realized-pnl", s.realized_pnl, signed, true);
    setNumber("unrealized-pnl", s.unrealized_pnl, signed, true);
    setNumber("open-positions", s.open_positions, text);
    $("brokers").textContent = Object.entries(s.brokers || {}).map(([n, h]) => `${n}: ${h.state}`).join(", ") || "-";
    const ks = s.kill_switch || {};
    const state = $("kill-state");
    state.textContent = ks.active ? "ACTIVE" : "off"; state.className = ks.active ? "active" : "off";
    $("kill-reason").textContent = ks.active ? `(${ks.reason}, since ${time(ks.since)})` : "";
    $("trip").disabled = !!ks.active; $("resume").disabled = !ks.active;
    table($("positions"), POSITIONS, [...(s.positions || []), ...(s.external_positions || [])], "no open positions");
    table($("orders"), ORDERS, snap.working_orders || [], "no working orders");
    if (!paged) {  // once older pages are loaded the feed holds still until "Newest" is clicked
      table($("decisions"), DECISIONS, snap.decisions || [], "no signals yet");
      oldest = (snap.decisions || []).length ? snap.decisions[snap.decisions.length - 1].seq : null;
    }
    table($("alerts"), ALERTS, snap.alerts || [], "no alerts");
    $("day").textContent = snap.equity.day;
    chart($("chart-day"), snap.equity.day_curve); chart($("chart-history"), snap.equity.history_curve);
    const j = snap.journal || {};
    $("journal-count").textContent = `${(j.signals || 0).toLocaleString("en-US")} signals, ${(j.trades || 0).toLocaleString("en-US")} trades in the journal`;
    document.body.dataset.ready = "1";
  }

  function headers(extra) { return Object.assign({ Authorization: "Bearer " + token }, extra || {}); }

  async function stream() {  // server-sent events read with fetch, so the token goes in a header, not the URL
    for (;;) {
      try {
        const res = await fetch("/api/events", { headers: headers(), cache: "no-store" });
        if (res.status === 401) { login("the token was refused"); return; }
        if (!res.ok || !res.body) throw new Error("HTTP " + res.status);
        $("conn").textContent = "live"; $("conn").className = "badge live";
        const reader = res.body.getReader(); const dec = new TextDecoder(); let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let cut;
          while ((cut = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, cut); buf = buf.slice(cut + 2);
            const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
            if (data) render(JSON.parse(data));
          }
        }
      } catch (e) { /* reconnect below */ }
      $("conn").textContent = "reconnecting"; $("conn").className = "badge down";
      await new Promise((r) => setTimeout(r, 2000));
    }
  }

  async function control(action) {
    const question = action === "kill"
      ? "Trip the kill switch? No entry order will be sent until it is resumed."
      : "Resume trading? Entries will be sent again.";
    if (!window.confirm(question)) return;
    const res = await fetch("/api/" + action, {
      method: "POST", headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify({ confirm: true, reason: action === "kill" ? "dashboard" : undefined }),
    });
    const answer = await res.json().catch(() => ({}));
    if (!res.ok) { window.alert(`${action} failed: ${answer.error || res.status}`); return; }
    const state = $("kill-state");
    state.textContent = answer.active ? "ACTIVE" : "off"; state.className = answer.active ? "active" : "off";
    $("trip").disabled = !!answer.active; $("resume").disabled = !answer.active;
    document.body.dataset.lastControl = action;
  }

  async function older() {
    if (oldest === null) return;
    const res = await fetch(`/api/decisions?before=${oldest}&limit=50`, { headers: headers() });
    if (!res.ok) return;
    const rows = (await res.json()).decisions || [];
    if (!rows.length) { $("older").disabled = true; return; }
    paged = true; $("newest").hidden = false;
    appendRows($("decisions").tBodies[0], DECISIONS, rows);
    oldest = rows[rows.length - 1].seq;
  }

  function login(message) {
    $("main").hidden = true; $("login").hidden = false;
    if (message) $("token-input").placeholder = message;
  }

  function init() {
    const m = /(?:^|[#&])token=([^&]+)/.exec(window.location.hash);
    if (m) {
      sessionStorage.setItem("ordergate-token", decodeURIComponent(m[1]));
      history.replaceState(null, "", window.location.pathname);  // out of the address bar and the history
    }
    token = sessionStorage.getItem("ordergate-token");
    $("login").addEventListener("submit", (e) => {
      e.preventDefault(); sessionStorage.setItem("ordergate-token", $("token-input").value); window.location.reload();
    });
    $("trip").addEventListener("click", () => control("kill"));
    $("resume").addEventListener("click", () => control("resume"));
    $("older").addEventListener("click", older);
    $("newest").addEventListener("click", () => { paged = false; $("newest").hidden = true; $("older").disabled = false; });
    if (!token) { login("paste the [dashboard] token"); return; }
    stream();
  }
  document.addEventListener("DOMContentLoaded", init);
})();
