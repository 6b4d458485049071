// The agent's inbox, live: on a change that concerns the page (server-sent events from
// /t/<tenant>/inbox/live, filtered by the server for this user), the list's rows or the
// opened conversation's messages are fetched again — at most a few times a second — and
// swapped in. A change of the user's own agent board row (an offer ringing or ending, a
// status just posted) fetches the status bar (/t/<tenant>/inbox/status) instead. No
// library: EventSource reconnects by itself, and a (re)connect fetches both again, so
// nothing that arrived while away stays missing.
(function () {
  var target = document.getElementById("inbox-rows") || document.getElementById("messages");
  var status = document.getElementById("status-live");

  // How long the offer has rung: counted on from what the server drew.
  var drawn = Date.now();
  function two(n) { return (n < 10 ? "0" : "") + n; }
  function tick() {
    var age = status && status.querySelector(".offer-age[data-seconds]");
    if (!age) return;
    var seconds = parseInt(age.dataset.seconds, 10) + Math.floor((Date.now() - drawn) / 1000);
    age.textContent = Math.floor(seconds / 60) + ":" + two(seconds % 60);
  }
  setInterval(tick, 1000);

  if (!target || !window.EventSource) return;
  var badge = document.getElementById("live");

  function fetcher(url, into, then) {
    var pending = null;
    function refresh() {
      pending = null;
      fetch(url, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (html === null) return;
          into.innerHTML = html;
          if (then) then();
        });
    }
    return function () { if (pending === null) pending = setTimeout(refresh, 300); };
  }
  var soon = fetcher(target.dataset.rows || target.dataset.messages, target);
  var soonStatus = status && status.dataset.status
    ? fetcher(status.dataset.status, status, function () { drawn = Date.now(); tick(); })
    : function () {};

  var events = new EventSource(target.dataset.live);
  events.onopen = function () { if (badge) badge.hidden = false; soon(); soonStatus(); };
  events.onerror = function () { if (badge) badge.hidden = true; };
  events.onmessage = function (e) {
    var change = JSON.parse(e.data);
    if (change.kind === "hello") return;
    if (change.readmodel === "agent_board") soonStatus(); else soon();
  };
})();
