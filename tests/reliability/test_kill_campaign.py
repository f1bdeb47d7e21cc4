"""The fast part of the kill campaign (scripts/campaigns/kill.py): a few SIGKILL points in a
Linux qcow2 run, a Windows raw run and a two-machine batch, each checked as the long campaign
checks them (nothing left attached, every file old or new, hives readable by reseal,
python-registry and hivex, undo with the partial journal gives back every original byte)."""

from __future__ import annotations

from pathlib import Path

from scripts.campaigns.kill import run_campaign, summarize

from reseal.samples.builders import SampleImage

from .conftest import which_or_skip


def test_kill_points_survive(linux_gpt: SampleImage, linux_qcow2: SampleImage,
                             windows_gpt: SampleImage, windows_qcow2: SampleImage,
                             tmp_path: Path) -> None:
    which_or_skip("hivexml")
    samples = {s.path.name: s.path for s in (linux_gpt, linux_qcow2, windows_gpt, windows_qcow2)}
    results = run_campaign(samples, tmp_path, points=5,
                           scenarios=["linux-qcow2", "windows-raw", "batch"], seed=12,
                           reference_runs=2)
    summary = summarize(results)
    assert summary["points"] == 5
    assert summary["survived"] == 5, summary["failures"]


def test_the_checks_can_fail() -> None:
    """The campaign's file comparison flags what it must: a file neither old nor new, a key
    a complete run keeps but the killed one lost, an unreadable key; and counts litter."""
    from scripts.campaigns.kill import classify

    before = {"p2:/etc/hostname": "old", "p2:/etc/ssh/ssh_host_ed25519_key": "k0",
              "p2:/etc/hosts": "h0"}
    references = [{"p2:/etc/hostname": "new", "p2:/etc/ssh/ssh_host_ed25519_key": "k1",
                   "p2:/etc/hosts": "h1"},
                  {"p2:/etc/hostname": "new", "p2:/etc/ssh/ssh_host_ed25519_key": "k2",
                   "p2:/etc/hosts": "h1"}]
    good = {"p2:/etc/hostname": "new", "p2:/etc/ssh/ssh_host_ed25519_key": "k3",
            "p2:/etc/hosts": "h0", "p2:/etc/.reseal-tmp-abc": "x"}
    assert classify(before, good, references, {}, {"p2:/etc/ssh/ssh_host_ed25519_key": True}
                    ) == ([], 1)
    bad = {"p2:/etc/hostname": "half", "p2:/etc/hosts": "h1"}
    wrong, litter = classify(before, bad, references, {}, {})
    assert litter == 0
    assert wrong == ["p2:/etc/hostname: neither old nor new",
                     "p2:/etc/ssh/ssh_host_ed25519_key: missing (a complete run keeps it)"]
    unreadable = dict(good, **{"p2:/etc/ssh/ssh_host_ed25519_key": "k9"})
    assert classify(before, unreadable, references, {},
                    {"p2:/etc/ssh/ssh_host_ed25519_key": False})[0] == [
        "p2:/etc/ssh/ssh_host_ed25519_key: not a readable SSH key"]
