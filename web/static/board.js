// The supervisor's live pages (the board, the overview): on each change of a read model
// the page shows (server-sent events from /t/<tenant>/live), its part is fetched again —
// at most a few times a second, however busy the floor — and swapped in. No library:
// EventSource reconnects by itself, and a reconnect fetches the part, so nothing missed
// while away stays missed.
//
// The element with `data-tables` (the URL of its part) and `data-live` (the stream) says
// what it shows in `data-readmodels`: "readmodel" or "readmodel:kind", space-separated.
// `data-every` (seconds), if given, also refetches on a timer (a dashboard's "now" moves
// on without any change). Durations in <time class="ticking" data-seconds> tick each
// second between fetches.
(function () {
  var part = document.querySelector("[data-tables][data-live]");
  if (!part) return;
  var badge = document.getElementById("live");
  var wanted = (part.dataset.readmodels || "").split(/\s+/).filter(Boolean);
  var pending = null;
  var loaded = Date.now();
  function refresh() {
    pending = null;
    fetch(part.dataset.tables, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html !== null) { part.innerHTML = html; loaded = Date.now(); }
      });
  }
  function soon() { if (pending === null) pending = setTimeout(refresh, 300); }
  function shows(change) {
    return wanted.indexOf(change.readmodel) >= 0 ||
      wanted.indexOf(change.readmodel + ":" + change.kind) >= 0;
  }
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function tick() {
    var gone = Math.floor((Date.now() - loaded) / 1000);
    var clocks = part.querySelectorAll("time.ticking[data-seconds]");
    for (var i = 0; i < clocks.length; i++) {
      var s = parseInt(clocks[i].dataset.seconds, 10) + gone;
      var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
      clocks[i].textContent = (h ? h + ":" + pad(m) : m) + ":" + pad(s % 60);
    }
  }
  setInterval(tick, 1000);
  var every = parseInt(part.dataset.every || "0", 10);
  if (every > 0) setInterval(soon, every * 1000);
  if (!window.EventSource) return;
  var events = new EventSource(part.dataset.live);
  events.onopen = function () { if (badge) badge.hidden = false; soon(); };
  events.onerror = function () { if (badge) badge.hidden = true; };
  events.onmessage = function (e) { if (shows(JSON.parse(e.data))) soon(); };
})();
