/* The live tail (templates/observability/tail.html).
 *
 * One websocket to ws/tail/<slug>/ (observability/consumers.py). On open, and whenever a
 * filter changes, the filters go over it as {"type": "filters", ...}; the server answers
 * with {"type": "call", "call": {...}} for each stored call that passes them, and each one
 * is put on top of the table, which keeps at most data-max-rows rows. Paused, calls are held
 * (up to the same cap) and shown on resume. A dropped connection is retried with a growing
 * delay (1 s to 15 s); a 4403 close (not allowed) is final. Data is only ever set with
 * textContent.
 */
(function () {
  "use strict";

  var root = document.getElementById("live-tail");
  if (!root) return;

  var FORBIDDEN = 4403;
  var maxRows = parseInt(root.dataset.maxRows, 10) || 200;
  var callUrl = root.dataset.callUrl;
  var names = JSON.parse(document.getElementById("tail-names").textContent);
  var form = document.getElementById("tail-filters");
  var rows = document.getElementById("tail-rows");
  var empty = document.getElementById("tail-empty");
  var stateLabel = document.getElementById("tail-state");
  var pauseButton = document.getElementById("tail-pause");
  var pausedCount = document.getElementById("tail-paused-count");
  var summary = document.getElementById("tail-filter-summary");

  var socket = null;
  var retryDelay = 1000;
  var retryTimer = null;
  var paused = false;
  var held = [];

  // --- the connection -------------------------------------------------------------

  function setState(state, text) {
    stateLabel.dataset.state = state;
    stateLabel.textContent = text;
  }

  function connect() {
    retryTimer = null;
    setState("connecting", "Connecting…");
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + root.dataset.socketPath);
    socket.addEventListener("open", function () {
      retryDelay = 1000;
      setState("live", "Live");
      sendFilters();
    });
    socket.addEventListener("message", function (event) {
      var message;
      try {
        message = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      if (message.type === "call") receive(message.call);
      else if (message.type === "filters") summarise(message.filters);
    });
    socket.addEventListener("close", function (event) {
      socket = null;
      if (event.code === FORBIDDEN) {
        setState("forbidden", "Not allowed to watch this tenant");
        return;
      }
      setState("closed", "Disconnected, retrying in " + Math.round(retryDelay / 1000) + " s");
      retryTimer = setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 15000);
    });
  }

  function filters() {
    var message = { type: "filters" };
    Array.prototype.forEach.call(form.elements, function (control) {
      if (control.name) message[control.name] = control.value.trim();
    });
    return message;
  }

  function sendFilters() {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(filters()));
  }

  // What the server applies (it answers each filters message with what it understood).
  var LABELS = {
    model: "model contains",
    status: "status",
    route: "route contains",
    application_id: "application",
    key_id: "key",
    min_latency_ms: "latency at least (ms)",
    user: "user contains",
    tag: "tag",
  };

  function summarise(applied) {
    var parts = [];
    Object.keys(LABELS).forEach(function (name) {
      var value = applied[name];
      if (value === null || value === undefined || value === "") return;
      if (name === "application_id") value = names.applications[value] || "#" + value;
      if (name === "key_id") value = names.keys[value] || "#" + value;
      parts.push(LABELS[name] + " “" + value + "”");
    });
    summary.textContent = parts.length ? "Only calls with " + parts.join(", ") + "." : "All calls.";
  }

  var filterTimer = null;
  function filtersChanged() {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(sendFilters, 250);
  }

  form.addEventListener("input", filtersChanged);
  form.addEventListener("change", filtersChanged);
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    sendFilters();
  });

  // --- the table ------------------------------------------------------------------

  function receive(call) {
    if (paused) {
      held.push(call);
      if (held.length > maxRows) held.shift();
      pausedCount.textContent = held.length + " new while paused";
      return;
    }
    addRow(call);
  }

  function cell(tr, text, className) {
    var td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    if (className) td.className = className;
    tr.appendChild(td);
    return td;
  }

  function ms(value) {
    return typeof value === "number" ? Math.round(value).toLocaleString() + " ms" : "–";
  }

  function count(value) {
    return typeof value === "number" ? value.toLocaleString() : "–";
  }

  function usd(cost) {
    if (cost === null || cost === undefined) return "–";
    var value = Number(cost);
    if (value > 0 && value < 0.000001) return "< $0.000001";
    return "$" + value.toFixed(6);
  }

  function time(iso) {
    var date = new Date(iso);
    return isNaN(date) ? iso || "" : date.toLocaleTimeString();
  }

  function owner(call) {
    var app = call.application_id ? names.applications[call.application_id] : null;
    var key = call.api_key_id ? names.keys[call.api_key_id] : null;
    var parts = [];
    if (call.application_id) parts.push(app || "app #" + call.application_id);
    if (call.api_key_id) parts.push(key || "key #" + call.api_key_id);
    return parts.join(" / ");
  }

  function addRow(call) {
    var tr = document.createElement("tr");
    tr.className = "fresh" + (call.status >= 400 ? " error" : "");
    tr.dataset.requestId = call.request_id;
    var when = cell(tr, time(call.created_at));
    when.title = call.created_at || "";
    var status = cell(tr, call.status, "status");
    if (call.error_type) status.textContent = call.status + " " + call.error_type;
    cell(tr, call.route + (call.stream ? " (stream)" : ""));
    var model = call.public_model || "";
    if (call.served_model && call.served_model !== model) model += " → " + call.served_model;
    cell(tr, model);
    cell(tr, call.provider);
    cell(tr, owner(call));
    cell(tr, ms(call.latency_ms), "num");
    cell(tr, ms(call.ttft_ms), "num");
    cell(tr, count(call.input_tokens) + " → " + count(call.output_tokens), "num");
    cell(tr, usd(call.cost), "num");
    cell(tr, call.cache);
    cell(tr, call.guardrail);
    var user = cell(tr, call.end_user);
    if (call.tags && call.tags.length) user.title = "Tags: " + call.tags.join(", ");
    var link = document.createElement("a");
    link.href = callUrl.replace("REQUEST_ID", encodeURIComponent(call.request_id));
    link.textContent = "Details";
    link.setAttribute("aria-label", "Details of " + call.request_id);
    cell(tr, "").appendChild(link);

    if (empty.parentNode) empty.parentNode.removeChild(empty);
    rows.insertBefore(tr, rows.firstChild);
    while (rows.children.length > maxRows) rows.removeChild(rows.lastChild);
  }

  pauseButton.addEventListener("click", function () {
    paused = !paused;
    pauseButton.textContent = paused ? "Resume" : "Pause";
    if (!paused) {
      var pending = held;
      held = [];
      pausedCount.textContent = "";
      pending.forEach(addRow);
    }
  });

  document.getElementById("tail-clear").addEventListener("click", function () {
    while (rows.firstChild) rows.removeChild(rows.firstChild);
    rows.appendChild(empty);
  });

  window.addEventListener("beforeunload", function () {
    clearTimeout(retryTimer);
    if (socket) socket.close();
  });

  connect();
})();
