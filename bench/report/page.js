// The report page's behaviour (bench/report/html.py inlines this file): sortable tables, the claims'
// verdict filter and the sample viewer. Plain JavaScript, nothing fetched: the page opens from file://.
(function () {
  "use strict";

  // --- Sortable tables: a click on a header sorts by that column (numbers as numbers), again to reverse.
  function leadingNumber(text) {
    var m = text.trim().replace("\u2212", "-").match(/^[-+]?\d+(\.\d+)?(e[-+]?\d+)?/i);
    return m ? parseFloat(m[0]) : null;
  }

  function sortTable(table, th, col) {
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col] ? a.cells[col].textContent : "", y = b.cells[col] ? b.cells[col].textContent : "";
      var nx = leadingNumber(x), ny = leadingNumber(y), c;
      if (nx !== null && ny !== null) { c = nx - ny; }
      else if (nx !== null || ny !== null) { return nx !== null ? -1 : 1; }  // blanks last either way
      else { c = x.localeCompare(y); }
      return ascending ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }

  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th").forEach(function (th, col) {
      th.tabIndex = 0;
      th.title = "click to sort";
      th.addEventListener("click", function () { sortTable(table, th, col); });
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") { sortTable(table, th, col); } });
    });
  });

  // --- The claims table, filtered by verdict.
  var filter = document.getElementById("verdict-filter");
  if (filter) {
    filter.addEventListener("change", function () {
      var shown = 0;
      document.querySelectorAll("#table-claims tbody tr").forEach(function (row) {
        row.hidden = filter.value !== "" && row.getAttribute("data-verdict") !== filter.value;
        shown += row.hidden ? 0 : 1;
      });
      document.getElementById("verdict-count").textContent = shown + " shown";
    });
  }

  // --- The sample viewer.
  var source = document.getElementById("viewer-data");
  if (!source) { return; }
  var data = JSON.parse(source.textContent);
  if (!data.sets.length) { return; }
  var FPS = 5;
  var el = function (id) { return document.getElementById(id); };
  var state = { set: 0, order: [], pos: 0, frame: 0, timer: null, hidden: {} };

  function make(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function current() { return data.sets[state.set]; }
  function sample() { return current().samples[state.order[state.pos]]; }

  function fmt(key, value) {
    if (value === null || value === undefined) { return "—"; }
    var m = data.metrics[key];
    var digits = m && (m.unit === "dB" || m.unit === "px") ? 2 : 3;
    return value.toFixed(digits) + (m && m.unit ? " " + m.unit : "");
  }

  function badness(key, value) {  // larger is worse, whatever the metric's direction
    if (value === null || value === undefined) { return -Infinity; }
    var better = data.metrics[key] ? data.metrics[key].better : "lower";
    return better === "higher" ? -value : better === "one" ? Math.abs(value - 1) : value;
  }

  function fillSelect(select, options, value) {
    select.innerHTML = "";
    options.forEach(function (o) {
      var opt = make("option", "", o[1]);
      opt.value = o[0];
      select.appendChild(opt);
    });
    if (value !== undefined) { select.value = value; }
  }

  function order() {
    var set = current(), key = el("v-order-metric").value, method = el("v-order-method").value;
    var worstFirst = el("v-order-dir").value === "worst";
    var idx = set.samples.map(function (_, i) { return i; });
    idx.sort(function (a, b) {
      var pa = set.samples[a].players[method], pb = set.samples[b].players[method];
      var d = badness(key, pb ? pb.metrics[key] : null) - badness(key, pa ? pa.metrics[key] : null);
      if (!isFinite(d)) { d = isFinite(badness(key, pb ? pb.metrics[key] : null)) ? 1 : -1; }
      return (worstFirst ? d : -d) || a - b;
    });
    var shown = sample() ? sample().id : null;
    state.order = idx;
    fillSelect(el("v-sample"), idx.map(function (i, pos) {
      var s = set.samples[i], p = s.players[method];
      return [String(pos), (pos + 1) + ". " + s.id + "  (" + (data.metrics[key] || {}).label + " " +
        fmt(key, p ? p.metrics[key] : null) + ")"];
    }));
    var keep = idx.findIndex(function (i) { return set.samples[i].id === shown; });
    show(keep < 0 ? 0 : keep);
  }

  function displayWidth(s) {  // small frames enlarged to stay visible, large ones shrunk to fit a row
    return Math.max(192, Math.min(s.width || 192, 320));
  }

  function sprite(path, s, n) {
    var box = make("div", "sprite");
    var width = displayWidth(s);
    box.style.width = width + "px";
    box.style.height = Math.round(s.width ? width * s.height / s.width : width * 0.75) + "px";  // no frames: 4:3
    if (path) {
      box.style.backgroundImage = "url('" + path + "')";
      box.style.backgroundSize = (n * 100) + "% 100%";
      if (width > s.width) { box.classList.add("pixelated"); }
    } else {
      box.classList.add("empty");
    }
    box.setAttribute("data-frames", String(n));
    return box;
  }

  function definedKeys(s) {  // the metrics some player of this sample has a value of
    return Object.keys(data.metrics).filter(function (key) {
      return Object.keys(s.players).some(function (m) {
        var v = s.players[m].metrics[key];
        return v !== null && v !== undefined;
      });
    });
  }

  function metricTable(metrics, keys) {
    var table = make("table", "metrics");
    keys.forEach(function (key) {
      var row = make("tr");
      row.appendChild(make("th", "", data.metrics[key].label));
      row.appendChild(make("td", "", fmt(key, metrics[key])));
      table.appendChild(row);
    });
    return table;
  }

  function card(title, body, cls) {
    var box = make("figure", "player " + (cls || ""));
    box.appendChild(make("figcaption", "", title));
    box.appendChild(body);
    return box;
  }

  function show(pos) {
    var set = current(), n = set.frames;
    state.pos = Math.max(0, Math.min(pos, state.order.length - 1));
    el("v-sample").value = String(state.pos);
    var s = sample(), grid = el("v-players");
    grid.innerHTML = "";
    var rank = s.rank === 1 ? " — the reference's worst" : s.rank === s.of ? " — the reference's best" : "";
    el("v-sample-note").textContent = "Sample " + s.id + ": rank " + s.rank + " of " + s.of + " by " +
      set.reference + "'s " + data.metrics[set.rank_metric].label + rank + ".";
    var blur = make("img");
    if (s.blur) { blur.src = s.blur; }
    blur.alt = "blurred input of " + s.id;
    blur.style.width = displayWidth(s) + "px";
    grid.appendChild(card("blurred input", blur, "input"));
    var keys = definedKeys(s);
    set.methods.forEach(function (m) {
      var p = s.players[m];
      var body = make("div");
      body.appendChild(sprite(p.strip, s, n));
      body.appendChild(metricTable(p.metrics, keys));
      body.appendChild(make("p", "source", (p.source ? p.source + (p.note ? "; " + p.note : "") : p.note) +
        " (run " + p.run_id + ", seed " + p.seed + ")"));
      var c = card(m, body, p.note.indexOf("DIFFERS") >= 0 ? "differs" : "");
      c.setAttribute("data-method", m);
      c.hidden = !!state.hidden[m];
      grid.appendChild(c);
    });
    grid.appendChild(card("truth", sprite(s.truth, s, n), "truth"));
    setFrame(Math.min(state.frame, n - 1));
  }

  function setFrame(t) {
    var n = current().frames;
    state.frame = ((t % n) + n) % n;
    var x = n > 1 ? (state.frame / (n - 1)) * 100 : 0;
    document.querySelectorAll("#v-players .sprite").forEach(function (box) {
      box.style.backgroundPosition = x + "% 0";
      box.setAttribute("data-frame", String(state.frame));
    });
    el("v-frame").max = String(n - 1);
    el("v-frame").value = String(state.frame);
    el("v-frame-label").textContent = "frame " + (state.frame + 1) + " / " + n;
  }

  function play(on) {
    if (state.timer) { clearInterval(state.timer); state.timer = null; }
    if (on) { state.timer = setInterval(function () { setFrame(state.frame + 1); }, 1000 / FPS); }
    el("v-play").textContent = on ? "Pause" : "Play";
  }

  function chooseSet(i) {
    state.set = i;
    var set = current();
    var keys = Object.keys(data.metrics);
    fillSelect(el("v-order-metric"), keys.map(function (k) { return [k, data.metrics[k].label]; }),
      set.rank_metric);
    fillSelect(el("v-order-method"), set.methods.map(function (m) { return [m, m]; }), set.reference);
    var boxes = el("v-methods");
    boxes.innerHTML = "";
    set.methods.forEach(function (m) {
      var label = make("label"), box = make("input");
      box.type = "checkbox";
      box.checked = !state.hidden[m];
      box.addEventListener("change", function () {
        state.hidden[m] = !box.checked;
        document.querySelectorAll("#v-players [data-method]").forEach(function (c) {
          c.hidden = !!state.hidden[c.getAttribute("data-method")];
        });
      });
      label.appendChild(box);
      label.appendChild(document.createTextNode(" " + m));
      boxes.appendChild(label);
    });
    el("v-stated").textContent = set.chosen;
    state.pos = 0;
    state.order = set.samples.map(function (_, j) { return j; });
    order();
  }

  fillSelect(el("v-set"), data.sets.map(function (s, i) { return [String(i), "N = " + s.frames + " (" + s.dataset + ")"]; }));
  el("v-set").addEventListener("change", function () { chooseSet(parseInt(el("v-set").value, 10)); });
  ["v-order-metric", "v-order-method", "v-order-dir"].forEach(function (id) {
    el(id).addEventListener("change", order);
  });
  el("v-sample").addEventListener("change", function () { show(parseInt(el("v-sample").value, 10)); });
  el("v-prev").addEventListener("click", function () { show(state.pos - 1); });
  el("v-next").addEventListener("click", function () { show(state.pos + 1); });
  el("v-play").addEventListener("click", function () { play(!state.timer); });
  el("v-frame").addEventListener("input", function () { play(false); setFrame(parseInt(el("v-frame").value, 10)); });
  // Arrow keys step the frames and "p" plays or pauses, while the viewer is on screen and no control has focus.
  document.addEventListener("keydown", function (e) {
    var box = el("viewer").getBoundingClientRect(), target = e.target;
    var inControl = target && target.closest && target.closest("select, input, textarea, button");
    if (box.bottom < 0 || box.top > window.innerHeight || inControl) { return; }
    if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
      play(false);
      setFrame(state.frame + (e.key === "ArrowRight" ? 1 : -1));
      e.preventDefault();
    } else if (e.key === "p") {
      play(!state.timer);
    }
  });
  chooseSet(0);
  window.benchViewer = { state: state, show: show, setFrame: setFrame, play: play, chooseSet: chooseSet };
})();
