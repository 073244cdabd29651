// node --test tests/js/   — the pure logic of the Rank and Pick gallery (web/rfmi_gallery_logic.js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import {
  candidateForKey, chosenCandidates, formatPicks, galleryView, parsePicks, phraseBars, phraseScale, rankEntries, readPicks,
  resetPicks, togglePick, viewPath, weakestIndex,
} from "../../web/rfmi_gallery_logic.js";

// five candidates as the node sends them (candidate order), MI in nats
const ENTRIES = [
  { candidate: 1, seed: 10, mi: 0.5, image: { filename: "a.png", subfolder: "", type: "temp" }, heatmap: null },
  { candidate: 2, seed: 11, mi: 2.25 },
  { candidate: 3, seed: 12, mi: -0.125 },
  { candidate: 4, seed: 13, mi: 2.25 },
  { candidate: 5, seed: 14, mi: NaN },
];

test("rankEntries: highest MI first, ties in candidate order, NaN last, with ranks", () => {
  const ranked = rankEntries(ENTRIES);
  assert.deepEqual(ranked.map((e) => e.candidate), [2, 4, 1, 3, 5]);
  assert.deepEqual(ranked.map((e) => e.rank), [0, 1, 2, 3, 4]);
  assert.equal(ranked[0].seed, 11);
  assert.deepEqual(rankEntries(undefined), []);
});

// the table rfmi_core/picks.py's tests read too: the gallery reads and refuses a picks text as the node does
const PICK_CASES = JSON.parse(readFileSync(new URL("../data/picks_cases.json", import.meta.url), "utf8")).cases;

test("readPicks: every text of the shared table is read, or refused with the node's message, as Python does", () => {
  assert.ok(PICK_CASES.some((c) => c.refused) && PICK_CASES.some((c) => c.picks?.length > 1));
  for (const c of PICK_CASES) {
    const read = readPicks(c.text, c.n);
    if (c.picks) {
      assert.deepEqual(read, { picks: c.picks, error: null }, JSON.stringify(c));
      assert.deepEqual(parsePicks(c.text, c.n), c.picks);
    } else {
      assert.deepEqual(read.picks, [], JSON.stringify(c));
      assert.ok(read.error.includes(c.refused), `${JSON.stringify(c)} → ${read.error}`);
      assert.ok(read.error.endsWith("leave it empty for the top-k by MI"));
    }
  }
  assert.deepEqual(readPicks(null, 5), { picks: [], error: null });
  assert.equal(formatPicks([3, 1]), "3,1");
  assert.deepEqual(parsePicks(formatPicks([5, 2, 4]), 5), [5, 2, 4]);
});

test("togglePick: a click appends, a second click removes and the others keep their order", () => {
  let picks = [];
  picks = togglePick(picks, 3);
  picks = togglePick(picks, 1);
  picks = togglePick(picks, 5);
  assert.deepEqual(picks, [3, 1, 5]);
  picks = togglePick(picks, 1);
  assert.deepEqual(picks, [3, 5]);
  assert.deepEqual(togglePick(picks, 1), [3, 5, 1]);
});

test("chosenCandidates: the picks when any, else the top k by MI (k clamped to 1..N)", () => {
  const ranked = rankEntries(ENTRIES);
  assert.deepEqual(chosenCandidates(ranked, [], 2), [2, 4]);
  assert.deepEqual(chosenCandidates(ranked, [], 99), [2, 4, 1, 3, 5]);
  assert.deepEqual(chosenCandidates(ranked, [], 0), [2]);
  assert.deepEqual(chosenCandidates(ranked, [3, 1], 2), [3, 1]);
  assert.deepEqual(chosenCandidates(ranked, resetPicks(), 1), [2]);
});

test("candidateForKey: digits 1-9 select the thumbnails in MI order; other keys nothing", () => {
  const ranked = rankEntries(ENTRIES);
  assert.equal(candidateForKey("1", ranked), 2);
  assert.equal(candidateForKey("3", ranked), 1);
  assert.equal(candidateForKey("5", ranked), 5);
  assert.equal(candidateForKey("6", ranked), null); // only five thumbnails
  for (const key of ["0", "a", "Enter", "10", "", undefined]) assert.equal(candidateForKey(key, ranked), null);
  const many = rankEntries(Array.from({ length: 12 }, (_, i) => ({ candidate: i + 1, mi: -i })));
  assert.equal(candidateForKey("9", many), 9);
});

test("galleryView: MI order, texts, keys, pick order and what the node will output", () => {
  const view = galleryView(ENTRIES, "3,2", 2);
  assert.deepEqual(view.items.map((i) => i.candidate), [2, 4, 1, 3, 5]);
  assert.deepEqual(view.items.map((i) => i.text), ["2.250", "2.250", "0.500", "-0.125", "NaN"]);
  assert.deepEqual(view.items.map((i) => i.key), ["1", "2", "3", "4", "5"]);
  assert.deepEqual(view.items.map((i) => i.pickOrder), [2, null, null, 1, null]);
  assert.deepEqual(view.items.map((i) => i.chosen), [true, false, false, true, false]);
  assert.deepEqual(view.chosen, [3, 2]);
  assert.equal(view.usingDefault, false);

  const fallback = galleryView(ENTRIES, "", 2);
  assert.equal(fallback.usingDefault, true);
  assert.deepEqual(fallback.chosen, [2, 4]);
  assert.deepEqual(fallback.items.filter((i) => i.chosen).map((i) => i.candidate), [2, 4]);
  assert.ok(fallback.items.every((i) => i.pickOrder === null));
  assert.equal(view.error, null);
  assert.deepEqual(galleryView([], "1", 1).items, []);

  // a text the node would refuse: the gallery says so (no pick shown as if it counted)
  const refused = galleryView(ENTRIES, "3,9", 2);
  assert.match(refused.error, /'9' is not a candidate number between 1 and 5/);
  assert.deepEqual(refused.picks, []);
  assert.ok(refused.items.every((i) => i.pickOrder === null));
});

test("viewPath: a /view query of the node's image reference", () => {
  assert.equal(viewPath({ filename: "rfmi gallery_00001_.png", subfolder: "", type: "temp" }),
    "/view?filename=rfmi+gallery_00001_.png&subfolder=&type=temp");
  assert.equal(viewPath(null), null);
});

// three candidates with phrase MI, as Rank and Pick sends them for scores with phrase MI
const PHRASE_ENTRIES = [
  { candidate: 1, mi: 0.5, phrase_mi: [2.0, 0.5, 4.0], phrase_heatmaps: [{ filename: "p1_a.png" }, null, { filename: "p3_a.png" }] },
  { candidate: 2, mi: -1.0, phrase_mi: [-1.0, 3.0, NaN] },
  { candidate: 3, mi: 1.5, phrase_mi: [1.5, 1.5, 2.0] },
];
const PHRASES = ["a red square", "to the left of", "a blue disk"];

test("weakestIndex: the smallest finite value, the first of equal ones, null when none is finite", () => {
  assert.equal(weakestIndex([2.0, 0.5, 4.0]), 1);
  assert.equal(weakestIndex([1.5, 1.5, 2.0]), 0);
  assert.equal(weakestIndex([NaN, 3.0, -1.0]), 2);
  assert.equal(weakestIndex([NaN]), null);
  assert.equal(weakestIndex(undefined), null);
});

test("phraseBars: one bar per phrase in phrase order, on the gallery's scale, the weakest marked", () => {
  const scale = phraseScale(PHRASE_ENTRIES);
  assert.equal(scale, 4.0);
  const bars = phraseBars(PHRASE_ENTRIES[0], PHRASES, scale);
  assert.deepEqual(bars.map((b) => b.phrase), PHRASES);
  assert.deepEqual(bars.map((b) => b.text), ["2.000", "0.500", "4.000"]);
  assert.deepEqual(bars.map((b) => b.fraction), [0.5, 0.125, 1]);
  assert.deepEqual(bars.map((b) => b.weakest), [false, true, false]);
  assert.deepEqual(bars.map((b) => b.heatmap?.filename ?? null), ["p1_a.png", null, "p3_a.png"]);
  const negative = phraseBars(PHRASE_ENTRIES[1], PHRASES, scale);
  assert.deepEqual(negative.map((b) => [b.negative, b.weakest, b.fraction]), [[true, true, 0.25], [false, false, 0.75], [false, false, 0]]);
  assert.deepEqual(phraseBars({ candidate: 4, mi: 1 }, PHRASES, scale), []);
  assert.equal(phraseScale([{ mi: 1 }]), 1);
});

test("galleryView: every item carries its phrase bars, the items in MI order", () => {
  const view = galleryView(PHRASE_ENTRIES, "", 1, PHRASES);
  assert.deepEqual(view.items.map((i) => i.candidate), [3, 1, 2]);
  assert.deepEqual(view.items.map((i) => i.bars.findIndex((b) => b.weakest)), [0, 1, 0]);
  assert.deepEqual(view.items[0].bars.map((b) => b.phrase), PHRASES);
  assert.deepEqual(galleryView(ENTRIES, "", 1).items.map((i) => i.bars), [[], [], [], [], []]);
});

test("scores carry their name, standard error and rivals: labels, '±' text, rival lists read as the node reads them", async () => {
  const { formatWithError, parseRivals, rivalsText, scoreLabel } = await import("../../web/rfmi_gallery_logic.js");
  assert.equal(scoreLabel("pmi"), "exact MI");
  assert.equal(scoreLabel("rfmi"), "the paper's RFMI");
  assert.equal(scoreLabel("phrase-pmi"), "weakest phrase, exact MI");
  assert.equal(scoreLabel(undefined), "MI");
  assert.equal(formatWithError(1.23456, 0.0567), "1.235 ± 0.057");
  assert.equal(formatWithError(1.23456, null), "1.235");
  assert.equal(formatWithError(1.23456, NaN), "1.235");
  // as rfmi_core/counterfactuals.py's rival_lines reads typed rivals: one a line, spaces folded, blanks and repeats out
  assert.deepEqual(parseRivals("  a blue  book and a red vase \n\na green book\na blue book and a red vase"),
    ["a blue book and a red vase", "a green book"]);
  assert.equal(rivalsText(["a", "b"]), "a\nb");
  assert.deepEqual(parseRivals(rivalsText(["x y", "z"])), ["x y", "z"]);
  const view = galleryView([{ candidate: 1, mi: 2.5, se: 0.25, margins: [1.5] }, { candidate: 2, mi: 3, se: null }], "", 1);
  assert.deepEqual(view.items.map((i) => i.scored), ["3.000", "2.500 ± 0.250"]);
});
