"""The fast part of the fuzz campaign (scripts/campaigns/fuzz.py): the inputs it found that
once broke reseal, minimised, and a short run of fresh mutated hives, answer files and
unattend.xml files under the same limits (1 GiB, 10 s per case)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scripts.campaigns.fuzz import BAD_OUTCOMES, replay, run_campaign

REGRESSIONS = Path(__file__).parent / "fuzz-regressions"
INPUTS = sorted(p for p in REGRESSIONS.glob("*/*") if p.suffix in (".hive", ".yaml", ".xml"))


def test_there_are_regression_inputs() -> None:
    assert {p.parent.name for p in INPUTS} == {"hive", "answer", "unattend"}


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_found_input_gets_a_clear_answer(path: Path) -> None:
    outcome = replay([path])[str(path)]
    expected = json.loads(path.with_suffix(".json").read_text())
    assert outcome.outcome == expected["outcome"], outcome.detail
    assert expected["expect"] in outcome.detail
    assert outcome.seconds < expected.get("max_seconds", 10)


def test_short_campaign_finds_nothing(tmp_path: Path) -> None:
    summary = run_campaign({"hive": 400, "answer": 150, "unattend": 150}, tmp_path, seed=99)
    assert sum(summary.cases.values()) == 700
    bad = {k: n for k, n in summary.outcomes.items() if k.split()[1] in BAD_OUTCOMES}
    assert bad == {}, list(summary.findings.values())
    # the mutations reach past the first checks: some hives open and are walked
    assert summary.outcomes["hive ok"] > 50 and summary.outcomes["hive error"] > 50
