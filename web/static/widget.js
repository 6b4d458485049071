/* cloudcc live chat widget (CT8): one script tag on the tenant's website.
 *
 * Served by GET /widget/<tenant>.js (web.pages.chat), which puts the tenant's settings
 * and texts where CONFIG is below; served as a plain static file it does nothing.
 * Everything is drawn inside a shadow root: the host page's CSS does not reach in and
 * ours does not leak out. No dependencies.
 *
 * Frames are those of connectors.livechat.schemas. The visitor's token is kept in
 * localStorage (per tenant), so a returning visitor finds their conversation; a message is
 * kept (also in localStorage) until the server has accepted it, and sent again with the
 * same id after a reconnect, so nothing typed is lost and nothing is recorded twice.
 */
(function (config) {
  "use strict";
  if (!config || typeof window === "undefined" || window["cloudccChat:" + config.tenant]) {
    return;
  }
  window["cloudccChat:" + config.tenant] = true;

  var T = config.texts;
  var KEY = "cloudcc.chat." + config.tenant + ".";
  var script = document.currentScript;
  var base = config.base;
  try {
    if (script && script.src) { base = new URL(script.src).origin; }
  } catch (e) { /* keep the server's idea of its own address */ }
  var wsUrl = base.replace(/^http/, "ws") + "/chat/" + encodeURIComponent(config.tenant) + "/ws";

  function store(name, value) {
    try {
      if (value === undefined) { return window.localStorage.getItem(KEY + name); }
      if (value === null) { window.localStorage.removeItem(KEY + name); }
      else { window.localStorage.setItem(KEY + name, value); }
    } catch (e) { /* private mode: the visitor is new on each visit */ }
    return null;
  }
  function pendingList() {
    try { return JSON.parse(store("pending") || "[]"); } catch (e) { return []; }
  }
  function savePending(list) { store("pending", list.length ? JSON.stringify(list) : null); }
  function newId() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var name in attrs || {}) { node.setAttribute(name, attrs[name]); }
    if (text) { node.textContent = text; }
    return node;
  }

  var CSS = [
    ":host { all: initial; }",
    "* { box-sizing: border-box; font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; font-size: 14px; line-height: 1.4; }",
    ".button { position: fixed; right: 20px; bottom: 20px; z-index: 2147483000; border: 0; border-radius: 24px; padding: 12px 18px; background: #1565c0; color: #fff; cursor: pointer; box-shadow: 0 2px 8px rgba(0,0,0,.3); }",
    ".button .badge { display: none; margin-left: 6px; background: #e53935; border-radius: 8px; padding: 0 6px; }",
    ".button.unread .badge { display: inline; }",
    ".panel { position: fixed; right: 20px; bottom: 76px; z-index: 2147483000; width: 340px; max-width: calc(100vw - 40px); height: 460px; max-height: calc(100vh - 100px); display: none; flex-direction: column; background: #fff; color: #222; border-radius: 10px; box-shadow: 0 4px 20px rgba(0,0,0,.3); overflow: hidden; }",
    ".panel.open { display: flex; }",
    ".head { background: #1565c0; color: #fff; padding: 10px 12px; display: flex; justify-content: space-between; align-items: center; }",
    ".head .state { font-size: 12px; opacity: .9; }",
    ".head button { background: none; border: 0; color: #fff; cursor: pointer; font-size: 18px; }",
    ".lines { flex: 1; overflow-y: auto; padding: 10px; background: #f5f7fa; }",
    ".line { margin: 6px 0; max-width: 85%; padding: 7px 10px; border-radius: 10px; white-space: pre-wrap; word-wrap: break-word; }",
    ".line.visitor { margin-left: auto; background: #1565c0; color: #fff; }",
    ".line.agent, .line.bot { background: #fff; border: 1px solid #dde; }",
    ".line .who { display: block; font-size: 11px; opacity: .75; }",
    ".line.sending { opacity: .6; }",
    ".empty, .note { color: #667; text-align: center; margin: 8px; }",
    ".error { color: #c62828; padding: 4px 10px; }",
    "form { display: flex; gap: 6px; padding: 8px; border-top: 1px solid #dde; background: #fff; }",
    "form.leave { flex-direction: column; }",
    "form.say { flex-wrap: wrap; }",
    "form.say input[name=name] { flex-basis: 100%; }",
    "input, textarea { flex: 1; border: 1px solid #bbc; border-radius: 6px; padding: 7px; color: #222; background: #fff; }",
    "textarea { resize: vertical; min-height: 60px; }",
    "form button { border: 0; border-radius: 6px; padding: 7px 12px; background: #1565c0; color: #fff; cursor: pointer; }",
    "[hidden] { display: none !important; }"
  ].join("\n");

  var host = el("div", { id: "cloudcc-chat" });
  var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
  var style = el("style");
  style.textContent = CSS;
  var button = el("button", { "class": "button", type: "button", part: "button" }, T["chat.widget.button"]);
  button.appendChild(el("span", { "class": "badge" }, "●"));
  var panel = el("div", { "class": "panel", role: "dialog", "aria-label": T["chat.widget.title"] });
  var head = el("div", { "class": "head" });
  var titles = el("div");
  titles.appendChild(el("div", {}, T["chat.widget.title"]));
  var state = el("div", { "class": "state" }, T["chat.widget.connecting"]);
  titles.appendChild(state);
  var close = el("button", { type: "button", "aria-label": T["chat.widget.close"] }, "×");
  head.appendChild(titles);
  head.appendChild(close);
  var lines = el("div", { "class": "lines", "aria-live": "polite" });
  var errors = el("div", { "class": "error", hidden: "" });
  var say = el("form", { "class": "say", hidden: "" });
  var input = el("textarea", { rows: "1", maxlength: String(config.maxText), placeholder: T["chat.widget.placeholder"] });
  // Until the visitor has said who they are, an optional name goes with their message.
  var nameInput = el("input", { name: "name", type: "text", maxlength: "100", placeholder: T["chat.widget.name"], "aria-label": T["chat.widget.name"] });
  nameInput.hidden = !!store("name");
  say.appendChild(nameInput);
  say.appendChild(input);
  say.appendChild(el("button", { type: "submit" }, T["chat.widget.send"]));
  var leave = el("form", { "class": "leave", hidden: "" });
  leave.appendChild(el("div", { "class": "note" }, T["chat.widget.offline"]));
  var fields = {};
  [["name", "text", "chat.widget.name"], ["email", "email", "chat.widget.email"],
   ["phone", "tel", "chat.widget.phone"]].forEach(function (f) {
    fields[f[0]] = el("input", { name: f[0], type: f[1], placeholder: T[f[2]], "aria-label": T[f[2]] });
    leave.appendChild(fields[f[0]]);
  });
  fields.text = el("textarea", { name: "text", maxlength: String(config.maxText), placeholder: T["chat.widget.message"] });
  leave.appendChild(fields.text);
  leave.appendChild(el("button", { type: "submit" }, T["chat.widget.leave"]));
  var thanks = el("div", { "class": "note", hidden: "" }, T["chat.widget.left"]);
  [head, lines, errors, thanks, say, leave].forEach(function (n) { panel.appendChild(n); });
  [style, button, panel].forEach(function (n) { root.appendChild(n); });

  var socket = null;
  var welcomed = false;
  var online = false;
  var retry = 1000;
  var shown = {};
  var leftId = null;

  function showError(text) {
    errors.textContent = text;
    errors.hidden = !text;
  }
  function draw(line, sending) {
    var node = shown[line.id];
    if (!node) {
      node = el("div");
      shown[line.id] = node;
      var empty = lines.querySelector(".empty");
      if (empty) { empty.remove(); }
      lines.appendChild(node);
    }
    node.className = "line " + line.by + (sending ? " sending" : "");
    node.textContent = "";
    var who = line.by === "visitor" ? T["chat.widget.you"]
      : line.by === "agent" ? (line.agent || T["chat.widget.agent"]) : T["chat.widget.bot"];
    node.appendChild(el("span", { "class": "who" }, who + (sending ? " · " + T["chat.widget.sending"] : "")));
    node.appendChild(document.createTextNode(line.text));
    lines.scrollTop = lines.scrollHeight;
    if (line.by !== "visitor" && !panel.classList.contains("open")) { button.classList.add("unread"); }
  }
  function showForms() {
    var wrote = Object.keys(shown).length > 0;
    // Offline and nothing under way: the leave-a-message form; else the chat box.
    var offline = welcomed && !online && !wrote;
    leave.hidden = !offline || leftId !== null;
    say.hidden = offline;
    state.textContent = !welcomed ? T["chat.widget.connecting"]
      : online ? T["chat.widget.online"] : T["chat.widget.away"];
    if (welcomed && !wrote && !offline && !lines.firstChild) {
      lines.appendChild(el("div", { "class": "empty" }, T["chat.widget.empty"]));
    }
  }
  function send(frame) {
    if (socket && socket.readyState === 1 && welcomed) {
      socket.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }
  function connect() {
    if (socket) { return; }
    socket = new WebSocket(wsUrl);
    socket.onopen = function () {
      socket.send(JSON.stringify({ type: "hello", token: store("token"), name: store("name") || "" }));
    };
    socket.onmessage = function (event) {
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      if (frame.type === "welcome") {
        welcomed = true;
        retry = 1000;
        store("token", frame.token);
        online = frame.online;
        var known = {};
        frame.messages.forEach(function (line) { known[line.id] = true; draw(line, false); });
        // What was typed but not yet accepted goes again, with its own id (the server
        // records it once); what the conversation already has was accepted after all.
        var still = pendingList().filter(function (p) { return !known[p.id]; });
        savePending(still);
        still.forEach(function (p) {
          draw({ id: p.id, by: "visitor", text: p.text }, true);
          send({ type: "say", id: p.id, text: p.text });
        });
        showForms();
      } else if (frame.type === "line") {
        draw(frame, false);
        showForms();
      } else if (frame.type === "accepted") {
        savePending(pendingList().filter(function (p) { return p.id !== frame.id; }));
        if (shown[frame.id]) { shown[frame.id].classList.remove("sending"); }
        if (frame.id === leftId) { thanks.hidden = false; leave.hidden = true; }
      } else if (frame.type === "online") {
        online = frame.online;
        showForms();
      } else if (frame.type === "error") {
        refused(frame);
      }
    };
    socket.onclose = function (event) {
      socket = null;
      welcomed = false;
      if (thanks.hidden) { leftId = null; }  // a message left but not accepted: the form again
      showForms();
      if (event.code === 4404) { host.remove(); return; }
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 30000);
    };
  }
  function refused(frame) {
    if (!welcomed && frame.code === "unavailable") {
      if (socket) { socket.close(); }  // not ready: the reconnect says hello again
      return;
    }
    if (frame.code === "too_many") { return; }  // the server closes; we come back later
    var pending = pendingList();
    var mine = pending.filter(function (p) { return p.id === frame.id; })[0];
    if (frame.code === "rate_limited" || frame.code === "unavailable") {
      if (mine) { setTimeout(function () { send({ type: "say", id: mine.id, text: mine.text }); }, 2000); }
      return;
    }
    if (mine) {
      // Refused for good: the text goes back into the box, so nothing is lost.
      savePending(pending.filter(function (p) { return p.id !== frame.id; }));
      if (shown[frame.id]) { shown[frame.id].remove(); delete shown[frame.id]; }
      input.value = mine.text + (input.value ? "\n" + input.value : "");
    }
    if (frame.id && frame.id === leftId) { leftId = null; showForms(); }
    showError(T["chat.widget.failed"].replace("{reason}", frame.message));
  }

  button.addEventListener("click", function () {
    var open = panel.classList.toggle("open");
    button.classList.remove("unread");
    if (open) { connect(); input.focus(); }
  });
  close.addEventListener("click", function () { panel.classList.remove("open"); });
  say.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) { return; }
    var message = { id: newId(), text: text };
    var name = nameInput.value.trim();
    savePending(pendingList().concat([message]));
    input.value = "";
    showError("");
    draw({ id: message.id, by: "visitor", text: text }, true);
    var frame = { type: "say", id: message.id, text: text };
    if (name) { frame.name = name; store("name", name); }
    send(frame);
    nameInput.hidden = !!store("name");
    showForms();
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      say.requestSubmit ? say.requestSubmit() : say.dispatchEvent(new Event("submit"));
    }
  });
  leave.addEventListener("submit", function (event) {
    event.preventDefault();
    var frame = { type: "leave", id: newId() };
    ["name", "email", "phone", "text"].forEach(function (f) { frame[f] = fields[f].value.trim(); });
    if (!frame.email && !frame.phone) { showError(T["chat.widget.contact_needed"]); return; }
    showError("");
    if (frame.name) { store("name", frame.name); }
    leftId = frame.id;
    if (!send(frame)) { leftId = null; showError(T["chat.widget.connecting"]); }
  });

  function mount() {
    document.body.appendChild(host);
    showForms();
    // A returning visitor connects at once, to see replies that came while away.
    if (store("token") || pendingList().length) { connect(); }
  }
  if (document.body) { mount(); } else { document.addEventListener("DOMContentLoaded", mount); }
})(/*CONFIG*/null);
