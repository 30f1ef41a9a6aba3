// The reader's page of the reading station (FastMRReconLib/station/server.py): the versions of one case side by
// side, labelled only A, B, C...; one slice index, zoom/pan and window for all of them; a Likert score under each,
// saved at once. Slice-change latencies (input to every image decoded, ms) are kept in window.__latencies.
"use strict";

const $ = (id) => document.getElementById(id);
const view = { k: null, state: null, slice: 0, low: 0, high: 1, zoom: 1, panX: 0, panY: 0 };
window.__latencies = [];
let changeId = 0;

function message(text) { $("message").textContent = text || ""; }

async function api(path, options) {
  const response = await fetch(path, Object.assign({ cache: "no-store" }, options || {}));
  let data;
  try { data = await response.json(); } catch (error) { throw new Error("the station's answer was not readable"); }
  if (!response.ok) { throw new Error(data.error || `error ${response.status}`); }
  return data;
}

function imageUrl(label, slice) {
  // The window in steps of 1/1000 of the case's window (fewer distinct URLs for the browser's cache), widened
  // outwards so that high stays above low.
  const s = view.state;
  const step = Math.max(s.window[1] - s.window[0], 1e-12) / 1000;
  const low = Math.floor(view.low / step) * step;
  const high = Math.max(Math.ceil(view.high / step) * step, low + step);
  return `img/${view.k}/${label}/${slice}.png?lo=${low.toPrecision(9)}&hi=${high.toPrecision(9)}`;
}

function fitZoom() {
  const box = document.querySelector(".viewport");
  const s = view.state;
  const width = s.pixel_mm[1] * 1, height = s.pixel_mm[0] * 1;
  const img = document.querySelector(".viewport img");
  if (!box || !img || !img.naturalWidth) { return 1; }
  const w = img.naturalWidth * width, h = img.naturalHeight * height;
  return Math.min(box.clientWidth / w, box.clientHeight / h);
}

function applyTransform() {
  const s = view.state;
  for (const img of document.querySelectorAll(".viewport img")) {
    const sx = view.zoom * s.pixel_mm[1], sy = view.zoom * s.pixel_mm[0];
    const w = img.naturalWidth * sx, h = img.naturalHeight * sy;
    img.style.transform =
      `translate(${-w / 2 + view.panX}px, ${-h / 2 + view.panY}px) scale(${sx}, ${sy})`;
  }
}

function showSlice(slice, measure) {
  const s = view.state;
  view.slice = Math.max(0, Math.min(s.slices - 1, slice));
  $("slice").value = view.slice;
  $("slice-text").textContent =
    `slice ${view.slice + 1} / ${s.slices}, S ${s.positions[view.slice].toFixed(1)} mm`;
  const id = ++changeId;
  const started = performance.now();
  const loads = [];
  for (const label of s.labels) {
    const img = $(`image-${label}`);
    img.src = imageUrl(label, view.slice);
    loads.push(img.decode());
  }
  Promise.all(loads).then(() => {
    if (measure !== false && id === changeId) { window.__latencies.push(performance.now() - started); }
    applyTransform();
  }).catch(() => {
    if (id === changeId) { message("An image could not be loaded: check the window, or reload the page."); }
  });
  for (const step of [1, -1, 2]) {  // the neighbours, so that scrolling on is quick
    const next = view.slice + step;
    if (next >= 0 && next < s.slices) { for (const label of s.labels) { new Image().src = imageUrl(label, next); } }
  }
}

function setWindow(low, high) {
  if (!(high > low)) { return; }
  view.low = low; view.high = high;
  $("low").value = low.toPrecision(4); $("high").value = high.toPrecision(4);
  showSlice(view.slice, false);
}

function scoreBox(label) {
  const s = view.state;
  const box = document.createElement("fieldset");
  const legend = document.createElement("legend");
  legend.textContent = `Score of ${label}`;
  box.appendChild(legend);
  for (const [score, text] of s.likert) {
    const row = document.createElement("label");
    const input = document.createElement("input");
    input.type = "radio"; input.name = `score-${label}`; input.value = score;
    input.checked = s.scores[label] === score;
    input.addEventListener("change", () => saveScore(label, score));
    row.appendChild(input);
    row.appendChild(document.createTextNode(` ${score}: ${text}`));
    box.appendChild(row);
  }
  const saved = document.createElement("div");
  saved.className = "saved"; saved.id = `saved-${label}`;
  saved.textContent = label in s.scores ? "saved" : "";
  box.appendChild(saved);
  return box;
}

async function saveScore(label, score) {
  const state = view.state;  // the case this score belongs to: the reader may have moved on before the reply
  const current = () => view.state === state;
  $(`saved-${label}`).textContent = "saving...";
  try {
    const result = await api("api/score", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ k: state.k, label: label, score: score }),
    });
    state.scores = result.scores;
    state.finished = result.finished;
    if (!current()) { return; }
    $(`saved-${label}`).textContent = "saved";
    message("");
  } catch (error) {
    if (!current()) { message(`A score of case ${state.k + 1} was not saved: ${error.message}`); return; }
    $(`saved-${label}`).textContent = "not saved";
    for (const input of document.getElementsByName(`score-${label}`)) {
      input.checked = state.scores[label] === Number(input.value);
    }
    message(`Not saved: ${error.message}`);
  }
  updateStatus();
}

function updateStatus() {
  const s = view.state;
  const given = s.labels.filter((label) => label in s.scores).length;
  $("progress").textContent = `Case ${view.k + 1} of ${s.n}; ${s.finished} finished`;
  $("case-status").textContent = given === s.labels.length ? "All images of this case are scored." :
    `${s.labels.length - given} image(s) of this case still to score.`;
  $("next").disabled = given !== s.labels.length;
  $("previous").disabled = view.k === 0;
}

function buildPanels() {
  const s = view.state;
  const images = $("images");
  images.replaceChildren();
  for (const label of s.labels) {
    const panel = document.createElement("div");
    panel.className = "panel";
    const title = document.createElement("h2");
    title.textContent = label;
    const viewport = document.createElement("div");
    viewport.className = "viewport";
    const img = document.createElement("img");
    img.id = `image-${label}`; img.alt = `image ${label}`; img.draggable = false;
    viewport.appendChild(img);
    panel.append(title, viewport, scoreBox(label));
    images.appendChild(panel);
    attachMouse(viewport);
  }
}

function attachMouse(viewport) {
  viewport.addEventListener("wheel", (event) => {
    event.preventDefault();
    if (event.ctrlKey) { view.zoom *= event.deltaY < 0 ? 1.15 : 1 / 1.15; applyTransform(); return; }
    showSlice(view.slice + (event.deltaY > 0 ? 1 : -1));
  }, { passive: false });
  viewport.addEventListener("contextmenu", (event) => event.preventDefault());
  viewport.addEventListener("pointerdown", (event) => {
    const windowing = event.button === 2 || event.shiftKey;
    const start = { x: event.clientX, y: event.clientY, panX: view.panX, panY: view.panY,
                    low: view.low, high: view.high };
    viewport.setPointerCapture(event.pointerId);
    const move = (e) => {
      const dx = e.clientX - start.x, dy = e.clientY - start.y;
      if (windowing) {
        const range = view.state.window[1] - view.state.window[0];
        const width = Math.max((start.high - start.low) * Math.exp(dx / 200), range * 1e-3);
        const level = (start.high + start.low) / 2 - dy / 200 * range;
        view.low = level - width / 2; view.high = level + width / 2;
        $("low").value = view.low.toPrecision(4); $("high").value = view.high.toPrecision(4);
      } else {
        view.panX = start.panX + dx; view.panY = start.panY + dy; applyTransform();
      }
    };
    const up = () => {
      viewport.removeEventListener("pointermove", move);
      viewport.removeEventListener("pointerup", up);
      if (windowing) { showSlice(view.slice, false); }
    };
    viewport.addEventListener("pointermove", move);
    viewport.addEventListener("pointerup", up);
  });
}

async function loadCase(k) {
  message("");
  try {
    const state = await api(k === null ? "api/state" : `api/state?k=${k}`);
    view.state = state; view.k = state.k;
    $("reader").textContent = `Reader: ${state.reader}`;
    if (k === null && state.first_open >= state.n) { showDone(); return; }
    $("done").hidden = true; $("study").hidden = false;
    $("slice").max = state.slices - 1;
    view.low = state.window[0]; view.high = state.window[1]; view.zoom = 1; view.panX = 0; view.panY = 0;
    $("low").value = view.low.toPrecision(4); $("high").value = view.high.toPrecision(4);
    buildPanels();
    updateStatus();
    const first = $(`image-${state.labels[0]}`);
    first.addEventListener("load", () => { view.zoom = fitZoom(); applyTransform(); }, { once: true });
    showSlice(Math.floor(state.slices / 2));
  } catch (error) {
    message(error.message);
  }
}

function showDone() {
  $("study").hidden = true; $("done").hidden = false;
  $("progress").textContent = `${view.state.n} of ${view.state.n} cases finished`;
}

$("slice").addEventListener("input", () => showSlice(Number($("slice").value)));
$("low").addEventListener("change", () => setWindow(Number($("low").value), view.high));
$("high").addEventListener("change", () => setWindow(view.low, Number($("high").value)));
$("reset-window").addEventListener("click", () => setWindow(view.state.window[0], view.state.window[1]));
$("zoom-in").addEventListener("click", () => { view.zoom *= 1.25; applyTransform(); });
$("zoom-out").addEventListener("click", () => { view.zoom /= 1.25; applyTransform(); });
$("zoom-fit").addEventListener("click", () => { view.zoom = fitZoom(); view.panX = 0; view.panY = 0; applyTransform(); });
$("next").addEventListener("click", () => {
  if (view.k + 1 >= view.state.n) { showDone(); } else { loadCase(view.k + 1); }
});
$("previous").addEventListener("click", () => { if (view.k > 0) { loadCase(view.k - 1); } });
$("review").addEventListener("click", () => loadCase(0));
document.addEventListener("keydown", (event) => {
  if (!view.state || $("study").hidden || event.target.tagName === "INPUT" && event.target.type !== "radio") { return; }
  if (event.key === "ArrowUp" || event.key === "PageUp") { event.preventDefault(); showSlice(view.slice + 1); }
  if (event.key === "ArrowDown" || event.key === "PageDown") { event.preventDefault(); showSlice(view.slice - 1); }
});
loadCase(null);
