/* Behaviour every page shares (templates/base.html). A file, never an inline script: the
 * Content-Security-Policy allows scripts from 'self' only (waystation/settings.py). */
(function () {
  "use strict";

  // "Copy" buttons: data-copy names the id of the element whose text is copied.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var source = document.getElementById(button.dataset.copy);
    if (!source || !navigator.clipboard) return;
    navigator.clipboard.writeText(source.textContent.trim()).then(function () {
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = "Copy"; }, 2000);
    });
  });

  // htmx: show the server's 400/403 alert (retargeted to #htmx-alerts) instead of dropping it.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var status = event.detail.xhr.status;
    if (status === 400 || status === 403) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
})();
