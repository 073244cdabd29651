// The Rank and Pick gallery: all Best-of-N candidates as thumbnails sorted by MI, an MI badge on each, the MI heatmap
// on hover (or for all with the toggle); a click toggles a pick, keys 1–9 over the gallery too; "reset to top-k".
// Scores with phrase MI add a bar per phrase under each thumbnail (its i(x; p | y∖p) in nats, the weakest marked);
// hovering a bar shows that phrase's heatmap over the thumbnail. The header names the score that ranked (each badge
// holds the score ± its standard error where it has one); a contrast or posterior lists its rival prompts, and "edit
// rivals" writes an edited list into the scoring node's "rivals" widget upstream (queue again to rescore).
//
// A DOM widget (node.addDOMWidget), never drawn on the canvas and no LiteGraph draw method replaced. The picks live in
// the node's own "picks" STRING widget, so they are saved in the workflow and sent in the prompt like any widget value
// (the HTTP API can set them too); queueing again re-runs only Rank and Pick and what follows (ComfyUI's cache). The
// gallery itself is not serialized. Pure logic (ordering, pick state, keys) is in rfmi_gallery_logic.js.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import {
  candidateForKey, formatPicks, galleryView, parsePicks, parseRivals, resetPicks, rivalsText, scoreLabel, togglePick,
  viewPath,
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
const BAR_ROW = 12; // px, one phrase bar
const RIVALS_ROW = 20; // px, the rivals line
const RIVALS_EDITOR = 96; // px, the rivals editor (textarea and buttons)
const BAR_COLOUR = "#4a9eda";
const WEAKEST_COLOUR = "#ff6b6b";

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

function barsHeight(node) {
  const phrases = node.__rfmiGallery?.phrases?.length ?? 0;
  return phrases > 0 ? phrases * BAR_ROW + 4 : 0;
}

function galleryHeight(node) {
  const n = node.__rfmiGallery?.entries?.length ?? 0;
  if (n === 0) return EMPTY_HEIGHT + 2 * MARGIN;
  const cols = columns(node);
  const cell = ((node.size?.[0] ?? 400) - 2 * MARGIN - 20 - (cols - 1) * GAP) / cols;
  return HEADER + rivalsHeight(node) + Math.ceil(n / cols) * (cell + barsHeight(node) + GAP) + 2 * MARGIN + 8;
}

function hasRivals(node) {  // phrase-pmi's conditions are the prompt less each phrase: nothing to edit
  const state = node.__rfmiGallery;
  if (state?.score === "phrase-pmi") return false;
  return (state?.rivals?.length ?? 0) > 0 || state?.score === "contrast" || state?.score === "posterior";
}

function rivalsHeight(node) {
  if (!hasRivals(node)) return 0;
  return node.__rfmiGallery.editingRivals ? RIVALS_EDITOR : RIVALS_ROW;
}

/** The scoring node upstream (Best-of-N, RFMI Sampler, Score by MI) whose "rivals" widget made these scores: the
 * node on the "scores" input, followed through nodes that pass scores on (RFMI Phrase MI). */
function scoringNode(node) {
  let current = node;
  for (let hops = 0; current && hops < 4; hops++) {
    const slot = current.inputs?.findIndex((input) => input.name === "scores") ?? -1;
    const source = slot >= 0 ? current.getInputNode?.(slot) : null;
    if (source && widgetOf(source, "rivals")) return source;
    current = source;
  }
  return null;
}

/** The rivals line: the rival prompts that scored these candidates, and the editor that rewrites them upstream. */
function rivalsPanel(node) {
  const state = node.__rfmiGallery;
  const panel = document.createElement("div");
  panel.className = "rfmi-rivals";
  panel.style.cssText = "font-size:11px;padding:0 4px 2px;white-space:nowrap;overflow:hidden;";
  const source = scoringNode(node);
  if (!state.editingRivals) {
    const list = document.createElement("span");
    list.className = "rfmi-rivals-list";
    list.textContent = state.rivals.length ? `rivals: ${state.rivals.join(" · ")}` : "rivals: none (scored as exact MI)";
    list.title = state.rivals.join("\n");
    list.style.cssText = "display:inline-block;max-width:calc(100% - 90px);overflow:hidden;text-overflow:ellipsis;" +
      "vertical-align:middle;";
    const edit = button("edit rivals", "edit the rival prompts (one a line); queue again to rescore", () => {
      state.editingRivals = true;
      render(node);
      fitNode(node);
    });
    edit.className = "rfmi-rivals-edit";
    panel.append(list, edit);
    return panel;
  }
  const area = document.createElement("textarea");
  area.className = "rfmi-rivals-text";
  area.value = String(widgetOf(source, "rivals")?.value || rivalsText(state.rivals));
  area.rows = 3;
  area.style.cssText = "width:100%;box-sizing:border-box;font:11px monospace;resize:none;";
  area.addEventListener("keydown", (event) => event.stopPropagation()); // typing is not a pick key
  const message = document.createElement("span");
  message.className = "rfmi-rivals-message";
  message.textContent = source ? `writes ${source.title ?? source.type}'s rivals` : "no scoring node with rivals upstream";
  const apply = button("apply", "write these rivals into the scoring node (queue again to rescore)", () => {
    const widget = widgetOf(source, "rivals");
    if (!widget) return;
    const text = rivalsText(parseRivals(area.value));
    widget.value = text;
    widget.callback?.(text, app.canvas, source);
    state.editingRivals = false;
    render(node);
    fitNode(node);
    app.graph?.setDirtyCanvas?.(true, true);
  });
  apply.className = "rfmi-rivals-apply";
  apply.disabled = !source;
  const cancel = button("cancel", "keep the rivals as they are", () => {
    state.editingRivals = false;
    render(node);
    fitNode(node);
  });
  panel.style.whiteSpace = "normal";
  panel.append(area, message, apply, cancel);
  return panel;
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

/** The image a thumbnail shows now: a hovered phrase's heatmap, else the MI heatmap (hovered or toggled), else the
 * image itself. */
function shownImage(node, item) {
  const state = node.__rfmiGallery;
  const phrase = state.hoverPhrase?.candidate === item.candidate ? item.bars[state.hoverPhrase.index]?.heatmap : null;
  if (phrase) return imageUrl(phrase);
  const heat = item.heatmap ? imageUrl(item.heatmap) : null;
  return (state.showHeat || state.hover === item.candidate) && heat ? heat : imageUrl(item.image);
}

function phraseBar(node, item, bar, img) {
  const row = document.createElement("div");
  row.className = "rfmi-phrase-bar";
  Object.assign(row.dataset, { phrase: bar.phrase, index: String(bar.index), mi: bar.text, weakest: String(bar.weakest),
    fraction: String(bar.fraction) });
  row.title = `${bar.phrase}: i(x; p | y∖p) = ${bar.text} nats${bar.weakest ? " (the weakest phrase)" : ""}` +
    (bar.heatmap ? "; hover: where this phrase shaped the image" : "");
  row.style.cssText = `position:relative;height:${BAR_ROW - 2}px;margin-top:2px;background:#333;border-radius:2px;` +
    `overflow:hidden;${bar.weakest ? `outline:1px solid ${WEAKEST_COLOUR};` : ""}`;
  const fill = document.createElement("div");
  fill.className = "rfmi-phrase-fill";
  fill.style.cssText = `position:absolute;left:0;top:0;bottom:0;width:${(100 * bar.fraction).toFixed(1)}%;` +
    `background:${bar.weakest ? WEAKEST_COLOUR : BAR_COLOUR};opacity:${bar.negative ? 0.45 : 0.9};`;
  const label = document.createElement("span");
  label.textContent = `${bar.weakest ? "▼ " : ""}${bar.phrase} ${bar.text}`;
  label.style.cssText = "position:absolute;left:2px;right:2px;top:0;font:9px/10px sans-serif;color:#fff;" +
    "white-space:nowrap;overflow:hidden;text-overflow:ellipsis;pointer-events:none;";
  row.append(fill, label);
  row.addEventListener("pointerenter", () => {
    node.__rfmiGallery.hoverPhrase = { candidate: item.candidate, index: bar.index };
    img.src = shownImage(node, item);
  });
  row.addEventListener("pointerleave", () => {
    if (node.__rfmiGallery.hoverPhrase?.candidate === item.candidate) node.__rfmiGallery.hoverPhrase = null;
    img.src = shownImage(node, item);
  });
  return row;
}

function card(node, item) {
  const el = document.createElement("div");
  el.className = "rfmi-card";
  Object.assign(el.dataset, {
    candidate: String(item.candidate), rank: String(item.rank), mi: item.text, seed: String(item.seed ?? ""),
    se: Number.isFinite(item.se) ? String(item.se) : "", margins: (item.margins ?? []).join(","),
    picked: String(item.pickOrder !== null), chosen: String(item.chosen),
  });
  const border = item.pickOrder !== null ? `3px solid ${GOLD}` : item.chosen ? `2px dashed ${GOLD}` : "1px solid #555";
  el.style.cssText = `position:relative;border:${border};border-radius:4px;overflow:hidden;` +
    "cursor:pointer;box-sizing:border-box;background:#111;";
  const margins = (item.margins ?? []).map((m, i) => `\n  vs ${node.__rfmiGallery.rivals[i] ?? `rival ${i + 1}`}: ${m.toFixed(3)}`);
  el.title = `candidate c${item.candidate} (seed ${item.seed}): ${scoreLabel(node.__rfmiGallery.score)} ${item.scored} ` +
    `nats, rank ${item.rank + 1}` + margins.join("") +
    (item.key ? `; key ${item.key}` : "") + "\nclick to pick / unpick; hover for the MI heatmap";
  const thumb = document.createElement("div");
  thumb.className = "rfmi-thumb";
  thumb.style.cssText = "position:relative;aspect-ratio:1;overflow:hidden;";
  const img = document.createElement("img");
  img.src = shownImage(node, item);
  img.alt = `candidate ${item.candidate}`;
  img.draggable = false;
  img.style.cssText = "width:100%;height:100%;object-fit:contain;image-rendering:pixelated;display:block;";
  thumb.append(img);
  thumb.append(badge(item.scored, "left:2px;bottom:2px;"));
  thumb.append(badge(item.key ? `${item.key}` : `#${item.rank + 1}`, "left:2px;top:2px;opacity:0.85;")); // rank = key
  thumb.append(badge(`c${item.candidate}`, "right:2px;bottom:2px;opacity:0.7;")); // the number the picks widget holds
  if (item.pickOrder !== null) thumb.append(badge(`✓${item.pickOrder}`, `right:2px;top:2px;background:${GOLD};color:#000;`));
  el.append(thumb);
  if (item.bars.length) {
    const bars = document.createElement("div");
    bars.className = "rfmi-phrase-bars";
    bars.style.cssText = `height:${barsHeight(node) - 2}px;padding:0 2px;box-sizing:border-box;`;
    bars.append(...item.bars.map((bar) => phraseBar(node, item, bar, img)));
    el.append(bars);
  }
  el.addEventListener("pointerenter", () => {
    node.__rfmiGallery.hover = item.candidate; // kept across re-renders (a key press re-renders under the pointer)
    img.src = shownImage(node, item);
  });
  el.addEventListener("pointerleave", () => {
    if (node.__rfmiGallery.hover === item.candidate) node.__rfmiGallery.hover = null;
    img.src = shownImage(node, item);
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
  const view = galleryView(state.entries, String(widgetOf(node, "picks")?.value ?? ""), kOf(node), state.phrases);
  state.view = view;
  const header = document.createElement("div");
  header.className = "rfmi-gallery-header";
  header.style.cssText = `display:flex;align-items:center;height:${HEADER - 4}px;gap:4px;white-space:nowrap;overflow:hidden;`;
  const status = document.createElement("span");
  status.className = "rfmi-gallery-status";
  status.style.cssText = "flex:1;overflow:hidden;text-overflow:ellipsis;";
  const label = scoreLabel(state.score);
  status.textContent = `${view.items.length} by ${label} (nats) · ` +
    (view.error ? "picks refused (see below)" : view.usingDefault ? `output: top ${view.chosen.length} by ${label}` : `picked: ${view.picks.map((c) => `c${c}`).join(", ")}`);
  status.dataset.score = state.score ?? "";
  const heatButton = button(state.showHeat ? "images" : "heatmaps", "show the MI heatmap on every thumbnail (or the images)",
    () => { state.showHeat = !state.showHeat; render(node); });
  heatButton.className = "rfmi-heat-toggle";
  const reset = button("reset to top-k", "clear the picks: the node outputs its top k by MI", () => setPicks(node, resetPicks()));
  reset.className = "rfmi-reset";
  reset.disabled = view.usingDefault;
  header.append(status, heatButton, reset);
  const parts = [header];
  if (hasRivals(node)) parts.push(rivalsPanel(node));
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
  grid.append(...view.items.map((item) => card(node, item)));
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
  const state = { element, entries: [], phrases: [], score: null, rivals: [], editingRivals: false, showHeat: false,
    view: null, hover: null, hoverPhrase: null };
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
  state.phrases = Array.isArray(message?.rfmi_phrases) ? message.rfmi_phrases : [];
  state.score = Array.isArray(message?.rfmi_score) ? message.rfmi_score[0] : null;
  state.rivals = Array.isArray(message?.rfmi_rivals) ? message.rfmi_rivals : [];
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
