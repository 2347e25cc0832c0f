// Live refresh: every 5 s, each element marked data-refresh is asked to reload
// itself (htmx's "refresh" trigger), only while the tab is visible; when the tab
// comes back, at once. No inline script and no eval, so the console's
// Content-Security-Policy stays strict.
(function () {
  var PERIOD_MS = 5000;
  function refresh() {
    if (document.visibilityState !== "visible") return;
    document.querySelectorAll("[data-refresh]").forEach(function (el) {
      htmx.trigger(el, "refresh");
    });
  }
  setInterval(refresh, PERIOD_MS);
  document.addEventListener("visibilitychange", refresh);
  // Confirmations for dangerous buttons: data-confirm="…" on a form.
  document.addEventListener("submit", function (e) {
    var msg = e.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) e.preventDefault();
  });
})();
