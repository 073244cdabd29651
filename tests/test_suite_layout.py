"""The test suite collects as one command: ``python -m pytest tests`` runs the core tier and, with COMFYUI_PATH set,
the ComfyUI tier in the same run. Pytest's default import mode imports each test file by its bare name (its folder
is put on sys.path), so two test files of one name in different folders stop the whole run at collection."""

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_no_two_test_modules_share_a_name():
    names = Counter(path.name for path in TESTS.rglob("*.py") if path.name != "conftest.py")
    assert [name for name, count in names.items() if count > 1] == []
    assert names["test_build_set.py"] == 1 and names["test_comfyui_build_set.py"] == 1
