// SLA countdowns on a ticket's page (web.pages.tickets). The server gives each running
// clock its due time and the time it drew the page; this ticks the difference once a
// second, corrected by how far the browser's clock is from the server's. The state
// (on time, at risk, breached) is the server's; the page shows it as drawn.
(function () {
  "use strict";
  var clocks = document.querySelectorAll(".countdown[data-due]");
  if (!clocks.length) return;

  // Read-model times carry microseconds; Date.parse is only sure of milliseconds.
  function when(text) { return Date.parse(text.replace(/(\.\d{3})\d+/, "$1")); }

  function two(n) { return (n < 10 ? "0" : "") + n; }

  function span(seconds) {
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    return (h ? h + ":" + two(m) : m) + ":" + two(s);
  }

  var skew = 0;  // server time minus browser time, in ms
  var first = clocks[0].getAttribute("data-now");
  if (first) skew = when(first) - Date.now();

  function tick() {
    var now = Date.now() + skew;
    clocks.forEach(function (el) {
      var left = Math.round((when(el.getAttribute("data-due")) - now) / 1000);
      el.textContent = left >= 0
        ? el.getAttribute("data-left") + " " + span(left)
        : el.getAttribute("data-over") + " " + span(-left);
      el.classList.toggle("over", left < 0);
    });
  }
  tick();
  setInterval(tick, 1000);
})();
