// The supervisor board, live: on each change of the agent or queue boards (server-sent
// events from /t/<tenant>/live), the tables are fetched again — at most a few times a
// second, however busy the floor — and swapped in. No library: EventSource reconnects by
// itself, and a reconnect fetches the tables, so nothing missed while away stays missed.
(function () {
  var board = document.getElementById("board");
  if (!board || !window.EventSource) return;
  var badge = document.getElementById("live");
  var pending = null;
  function refresh() {
    pending = null;
    fetch(board.dataset.tables, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null) board.innerHTML = html; });
  }
  function soon() { if (pending === null) pending = setTimeout(refresh, 300); }
  var events = new EventSource(board.dataset.live);
  events.onopen = function () { if (badge) badge.hidden = false; soon(); };
  events.onerror = function () { if (badge) badge.hidden = true; };
  events.onmessage = function (e) {
    var change = JSON.parse(e.data);
    if (change.readmodel === "agent_board" || change.readmodel === "queue_board") soon();
  };
})();
