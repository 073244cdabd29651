// Pure logic of the Rank and Pick gallery (web/rfmi_gallery.js): ordering, pick state, keys, reset. No DOM, no
// ComfyUI import, so node's own test runner checks it (tests/js/rfmi_gallery.test.mjs).
//
// The node's ui message (nodes/rank_and_pick.py):
//   rfmi_gallery: one entry per candidate, in candidate order: {candidate (1-based), seed, mi (nats), image, heatmap}
//                 where image/heatmap are /view references {filename, subfolder, type} (heatmap null without a map);
//                 with phrase MI also phrase_mi (nats, one per phrase) and phrase_heatmaps (a reference or null each).
//   rfmi_chosen:  the candidates the node output, in order; rfmi_picked: [whether they were the artist's picks].
//   rfmi_phrases: the prompt's phrases, in the order of phrase_mi ([] without phrase MI).
//   rfmi_score:   [the score the candidates are ranked by: pmi, contrast, posterior, rfmi, ...]; each entry then has
//                 se (its standard error, or null) and margins (log p(x|y) − log p(x|y') per rival, nats).
//   rfmi_rivals:  the rival prompts of a contrast or posterior ([] otherwise).
// The picks are the node's "picks" STRING widget: candidate numbers, comma-separated, in pick order ("" = top k).
import { formatNats, rankDescending } from "./rfmi_format.js";

export const MAX_KEY = 9;

/**
 * A picks text read exactly as rfmi_core/picks.py's parse_picks reads it (tests/data/picks_cases.json drives both):
 * {picks: candidate numbers (1-based) in pick order, repeats dropped, error: null}, or, when any entry is not a whole
 * number in 1..n, {picks: [], error: the message the node would refuse the text with}. Not text: no picks, no error.
 */
export function readPicks(text, n) {
  if (typeof text !== "string") return { picks: [], error: null };
  const picks = [];
  for (const part of text.trim().split(/[\s,;]+/).filter((p) => p !== "")) {
    if (!/^[0-9]+$/.test(part) || Number(part) < 1 || Number(part) > n) {
      const shown = text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
      return {
        picks: [],
        error: `picks '${shown}': '${part}' is not a candidate number between 1 and ${n}; give the numbers shown on ` +
          "the thumbnails, comma-separated, or leave it empty for the top-k by MI",
      };
    }
    if (!picks.includes(Number(part))) picks.push(Number(part));
  }
  return { picks, error: null };
}

/** Candidate numbers (1-based) of a picks text, in pick order; none when readPicks refuses the text. */
export function parsePicks(text, n) {
  return readPicks(text, n).picks;
}

/** The widget value of a pick list: [3, 1] → "3,1". */
export function formatPicks(picks) {
  return picks.join(",");
}

/** Picks with ``candidate`` toggled: removed if picked, else appended (it becomes the last pick). */
export function togglePick(picks, candidate) {
  return picks.includes(candidate) ? picks.filter((c) => c !== candidate) : [...picks, candidate];
}

/** The gallery's entries sorted by MI, highest first (ties by candidate order, NaN last), each with its rank (0-based). */
export function rankEntries(entries) {
  const list = Array.isArray(entries) ? entries : [];
  return rankDescending(list.map((e) => e?.mi)).map((i, rank) => ({ ...list[i], rank }));
}

/** What the node outputs for these picks: the picks in pick order, else the top k by MI (ranked: from rankEntries). */
export function chosenCandidates(ranked, picks, k) {
  if (picks.length > 0) return [...picks];
  return ranked.slice(0, Math.max(1, Math.min(k, ranked.length))).map((e) => e.candidate);
}

/** The candidate a digit key selects: "1".."9" → the 1st..9th thumbnail in MI order; null for any other key. */
export function candidateForKey(key, ranked) {
  if (typeof key !== "string" || !/^[1-9]$/.test(key)) return null;
  const entry = ranked[Number(key) - 1];
  return entry ? entry.candidate : null;
}

/** "Reset to top-k": no picks, so the node outputs its top k by MI. */
export function resetPicks() {
  return [];
}

/** The index of the smallest finite value (the first of equal ones), or null when none is finite. */
export function weakestIndex(values) {
  let weakest = null;
  (Array.isArray(values) ? values : []).forEach((v, i) => {
    if (Number.isFinite(v) && (weakest === null || v < values[weakest])) weakest = i;
  });
  return weakest;
}

/** The largest |phrase MI| over the gallery (the length of a full bar); 1 when there is none. */
export function phraseScale(entries) {
  const values = (Array.isArray(entries) ? entries : []).flatMap((e) => e?.phrase_mi ?? []).filter(Number.isFinite);
  const largest = Math.max(0, ...values.map(Math.abs));
  return largest > 0 ? largest : 1;
}

/**
 * One entry's phrase bars, in phrase order: {index, phrase, mi, text (3 decimals), fraction (|mi| / scale, 0..1),
 * negative, weakest (the smallest phrase MI: phrase-min's phrase), heatmap (reference or null)}; [] without phrase MI.
 */
export function phraseBars(entry, phrases, scale) {
  const values = Array.isArray(entry?.phrase_mi) ? entry.phrase_mi : [];
  const weakest = weakestIndex(values);
  return values.map((mi, index) => ({
    index,
    phrase: phrases?.[index] ?? `phrase ${index + 1}`,
    mi,
    text: formatNats(mi),
    fraction: Number.isFinite(mi) && scale > 0 ? Math.min(1, Math.abs(mi) / scale) : 0,
    negative: mi < 0,
    weakest: index === weakest,
    heatmap: entry.phrase_heatmaps?.[index] ?? null,
  }));
}

/**
 * Everything the gallery shows for one message and the current picks text: the entries in MI order, each with
 * {candidate, seed, mi, text (MI, 3 decimals), rank, key ("1".."9" or ""), pickOrder (1-based or null), chosen,
 * bars (``phraseBars``, on one scale for the whole gallery)}; ``error`` is the refusal of a picks text the node would
 * refuse (then no picks are shown), else null.
 */
export function galleryView(entries, picksText, k, phrases = []) {
  const ranked = rankEntries(entries);
  const { picks, error } = readPicks(picksText, ranked.length === 0 ? 0 : Math.max(...ranked.map((e) => e.candidate)));
  const chosen = chosenCandidates(ranked, picks, k);
  const scale = phraseScale(ranked);
  const items = ranked.map((e) => ({
    ...e,
    text: formatNats(e.mi),
    scored: formatWithError(e.mi, e.se),
    key: e.rank < MAX_KEY ? String(e.rank + 1) : "",
    pickOrder: picks.includes(e.candidate) ? picks.indexOf(e.candidate) + 1 : null,
    chosen: chosen.includes(e.candidate),
    bars: phraseBars(e, phrases, scale),
  }));
  return { items, picks, chosen, usingDefault: picks.length === 0, error };
}

/** The /view query of an image reference (the frontend prefixes its API base). */
export function viewPath(ref) {
  if (!ref || typeof ref.filename !== "string") return null;
  const query = new URLSearchParams({ filename: ref.filename, subfolder: ref.subfolder ?? "", type: ref.type ?? "temp" });
  return `/view?${query.toString()}`;
}

/** What each score is called in the gallery's header (the node's names, rfmi_core/ranking.py). */
export const SCORE_LABELS = {
  pmi: "exact MI", contrast: "contrast vs rivals", posterior: "posterior vs rivals",
  "phrase-pmi": "weakest phrase, exact MI", rfmi: "the paper's RFMI",
  mitune: "the paper's mitune", squared: "squared MI", "phrase-min": "weakest phrase MI", "phrase-mean": "mean phrase MI",
};

export function scoreLabel(score) {
  return SCORE_LABELS[score] ?? (typeof score === "string" && score ? score : "MI");
}

/** A score with its standard error: "1.234 ± 0.056"; just the score when the error is missing or not finite. */
export function formatWithError(value, se) {
  const text = formatNats(value);
  return Number.isFinite(se) ? `${text} ± ${formatNats(se)}` : text;
}

/** Rival prompts from an edited text: one a line, trimmed, blank lines and repeats dropped. */
export function parseRivals(text) {
  if (typeof text !== "string") return [];
  return [...new Set(text.split("\n").map((line) => line.split(/\s+/).filter(Boolean).join(" ")).filter(Boolean))];
}

/** The rivals as the scoring node's "rivals" widget holds them: one a line. */
export function rivalsText(rivals) {
  return (Array.isArray(rivals) ? rivals : []).join("\n");
}
