// kcnn "see inside" page: draw or choose an image, then show the prediction, the input as the
// model sees it, the first-layer kernels and every conv/pool layer's feature maps.
// Data: GET /v1/metadata, GET /v1/explain/info, POST /v1/explain (or /v1/predict without
// explain data). Plain browser JavaScript, no libraries, nothing loaded from elsewhere.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const draw = $("draw");
  const pen = draw.getContext("2d");
  const state = {
    metadata: null, explain: null, topK: 5,
    file: null,        // the chosen image File while the canvas shows it unchanged
    drawn: false,      // something to predict on the canvas
    seq: 0,            // latest request number: older answers are dropped
  };

  // ---------------------------------------------------------------------------------------
  // Helpers
  // ---------------------------------------------------------------------------------------
  const el = window.kcnn.el;  // dom.js

  function setStatus(text, isError = false) {
    const status = $("status");
    status.textContent = text;
    status.classList.toggle("error", isError);
  }

  function bytesOf(base64) {
    const text = atob(base64);
    const bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    return bytes;
  }

  // An encoded array of the API -> {values, lo, hi}: grey levels 0..255 (uint8) or floats.
  function decode(item) {
    const bytes = bytesOf(item.data);
    if (item.dtype === "uint8") return { values: bytes, grey: true, lo: item.min, hi: item.max };
    const view = new DataView(bytes.buffer);
    const values = new Float32Array(bytes.length / 4);
    for (let i = 0; i < values.length; i++) values[i] = view.getFloat32(4 * i, true);
    return { values, grey: false, lo: item.min, hi: item.max };
  }

  function level(decoded, v) {
    if (decoded.grey) return v;
    const span = decoded.hi - decoded.lo;
    return span > 0 ? Math.round(((v - decoded.lo) / span) * 255) : 0;
  }

  // One canvas of w x h pixels from planes (1 plane: grey, 3: RGB) starting at offsets.
  function tile(decoded, offsets, w, h, toLevel = level) {
    const canvas = el("canvas", { width: w, height: h, class: "tile pixelated" });
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(w, h);
    const rgb = offsets.length === 3;
    for (let p = 0; p < w * h; p++) {
      for (let c = 0; c < 3; c++) {
        const offset = offsets[rgb ? c : 0];
        image.data[4 * p + c] = toLevel(decoded, decoded.values[offset + p]);
      }
      image.data[4 * p + 3] = 255;
    }
    ctx.putImageData(image, 0, 0);
    return canvas;
  }

  function tileSize(w, h) {  // CSS pixels: big enough to see, small enough for many channels
    const side = Math.max(w, h);
    return Math.max(24, Math.min(72, side * (side < 16 ? 4 : 2)));
  }

  const fmt = (x) => (Math.abs(x) >= 100 || x === 0 ? x.toFixed(0) : x.toPrecision(3));
  const shapeText = (shape) => shape.join("×");

  // ---------------------------------------------------------------------------------------
  // Drawing, file choice and drop
  // ---------------------------------------------------------------------------------------
  function clearCanvas() {
    pen.fillStyle = "#000";
    pen.fillRect(0, 0, draw.width, draw.height);
    state.file = null;
    state.drawn = false;
  }

  function point(event) {
    const rect = draw.getBoundingClientRect();
    return [(event.clientX - rect.left) * (draw.width / rect.width),
            (event.clientY - rect.top) * (draw.height / rect.height)];
  }

  let stroke = null;
  draw.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    draw.setPointerCapture(event.pointerId);
    stroke = point(event);
    state.file = null;  // the canvas (image plus strokes) is now what gets predicted
    state.drawn = true;
    pen.strokeStyle = "#fff";
    pen.fillStyle = "#fff";
    pen.lineWidth = 20;
    pen.lineCap = "round";
    pen.lineJoin = "round";
    pen.beginPath();
    pen.arc(stroke[0], stroke[1], pen.lineWidth / 2, 0, 2 * Math.PI);
    pen.fill();
  });
  draw.addEventListener("pointermove", (event) => {
    if (!stroke) return;
    const next = point(event);
    pen.beginPath();
    pen.moveTo(stroke[0], stroke[1]);
    pen.lineTo(next[0], next[1]);
    pen.stroke();
    stroke = next;
  });
  const endStroke = () => {
    if (!stroke) return;
    stroke = null;
    predict();
  };
  draw.addEventListener("pointerup", endStroke);
  draw.addEventListener("pointercancel", endStroke);

  async function showFile(file) {
    if (!file) return;
    if (file.type && !file.type.startsWith("image/")) {
      setStatus(`${file.name} is not an image file.`, true);
      return;
    }
    clearCanvas();
    try {  // the browser's preview only; the server decodes the file itself
      const bitmap = await createImageBitmap(file);
      const scale = Math.min(draw.width / bitmap.width, draw.height / bitmap.height);
      const w = bitmap.width * scale, h = bitmap.height * scale;
      pen.drawImage(bitmap, (draw.width - w) / 2, (draw.height - h) / 2, w, h);
    } catch (err) {
      setStatus(`No preview for ${file.name}; sending it to the model anyway.`);
    }
    state.file = file;
    state.drawn = true;
    predict();
  }

  $("file").addEventListener("change", (event) => showFile(event.target.files[0]));
  $("clear").addEventListener("click", () => {
    clearCanvas();
    $("file").value = "";
    setStatus("Cleared.");
  });
  $("predict").addEventListener("click", () => predict());

  const drop = $("drop");
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add("over"); });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    showFile(event.dataTransfer.files[0]);
  });
  // A file dropped next to the canvas must not make the browser leave the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  // ---------------------------------------------------------------------------------------
  // Asking the server
  // ---------------------------------------------------------------------------------------
  function canvasBlob() {
    return new Promise((resolve) => draw.toBlob(resolve, "image/png"));
  }

  async function predict() {
    if (!state.metadata) return;
    if (!state.drawn) {
      setStatus("Draw something or choose an image first.");
      return;
    }
    const seq = ++state.seq;
    const body = state.file || await canvasBlob();
    const useExplain = state.explain && state.explain.available;
    const url = useExplain ? `/v1/explain?top_k=${state.topK}&format=uint8`
                           : `/v1/predict?top_k=${state.topK}`;
    setStatus("Predicting…");
    let answer;
    try {
      const response = await fetch(url, {
        method: "POST", body,
        headers: { "Content-Type": body.type || "application/octet-stream" },
      });
      answer = await response.json();
      if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
    } catch (err) {
      if (seq === state.seq) setStatus(`Could not predict: ${err.message}`, true);
      return;
    }
    if (seq !== state.seq) return;  // a newer request is on its way
    const prediction = useExplain ? answer.prediction : answer.predictions[0];
    renderPredictions(prediction);
    if (useExplain) {
      renderInput(answer.input);
      renderKernels(answer.kernel);
      renderLayers(answer.layers);
      // window-view.js: the same body again for a clicked pixel's numbers
      document.dispatchEvent(new CustomEvent("kcnn:rendered", { detail: { body } }));
    }
    setStatus(`Predicted ${prediction.label} (${(100 * prediction.score).toFixed(1)} %).`);
  }

  // ---------------------------------------------------------------------------------------
  // Rendering
  // ---------------------------------------------------------------------------------------
  function renderPredictions(prediction) {
    const list = $("predictions");
    list.replaceChildren();
    prediction.top_k.forEach((item, rank) => {
      const percent = 100 * item.score;
      const fill = el("span", { class: "fill" });
      fill.style.width = `${Math.max(0, Math.min(100, percent)).toFixed(1)}%`;
      const bar = el("span", {
        class: "bar", role: "meter", "aria-valuemin": "0", "aria-valuemax": "100",
        "aria-valuenow": percent.toFixed(1), "aria-label": `score of ${item.label}`,
      }, [fill]);
      list.append(el("li", { class: rank === 0 ? "prediction best" : "prediction",
                             "data-label": item.label, "data-index": String(item.index) }, [
        el("span", { class: "label", text: item.label, title: item.label }),
        bar,
        el("span", { class: "score", text: `${percent.toFixed(1)} %` }),
      ]));
    });
  }

  function renderInput(input) {
    const [h, w, c] = input.shape;
    const decoded = decode(input);
    const offsets = c === 3 ? [0, h * w, 2 * h * w] : [0];
    const source = tile(decoded, offsets, w, h);
    const target = $("model-input");
    target.width = w;
    target.height = h;
    target.getContext("2d").drawImage(source, 0, 0);
    $("input-caption").textContent =
      `${shapeText(input.shape)} after resizing and scaling; values ${fmt(input.min)} to ` +
      `${fmt(input.max)}` + (c > 3 || c === 2 ? ` (channel 1 of ${c} shown)` : "") + ".";
  }

  function renderKernels(kernel) {
    const box = $("kernels");
    box.replaceChildren();
    if (!kernel) {
      $("kernels-caption").textContent = "The model's first layer has no kernel to show.";
      return;
    }
    const [kh, kw, cin, cout] = kernel.shape;
    const decoded = decode(kernel);
    const bound = Math.max(Math.abs(kernel.min), Math.abs(kernel.max)) || 1;
    const signed = (d, v) => Math.round(127.5 + 127.5 * (v / bound));  // 0 is mid grey
    const planes = Math.min(cin, 8);
    const rgb = cin === 3;
    for (let o = 0; o < cout; o++) {
      const base = o * cin * kh * kw;
      const canvases = rgb
        ? [tile(decoded, [base, base + kh * kw, base + 2 * kh * kw], kw, kh, signed)]
        : Array.from({ length: planes }, (_, i) => tile(decoded, [base + i * kh * kw], kw, kh, signed));
      box.append(el("figure", { class: "kernel", title: `${kernel.layer} filter ${o}` }, [
        el("div", { class: "planes" }, canvases),
        el("span", { text: String(o) }),
      ]));
    }
    $("kernels-caption").textContent =
      `${kernel.layer}: ${cout} filters of ${kh}×${kw}×${cin}` +
      (rgb ? " (as colour)" : cin > planes ? ` (first ${planes} input channels)` : "") +
      `; grey is 0, lighter positive, darker negative (±${fmt(bound)}).`;
  }

  function renderLayers(layers) {
    const box = $("feature-maps");
    box.replaceChildren();
    for (const layer of layers) {
      const [h, w, c] = layer.shape;
      const decoded = decode(layer);
      const size = `${tileSize(w, h)}px`;
      const tiles = el("div", { class: "tiles" });
      for (let ch = 0; ch < c; ch++) {
        const canvas = tile(decoded, [ch * h * w], w, h);
        canvas.style.width = size;
        canvas.style.height = `${Math.round(tileSize(w, h) * (h / w))}px`;
        canvas.setAttribute("title", `${layer.name} channel ${ch}`);
        canvas.dataset.channel = String(ch);
        tiles.append(canvas);
      }
      box.append(el("section", { class: "layer", "data-name": layer.name,
                                 "data-kind": layer.kind, "aria-label": `${layer.name} feature maps` }, [
        el("header", {}, [
          el("h3", { text: layer.name }),
          el("span", { class: "kind", text: `${layer.kind} · ${layer.class}` }),
          el("span", { class: "shape", text: `${shapeText(layer.shape)} · ${fmt(layer.min)} to ${fmt(layer.max)}` }),
        ]),
        tiles,
      ]));
    }
    $("maps-caption").textContent =
      `${layers.length} conv and pooling layers in network order; one grey tile per channel, ` +
      "black to white over each layer's range. Click or tap a pixel to see how it was computed.";
  }

  function renderUnavailable(reason) {
    const note = (text) => el("p", { class: "notice", text });
    $("feature-maps").replaceChildren(note(
      "This model was exported without explain data, so the page shows predictions only. " +
      "Export it with kcnn-export --explain to see its feature maps."));
    $("maps-caption").textContent = reason;
    $("kernels").replaceChildren(note("No kernels without explain data."));
    $("input-caption").textContent = "Not available without explain data.";
    document.querySelector(".window-card").hidden = true;
    document.querySelector(".seen").classList.add("unavailable");
  }

  // ---------------------------------------------------------------------------------------
  // Start
  // ---------------------------------------------------------------------------------------
  async function start() {
    clearCanvas();
    $("predictions").replaceChildren(el("li", { class: "empty", text: "No prediction yet." }));
    try {
      const [metadata, explain] = await Promise.all(
        ["/v1/metadata", "/v1/explain/info"].map((url) => fetch(url).then((r) => r.json())));
      state.metadata = metadata;
      state.explain = explain;
      state.topK = Math.min(5, metadata.num_classes);
      const [, h, w, c] = metadata.inputs[0].shape;
      $("model-info").textContent =
        `${metadata.model}: ${h}×${w}×${c} input, ${metadata.num_classes} classes` +
        (explain.available ? `, ${explain.layers.length} conv/pool layers` : ", predictions only");
      if (!explain.available) renderUnavailable(explain.reason);
      else {
        $("maps-caption").textContent =
          explain.layers.map((l) => `${l.name} ${shapeText(l.shape)}`).join(" → ");
        document.dispatchEvent(new CustomEvent("kcnn:info", { detail: explain }));
      }
      document.body.dataset.ready = "true";
      setStatus("Ready: draw a digit or choose an image.");
    } catch (err) {
      setStatus(`Cannot reach the server: ${err.message}`, true);
    }
  }

  start();
})();
