// batchpilot dashboard: live updates without reloading. No build step, no dependencies.
// The page names its event stream in <body data-events>; on each "change" event the page is
// fetched again and every element marked data-live is replaced by its fresh copy (by id).
(function () {
  "use strict";
  var url = document.body.getAttribute("data-events");
  if (!url || !window.EventSource) { return; }
  var indicator = document.getElementById("live-indicator");
  var busy = false;
  var again = false;

  function mark(state) {
    if (indicator) { indicator.setAttribute("data-state", state); }
  }

  function openDetails(root) {
    var open = {};
    root.querySelectorAll("details[id]").forEach(function (d) { open[d.id] = d.open; });
    return open;
  }

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(window.location.href, { headers: { "X-Requested-With": "batchpilot-live" }, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.redirected && response.url.indexOf("/login") !== -1) {
          window.location.assign(response.url);
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (!html) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live][id]").forEach(function (old) {
          var replacement = fresh.getElementById(old.id);
          if (!replacement) { return; }
          var open = openDetails(old);
          old.replaceWith(replacement);
          replacement.querySelectorAll("details[id]").forEach(function (d) {
            if (Object.prototype.hasOwnProperty.call(open, d.id)) { d.open = open[d.id]; }
          });
        });
        document.body.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () { mark("error"); })
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }

  var source = new EventSource(url);
  var first = true;
  source.addEventListener("open", function () { mark("on"); });
  source.addEventListener("error", function () { mark("off"); });
  source.addEventListener("change", function () {
    if (first) { first = false; return; }  // the page was rendered from this very state
    refresh();
  });
  source.addEventListener("logout", function () {
    source.close();
    window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname + window.location.search));
  });
})();
