// The agent's phone panel (web.pages.phone): listens to the signed-in user's own call
// events (server-sent, /t/<tenant>/phone/events), pops the call's information when one
// rings or is dialled, and sends the controls with fetch (JSON, with the CSRF header).
// With "take calls in this browser" ticked, the stream registers the browser as the
// user's WebRTC phone on the switch and the server makes it the phone their calls ring
// (rather than a desk phone they may have first): a call then rings here and
// Answer/Decline/keypad act on the switch's leg. Unticking the box (or leaving the page)
// closes that stream; when no browser of theirs is left, calls go to their other phone
// again. Signalling only: no audio is carried.
// Attended transfer: the transfer form's "Consult" button (its formaction) calls the
// target while the customer waits on hold; the panel then says "Consulting" and offers
// Complete transfer / Back to the customer / Three-way, drawn by the server.
(function () {
  var panel = document.getElementById("phone");
  if (!panel || !window.EventSource || !window.fetch) return;
  var base = panel.dataset.base;
  var stateLabel = document.getElementById("phone-state");
  var callBox = document.getElementById("phone-call");
  var errorBox = document.getElementById("phone-error");
  var softBox = document.getElementById("phone-softphone");
  var softState = document.getElementById("phone-softphone-state");
  var useBrowser = document.getElementById("phone-use-browser");
  var tokenInput = panel.querySelector("input[name=_csrf_token]");
  var current = null;  // the call id shown
  var threeWay = false;  // the call shown is a three-way call
  var events = null;
  var pending = null;
  var SOFT_KEY = "cloudcc.softphone";

  function say(kind) {
    var text = stateLabel.dataset[kind];
    if (text) stateLabel.textContent = text;
    panel.dataset.state = kind;
  }
  function showError(message) {
    errorBox.textContent = message || "";
    errorBox.hidden = !message;
  }
  function draw() {
    pending = null;
    if (!current) return;
    fetch(base + "/calls/" + encodeURIComponent(current) + "?fragment=1", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null) callBox.innerHTML = html; });
  }
  function soon() { if (pending === null) pending = setTimeout(draw, 150); }

  function post(url, fields) {
    showError("");
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "content-type": "application/json",
        "accept": "application/json",
        "x-csrftoken": tokenInput ? tokenInput.value : ""
      },
      body: JSON.stringify(fields)
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (body) {
        if (!r.ok) showError(body.message || body.detail || String(r.status));
        return r.ok;
      });
    });
  }
  function fieldsOf(form) {
    var fields = {};
    new FormData(form).forEach(function (value, key) { if (key !== "_csrf_token") fields[key] = value; });
    return fields;
  }

  panel.addEventListener("submit", function (e) {
    var form = e.target;
    if (!form.matches("[data-phone-action], #phone-dial")) return;
    e.preventDefault();
    // A second button of the form may send it elsewhere (Consult, beside Transfer).
    var by = e.submitter;
    var url = by && by.hasAttribute("formaction") ? by.formAction : form.action;
    post(url, fieldsOf(form)).then(function (ok) {
      if (!ok) return;
      if (form.id === "phone-dial") form.reset();
      if (form.dataset.phoneAction === "note") soon();
    });
  });
  panel.addEventListener("click", function (e) {
    var key = e.target.closest("[data-digit]");
    if (!key) return;
    var pad = key.closest("[data-dtmf]");
    if (pad) post(pad.dataset.dtmf, { digit: key.dataset.digit });
  });

  function onEvent(e) {
    var ev = JSON.parse(e.data);
    if (ev.kind === "hello") {
      // (Re)connected: what happened while away is drawn again from the server.
      if (panel.dataset.state === "offline") say("idle");
      soon();
      return;
    }
    if (ev.kind === "softphone") {
      softState.textContent = softState.dataset[ev.state] || "";
      useBrowser.hidden = ev.state !== "no_endpoint";
      return;
    }
    if (ev.kind === "ringing" || ev.kind === "dialing") {
      if (ev.call_id !== current) threeWay = false;
      current = ev.call_id;
    }
    if (ev.call_id !== current) return;
    if (ev.kind === "conference") threeWay = true;
    if (ev.kind === "consulting" || ev.kind === "consult_answered") say("consulting");
    else if (ev.kind === "conference") say("conference");
    else if (ev.kind === "answered" || ev.kind === "resumed" ||
             ev.kind === "consult_cancelled" || ev.kind === "transfer_completed") {
      say(threeWay ? "conference" : "answered");
    }
    else if (ev.kind === "ringing" || ev.kind === "dialing" || ev.kind === "held" ||
             ev.kind === "ended" || ev.kind === "transferred") say(ev.kind);
    soon();
  }

  function listen() {
    if (events) events.close();
    var soft = softBox.checked;
    events = new EventSource(panel.dataset.events + (soft ? "?softphone=1" : ""));
    events.onmessage = onEvent;
    events.onerror = function () { say("offline"); };
    if (!soft) { softState.textContent = ""; useBrowser.hidden = true; }
  }
  softBox.checked = window.localStorage && localStorage.getItem(SOFT_KEY) === "1";
  softBox.addEventListener("change", function () {
    if (window.localStorage) localStorage.setItem(SOFT_KEY, softBox.checked ? "1" : "0");
    listen();
  });
  useBrowser.addEventListener("submit", function (e) {
    e.preventDefault();
    post(useBrowser.action, {}).then(function (ok) { if (ok) listen(); });
  });
  listen();
})();
