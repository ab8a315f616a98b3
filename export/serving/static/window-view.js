// kcnn "see inside" page, the window view: click or tap a pixel of any feature map and see how
// that one number was computed (POST /v1/explain/window): the input window, the kernel, the
// element-wise products, their sum, + bias = pre-activation, the activation, the value. Hovering a
// map outlines the window on the previous layer's maps (or on the input image).
// page.js announces the layer geometry ("kcnn:info") and each drawn result ("kcnn:rendered").
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const view = { layers: new Map(), body: null, selected: null, answer: null, inChannel: 0, seq: 0 };

  const el = window.kcnn.el;  // dom.js

  // Three significant digits, no exponent for ordinary sizes: readable in a small grid cell.
  function num(x) {
    if (x === null || x === undefined) return "–";
    if (x === 0) return "0";
    const a = Math.abs(x);
    if (a >= 1000 || a < 1e-3) return x.toExponential(1);
    return String(Number(x.toPrecision(3)));
  }

  // ---------------------------------------------------------------------------------------
  // Outlines: the window on the source maps, the pixel on the clicked map
  // ---------------------------------------------------------------------------------------
  function sourceTiles(outline) {
    if (outline === "images") return [$("model-input")];
    const section = document.querySelector(`#feature-maps .layer[data-name="${CSS.escape(outline)}"]`);
    return section ? [...section.querySelectorAll("canvas.tile")] : [];
  }

  function clearMarks(cls) {
    for (const node of document.querySelectorAll(`.${cls}`)) node.remove();
  }

  // A box over `tile` covering rows [top, top+h) and columns [left, left+w) of its `rows`×`cols` pixels.
  function box(tile, cls, top, left, h, w, rows, cols) {
    const parent = tile.parentElement;
    const scaleX = tile.clientWidth / cols, scaleY = tile.clientHeight / rows;
    const node = el("div", { class: `mark ${cls}`, "aria-hidden": "true" });
    node.style.left = `${tile.offsetLeft + tile.clientLeft + left * scaleX}px`;
    node.style.top = `${tile.offsetTop + tile.clientTop + top * scaleY}px`;
    node.style.width = `${w * scaleX}px`;
    node.style.height = `${h * scaleY}px`;
    parent.append(node);
  }

  function outline(name, channel, row, col) {
    clearMarks("window-mark");
    clearMarks("pixel-mark");
    const layer = view.layers.get(name);
    if (!layer || !layer.window) return;
    const w = layer.window;
    const [kh, kw] = w.size, [sh, sw] = w.strides, [dh, dw] = w.dilation;
    const top = row * sh - w.pads[0], left = col * sw - w.pads[2];
    const [rows, cols] = w.input_shape;
    if (w.outline) {
      for (const tile of sourceTiles(w.outline)) {
        box(tile, "window-mark", top, left, (kh - 1) * dh + 1, (kw - 1) * dw + 1, rows, cols);
      }
    }
    const section = document.querySelector(`#feature-maps .layer[data-name="${CSS.escape(name)}"]`);
    const tile = section && section.querySelector(`canvas.tile[data-channel="${channel}"]`);
    if (tile) box(tile, "pixel-mark", row, col, 1, 1, tile.height, tile.width);
  }

  // The (layer, channel, row, col) under a pointer event on a feature-map tile, or null.
  function pixelAt(event) {
    const tile = event.target.closest && event.target.closest("canvas.tile");
    const section = tile && tile.closest(".layer");
    if (!section || !view.layers.has(section.dataset.name)) return null;
    const rect = tile.getBoundingClientRect();  // the border box: the pixels start inside the border
    const x = event.clientX - rect.left - tile.clientLeft, y = event.clientY - rect.top - tile.clientTop;
    const col = Math.floor((x / tile.clientWidth) * tile.width);
    const row = Math.floor((y / tile.clientHeight) * tile.height);
    if (row < 0 || col < 0 || row >= tile.height || col >= tile.width) return null;
    return { name: section.dataset.name, channel: Number(tile.dataset.channel), row, col };
  }

  const maps = $("feature-maps");
  maps.addEventListener("pointermove", (event) => {
    const pixel = pixelAt(event);
    if (pixel) outline(pixel.name, pixel.channel, pixel.row, pixel.col);
  });
  maps.addEventListener("pointerleave", () => {
    const s = view.selected;
    if (s) outline(s.name, s.channel, s.row, s.col);
    else { clearMarks("window-mark"); clearMarks("pixel-mark"); }
  });
  maps.addEventListener("click", (event) => {
    const pixel = pixelAt(event);
    if (pixel) select(pixel, true);
  });

  // ---------------------------------------------------------------------------------------
  // Asking the server
  // ---------------------------------------------------------------------------------------
  async function select(pixel, scroll = false) {
    view.selected = pixel;
    outline(pixel.name, pixel.channel, pixel.row, pixel.col);
    if (!view.body) return;
    const seq = ++view.seq;
    const query = new URLSearchParams({ layer: pixel.name, channel: pixel.channel,
                                        row: pixel.row, col: pixel.col });
    $("window-status").textContent = `Computing ${pixel.name} channel ${pixel.channel}, ` +
      `row ${pixel.row}, column ${pixel.col}…`;
    let answer;
    try {
      const response = await fetch(`/v1/explain/window?${query}`, {
        method: "POST", body: view.body,
        headers: { "Content-Type": view.body.type || "application/octet-stream" },
      });
      answer = await response.json();
      if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
    } catch (err) {
      if (seq === view.seq) $("window-status").textContent = `Could not compute: ${err.message}`;
      return;
    }
    if (seq !== view.seq) return;
    view.answer = answer;
    view.inChannel = 0;
    render();
    if (scroll && window.matchMedia("(max-width: 899px)").matches) {  // one column: panel above the maps
      $("window-view").closest(".card").scrollIntoView({ block: "start" });
    }
  }

  // ---------------------------------------------------------------------------------------
  // The panel
  // ---------------------------------------------------------------------------------------
  // One kh×kw grid; `value(a, b)` gives the cell's number; padded cells are hatched.
  // Wide windows (AlexNet's 11×11) print each cell as d.d with one power of ten for the grid.
  function grid(title, rows, cols, value, padding, role) {
    const body = el("tbody");
    const compact = cols > 7;
    let peak = 0;
    for (let a = 0; a < rows; a++) for (let b = 0; b < cols; b++) peak = Math.max(peak, Math.abs(value(a, b)));
    const exponent = compact && peak > 0 ? Math.floor(Math.log10(peak)) : 0;
    const show = compact ? (v) => (v === 0 ? "0" : (v / 10 ** exponent).toFixed(1)) : num;
    for (let a = 0; a < rows; a++) {
      const tr = el("tr");
      for (let b = 0; b < cols; b++) {
        const v = value(a, b);
        const pad = padding && padding[a][b];
        const td = el("td", { class: pad ? "pad" : v > 0 ? "pos" : v < 0 ? "neg" : "zero",
                              "data-v": String(v), title: pad ? "padding (0)" : String(v) });
        td.textContent = pad ? (compact ? "·" : "pad") : show(v);
        tr.append(td);
      }
      body.append(tr);
    }
    const scale = compact && exponent !== 0 ? ` (values ×10^${exponent})` : "";
    return el("figure", { class: "grid-box", "data-role": role }, [
      el("figcaption", { text: title + scale }),
      el("table", { class: compact ? "grid compact" : "grid" }, [body])]);
  }

  function line(label, value, key) {
    return el("div", { class: "sum-line", "data-key": key, "data-v": String(value) }, [
      el("span", { class: "sum-label", text: label }), el("span", { class: "sum-value", text: num(value) })]);
  }

  function renderConv(a, box) {
    const [kh, kw] = a.size;
    const channels = a.in_channels;
    const k = Math.min(view.inChannel, channels.length - 1);
    if (channels.length > 1) {
      const picker = el("select", { id: "window-channel", "aria-label": "Input channel shown" });
      channels.forEach((c, i) => {
        const option = el("option", { value: String(i), text: `input channel ${c}: Σ ${num(a.channel_sums[i])}` });
        if (i === k) option.selected = true;
        picker.append(option);
      });
      picker.addEventListener("change", () => { view.inChannel = Number(picker.value); render(); });
      const sums = el("ol", { class: "channel-sums", "aria-label": "Sum of the products per input channel" });
      channels.forEach((c, i) => {
        const button = el("button", { type: "button", class: i === k ? "current" : "",
                                      "data-channel": String(c), "data-v": String(a.channel_sums[i]) },
                          [el("span", { text: `ch ${c}` }), el("span", { text: num(a.channel_sums[i]) })]);
        button.addEventListener("click", () => { view.inChannel = i; render(); });
        sums.append(el("li", {}, [button]));
      });
      box.append(el("div", { class: "picker-row" }, [
        el("label", { for: "window-channel", text: "Input channel" }), picker]), sums);
    }
    const at = (grid3, a2, b2) => grid3[a2][b2][k];
    const inName = a.outline === "images" ? "input image" : (a.outline || "input");
    box.append(el("div", { class: "grids" }, [
      grid(`Window of ${inName}, channel ${channels[k]}`, kh, kw, (i, j) => at(a.window, i, j), a.padding, "window"),
      grid(`× kernel [:, :, ${k}, ${a.channel}]`, kh, kw, (i, j) => at(a.kernel, i, j), null, "kernel"),
      grid("= element-wise products", kh, kw, (i, j) => at(a.window, i, j) * at(a.kernel, i, j), a.padding, "products"),
    ]));
    const act = a.activation ? `${a.activation}(pre-activation)` : "no activation";
    box.append(el("div", { class: "sums" }, [
      line(`Σ products, input channel ${channels[k]}`, a.channel_sums[k], "channel-sum"),
      line(`Σ over ${channels.length} input channel${channels.length > 1 ? "s" : ""}`, a.sum, "sum"),
      line("+ bias", a.bias, "bias"),
      line("= pre-activation", a.pre_activation, "pre"),
      line(`${act} = value`, a.value, "value"),
    ]));
  }

  function renderPool(a, box) {
    const [kh, kw] = a.size;
    box.append(el("div", { class: "grids" }, [
      grid(`Window of ${a.outline || "the input"}, channel ${a.channel}`, kh, kw,
           (i, j) => a.window[i][j], a.padding, "window")]));
    const rows = a.op === "max"
      ? [line(`max of ${a.count} values (padding skipped)`, a.value, "value")]
      : [line("Σ window", a.sum, "sum"), line(`÷ ${a.count} = mean = value`, a.value, "value")];
    box.append(el("div", { class: "sums" }, rows));
  }

  function render() {
    const a = view.answer;
    const box = $("window-view");
    box.replaceChildren();
    const where = `${a.layer} · channel ${a.channel} · row ${a.row}, column ${a.col}`;
    Object.assign(box.dataset, { layer: a.layer, kind: a.kind, channel: a.channel, row: a.row, col: a.col });
    box.append(el("h3", { text: where }));
    const [sh, sw] = a.strides, [dh, dw] = a.dilation;
    const geometry = `${a.size.join("×")} ${a.kind === "pool" ? `${a.op} pool` : "kernel"}, ` +
      `stride ${sh}×${sw}` + (dh > 1 || dw > 1 ? `, dilation ${dh}×${dw}` : "") +
      `, padding top ${a.pads[0]} bottom ${a.pads[1]} left ${a.pads[2]} right ${a.pads[3]}; ` +
      `window starts at input row ${a.origin[0]}, column ${a.origin[1]}.`;
    box.append(el("p", { class: "caption", text: geometry }));
    if (a.kind === "conv") renderConv(a, box);
    else renderPool(a, box);
    box.append(el("p", { class: "caption", text:
      `The map shows ${num(a.feature)} at this pixel. Hatched cells are padding (0).` }));
    $("window-status").textContent = "";
  }

  // Keyboard: with the panel focused, the arrow keys move the selected pixel over its map.
  const MOVES = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
  $("window-view").addEventListener("keydown", (event) => {
    const s = view.selected, move = MOVES[event.key];
    const layer = s && view.layers.get(s.name);
    if (!layer || !move) return;
    event.preventDefault();
    const cf = layer.window.data_format === "channels_first";
    const [h, w] = cf ? layer.shape.slice(1) : layer.shape.slice(0, 2);
    const row = Math.min(h - 1, Math.max(0, s.row + move[0]));
    const col = Math.min(w - 1, Math.max(0, s.col + move[1]));
    if (row !== s.row || col !== s.col) select({ ...s, row, col });
  });

  document.addEventListener("kcnn:info", (event) => {
    view.layers = new Map(event.detail.layers.filter((l) => l.window).map((l) => [l.name, l]));
    if (view.layers.size === 0) {
      $("window-status").textContent = "This explain file has no window data; re-export with kcnn-export --explain.";
    }
  });
  document.addEventListener("kcnn:rendered", (event) => {
    view.body = event.detail.body;
    const s = view.selected;
    if (s) select(s);  // a new image: the same pixel, new numbers
  });
  window.addEventListener("resize", () => {
    const s = view.selected;
    if (s) outline(s.name, s.channel, s.row, s.col);
  });
})();
