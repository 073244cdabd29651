// What both RFMI DOM widgets (rfmi_mi_display.js, rfmi_gallery.js) do to a node: run extra code after one of its
// LiteGraph methods without replacing it, and grow the node to fit a widget whose content changed. No DOM widget here.
import { app } from "../../scripts/app.js";

/**
 * Chains ``extra(self, ...args)`` after ``owner[method]`` (a node type's prototype, or one widget): the original runs
 * first and its result is returned; an error in ``extra`` is logged (``[RFMI] could not <what>``) and never breaks
 * the node. The new method carries ``what`` as its ``rfmi`` property.
 */
export function after(owner, method, what, extra) {
  const original = owner[method];
  const chained = function (...args) {
    const result = original?.apply(this, args);
    try {
      extra(this, ...args);
    } catch (error) {
      console.error(`[RFMI] could not ${what}`, error);
    }
    return result;
  };
  chained.rfmi = what; // what the pack added here: tests read it to know the extension is in place
  owner[method] = chained;
}

/** Grows the node (never shrinks it) to the size its widgets now ask for, and redraws the canvas. */
export function fitNode(node) {
  const size = node.computeSize?.();
  if (size) node.setSize?.([Math.max(node.size[0], size[0]), Math.max(node.size[1], size[1])]);
  node.setDirtyCanvas?.(true, true);
  app.graph?.setDirtyCanvas?.(true, true);
}
