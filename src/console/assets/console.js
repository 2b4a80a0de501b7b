// pgcourier console: the one script of its own (htmx and its SSE extension do the rest).
//
// A page leaving for another closes its live stream. Chromium keeps a page it may bring back
// with the Back button (the back/forward cache) with its connections open: after six console
// pages, six streams held every connection the browser allows to one host, and the next page
// waited about a minute for one. A page brought back that way reloads (its stream was closed,
// and what it shows is old).
(function () {
  var open = [];
  var create = htmx.createEventSource;
  htmx.createEventSource = function (url) {
    var source = create(url);
    open.push(source);
    return source;
  };
  window.addEventListener('pagehide', function () {
    open.splice(0).forEach(function (source) { source.close(); });
  });
  window.addEventListener('pageshow', function (e) {
    if (e.persisted) { location.reload(); }
  });
})();
