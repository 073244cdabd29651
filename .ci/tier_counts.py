"""Reads a pytest JUnit XML report and prints one line: '<label>: N passed, N failed, N skipped', then one line per
skipped test with its reason. Exit status 1 when a test failed or errored, or when --no-skips is given and any test
was skipped (CI's rule for the ComfyUI tier: an archive that is there must run every test). Standard library only."""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET


def counts(report: str) -> tuple[int, int, int, list[str]]:
    """(passed, failed, skipped, skip lines) over every test case of the report; errors count as failures."""
    passed = failed = skipped = 0
    skips = []
    for case in ET.parse(report).getroot().iter("testcase"):
        outcome = {child.tag for child in case}
        if outcome & {"failure", "error"}:
            failed += 1
        elif "skipped" in outcome:
            skipped += 1
            reason = case.find("skipped").get("message", "")
            skips.append(f"  skipped {case.get('classname', '')}::{case.get('name', '')}: {reason}")
        else:
            passed += 1
    return passed, failed, skipped, skips


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("report", help="pytest --junitxml file")
    parser.add_argument("label", help="what ran, e.g. 'ComfyUI 0.33.0'")
    parser.add_argument("--no-skips", action="store_true", help="fail when any test was skipped")
    args = parser.parse_args()
    try:
        passed, failed, skipped, skips = counts(args.report)
    except (OSError, ET.ParseError) as error:
        print(f"{args.label}: no test report ({error}): the tier did not run")
        return 1
    print(f"{args.label}: {passed} passed, {failed} failed, {skipped} skipped")
    for line in skips:
        print(line)
    if passed + failed + skipped == 0:
        print(f"{args.label}: ran no test")
        return 1
    return int(failed > 0 or (args.no_skips and skipped > 0))


if __name__ == "__main__":
    sys.exit(main())
