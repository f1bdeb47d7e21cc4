"""Hostile answer files: every value normalised and checked when the file is read, so a dry
run refuses exactly what the real run would, and nothing can hang, recurse or overflow."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.hostile.builders import linux_root
from tests.hostile.conftest import assert_refused, run_reseal


def _targets(tmp_path: Path, count: int = 2) -> list[Path]:
    return [linux_root(tmp_path / f"m{n}", ssh=False) for n in range(1, count + 1)]


def _answer(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "answer.yaml"
    path.write_text(text)
    return path


def _batch_dry_run(tmp_path: Path, text: str, state_env: dict[str, str], *words: str) -> None:
    answer = _answer(tmp_path, text)
    run = run_reseal(["batch", answer, "--dry-run"], env=state_env, timeout=30)
    assert_refused(run, *words)
    assert run.seconds < 10


@pytest.mark.parametrize("depth", [3000, 5000])
@pytest.mark.parametrize("style", ["flow-list", "flow-map", "block"])
def test_deep_yaml_is_refused(tmp_path: Path, state_env: dict[str, str], depth: int,
                              style: str) -> None:
    if style == "flow-list":
        text = "machines: " + "[" * depth + "]" * depth + "\n"
    elif style == "flow-map":
        text = "machines: " + "{a: " * depth + "1" + "}" * depth + "\n"
    else:
        text = "machines:\n" + "- " * depth + "x\n"  # block lists nested on one line
    _batch_dry_run(tmp_path, text, state_env, "nested deeper")


def test_huge_seed_is_refused_everywhere(tmp_path: Path, state_env: dict[str, str]) -> None:
    digits = "7" * 5000
    m1, _m2 = _targets(tmp_path)
    _batch_dry_run(tmp_path, f"defaults: {{seed: {digits}}}\nmachines:\n  - {{hostname: a, "
                   f"target: {m1}}}\n", state_env, "defaults.seed")
    _batch_dry_run(tmp_path, f"machines:\n  - {{hostname: a, target: {m1}, seed: {digits}}}\n",
                   state_env, "seed")
    (tmp_path / "machines.csv").write_text(f"hostname,target,seed\na,{m1},{digits}\n")
    _batch_dry_run(tmp_path, "machines_csv: machines.csv\n", state_env, "seed")
    run = run_reseal(["generalize", m1, "--dry-run", "--seed", digits], env=state_env)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "not a seed" in run.stderr


def test_seed_above_64_bits_is_refused(tmp_path: Path, state_env: dict[str, str]) -> None:
    m1, _m2 = _targets(tmp_path)
    _batch_dry_run(tmp_path, f"machines:\n  - {{hostname: a, target: {m1}, seed: {2**64}}}\n",
                   state_env, "at most")


def _fifo_without_writer(path: Path) -> None:
    os.mkfifo(path)


def test_machine_table_on_a_fifo_does_not_hang(tmp_path: Path, state_env: dict[str, str]) -> None:
    _fifo_without_writer(tmp_path / "machines.csv")
    _batch_dry_run(tmp_path, "machines_csv: machines.csv\n", state_env, "FIFO")


def test_answer_file_on_a_fifo_does_not_hang(tmp_path: Path, state_env: dict[str, str]) -> None:
    fifo = tmp_path / "answer.yaml"
    _fifo_without_writer(fifo)
    run = run_reseal(["batch", fifo, "--dry-run"], env=state_env, timeout=30)
    assert_refused(run, "FIFO")


def test_one_sid_spelled_two_ways_is_a_duplicate(tmp_path: Path, state_env: dict[str, str]
                                                 ) -> None:
    m1, m2 = _targets(tmp_path)
    _batch_dry_run(tmp_path, "os: windows\nmachines:\n"
                   f"  - {{name: a, target: {m1}, machine_sid: S-1-5-21-1-2-3}}\n"
                   f"  - {{name: b, target: {m2}, machine_sid: S-1-5-21-01-02-03}}\n",
                   state_env, "duplicate machine_sid")


@pytest.mark.parametrize("how", ["symlink", "dotdot", "hardlink"])
def test_one_target_named_two_ways_is_a_duplicate(tmp_path: Path, state_env: dict[str, str],
                                                  how: str) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(b"\0" * 4096)
    other = tmp_path / "other-name.img"
    if how == "symlink":
        other.symlink_to(image)
    elif how == "hardlink":
        os.link(image, other)
    else:
        (tmp_path / "sub").mkdir()
        other = tmp_path / "sub" / ".." / "disk.img"
    _batch_dry_run(tmp_path, "machines:\n"
                   f"  - {{hostname: a, target: {image}}}\n"
                   f"  - {{hostname: b, target: '{other}'}}\n",
                   state_env, "duplicate target")


def test_rsa_bits_out_of_range_is_refused_by_the_dry_run(tmp_path: Path,
                                                         state_env: dict[str, str]) -> None:
    m1, _m2 = _targets(tmp_path)
    text = (f"machines:\n  - {{hostname: a, target: {m1}}}\noperations:\n  options:\n"
            "    linux-ssh-hostkeys: {rsa_bits: 1000000}\n")
    _batch_dry_run(tmp_path, text, state_env, "rsa_bits")
    run = run_reseal(["generalize", m1, "--answer-file", tmp_path / "answer.yaml", "--dry-run"],
                     env=state_env)
    assert_refused(run, "rsa_bits")


def test_batch_output_that_is_a_file_is_refused(tmp_path: Path, state_env: dict[str, str]
                                                ) -> None:
    master = linux_root(tmp_path / "master", ssh=False)
    (tmp_path / "out").write_text("not a directory\n")
    _batch_dry_run(tmp_path, "defaults: {hostname: 'n{n}'}\ncount: 2\n"
                   f"batch: {{master: {master}, output: out}}\n", state_env, "batch.output")


@pytest.mark.parametrize("mac", ["ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:fb", "00:00:00:00:00:00",
                                 "33-33-00-00-00-01"])
def test_group_and_zero_macs_are_refused(tmp_path: Path, state_env: dict[str, str],
                                         mac: str) -> None:
    m1, _m2 = _targets(tmp_path)
    _batch_dry_run(tmp_path, f"machines:\n  - {{hostname: a, target: {m1}, mac: '{mac}'}}\n",
                   state_env, "mac", mac)


@pytest.mark.parametrize("mac", ["ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:fb", "00:00:00:00:00:00"])
def test_group_and_zero_new_mac_option_is_refused(tmp_path: Path, state_env: dict[str, str],
                                                  mac: str) -> None:
    m1, _m2 = _targets(tmp_path)
    text = (f"machines:\n  - {{hostname: a, target: {m1}}}\noperations:\n  options:\n"
            f"    linux-net-bindings: {{new_mac: '{mac}'}}\n")
    answer = _answer(tmp_path, text)
    run = run_reseal(["generalize", m1, "--answer-file", answer, "--dry-run"], env=state_env)
    assert_refused(run, mac)
