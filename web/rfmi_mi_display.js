// Shows the point-wise MI that an RFMI node reports (ui "rfmi_mi", nats; Best-of-N also "rfmi_best") on the node.
//
// A DOM widget (node.addDOMWidget), never a canvas-drawn one: canvas widgets do not render under the Vue node renderer.
// The widget is created on the first execution and its content replaced on every later one. It is not serialized:
// neither in the workflow's widgets_values (which would shift the saved values) nor in the prompt.
import { app } from "../../scripts/app.js";
import { formatMiList } from "./rfmi_format.js";
import { after, fitNode } from "./rfmi_node_ui.js";

const WIDGET_NAME = "rfmi_mi";
const ROW_HEIGHT = 18; // px, every row (the cells have no padding; see cell())
const MAX_ROWS_SHOWN = 10; // more rows scroll
const MARGIN = 4; // the DOM widget's margin: the frontend makes the element (height - 2 * margin) tall
const PADDING = 2;

function widgetValue(node, name) {
  const value = node.widgets?.find((w) => w.name === name)?.value;
  return typeof value === "number" ? value : null;
}

function cell(tag, text, style = "") {
  const el = document.createElement(tag);
  el.textContent = text;
  el.style.cssText = `padding:0;height:${ROW_HEIGHT}px;line-height:${ROW_HEIGHT}px;white-space:nowrap;${style}`;
  return el;
}

/** The table of one message: image order for the sampler and Score by MI, ranked for Best-of-N. */
function renderRows(element, values, bestSeeds, groupSize) {
  const { rows, ranked, seedsMapped } = formatMiList(values, bestSeeds, { groupSize });
  const groups = new Set(rows.map((r) => r.group)).size;
  const table = document.createElement("table");
  table.style.cssText = "border-collapse:collapse;width:100%;";
  const head = document.createElement("tr");
  const columns = ranked
    ? ["", "rank", ...(groups > 1 ? ["prompt"] : []), "candidate", "seed", "MI (nats)"]
    : ["image", "MI (nats)"];
  for (const name of columns) head.append(cell("th", name, "text-align:left;font-weight:600;opacity:0.75;padding:0 6px 0 0;"));
  table.append(head);
  for (const r of rows) {
    const tr = document.createElement("tr");
    tr.dataset.best = String(r.best);
    if (r.best) tr.style.cssText = "color:#f0c040;font-weight:600;";
    const num = "text-align:right;padding:0 6px 0 0;font-variant-numeric:tabular-nums;";
    if (ranked) {
      tr.append(cell("td", r.best ? "★" : "", "padding:0 4px 0 0;"));
      tr.append(cell("td", String(r.rank + 1), num));
      if (groups > 1) tr.append(cell("td", String(r.group + 1), num));
      tr.append(cell("td", String(r.index + 1), num));
      tr.append(cell("td", r.seed === null ? "" : String(r.seed), num));
    } else {
      tr.append(cell("td", String(r.index + 1), num));
    }
    tr.append(cell("td", r.text, num));
    table.append(tr);
  }
  const parts = [table];
  if (ranked && !seedsMapped) {
    parts.push(cell("div", "seeds shown only for the kept candidates (★)", "opacity:0.6;font-size:10px;"));
  }
  element.replaceChildren(...parts);
  element.dataset.rows = String(rows.length);
  return rows.length;
}

function showMi(node, message) {
  const values = message?.rfmi_mi;
  if (!Array.isArray(values)) return;
  const bestSeeds = Array.isArray(message.rfmi_best) ? message.rfmi_best : null;

  let widget = node.widgets?.find((w) => w.name === WIDGET_NAME);
  if (!widget) {
    const element = document.createElement("div");
    element.className = "rfmi-mi-display";
    element.style.cssText =
      `font:11px/${ROW_HEIGHT}px monospace;overflow-y:auto;padding:${PADDING}px 4px;box-sizing:border-box;` +
      "background:var(--comfy-input-bg,#222);color:var(--input-text,#ddd);border-radius:4px;";
    const height = () => {
      // header + rows (+ the footnote line), capped; then the padding and the widget's margins
      const lines = 1 + Math.min(Number(element.dataset.rows || 1), MAX_ROWS_SHOWN) + (element.childElementCount > 1 ? 1 : 0);
      return lines * ROW_HEIGHT + 2 * PADDING + 2 * MARGIN + 2;
    };
    widget = node.addDOMWidget(WIDGET_NAME, "rfmi_mi_display", element, {
      serialize: false, // not in the API prompt
      hideOnZoom: false,
      margin: MARGIN,
      getValue: () => undefined,
      setValue: () => {},
      getMinHeight: height,
      getMaxHeight: height,
    });
    widget.serialize = false; // not in the workflow's widgets_values either
  }
  renderRows(widget.element, values, bestSeeds, widgetValue(node, "n"));

  fitNode(node);
}

app.registerExtension({
  name: "RFMI.MIDisplay",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!nodeData?.name?.startsWith("RFMI")) return;
    after(nodeType.prototype, "onExecuted", "show the MI values", showMi);
  },
});
