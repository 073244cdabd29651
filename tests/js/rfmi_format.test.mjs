// node --test tests/js/   (node >= 20.19 or >= 22: web/*.js carry ES-module syntax without a package.json "type";
// older nodes need --experimental-detect-module). No packages needed.
import { test } from "node:test";
import assert from "node:assert/strict";

import { formatMiLines, formatMiList, formatNats, rankDescending } from "../../web/rfmi_format.js";

test("formatNats: 3 decimals, no negative zero, non-finite values visible", () => {
  assert.equal(formatNats(1.23456), "1.235");
  assert.equal(formatNats(2), "2.000");
  assert.equal(formatNats(-0.5), "-0.500");
  assert.equal(formatNats(-0.0004), "0.000");
  assert.equal(formatNats(-0), "0.000");
  assert.equal(formatNats(NaN), "NaN");
  assert.equal(formatNats(Infinity), "∞");
  assert.equal(formatNats(-Infinity), "−∞");
  assert.equal(formatNats(null), "—");
  assert.equal(formatNats("1.0"), "—");
  assert.equal(formatNats(1.23456, 1), "1.2");
});

test("rankDescending: highest first, stable on ties, NaN last", () => {
  assert.deepEqual(rankDescending([1, 3, 2]), [1, 2, 0]);
  assert.deepEqual(rankDescending([2, 5, 2, 5]), [1, 3, 0, 2]);
  assert.deepEqual(rankDescending([NaN, 1, -Infinity, 0]), [1, 3, 2, 0]);
  assert.deepEqual(rankDescending([]), []);
});

test("sampler / Score by MI: one row per image, in image order", () => {
  const { rows, ranked, seedsMapped } = formatMiList([0.1234, 2.5, -1]);
  assert.equal(ranked, false);
  assert.equal(seedsMapped, false);
  assert.deepEqual(rows.map((r) => [r.index, r.text, r.best, r.seed]), [
    [0, "0.123", false, null],
    [1, "2.500", false, null],
    [2, "-1.000", false, null],
  ]);
  assert.deepEqual(formatMiLines([0.1234, 2.5]), ["image 1: 0.123 nats", "image 2: 2.500 nats"]);
});

test("Best-of-N: sorted descending, the kept seeds marked and every candidate's seed recovered", () => {
  // candidates 0..4 at seeds 100..104; top 2 are candidate 3 (seed 103) then candidate 1 (seed 101)
  const values = [0.5, 2.0, 1.0, 3.0, -0.25];
  const { rows, ranked, seedsMapped } = formatMiList(values, [103, 101]);
  assert.equal(ranked, true);
  assert.equal(seedsMapped, true);
  assert.deepEqual(rows.map((r) => [r.rank, r.index, r.seed, r.text, r.best]), [
    [0, 3, 103, "3.000", true],
    [1, 1, 101, "2.000", true],
    [2, 2, 102, "1.000", false],
    [3, 0, 100, "0.500", false],
    [4, 4, 104, "-0.250", false],
  ]);
  assert.deepEqual(formatMiLines(values, [103, 101]).slice(0, 3), [
    "★ #1: 3.000 nats  seed 103",
    "★ #2: 2.000 nats  seed 101",
    "  #3: 1.000 nats  seed 102",
  ]);
});

test("Best-of-N: seeds that do not fit 'base + j' are shown on the kept rows only", () => {
  const { rows, seedsMapped } = formatMiList([1, 2, 3], [7, 9]);
  assert.equal(seedsMapped, false);
  assert.deepEqual(rows.map((r) => [r.index, r.seed, r.best]), [[2, 7, true], [1, 9, true], [0, null, false]]);
});

test("Best-of-N: seeds past 2^53 are not used for arithmetic", () => {
  const big = 2 ** 60;
  const { rows, seedsMapped } = formatMiList([1, 2], [big]);
  assert.equal(seedsMapped, false);
  assert.deepEqual(rows.map((r) => [r.index, r.seed, r.best]), [[1, big, true], [0, null, false]]);
});

test("Best-of-N over a prompt list: the concatenated runs are ranked per prompt when n is known", () => {
  // two prompts, n = 3, k = 1: run 0 best is candidate 2 (seed 12), run 1 best is candidate 0 (seed 10)
  const values = [0.1, 0.2, 0.9, 5.0, 1.0, 2.0];
  const { rows, seedsMapped } = formatMiList(values, [12, 10], { groupSize: 3 });
  assert.equal(seedsMapped, true);
  assert.deepEqual(rows.map((r) => [r.group, r.rank, r.index, r.seed, r.best]), [
    [0, 0, 2, 12, true], [0, 1, 1, 11, false], [0, 2, 0, 10, false],
    [1, 0, 0, 10, true], [1, 1, 2, 12, false], [1, 2, 1, 11, false],
  ]);
  assert.match(formatMiLines(values, [12, 10], { groupSize: 3 })[3], /^★ #1 \(prompt 2\): 5\.000 nats  seed 10$/);
  // a groupSize that does not tile the values: one group
  assert.equal(new Set(formatMiList(values, [12, 10], { groupSize: 4 }).rows.map((r) => r.group)).size, 1);
});

test("ties keep candidate order, as the node's stable top-k does", () => {
  const { rows, seedsMapped } = formatMiList([1, 1, 1], [0], {});
  assert.deepEqual(rows.map((r) => [r.index, r.seed, r.best]), [[0, 0, true], [1, 1, false], [2, 2, false]]);
  assert.equal(seedsMapped, true);
});

test("empty or malformed input gives no rows instead of throwing", () => {
  assert.deepEqual(formatMiList([]).rows, []);
  assert.deepEqual(formatMiList(undefined).rows, []);
  assert.deepEqual(formatMiList(null, [1]).rows, []);
  assert.deepEqual(formatMiLines([NaN]), ["image 1: NaN nats"]);
});
