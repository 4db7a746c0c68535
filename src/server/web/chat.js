// The chat page's client: chittyd's WebSocket protocol (README, "WebSocket"), in the browser.
// It joins the room with ?username=, shows every frame with its Lamport time, keeps the roster
// of who is online, sends broadcasts and direct messages, and reconnects with back-off when
// the connection drops. Text from the network is only ever inserted with textContent.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $("status"), joinForm: $("join"), name: $("name"), joinError: $("join-error"),
    chat: $("chat"), log: $("log"), roster: $("roster"), count: $("online-count"),
    sendForm: $("send"), to: $("to"), text: $("text"), counter: $("counter"),
    sendButton: $("send-button"), sendError: $("send-error"),
  };

  // Back-off between reconnection attempts: 250 ms doubling up to 30 s, randomised so that
  // a room full of pages does not come back all at once.
  const FIRST_DELAY_MS = 250;
  const MAX_DELAY_MS = 30000;
  // Joins and leaves in a burst ask for the roster once: each request counts against the rate
  // limit the server announces.
  const ROSTER_DELAY_MS = 200;
  // Close codes after which trying again cannot help (README: 1008 a refusal such as a taken
  // name, a ban or a kick; 1002, 1007 and 1009 something this page sent wrong).
  const FINAL_CLOSES = new Set([1002, 1007, 1008, 1009]);

  const state = {
    name: "",
    id: 0,
    joined: false, // own join seen on this connection
    everJoined: false, // joined at least once since the name was chosen
    clock: 0, // our Lamport clock: the highest time seen
    max: 128, // max_message_chars from the welcome
    ws: null,
    attempt: 0,
    retry: null,
    rosterTimer: null,
    users: [], // the last roster: [{id, username, transport}]
    lastReason: "",
  };

  function setStatus(kind, text) {
    ui.status.dataset.state = kind;
    ui.status.textContent = text;
  }

  function label(id, username) {
    return username ? `${username} #${id}` : `#${id}`;
  }

  // One line of the log. `parts` are [className, text] pairs, each its own span.
  function addLine(kind, lamport, parts) {
    const atBottom = ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 40;
    const li = document.createElement("li");
    li.dataset.kind = kind;
    if (lamport) {
      li.dataset.lamport = String(lamport);
      const ts = document.createElement("span");
      ts.className = "ts";
      ts.textContent = `[L${lamport}]`;
      li.append(ts, " ");
    }
    for (const [cls, text] of parts) {
      const span = document.createElement("span");
      if (cls) span.className = cls;
      span.textContent = text;
      li.append(span);
    }
    ui.log.append(li);
    if (atBottom) ui.log.scrollTop = ui.log.scrollHeight;
  }

  function url(name) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}/?username=${encodeURIComponent(name)}`;
  }

  function connect() {
    state.retry = null;
    state.joined = false;
    state.lastReason = "";
    setStatus("connecting", state.attempt ? `Reconnecting… (attempt ${state.attempt})` : "Connecting…");
    let ws;
    try {
      ws = new WebSocket(url(state.name));
    } catch (e) {
      refused(`cannot connect: ${e.message}`);
      return;
    }
    state.ws = ws;
    ws.onmessage = (ev) => {
      let frame;
      try {
        frame = JSON.parse(ev.data);
      } catch {
        return; // the server sends JSON only; anything else is not ours to show
      }
      if (frame && typeof frame === "object") receive(frame);
    };
    ws.onclose = (ev) => closed(ws, ev.code, ev.reason);
  }

  function receive(f) {
    const t = Number(f.timestamp) || 0;
    if (t > state.clock) state.clock = t;
    switch (f.kind) {
      case "welcome":
        state.id = f.user_id;
        if (f.server && f.server.max_message_chars) state.max = f.server.max_message_chars;
        updateCounter();
        return;
      case "join":
        if (f.subject === state.name && f.sender_id === state.id) joinedRoom();
        addLine("join", t, [["", `* ${f.message}`]]);
        rosterSoon();
        return;
      case "leave":
        addLine("leave", t, [["", `* ${f.message}`]]);
        rosterSoon();
        return;
      case "message":
        addLine("message", t, [["who", f.username || `#${f.sender_id}`], ["", `: ${f.message}`]]);
        return;
      case "direct":
        if (f.sender_id === state.id) {
          const to = state.users.find((u) => u.id === f.recipient_id);
          addLine("direct", t, [["who", `→ ${label(f.recipient_id, to && to.username)}`], ["", `: ${f.message}`]]);
        } else {
          addLine("direct", t, [["who", `${label(f.sender_id, f.username)} → you`], ["", `: ${f.message}`]]);
        }
        return;
      case "roster":
        showRoster(Array.isArray(f.users) ? f.users : []);
        return;
      case "shutdown":
        state.lastReason = "the server shut down";
        addLine("shutdown", t, [["", `* ${f.message || "the server is shutting down"}`]]);
        return;
      case "notice":
        addLine("notice", t, [["", `* ${f.message || ""}`]]);
        return;
      default:
        if (f.error !== undefined) serverError(f);
    }
  }

  // An error frame: the message was refused (too long, rate limit, recipient gone); the
  // session goes on. Before the join it explains the refusal that is about to close it.
  function serverError(f) {
    const text = String(f.error);
    if (!state.joined) {
      state.lastReason = text;
      return;
    }
    ui.sendError.textContent = text;
    addLine("error", Number(f.timestamp) || 0, [["", `! ${text}`]]);
  }

  function joinedRoom() {
    state.joined = true;
    state.attempt = 0;
    setStatus("connected", `Connected as ${label(state.id, state.name)}`);
    if (!state.everJoined) {
      state.everJoined = true;
      ui.joinForm.hidden = true;
      ui.chat.hidden = false;
      ui.text.focus();
    } else {
      addLine("local", 0, [["", `Reconnected as ${label(state.id, state.name)}`]]);
    }
    ui.sendButton.disabled = false;
    updateCounter();
  }

  function closed(ws, code, reason) {
    if (state.ws !== ws) return;
    state.ws = null;
    ui.sendButton.disabled = true;
    // After a shutdown frame its words say more than the close's ("bye").
    const why = state.lastReason || reason;
    if (FINAL_CLOSES.has(code)) {
      refused(why || `refused (close code ${code})`);
      return;
    }
    const wasJoined = state.joined;
    state.joined = false;
    if (wasJoined) addLine("local", 0, [["", `Connection lost${why ? `: ${why}` : ""}`]]);
    state.attempt += 1;
    const base = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** (state.attempt - 1));
    const delay = Math.round(base / 2 + Math.random() * base / 2);
    setStatus("reconnecting", `Connection lost${why ? ` (${why})` : ""}; reconnecting in ${(delay / 1000).toFixed(1)} s (attempt ${state.attempt})`);
    state.retry = setTimeout(connect, delay);
  }

  // The server refused us for good (a taken, invalid or banned name, a kick): say why where
  // the name is chosen, and let the person choose again.
  function refused(why) {
    state.joined = false;
    state.everJoined = false;
    state.attempt = 0;
    setStatus("refused", `Not connected: ${why}`);
    ui.joinError.textContent = why;
    ui.name.setAttribute("aria-invalid", "true");
    ui.joinForm.hidden = false;
    ui.chat.hidden = true;
    ui.name.focus();
    if (ui.log.childElementCount) addLine("local", 0, [["", `Disconnected: ${why}`]]);
  }

  function rosterSoon() {
    if (state.rosterTimer) return;
    state.rosterTimer = setTimeout(() => {
      state.rosterTimer = null;
      send({ request: "roster" });
    }, ROSTER_DELAY_MS);
  }

  function showRoster(users) {
    state.users = users;
    const chosen = Number(ui.to.value);
    ui.roster.replaceChildren();
    for (const o of [...ui.to.options].slice(1)) o.remove();
    for (const u of users) {
      const li = document.createElement("li");
      li.dataset.id = String(u.id);
      const name = label(u.id, u.username);
      const transport = document.createElement("span");
      transport.className = "transport";
      transport.textContent = ` (${u.transport})`;
      if (u.id === state.id) {
        const me = document.createElement("span");
        me.className = "me";
        me.textContent = `${name} (you)`;
        li.append(me);
      } else {
        const b = document.createElement("button");
        b.type = "button";
        b.className = "person";
        b.dataset.id = String(u.id);
        b.textContent = name;
        b.append(transport);
        b.setAttribute("aria-pressed", String(u.id === chosen));
        b.addEventListener("click", () => choose(u.id));
        li.append(b);
        const o = document.createElement("option");
        o.value = String(u.id);
        o.textContent = name;
        ui.to.append(o);
      }
      ui.roster.append(li);
    }
    ui.count.textContent = String(users.length);
    // Someone chosen who has left: back to everyone, rather than a message to nobody.
    ui.to.value = users.some((u) => u.id === chosen && u.id !== state.id) ? String(chosen) : "0";
    markChosen();
  }

  function choose(id) {
    ui.to.value = String(id);
    markChosen();
    ui.text.focus();
  }

  function markChosen() {
    const chosen = ui.to.value;
    for (const b of ui.roster.querySelectorAll("button.person")) {
      b.setAttribute("aria-pressed", String(b.dataset.id === chosen));
    }
  }

  function send(obj) {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return false;
    state.clock += 1;
    state.ws.send(JSON.stringify({ ...obj, timestamp: state.clock }));
    return true;
  }

  // Characters as the server counts them: Unicode scalar values, not UTF-16 units.
  function length(text) {
    return [...text].length;
  }

  function updateCounter() {
    const n = length(ui.text.value);
    const over = n > state.max;
    ui.counter.textContent = `${n}/${state.max}`;
    ui.counter.dataset.over = String(over);
    ui.text.setAttribute("aria-invalid", String(over));
    ui.sendButton.disabled = over || !state.joined;
    if (over) {
      ui.sendError.textContent = `Too long: at most ${state.max} characters.`;
    } else if (ui.sendError.textContent.startsWith("Too long")) {
      ui.sendError.textContent = "";
    }
  }

  ui.joinForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = ui.name.value.trim();
    if (!name) return;
    if (state.retry) clearTimeout(state.retry);
    if (state.ws) {
      const old = state.ws;
      state.ws = null;
      old.close(1000);
    }
    state.name = name;
    state.attempt = 0;
    ui.joinError.textContent = "";
    ui.name.removeAttribute("aria-invalid");
    connect();
  });

  ui.sendForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = ui.text.value;
    const n = length(text);
    if (n === 0 || n > state.max) return;
    const to = Number(ui.to.value);
    const frame = to ? { recipient_id: to, message: text } : { message: text };
    if (!send(frame)) {
      ui.sendError.textContent = "Not connected: the message was not sent.";
      return;
    }
    ui.sendError.textContent = "";
    ui.text.value = "";
    updateCounter();
  });

  ui.text.addEventListener("input", updateCounter);
  ui.text.addEventListener("keydown", (ev) => {
    // Escape goes back to writing to everyone.
    if (ev.key === "Escape" && ui.to.value !== "0") {
      ui.to.value = "0";
      markChosen();
    }
  });
  ui.to.addEventListener("change", markChosen);

  ui.joinForm.hidden = false;
  ui.sendButton.disabled = true;
  const params = new URLSearchParams(location.search);
  ui.name.value = params.get("username") || "";
  ui.name.focus();
  updateCounter();
})();
