/* The prompt playground (templates/prompts/playground.html).
 *
 * Run: the form's values become JSON variables (typed here: numbers, booleans, JSON fields),
 * POSTed as {"version": N, "variables": {...}} to the run URL once per pane, concurrently.
 * Each answer is SSE: `delta` text is appended to the pane as it arrives, `done` fills the
 * metrics, `error` shows the message. A non-200 JSON answer shows its message, and its
 * per-field errors ({path, message}) next to the fields. Output is only ever set with
 * textContent. Listeners are delegated to the document, so an htmx swap of #playground
 * (another version picked) needs no re-binding.
 */
(function () {
  "use strict";

  // --- the variables ------------------------------------------------------------------

  function controls(form) {
    return Array.prototype.slice.call(form.querySelectorAll("[data-var]"));
  }

  // One control's value as JSON, or undefined when left empty (the variable is omitted).
  function valueOf(control) {
    var kind = control.dataset.kind;
    if (kind === "boolean") return control.checked;
    var raw = control.value;
    if (raw.trim() === "") return undefined;
    if (kind === "integer" || kind === "number") {
      var number = Number(raw);
      if (Number.isNaN(number)) throw new Error("Enter a number.");
      return number;
    }
    if (kind === "enum") return JSON.parse(raw);
    if (kind === "json") {
      try {
        return JSON.parse(raw);
      } catch (e) {
        throw new Error("Not valid JSON: " + e.message);
      }
    }
    return raw;
  }

  function collect(form) {
    var variables = {};
    var problems = [];
    controls(form).forEach(function (control) {
      try {
        var value = valueOf(control);
        if (value !== undefined) variables[control.dataset.var] = value;
      } catch (e) {
        problems.push({ name: control.dataset.var, message: e.message });
      }
    });
    return { variables: variables, problems: problems };
  }

  // --- field and form errors ----------------------------------------------------------

  function fieldBox(form, name) {
    var found = null;
    form.querySelectorAll("[data-field]").forEach(function (box) {
      if (box.dataset.field === name) found = box;
    });
    return found;
  }

  function clearErrors(form) {
    form.querySelectorAll("[data-field]").forEach(function (box) {
      box.classList.remove("has-error");
      var control = box.querySelector("[data-var]");
      if (control) control.removeAttribute("aria-invalid");
      var error = box.querySelector("p.error");
      error.textContent = "";
      error.hidden = true;
    });
    var general = form.querySelector("#pg-form-error");
    if (general) {
      general.textContent = "";
      general.hidden = true;
    }
  }

  function showFieldError(form, name, message) {
    var box = fieldBox(form, name);
    if (!box) return false;
    box.classList.add("has-error");
    var control = box.querySelector("[data-var]");
    if (control) control.setAttribute("aria-invalid", "true");
    var error = box.querySelector("p.error");
    error.textContent = error.textContent ? error.textContent + " " + message : message;
    error.hidden = false;
    return true;
  }

  function showFormError(form, message) {
    var general = form.querySelector("#pg-form-error");
    if (!general) return;
    general.textContent = general.textContent ? general.textContent + " " + message : message;
    general.hidden = false;
  }

  // The field an error path ("$.text", "$.items[0]", "text", "/text") is about, if any; a
  // missing required property is reported at the object ("$") and names the field.
  function fieldOfError(form, error) {
    var names = controls(form).map(function (c) { return c.dataset.var; });
    var path = String(error.path || "").replace(/^\$/, "").replace(/^[./]/, "");
    var best = null;
    names.forEach(function (name) {
      var rest = path.slice(name.length);
      if (path.indexOf(name) === 0 && (rest === "" || /^[.[\/]/.test(rest))) {
        if (best === null || name.length > best.length) best = name;
      }
    });
    if (best !== null) return best;
    var required = /^'(.+)' is a required property$/.exec(String(error.message || ""));
    if (required && names.indexOf(required[1]) !== -1) return required[1];
    return null;
  }

  // The per-field errors of every pane, each message once: prefixed with the versions that
  // reported it when not all of them did (the compared version may have another schema).
  function showErrors(form, reports, versions) {
    var seen = {};
    var order = [];
    reports.forEach(function (report) {
      (report.errors || []).forEach(function (error) {
        var key = String(error.path || "") + "\u0000" + String(error.message || "invalid");
        if (!seen[key]) {
          seen[key] = { error: error, versions: [] };
          order.push(key);
        }
        if (seen[key].versions.indexOf(report.version) === -1) seen[key].versions.push(report.version);
      });
    });
    order.forEach(function (key) {
      var error = seen[key].error;
      var who = seen[key].versions;
      var prefix = who.length < versions.length ? "v" + who.join(", v") + ": " : "";
      var message = prefix + String(error.message || "invalid");
      var name = fieldOfError(form, error);
      if (name === null || !showFieldError(form, name, message)) {
        showFormError(form, (error.path ? error.path + ": " : "") + message);
      }
    });
  }

  function fieldErrors(data) {
    return (data && data.error && Array.isArray(data.error.errors)) ? data.error.errors : [];
  }

  // --- a pane -------------------------------------------------------------------------

  function part(pane, role) {
    return pane.querySelector('[data-role="' + role + '"]');
  }

  function resetPane(pane) {
    part(pane, "output").textContent = "";
    var error = part(pane, "error");
    error.textContent = "";
    error.hidden = true;
    var metrics = part(pane, "metrics");
    metrics.hidden = true;
    metrics.querySelectorAll("[data-metric]").forEach(function (el) { el.textContent = ""; });
    pane.dataset.state = "running";
    part(pane, "status").textContent = "Running…";
    part(pane, "output").setAttribute("aria-busy", "true");
  }

  function finishPane(pane, status) {
    part(pane, "status").textContent = status;
    part(pane, "output").setAttribute("aria-busy", "false");
    pane.dataset.state = "finished";
  }

  function paneError(pane, message) {
    var error = part(pane, "error");
    error.textContent = message;
    error.hidden = false;
  }

  function metric(pane, name, value) {
    var el = part(pane, "metrics").querySelector('[data-metric="' + name + '"]');
    if (el) el.textContent = value === null || value === undefined || value === "" ? "—" : String(value);
  }

  function showDone(pane, data) {
    var output = part(pane, "output");
    if (data.output !== undefined && data.output !== null) {
      if (typeof data.output === "string") {
        if (output.textContent === "") output.textContent = data.output;
      } else {
        output.textContent = JSON.stringify(data.output, null, 2);
      }
    }
    var usage = data.usage || {};
    metric(pane, "input_tokens", usage.input_tokens);
    metric(pane, "output_tokens", usage.output_tokens);
    metric(pane, "cost_usd", usage.cost_usd === null || usage.cost_usd === undefined
      ? "not priced" : "$" + usage.cost_usd);
    metric(pane, "latency_ms", data.latency_ms);
    metric(pane, "ttft_ms", data.ttft_ms);
    metric(pane, "model", data.model);
    metric(pane, "request_id", data.request_id);
    part(pane, "metrics").hidden = false;
  }

  function errorMessage(data, fallback) {
    var error = data && data.error;
    if (error && error.message) return String(error.message);
    return fallback;
  }

  // --- SSE ----------------------------------------------------------------------------

  // Complete frames of the buffer, and what is left of it (a frame split across reads).
  function frames(buffer) {
    var parts = buffer.split(/\r?\n\r?\n/);
    var rest = parts.pop();
    return { frames: parts.map(parseFrame), rest: rest };
  }

  function parseFrame(text) {
    var frame = { event: "message", data: [] };
    text.split(/\r?\n/).forEach(function (line) {
      if (line === "" || line.charAt(0) === ":") return;
      var colon = line.indexOf(":");
      var field = colon === -1 ? line : line.slice(0, colon);
      var value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") frame.event = value;
      else if (field === "data") frame.data.push(value);
    });
    frame.data = frame.data.join("\n");
    return frame;
  }

  // Apply one frame to the pane; an array (the field errors, maybe none) once the run is
  // over (done or error), else null.
  function handleFrame(pane, frame) {
    var data = null;
    try {
      data = frame.data ? JSON.parse(frame.data) : null;
    } catch (e) {
      return null;
    }
    if (frame.event === "delta" && data && typeof data.text === "string") {
      part(pane, "output").textContent += data.text;
    } else if (frame.event === "done" && data) {
      showDone(pane, data);
      finishPane(pane, "Done.");
      return [];
    } else if (frame.event === "error") {
      paneError(pane, errorMessage(data, "The run failed."));
      finishPane(pane, "Failed.");
      return fieldErrors(data);
    }
    return null;
  }

  // The field errors of the run once its stream is over.
  async function readStream(pane, response) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    var over = null;
    for (;;) {
      var chunk = await reader.read();
      buffer += chunk.done ? decoder.decode() + "\n\n" : decoder.decode(chunk.value, { stream: true });
      var parsed = frames(buffer);
      buffer = parsed.rest;
      parsed.frames.forEach(function (frame) {
        var result = handleFrame(pane, frame);
        if (result !== null) over = result;
      });
      if (chunk.done) break;
    }
    if (over === null) {
      paneError(pane, "The answer ended before it was complete.");
      finishPane(pane, "Failed.");
      return [];
    }
    return over;
  }

  // Run one pane's version; resolves to the per-field errors of its answer (maybe none).
  async function runPane(pane, url, variables, csrf) {
    resetPane(pane);
    try {
      var response = await fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/json",
          "Accept": "text/event-stream",
          "X-CSRFToken": csrf,
        },
        body: JSON.stringify({ version: Number(pane.dataset.version), variables: variables }),
      });
      var type = response.headers.get("content-type") || "";
      if (response.ok && type.indexOf("text/event-stream") === 0 && response.body) {
        return await readStream(pane, response);
      }
      var text = await response.text();
      var data = null;
      try {
        data = JSON.parse(text);
      } catch (e) {
        data = null;
      }
      if (response.ok && data && !data.error) {
        showDone(pane, data); // a JSON answer where a stream was expected: show it anyway
        finishPane(pane, "Done.");
        return [];
      }
      paneError(pane, errorMessage(data, "The run failed (HTTP " + response.status + ")."));
      finishPane(pane, "Failed.");
      return fieldErrors(data);
    } catch (e) {
      paneError(pane, "The run failed: " + e.message);
      finishPane(pane, "Failed.");
      return [];
    }
  }

  async function run(form) {
    var root = form.closest("#playground");
    var button = form.querySelector("#pg-run");
    clearErrors(form);
    var collected = collect(form);
    if (collected.problems.length) {
      collected.problems.forEach(function (p) { showFieldError(form, p.name, p.message); });
      return;
    }
    var csrfInput = form.querySelector('input[name="csrfmiddlewaretoken"]');
    var csrf = csrfInput ? csrfInput.value : "";
    var panes = Array.prototype.slice.call(root.querySelectorAll("[data-pane]"));
    if (button) button.disabled = true;
    root.setAttribute("aria-busy", "true");
    var versions = panes.map(function (pane) { return pane.dataset.version; });
    try {
      var reports = await Promise.all(panes.map(function (pane) {
        return runPane(pane, root.dataset.runUrl, collected.variables, csrf).then(function (errors) {
          return { version: pane.dataset.version, errors: errors };
        });
      }));
      showErrors(form, reports, versions);
    } finally {
      if (button) button.disabled = false;
      root.setAttribute("aria-busy", "false");
    }
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form || form.id !== "playground-form") return;
    event.preventDefault();
    run(form);
  });

  // --- keep the typed values when another version is loaded (htmx swap) ----------------

  var kept = null;

  document.addEventListener("htmx:beforeRequest", function (event) {
    var source = event.detail && event.detail.elt;
    if (!source || source.id !== "playground-versions") return;
    var form = document.getElementById("playground-form");
    kept = {};
    if (!form) return;
    controls(form).forEach(function (control) {
      kept[control.dataset.var] = control.type === "checkbox" ? control.checked : control.value;
    });
  });

  document.addEventListener("htmx:afterSettle", function () {
    var form = document.getElementById("playground-form");
    if (!kept || !form) return;
    controls(form).forEach(function (control) {
      if (!Object.prototype.hasOwnProperty.call(kept, control.dataset.var)) return;
      var value = kept[control.dataset.var];
      if (control.type === "checkbox") control.checked = value === true;
      else if (typeof value === "string" && control.tagName !== "SELECT") control.value = value;
      else if (control.tagName === "SELECT" && control.querySelector('option[value="' + CSS.escape(value) + '"]')) control.value = value;
    });
    kept = null;
  });
})();
