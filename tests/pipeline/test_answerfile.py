"""Answer files: the good ones become plans, every bad one is refused with its exact line."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from reseal.errors import BadInput
from reseal.image.model import OSFamily
from reseal.operations import all_operations
from reseal.operations.base import Operation, OperationContext
from reseal.pipeline.answerfields import AnswerFileError
from reseal.pipeline.answerfile import hostname_problem, load_answer_file, settings_for_machine
from reseal.pipeline.yamlsafe import MAX_FILE_BYTES

BADFILES = Path(__file__).parent / "badfiles"


def _noop(ctx: OperationContext) -> None:
    return None


@dataclass
class HostnameOptions:
    fqdn: str | None = None
    update_hosts: bool = True


@dataclass
class SidOptions:
    mode: Literal["full", "registry-only"] = "full"
    skip_profiles: list[str] = field(default_factory=list)
    passes: int = 1

    def __post_init__(self) -> None:
        if self.passes > 3:
            raise ValueError("passes must be 1 to 3")


# A fixed catalog, so that the expected lines do not change when operations are added.
CATALOG = [
    Operation("linux-hostname", "set the hostname", OSFamily.LINUX, True, _noop, HostnameOptions),
    Operation("linux-machine-id", "reset machine-id", OSFamily.LINUX, True, _noop),
    Operation("windows-machine-sid", "new machine SID", OSFamily.WINDOWS, True, _noop, SidOptions),
    Operation("windows-leftovers", "remove logs", OSFamily.WINDOWS, False, _noop),
]


def _expected(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("# expect: "):
            return line[len("# expect: "):]
    raise AssertionError(f"{path.name} has no '# expect:' line")


BAD = sorted(BADFILES.glob("*.yaml"))


def test_there_are_at_least_a_dozen_bad_files() -> None:
    assert len(BAD) >= 12


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_file_is_refused_with_its_exact_first_error(path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(BADFILES)
    with pytest.raises(BadInput) as caught:
        load_answer_file(path.name, operations=CATALOG, display=path.name)
    lines = str(caught.value).splitlines()
    assert lines[0] == _expected(path)


def _write(tmp_path: Path, text: str, name: str = "answer.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_pattern_defaults_and_seed_per_machine(tmp_path: Path) -> None:
    path = _write(tmp_path, """
os: linux
defaults:
  hostname: "lab-{n:03}"
  seed: 1000
start: 7
count: 3
operations:
  enable: [windows-leftovers]
  disable: [linux-machine-id]
  options:
    linux-hostname: {fqdn: lab.example.com}
    windows-machine-sid: {mode: registry-only, skip_profiles: [Public]}
""")
    answer = load_answer_file(path, operations=CATALOG)
    assert [p.machine for p in answer.plans] == ["lab-007", "lab-008", "lab-009"]
    assert [p.request.seed for p in answer.plans] == [1007, 1008, 1009]
    plan = answer.plans[0]
    assert plan.enable == ["windows-leftovers"] and plan.disable == ["linux-machine-id"]
    assert plan.options["linux-hostname"] == HostnameOptions(fqdn="lab.example.com")
    assert plan.options["windows-machine-sid"] == SidOptions("registry-only", ["Public"])


def test_csv_table_with_per_machine_options_and_identities(tmp_path: Path) -> None:
    (tmp_path / "machines.csv").write_text(
        "hostname,mac,machine_sid,ou,linux-hostname.fqdn,windows-machine-sid.passes\n"
        "PC-01,52:54:00:AA:00:01,S-1-5-21-1-2-3,\"OU=Lab,DC=corp,DC=example\",pc-01.corp,2\n"
        "PC-02,52-54-00-aa-00-02,random,,,\n"
    )
    path = _write(tmp_path, """
os: windows
defaults:
  domain:
    name: corp.example
    ou: OU=Desktops,DC=corp,DC=example
    account: CORP\\joiner
    password_env: JOIN_PASSWORD
  firstboot:
    registered_owner: Lab
machines_csv: machines.csv
operations:
  options:
    windows-machine-sid: {mode: registry-only}
""")
    answer = load_answer_file(path, operations=CATALOG)
    first, second = answer.plans
    assert first.request.machine_sid == "S-1-5-21-1-2-3"
    assert first.mac == "52:54:00:aa:00:01" and second.mac == "52:54:00:aa:00:02"
    assert first.domain is not None and first.domain.ou == "OU=Lab,DC=corp,DC=example"
    assert second.domain is not None and second.domain.ou == "OU=Desktops,DC=corp,DC=example"
    assert first.domain.password is not None
    assert first.domain.password.describe() == "password_env:JOIN_PASSWORD"
    assert first.options["windows-machine-sid"] == SidOptions("registry-only", [], 2)
    assert second.options["windows-machine-sid"] == SidOptions("registry-only", [], 1)
    assert first.options["linux-hostname"] == HostnameOptions(fqdn="pc-01.corp")
    assert "linux-hostname" not in second.options
    assert first.firstboot is not None and first.firstboot.registered_owner == "Lab"


def test_every_error_is_listed_not_just_the_first(tmp_path: Path) -> None:
    path = _write(tmp_path, """
os: windows
defaults:
  hostname: "PC-{n}"
  machine_id: xyz
machines:
  - hostname: PC-01
    mac: not-a-mac
  - hostnam: PC-02
operations:
  options:
    windows-machine-sid: {passes: 9}
""")
    with pytest.raises(AnswerFileError) as caught:
        load_answer_file(path, operations=CATALOG, display="a.yaml")
    assert caught.value.errors == [
        "a.yaml:5:15: defaults.machine_id: 'xyz' is not a machine-id: 32 lowercase hex digits, "
        "not all zero",
        "a.yaml:9:5: machines[1].hostnam: unknown key (did you mean hostname?); known keys: "
        "name, hostname, mac, machine_sid, machine_id, seed, ou, target, drivers, options",
    ]
    # The value errors come once the structure is right.
    path.write_text(path.read_text().replace("machine_id: xyz", "seed: 1").replace(
        "hostnam:", "hostname:"))
    with pytest.raises(AnswerFileError) as caught:
        load_answer_file(path, operations=CATALOG, display="a.yaml")
    assert caught.value.errors == [
        "a.yaml:8:10: machines[0].mac: 'not-a-mac' is not a MAC address (like 52:54:00:12:34:56)",
        "a.yaml:12:5: operations.options.windows-machine-sid: passes must be 1 to 3",
    ]


def test_file_over_the_size_limit_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as handle:
        handle.truncate(100 * 1024 * 1024)  # sparse: 100 MB that a parser would choke on
    with pytest.raises(BadInput, match=rf"is 104857600 bytes, over the {MAX_FILE_BYTES} byte"):
        load_answer_file(path, operations=CATALOG)


def test_alias_count_limit(tmp_path: Path) -> None:
    refs = ", ".join(["*a"] * 300)
    path = _write(tmp_path, f"x: &a 1\ny: [{refs}]\n")
    with pytest.raises(BadInput, match=r"answer.yaml:2:\d+: \(yaml\): more than 200 aliases"):
        load_answer_file(path, operations=CATALOG, display="answer.yaml")


def test_empty_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"^e.yaml:1:1: \(top\): the answer file is empty"):
        load_answer_file(_write(tmp_path, "# nothing\n"), operations=CATALOG, display="e.yaml")
    with pytest.raises(BadInput, match=r"^e.yaml:1:1: \(top\): expected a mapping of settings"):
        load_answer_file(_write(tmp_path, "- a\n- b\n"), operations=CATALOG, display="e.yaml")


def test_naming_rules() -> None:
    assert hostname_problem("WORKSTATION-0001", "windows") is not None  # 16 chars
    assert hostname_problem("WORKSTATION-001", "windows") is None
    assert hostname_problem("12345", "windows") is not None
    assert hostname_problem("web.lab.example", "linux") is None
    assert hostname_problem("-web", "linux") is not None
    assert hostname_problem("a" * 64, "linux") is not None
    assert hostname_problem("a" * 63, "linux") is None


def test_machine_lookup_for_generalize(tmp_path: Path) -> None:
    if "linux-machine-id" not in {op.name for op in all_operations()}:
        pytest.skip("operation linux-machine-id is not available")
    path = _write(tmp_path, """
machines:
  - hostname: web-01
    machine_id: 0123456789abcdef0123456789abcdef
  - hostname: web-02
operations:
  options:
    linux-machine-id: {write_new: true}
""")
    settings = settings_for_machine(path, "WEB-01")
    assert settings.options["linux-machine-id"].write_new is True
    assert settings.machine == "web-01"
    assert settings.request.machine_id == "0123456789abcdef0123456789abcdef"
    with pytest.raises(BadInput, match=r"no machine 'web-3' \(did you mean web-0[12]\?\)"):
        settings_for_machine(path, "web-3")
    with pytest.raises(BadInput, match="has 2 machines; choose one with --machine"):
        settings_for_machine(path, None)


def test_paths_are_relative_to_the_answer_file(tmp_path: Path) -> None:
    (tmp_path / "drivers" / "net").mkdir(parents=True)
    (tmp_path / "master").mkdir()
    path = _write(tmp_path, """
defaults:
  hostname: "lab-{n}"
  drivers: [drivers/net]
count: 2
batch:
  master: master
  output: out
  mode: copy
""")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cwd = os.getcwd()
    os.chdir(elsewhere)
    try:
        answer = load_answer_file(path, operations=CATALOG)
    finally:
        os.chdir(cwd)
    plan = answer.plans[1]
    assert plan.drivers == [tmp_path / "drivers" / "net"]
    assert plan.clone is not None
    assert plan.clone.master == tmp_path / "master"
    assert plan.clone.path == tmp_path / "out" / "lab-2"
    shutil.rmtree(tmp_path / "drivers")
    with pytest.raises(BadInput, match=r"a.yaml:4:13: defaults.drivers\[0\]: .*no such driver"):
        load_answer_file(path, operations=CATALOG, display="a.yaml")


SHIPPED = sorted((Path(__file__).parents[2] / "answerfiles").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_answer_files_are_valid(path: Path) -> None:
    """The examples are valid; the only error allowed is a master image not built here."""
    try:
        answer = load_answer_file(path)
    except AnswerFileError as exc:
        assert all(": batch.master: " in line and "no such image" in line
                   for line in exc.errors), exc.errors
    else:
        assert answer.plans


def test_driver_sets_reach_the_driver_operation(tmp_path: Path) -> None:
    from reseal.pipeline.answerfile import settings_from_plan

    if "windows-drivers" not in {op.name for op in all_operations()}:
        pytest.skip("operation windows-drivers is not available")
    (tmp_path / "drivers").mkdir()
    path = _write(tmp_path, 'os: windows\ndefaults: {hostname: "PC-{n}", drivers: [drivers]}\n'
                            "count: 1\n")
    settings = settings_from_plan(load_answer_file(path).plans[0])
    assert "windows-drivers" in settings.enable
    assert settings.options["windows-drivers"].paths == [str(tmp_path / "drivers")]


def test_generalize_command_takes_one_machine_of_an_answer_file(tmp_path: Path) -> None:
    import subprocess
    import sys

    if "linux-hostname" not in {op.name for op in all_operations()}:
        pytest.skip("operation linux-hostname is not available")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").write_text("ID=debian\nVERSION_ID=\"12\"\n")
    (root / "etc/hostname").write_text("master\n")
    path = _write(tmp_path, "os: linux\nmachines:\n  - hostname: web-01\n  - hostname: web-02\n")
    result = subprocess.run(
        [sys.executable, "-m", "reseal", "generalize", str(root), "--answer-file", str(path),
         "--machine", "web-02", "--run-dir", str(tmp_path / "run"), "--operations",
         "linux-hostname"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (root / "etc/hostname").read_text() == "web-02\n"
