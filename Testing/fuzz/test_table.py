"""docs/robustness.md is the list of cases the tests use, rendered; every case is tried by the test it names."""

from __future__ import annotations

from pathlib import Path

from robustness_cases import CASES, DOC, render

TESTING = Path(__file__).resolve().parents[1]


def test_the_document_is_the_list_rendered():
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/robustness.md differs from Testing/helpers/robustness_cases.py; "
        "run: .venv/bin/python Testing/helpers/robustness_cases.py"
    )


def test_every_case_is_used_by_the_test_it_names():
    for key, case in CASES.items():
        test = TESTING.parent / case.test
        assert test.is_file(), case.test
        assert f'"{key}"' in test.read_text(encoding="utf-8"), f"{case.test} does not try case {key!r}"
