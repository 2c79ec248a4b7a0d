// Ferry dashboard: live updates by polling (docs/dashboard.md, "Live updates"). No library.
"use strict";
(function () {
  const FAST = 2000, LIST = 5000, HIDDEN = 10000;
  const wait = (ms) => (document.hidden ? Math.max(ms, HIDDEN) : ms);

  async function get(url, kind) {
    const res = await fetch(url, { credentials: "same-origin", headers: { Accept: kind } });
    if (res.status === 401 || res.redirected && new URL(res.url).pathname === "/sign-in") {
      location.assign("/sign-in?next=" + encodeURIComponent(location.pathname + location.search));
      throw new Error("signed out");
    }
    if (!res.ok) throw new Error(url + ": " + res.status);
    return kind === "application/json" ? res.json() : res.text();
  }

  function badge(el, state, label) {
    el.className = el.className.split(" ").filter((c) => c === "badge" || c === "big").join(" ") + " " + state;
    el.textContent = label;
  }

  // A run's page: its state, message, states and new log lines until it is final.
  function followRun(section) {
    let offset = Number(section.dataset.offset || 0);
    const logs = document.getElementById("logs");
    const tick = async () => {
      let live;
      try {
        live = await get(section.dataset.live + "?offset=" + offset, "application/json");
      } catch (e) {
        setTimeout(tick, wait(FAST * 2));
        return;
      }
      badge(document.getElementById("run-state"), live.state, live.state_label);
      document.getElementById("run-message").textContent = live.message;
      document.getElementById("run-duration").textContent = live.duration;
      const history = document.getElementById("history");
      if (history.children.length !== live.history.length) {
        history.replaceChildren(...live.history.map((h) => {
          const li = document.createElement("li");
          const b = document.createElement("span");
          b.className = "badge " + h.state;
          b.textContent = h.state_label;
          const t = document.createElement("time");
          t.textContent = h.at;
          const m = document.createElement("span");
          m.className = "message";
          m.textContent = h.message;
          li.append(b, " ", t, " ", m);
          return li;
        }));
      }
      for (const line of live.lines) {
        const span = document.createElement("span");
        span.className = "line";
        span.textContent = line + "\n";
        logs.append(span);
      }
      if (live.lines.length) {
        document.getElementById("logs-empty").hidden = true;
        logs.scrollTop = logs.scrollHeight;
      }
      offset = live.next_offset;
      const cancel = document.getElementById("cancel");
      if (cancel && !live.cancellable) cancel.remove();
      if (live.final) {
        // One more read: the agent writes its last lines just before the final state.
        if (!section.dataset.drained) {
          section.dataset.drained = "1";
          setTimeout(tick, FAST);
        }
        return;
      }
      setTimeout(tick, wait(FAST));
    };
    setTimeout(tick, FAST);
  }

  // The runs list: its rows, re-read with the page's own filters.
  function refreshRows(tbody) {
    const tick = async () => {
      try {
        tbody.innerHTML = await get(tbody.dataset.poll, "text/html");
      } catch (e) { /* keep the rows shown; try again */ }
      setTimeout(tick, wait(LIST));
    };
    setTimeout(tick, LIST);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const run = document.getElementById("run");
    if (run && run.dataset.live && run.dataset.final !== "true") followRun(run);
    const rows = document.getElementById("run-rows");
    if (rows && rows.dataset.poll) refreshRows(rows);
  });
})();
