// The Rank and Pick gallery: all Best-of-N candidates as thumbnails sorted by MI, an MI badge on each, the MI heatmap
// on hover (or for all with the toggle); a click toggles a pick, keys 1–9 over the gallery too; "reset to top-k".
//
// A DOM widget (node.addDOMWidget), never drawn on the canvas and no LiteGraph draw method replaced. The picks live in
// the node's own "picks" STRING widget, so they are saved in the workflow and sent in the prompt like any widget value
// (the HTTP API can set them too); queueing again re-runs only Rank and Pick and what follows (ComfyUI's cache). The
// gallery itself is not serialized. Pure logic (ordering, pick state, keys) is in rfmi_gallery_logic.js.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import {
  candidateForKey, formatPicks, galleryView, parsePicks, resetPicks, togglePick, viewPath,
} from "./rfmi_gallery_logic.js";
import { after, fitNode } from "./rfmi_node_ui.js";

const NODE_TYPE = "RFMIRankAndPick";
const WIDGET_NAME = "rfmi_gallery";
const MIN_CELL = 96; // px, narrowest thumbnail column
const GAP = 4;
const HEADER = 28;
const MARGIN = 4; // the DOM widget's margin
const EMPTY_HEIGHT = 44;
const GOLD = "#f0c040";

function widgetOf(node, name) {
  return node.widgets?.find((w) => w.name === name);
}

function kOf(node) {
  const value = widgetOf(node, "k")?.value;
  return Number.isInteger(value) ? value : 1;
}

function columns(node) {
  const width = Math.max(MIN_CELL, (node.size?.[0] ?? 400) - 2 * MARGIN - 20);
  return Math.max(1, Math.floor((width + GAP) / (MIN_CELL + GAP)));
}

function galleryHeight(node) {
  const n = node.__rfmiGallery?.entries?.length ?? 0;
  if (n === 0) return EMPTY_HEIGHT + 2 * MARGIN;
  const cols = columns(node);
  const cell = ((node.size?.[0] ?? 400) - 2 * MARGIN - 20 - (cols - 1) * GAP) / cols;
  return HEADER + Math.ceil(n / cols) * (cell + GAP) + 2 * MARGIN + 8;
}

function imageUrl(ref) {
  const path = viewPath(ref);
  return path ? api.apiURL(path) : "";
}

function button(text, title, onClick) {
  const el = document.createElement("button");
  el.type = "button";
  el.textContent = text;
  el.title = title;
  el.style.cssText = "font:11px sans-serif;padding:1px 6px;margin-left:4px;cursor:pointer;border-radius:3px;" +
    "border:1px solid var(--border-color,#555);background:var(--comfy-menu-bg,#333);color:var(--input-text,#ddd);";
  el.addEventListener("click", (event) => {
    event.stopPropagation();
    onClick();
  });
  return el;
}

function badge(text, css) {
  const el = document.createElement("span");
  el.textContent = text;
  el.style.cssText = "position:absolute;font:600 10px/14px monospace;padding:0 3px;border-radius:3px;" +
    "background:rgba(0,0,0,0.72);color:#fff;pointer-events:none;" + css;
  return el;
}

function currentPicks(node) {
  const n = node.__rfmiGallery?.entries?.length ?? 0;
  return parsePicks(String(widgetOf(node, "picks")?.value ?? ""), n);
}

/** Writes the picks into the node's "picks" widget (what the prompt and the saved workflow carry) and redraws. */
function setPicks(node, picks) {
  const widget = widgetOf(node, "picks");
  if (!widget) return;
  const text = formatPicks(picks);
  widget.value = text;
  widget.callback?.(text, app.canvas, node);
  render(node);
  node.setDirtyCanvas?.(true, true);
  app.graph?.setDirtyCanvas?.(true, true);
}

function card(node, item, showHeat) {
  const el = document.createElement("div");
  el.className = "rfmi-card";
  Object.assign(el.dataset, {
    candidate: String(item.candidate), rank: String(item.rank), mi: item.text, seed: String(item.seed ?? ""),
    picked: String(item.pickOrder !== null), chosen: String(item.chosen),
  });
  const border = item.pickOrder !== null ? `3px solid ${GOLD}` : item.chosen ? `2px dashed ${GOLD}` : "1px solid #555";
  el.style.cssText = `position:relative;aspect-ratio:1;border:${border};border-radius:4px;overflow:hidden;` +
    "cursor:pointer;box-sizing:border-box;background:#111;";
  el.title = `candidate c${item.candidate} (seed ${item.seed}): MI ${item.text} nats, rank ${item.rank + 1}` +
    (item.key ? `; key ${item.key}` : "") + "\nclick to pick / unpick; hover for the MI heatmap";
  const img = document.createElement("img");
  const plain = imageUrl(item.image);
  const heat = item.heatmap ? imageUrl(item.heatmap) : null;
  const hovered = node.__rfmiGallery.hover === item.candidate;
  img.src = (showHeat || hovered) && heat ? heat : plain;
  img.alt = `candidate ${item.candidate}`;
  img.draggable = false;
  img.style.cssText = "width:100%;height:100%;object-fit:contain;image-rendering:pixelated;display:block;";
  el.append(img);
  el.append(badge(item.text, "left:2px;bottom:2px;"));
  el.append(badge(item.key ? `${item.key}` : `#${item.rank + 1}`, "left:2px;top:2px;opacity:0.85;")); // rank = key
  el.append(badge(`c${item.candidate}`, "right:2px;bottom:2px;opacity:0.7;")); // the number the picks widget holds
  if (item.pickOrder !== null) el.append(badge(`✓${item.pickOrder}`, `right:2px;top:2px;background:${GOLD};color:#000;`));
  el.addEventListener("pointerenter", () => {
    node.__rfmiGallery.hover = item.candidate; // kept across re-renders (a key press re-renders under the pointer)
    if (heat) img.src = heat;
  });
  el.addEventListener("pointerleave", () => {
    if (node.__rfmiGallery.hover === item.candidate) node.__rfmiGallery.hover = null;
    img.src = node.__rfmiGallery.showHeat && heat ? heat : plain;
  });
  el.addEventListener("click", (event) => {
    event.stopPropagation();
    setPicks(node, togglePick(currentPicks(node), item.candidate));
  });
  return el;
}

function render(node) {
  const state = node.__rfmiGallery;
  const element = state.element;
  if (!state.entries?.length) {
    const hint = document.createElement("div");
    hint.textContent = "Queue the workflow: the candidates appear here, sorted by MI. Click to pick.";
    hint.style.cssText = "opacity:0.7;padding:6px;";
    element.replaceChildren(hint);
    return;
  }
  const view = galleryView(state.entries, String(widgetOf(node, "picks")?.value ?? ""), kOf(node));
  state.view = view;
  const header = document.createElement("div");
  header.className = "rfmi-gallery-header";
  header.style.cssText = `display:flex;align-items:center;height:${HEADER - 4}px;gap:4px;white-space:nowrap;overflow:hidden;`;
  const status = document.createElement("span");
  status.className = "rfmi-gallery-status";
  status.style.cssText = "flex:1;overflow:hidden;text-overflow:ellipsis;";
  status.textContent = `${view.items.length} by MI (nats) · ` +
    (view.error ? "picks refused (see below)" : view.usingDefault ? `output: top ${view.chosen.length} by MI` : `picked: ${view.picks.map((c) => `c${c}`).join(", ")}`);
  const heatButton = button(state.showHeat ? "images" : "heatmaps", "show the MI heatmap on every thumbnail (or the images)",
    () => { state.showHeat = !state.showHeat; render(node); });
  heatButton.className = "rfmi-heat-toggle";
  const reset = button("reset to top-k", "clear the picks: the node outputs its top k by MI", () => setPicks(node, resetPicks()));
  reset.className = "rfmi-reset";
  reset.disabled = view.usingDefault;
  header.append(status, heatButton, reset);
  const parts = [header];
  if (view.error) { // the node will refuse this picks text when queued: say so now, in its words
    const error = document.createElement("div");
    error.className = "rfmi-gallery-error";
    error.style.cssText = "color:#ff6b6b;font-size:11px;padding:2px 4px;white-space:normal;";
    error.textContent = `⚠ ${view.error}`;
    parts.push(error);
  }
  const grid = document.createElement("div");
  grid.className = "rfmi-gallery-grid";
  grid.style.cssText = `display:grid;grid-template-columns:repeat(${columns(node)},1fr);gap:${GAP}px;`;
  grid.append(...view.items.map((item) => card(node, item, state.showHeat)));
  element.replaceChildren(...parts, grid);
  element.dataset.count = String(view.items.length);
}

function ensureGallery(node) {
  if (node.__rfmiGallery) return node.__rfmiGallery;
  const element = document.createElement("div");
  element.className = "rfmi-gallery";
  element.tabIndex = 0; // focusable: keys 1–9 act on the gallery under the pointer
  element.style.cssText = "font:11px sans-serif;padding:4px;box-sizing:border-box;overflow:hidden;outline:none;" +
    "background:var(--comfy-input-bg,#222);color:var(--input-text,#ddd);border-radius:4px;";
  const state = { element, entries: [], showHeat: false, view: null, hover: null };
  node.__rfmiGallery = state;
  element.addEventListener("pointerenter", () => {
    const active = document.activeElement;
    if (!active || active === document.body || active.tagName === "CANVAS") element.focus({ preventScroll: true });
  });
  element.addEventListener("pointerleave", () => { if (document.activeElement === element) element.blur(); });
  element.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || !state.view) return;
    const candidate = candidateForKey(event.key, state.view.items);
    if (candidate === null) return;
    event.preventDefault();
    event.stopPropagation(); // not a canvas or app shortcut
    setPicks(node, togglePick(currentPicks(node), candidate));
  });
  const widget = node.addDOMWidget(WIDGET_NAME, "rfmi_gallery", element, {
    serialize: false, // not in the prompt
    hideOnZoom: false,
    margin: MARGIN,
    getValue: () => undefined,
    setValue: () => {},
    getMinHeight: () => galleryHeight(node),
    getMaxHeight: () => galleryHeight(node),
  });
  widget.serialize = false; // not in the workflow's widgets_values either
  render(node);
  return state;
}

function showGallery(node, message) {
  const entries = message?.rfmi_gallery;
  if (!Array.isArray(entries)) return;
  const state = ensureGallery(node);
  state.entries = entries;
  render(node);
  fitNode(node);
}

app.registerExtension({
  name: "RFMI.RankAndPickGallery",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NODE_TYPE) return;
    after(nodeType.prototype, "onNodeCreated", "create the gallery", (node) => {
      ensureGallery(node);
      const picks = widgetOf(node, "picks");
      if (picks) after(picks, "callback", "show the picks", () => render(node)); // typed picks show at once
    });
    after(nodeType.prototype, "onExecuted", "show the gallery", showGallery);
  },
});
