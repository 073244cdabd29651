// Pure formatting of the RFMI nodes' `rfmi_mi` / `rfmi_best` ui messages: no DOM, no ComfyUI import, so node's own
// test runner can check it (tests/js/rfmi_format.test.mjs).
//
// The messages, as the nodes send them (nodes/*.py, execute()):
//   rfmi_mi:   one point-wise MI per image, in nats. For Best-of-N: all N candidates, candidate j sampled at seed + j.
//   rfmi_best: Best-of-N only: the seeds of the k kept candidates, highest MI first (a stable descending sort).
// A node fed a list (Prompt list -> Best-of-N) runs once per prompt; ComfyUI concatenates the messages of the runs,
// so the values then hold P groups of N candidates and the seeds P groups of k.

export const MI_DECIMALS = 3;

/** One MI value as text: 3 decimals, nats implied. Non-finite values stay visible as such. */
export function formatNats(value, decimals = MI_DECIMALS) {
  if (typeof value !== "number") return "—";
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "∞";
  if (value === -Infinity) return "−∞";
  const text = value.toFixed(decimals);
  // -0.0004 rounds to "-0.000": show it as 0
  return /^-0\.?0*$/.test(text) ? text.slice(1) : text;
}

/** Indices sorted by value, highest first; equal values keep index order; NaN (and non-numbers) go last. */
export function rankDescending(values) {
  const key = (v) => (typeof v === "number" && !Number.isNaN(v) ? v : -Infinity);
  const finiteFirst = (v) => (typeof v === "number" && !Number.isNaN(v) ? 0 : 1);
  return values
    .map((_, i) => i)
    .sort((a, b) => finiteFirst(values[a]) - finiteFirst(values[b]) || key(values[b]) - key(values[a]) || a - b);
}

/** How the values split into runs: groupSize (the node's n) when it tiles both lists evenly, else one group. */
function groupsOf(count, bestCount, groupSize) {
  if (Number.isInteger(groupSize) && groupSize > 0 && count % groupSize === 0) {
    const groups = count / groupSize;
    if (groups >= 1 && bestCount % groups === 0) return { groups, size: groupSize, bestPerGroup: bestCount / groups };
  }
  return { groups: 1, size: count, bestPerGroup: bestCount };
}

/**
 * Rows to display for one `rfmi_mi` message.
 *
 * Without bestSeeds (RFMI Sampler, Score by MI): one row per image, in image order.
 * With bestSeeds (Best-of-N): each run's candidates sorted by MI, highest first; the first k of each run are the kept
 * ones and carry their seeds from bestSeeds. When those seeds all agree with "candidate j = base seed + j" (they do,
 * unless seeds are past 2^53 where JSON numbers lose digits, or MIs tie), every candidate gets its seed.
 *
 * Returns {rows: [{index, group, rank, seed, value, text, best}], ranked, seedsMapped}; index is the candidate's
 * position within its run (0-based), rank its place by MI within the run (0 = highest), seed null when unknown.
 */
export function formatMiList(values, bestSeeds = null, { groupSize = null, decimals = MI_DECIMALS } = {}) {
  const list = Array.isArray(values) ? values : [];
  if (!Array.isArray(bestSeeds) || bestSeeds.length === 0) {
    const rows = list.map((value, index) => ({
      index, group: 0, rank: null, seed: null, value, text: formatNats(value, decimals), best: false,
    }));
    return { rows, ranked: false, seedsMapped: false };
  }
  const { groups, size, bestPerGroup } = groupsOf(list.length, bestSeeds.length, groupSize);
  const rows = [];
  let seedsMapped = true;
  for (let g = 0; g < groups; g++) {
    const part = list.slice(g * size, (g + 1) * size);
    const seeds = bestSeeds.slice(g * bestPerGroup, (g + 1) * bestPerGroup);
    const order = rankDescending(part);
    const bases = seeds.map((seed, r) => (Number.isSafeInteger(seed) && r < order.length ? seed - order[r] : NaN));
    const base = bases.length > 0 && bases.every((b) => b === bases[0] && Number.isSafeInteger(b)) && bases[0] >= 0
      ? bases[0] : null;
    if (base === null) seedsMapped = false;
    order.forEach((index, rank) => {
      const best = rank < seeds.length;
      let seed = null;
      if (base !== null) seed = base + index;
      else if (best) seed = seeds[rank];
      rows.push({ index, group: g, rank, seed, value: part[index], text: formatNats(part[index], decimals), best });
    });
  }
  return { rows, ranked: true, seedsMapped };
}

/** The rows as plain text lines (what the widget shows, and what a copy to the clipboard gives). */
export function formatMiLines(values, bestSeeds = null, options = {}) {
  const { rows, ranked } = formatMiList(values, bestSeeds, options);
  const groups = new Set(rows.map((r) => r.group)).size;
  return rows.map((r) => {
    const where = ranked
      ? `${r.best ? "★" : " "} #${r.rank + 1}${groups > 1 ? ` (prompt ${r.group + 1})` : ""}`
      : `image ${r.index + 1}`;
    const seed = r.seed !== null && r.seed !== undefined ? `  seed ${r.seed}` : "";
    return `${where}: ${r.text} nats${seed}`;
  });
}
