#!/usr/bin/env python3
"""Fuzz campaign: mutated registry hives (and their logs), answer files and unattend.xml files
through the code that reads them, under a time and a memory cap.

    .venv/bin/python scripts/campaigns/fuzz.py --hives 10000 --answers 2500 --unattends 2500

Hives: seeds are the project's own (fixtures/hives) and, when ../shared is there, small real
hives (some dirty, with logs). Mutations: bit flips, truncation, cell sizes, cell offsets, key
and list counts, base block and bin headers (checksum fixed or not), value sizes, log headers
and log pages, splices; one to three per case. Each case goes through what `reseal hive check`,
`get`, `export` and `set` do (open with log replay, structural check, a walk reading every
key and value, a .reg export, a value set and a key created, written, read back and checked:
a valid input must give a valid output). Answer files and unattend.xml: line and character
edits, hostile values, YAML aliases and nesting, XML entities and nesting, encodings.

Every case runs in a worker process with a 1 GiB address-space cap and a 10 s alarm. An
outcome is `ok`, `error` (a ResealError with a message: the clear error asked for), or a
finding: `traceback` (any other exception), `hang`, `memory`, `crash` (the worker died), or
`writer` (a hive reseal wrote from a valid input does not pass its check). Findings are
minimised and written to OUT/findings/; `--regressions DIR` copies them there as files the
test suite replays (tests/reliability/fuzz-regressions), except those made from ../shared hives,
which stay out of the repository (make the same damage to a project hive instead).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import random
import re
import resource
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SHARED_HIVES = REPO.parent / "shared" / "fixtures" / "hives"
# small real hives of ../shared (read in place), some dirty with logs
SHARED_SEEDS = ("hivex/minimal", "hivex/special", "hivex/rlenvalue_test_hive",
                "python-registry/UNICODE_TESTS", "python-registry/REORGANIZED_VALUES_TESTS",
                "plaso/100_sub_keys.hiv", "regipy/SECURITY", "yarp/NewDirtyHive1/NewDirtyHive",
                "yarp/OldDirtyHive/OldDirtyHive", "dfir-artifact-museum/Win11-RathbunVM/SECURITY",
                "dfir-artifact-museum/Win10-RathbunVM/SAM")
MEMORY_CAP = 1 << 30
CASE_SECONDS = 10
BAD_OUTCOMES = ("traceback", "hang", "memory", "crash", "writer")
BASE = 4096


# ------------------------------------------------------------------------------ cases
@dataclass
class Case:
    kind: str  # "hive", "answer", "unattend"
    seed: str
    mutations: list[str]
    data: bytes
    logs: list[bytes] = field(default_factory=list)


@dataclass
class Outcome:
    outcome: str  # ok, error, traceback, hang, memory, crash, writer
    detail: str = ""
    signature: str = ""  # what identifies a finding: type and innermost reseal frame
    seconds: float = 0.0


# ------------------------------------------------------------------------------ seeds
def hive_seeds() -> dict[str, tuple[bytes, list[bytes]]]:
    """name -> (hive bytes, log bytes) of small hives: the project's, and real ones."""
    import lzma

    seeds: dict[str, tuple[bytes, list[bytes]]] = {}
    for path in sorted((REPO / "fixtures" / "hives").iterdir()):
        seeds[f"fixtures/{path.name}"] = (path.read_bytes(), [])
    for name in SHARED_SEEDS:
        path = SHARED_HIVES / name
        if not path.is_file():
            continue
        logs = []
        for suffix in (".LOG1", ".LOG2"):
            for candidate in (path.with_name(path.name + suffix),
                              path.with_name(path.name + suffix + ".xz")):
                if candidate.is_file() and candidate.stat().st_size:
                    raw = candidate.read_bytes()
                    logs.append(lzma.decompress(raw) if candidate.name.endswith(".xz") else raw)
                    break
        seeds[name] = (path.read_bytes(), logs)
    return seeds


def text_seeds(kind: str) -> dict[str, bytes]:
    directory = REPO / "answerfiles"
    pattern = "*.yaml" if kind == "answer" else "*.xml"
    return {p.name: p.read_bytes() for p in sorted(directory.glob(pattern))}


# ------------------------------------------------------------------------------ hive mutations
def _u32(data: bytearray, at: int, value: int) -> None:
    if 0 <= at <= len(data) - 4:
        struct.pack_into("<I", data, at, value & 0xFFFFFFFF)


def _cells(data: bytes) -> list[tuple[int, int]]:
    """(file offset, size) of the cells of the first bins, parsed leniently."""
    cells = []
    position = BASE
    while position + 32 <= len(data) and data[position:position + 4] == b"hbin":
        size = struct.unpack_from("<I", data, position + 8)[0]
        if size < 4096 or position + size > len(data):
            break
        cell = position + 32
        while cell + 4 <= position + size:
            raw = struct.unpack_from("<i", data, cell)[0]
            length = abs(raw)
            if length < 8 or cell + length > position + size:
                break
            cells.append((cell, length))
            cell += length
        position += size
        if len(cells) > 20000:
            break
    return cells


def _cells_with(data: bytes, signature: bytes) -> list[int]:
    return [c for c, _n in _cells(data) if data[c + 4:c + 6] == signature]


NASTY_NUMBERS = (0, 1, 2, 0x7F, 0xFF, 0x1000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE,
                 0xFFFFFFFF, 0x10000000, 0x20)


def _nasty(rng: random.Random, data: bytes) -> int:
    if rng.random() < 0.5:
        return rng.choice(NASTY_NUMBERS)
    if rng.random() < 0.5:
        return rng.randrange(0, max(len(data), 1))  # an offset that lands somewhere
    return rng.getrandbits(32)


def flip_bits(data: bytearray, rng: random.Random) -> str:
    count = rng.choice((1, 1, 2, 4, 8, 32))
    for _ in range(count):
        at = rng.randrange(len(data)) if rng.random() < 0.7 else rng.randrange(min(len(data),
                                                                                   BASE * 2))
        data[at] ^= 1 << rng.randrange(8)
    return f"flip {count} bits"


def truncate(data: bytearray, rng: random.Random) -> str:
    cut = rng.choice((rng.randrange(len(data)), BASE + rng.randrange(-8, 40), len(data) - 1,
                      BASE * 2 + rng.randrange(0, 64), 512))
    cut = max(0, min(cut, len(data) - 1))
    del data[cut:]
    return f"truncate at {cut}"


def cell_size(data: bytearray, rng: random.Random) -> str:
    cells = _cells(data)
    if not cells:
        return flip_bits(data, rng)
    at, _size = rng.choice(cells)
    value = rng.choice((0, 4, 8, -8, -4, 0x7FFFFFF8, -0x7FFFFFF8, -rng.randrange(8, 0x10000)))
    struct.pack_into("<i", data, at, value)
    return f"cell {at:#x} size {value}"


def cell_offset(data: bytearray, rng: random.Random) -> str:
    cells = _cells(data)
    if not cells:
        return flip_bits(data, rng)
    at, size = rng.choice(cells)
    field_at = at + 4 + 4 * rng.randrange(max(1, min(size, 0x50) // 4 - 1))
    value = _nasty(rng, data)
    _u32(data, field_at, value)
    return f"cell {at:#x} field {field_at - at} = {value:#x}"


NK_FIELDS = {"subkeys": 0x14, "subkey list": 0x1C, "values": 0x24, "value list": 0x28,
             "sk": 0x2C, "class": 0x30, "parent": 0x10, "name length": 0x48,
             "class length": 0x4A}


def key_fields(data: bytearray, rng: random.Random) -> str:
    keys = _cells_with(data, b"nk")
    if not keys:
        return flip_bits(data, rng)
    at = rng.choice(keys)
    name, offset = rng.choice(sorted(NK_FIELDS.items()))
    value = _nasty(rng, data)
    if name.endswith("length"):
        struct.pack_into("<H", data, at + 4 + offset, value & 0xFFFF)
    else:
        _u32(data, at + 4 + offset, value)
    return f"nk {at:#x} {name} = {value:#x}"


def list_count(data: bytearray, rng: random.Random) -> str:
    lists = [c for s in (b"lf", b"lh", b"li", b"ri") for c in _cells_with(data, s)]
    if not lists:
        return key_fields(data, rng)
    at = rng.choice(lists)
    value = rng.choice((0, 1, 0xFFFF, 0x7FFF, rng.randrange(0x10000)))
    struct.pack_into("<H", data, at + 6, value)
    if rng.random() < 0.3:  # and an element pointing somewhere
        _u32(data, at + 8 + 8 * rng.randrange(4), _nasty(rng, data))
    return f"list {at:#x} count {value}"


def value_fields(data: bytearray, rng: random.Random) -> str:
    values = _cells_with(data, b"vk")
    if not values:
        return cell_offset(data, rng)
    at = rng.choice(values)
    which = rng.choice(("data size", "data offset", "name length", "type"))
    offset = {"data size": 8, "data offset": 12, "name length": 6, "type": 16}[which]
    value = rng.choice((0x80000004, 0x80000000, 0x7FFFFFFF, 0x3FD8, 0x4000, 16345, 0xFFFFFFFF,
                        _nasty(rng, data)))
    if which == "name length":
        struct.pack_into("<H", data, at + offset, value & 0xFFFF)
    else:
        _u32(data, at + offset, value)
    return f"vk {at:#x} {which} = {value:#x}"


BASE_FIELDS = {"seq1": 4, "seq2": 8, "major": 0x14, "minor": 0x18, "type": 0x1C,
               "format": 0x20, "root": 0x24, "bins size": 0x28, "clustering": 0x2C}


def base_block(data: bytearray, rng: random.Random) -> str:
    name, offset = rng.choice(sorted(BASE_FIELDS.items()))
    value = _nasty(rng, data)
    _u32(data, offset, value)
    fixed = rng.random() < 0.6
    if fixed:
        fix_checksum(data)
    return f"base {name} = {value:#x}{' (checksum fixed)' if fixed else ''}"


def fix_checksum(data: bytearray) -> None:
    if len(data) >= 512:
        checksum = 0
        for (word,) in struct.iter_unpack("<I", bytes(data[:508])):
            checksum ^= word
        if checksum in (0, 0xFFFFFFFF):
            checksum = 1 if checksum == 0 else 0xFFFFFFFE
        struct.pack_into("<I", data, 508, checksum)


def bin_header(data: bytearray, rng: random.Random) -> str:
    bins = [p for p in range(BASE, len(data) - 32, 4096) if data[p:p + 4] == b"hbin"]
    if not bins:
        return flip_bits(data, rng)
    at = rng.choice(bins)
    which = rng.choice(("offset", "size", "signature"))
    if which == "signature":
        data[at:at + 4] = b"hbim"
    else:
        _u32(data, at + (4 if which == "offset" else 8),
             rng.choice((0, 0x1000, 0x2000, 0xFFFFF000, 0x7FFFFFFF, _nasty(rng, data))))
    return f"bin {at:#x} {which}"


def splice(data: bytearray, rng: random.Random) -> str:
    if len(data) < 64:
        return flip_bits(data, rng)
    length = rng.randrange(4, min(512, len(data) // 2))
    source = rng.randrange(0, len(data) - length)
    target = rng.randrange(BASE if len(data) > BASE + length else 0, len(data) - length)
    data[target:target + length] = data[source:source + length]
    return f"splice {length} bytes {source:#x} -> {target:#x}"


HIVE_MUTATORS: dict[str, Callable[[bytearray, random.Random], str]] = {
    "flip": flip_bits, "truncate": truncate, "cell size": cell_size, "cell offset": cell_offset,
    "key fields": key_fields, "list count": list_count, "value fields": value_fields,
    "base block": base_block, "bin header": bin_header, "splice": splice,
}
LOG_FIELDS = {"seq1": 4, "seq2": 8, "bins size": 0x28, "type": 0x1C}


def mutate_log(log: bytearray, rng: random.Random) -> str:
    choice = rng.random()
    if choice < 0.3 and len(log) >= 512:
        name, offset = rng.choice(sorted(LOG_FIELDS.items()))
        _u32(log, offset, _nasty(rng, log))
        if rng.random() < 0.6:
            fix_checksum(log)
        return f"log header {name}"
    if choice < 0.5 and len(log) > 520:
        del log[rng.randrange(512, len(log)):]
        return "log truncated"
    if choice < 0.75:
        entries = [m.start() for m in re.finditer(b"HvLE", bytes(log))]
        if entries:
            at = rng.choice(entries)
            field_at = at + rng.choice((4, 8, 12, 16, 20, 24, 28, 32, 36))
            _u32(log, field_at, _nasty(rng, log))
            return f"log entry {at:#x}+{field_at - at}"
    for _ in range(rng.choice((1, 4, 16))):
        log[rng.randrange(len(log))] ^= 1 << rng.randrange(8)
    return "log bits flipped"


def make_hive_case(seeds: dict[str, tuple[bytes, list[bytes]]], rng: random.Random) -> Case:
    name = rng.choice(sorted(seeds))
    data, logs = seeds[name]
    mutated = bytearray(data)
    mutated_logs = [bytearray(log) for log in logs]
    mutations = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        if mutated_logs and rng.random() < 0.35:
            index = rng.randrange(len(mutated_logs))
            mutations.append(f"LOG{index + 1}: {mutate_log(mutated_logs[index], rng)}")
        elif len(mutated) > 1:
            kind = rng.choice(sorted(HIVE_MUTATORS))
            mutations.append(HIVE_MUTATORS[kind](mutated, rng))
    return Case("hive", name, mutations, bytes(mutated), [bytes(log) for log in mutated_logs])


# ------------------------------------------------------------------------------ text mutations
NASTY_VALUES = ("", "~", "null", "-1", "0", "99999999999999999999999", "1e309", "[]", "{}",
                "0x10", "!!python/object/apply:os.system ['true']", "&a [*a]", "'", '"', "\\t",
                "\\u0000", "ü" * 300, "{n:999999}", "{n}", "LAB-{n:0999}", "{n:x}", "{}{}{}",
                "S-1-5-21-1-2-3", "S-1-5-21-4294967296-1-1", "../../../../etc/passwd",
                "/dev/zero", "/proc/self/mem", "random", "yes", "no", "on", ".inf", "-.inf",
                ".nan", "2001-01-01", "!!binary AAAA", "*undefined", "1000000000",
                "x" * 5000, "LAB 001", "lab_001", "a.b..c", "-lab", "ff:ff:ff:ff:ff:ff",
                "52:54:00:12:34", "00000000000000000000000000000000", '"a\\0b"', '"\\x00"',
                "/" + "d" * 300, "a/" * 2100)
YAML_BOMBS = (
    'a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n'
    'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n'
    'e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n'
    'g: [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n',
    "machines: " + "[" * 5000 + "]" * 5000 + "\n",
    "count: 100000000\ndefaults:\n  hostname: \"LAB-{n}\"\n",
    "count: 5000000\nstart: 4294967290\ndefaults:\n  hostname: \"L{n}\"\n",
    "machines:\n" + "".join(f"  - hostname: h{i}\n" for i in range(3000)),
    "defaults: !!python/object/apply:os.system [\"touch /tmp/reseal-fuzz-pwned\"]\n",
    "machines_csv: /dev/zero\n",
    "unattend: /dev/urandom\n",
    "? [a, b]\n: c\n",
    "a: 1\na: 2\n",
)
XML_BOMBS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;'
    '&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'
    '&lol2;&lol2;&lol2;&lol2;">]>\n<unattend>&lol3;</unattend>\n',
    '<?xml version="1.0"?>\n<!DOCTYPE u [<!ENTITY x SYSTEM "file:///etc/shadow">]>\n'
    '<unattend>&x;</unattend>\n',
    "<unattend>" + "<a>" * 100000 + "</a>" * 100000 + "</unattend>",
    '<unattend xmlns="urn:schemas-microsoft-com:unattend" ' + 'a="' + "x" * 200000 + '"/>',
    "\ufeff<unattend/>",
    "<?xml version='1.0' encoding='utf-16'?><unattend/>",
    "<unattend><settings pass='specialize'><component name='Microsoft-Windows-Shell-Setup'>"
    "<ComputerName>" + "A" * 70000 + "</ComputerName></component></settings></unattend>",
)


def mutate_text(kind: str, text: bytes, rng: random.Random) -> tuple[bytes, list[str]]:
    lines = text.decode("utf-8", "surrogateescape").split("\n")
    mutations = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        choice = rng.random()
        if choice < 0.08:
            bomb = rng.choice(YAML_BOMBS if kind == "answer" else XML_BOMBS)
            if rng.random() < 0.5:
                lines = bomb.split("\n")
            else:
                lines[rng.randrange(len(lines)):rng.randrange(len(lines))] = bomb.split("\n")
            mutations.append("bomb")
        elif choice < 0.2 and len(lines) > 1:
            del lines[rng.randrange(len(lines))]
            mutations.append("delete a line")
        elif choice < 0.3:
            at = rng.randrange(len(lines))
            lines.insert(at, lines[at])
            mutations.append("duplicate a line")
        elif choice < 0.55:
            at = rng.randrange(len(lines))
            value = rng.choice(NASTY_VALUES)
            if kind == "answer" and ":" in lines[at]:
                head = lines[at].split(":", 1)[0]
                lines[at] = f"{head}: {value}"
            elif kind == "unattend" and ">" in lines[at] and "</" in lines[at]:
                lines[at] = re.sub(r">[^<]*</", lambda _m, v=value: f">{v}</", lines[at],
                                   count=1)
            else:
                lines[at] += value
            mutations.append(f"value {value[:20]!r}")
        elif choice < 0.65:
            at = rng.randrange(len(lines))
            lines[at] = (" " * rng.choice((0, 1, 2, 4, 8))) + lines[at].lstrip()
            mutations.append("indentation")
        elif choice < 0.75:
            raw = bytearray("\n".join(lines).encode("utf-8", "surrogateescape"))
            for _ in range(rng.choice((1, 2, 8))):
                if raw:
                    raw[rng.randrange(len(raw))] = rng.randrange(256)
            lines = raw.decode("utf-8", "surrogateescape").split("\n")
            mutations.append("bytes")
        elif choice < 0.85:
            joined = "\n".join(lines)
            lines = joined[:rng.randrange(len(joined) + 1)].split("\n")
            mutations.append("truncate")
        else:
            a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[a], lines[b] = lines[b], lines[a]
            mutations.append("swap lines")
    return "\n".join(lines).encode("utf-8", "surrogateescape"), mutations


def make_text_case(kind: str, seeds: dict[str, bytes], rng: random.Random) -> Case:
    name = rng.choice(sorted(seeds))
    data, mutations = mutate_text(kind, seeds[name], rng)
    return Case(kind, name, mutations, data)


# ------------------------------------------------------------------------------ exercising
class Hang(BaseException):
    """The case ran past its time (a BaseException: no `except Exception` in reseal eats it)."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise Hang()


def limit_worker() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
    signal.signal(signal.SIGALRM, _on_alarm)


def exercise(case: Case, scratch: Path) -> Outcome:
    """Run one case; an outcome, never an exception."""
    signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
    try:
        if case.kind == "hive":
            return _exercise_hive(case)
        return _exercise_text(case, scratch)
    except Hang:
        return Outcome("hang", f"over {CASE_SECONDS} s", "hang")
    except MemoryError:
        return Outcome("memory", "over the 1 GiB cap", "memory")
    except Exception as exc:
        from reseal.errors import ResealError

        if isinstance(exc, ResealError) and str(exc).strip():
            return Outcome("error", str(exc).splitlines()[0][:300])
        return Outcome("traceback", traceback.format_exc()[-2000:], _signature(exc))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _signature(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    inner = [f for f in frames if "/reseal/" in f.filename] or frames
    where = f"{Path(inner[-1].filename).name}:{inner[-1].lineno}" if inner else "?"
    return f"{type(exc).__name__} at {where}"


def _exercise_hive(case: Case) -> Outcome:
    from reseal.registry import Hive, RegType
    from reseal.registry.check import check_hive
    from reseal.registry.regfile import export

    hive = Hive.from_bytes(case.data, case.logs or None, name="fuzz")  # log replay
    fault = check_hive(hive)  # hive check
    for key in hive.walk():  # hive get, every key and value
        _ = (key.name, key.path, key.class_name, key.last_written, key.security)
        for value in key.values():
            _ = (value.name, value.type, value.raw, value.data)
    export(hive)  # hive export
    key = hive.create_key("ResealFuzz\\Sub")  # hive set
    key.set_value("value", RegType.REG_SZ, "fuzz")
    hive.root.set_value("ResealFuzz", RegType.REG_DWORD, 7)
    written = hive.to_bytes()
    again = Hive.from_bytes(written, name="fuzz-written")
    after = check_hive(again)
    if fault is None and after is not None:
        return Outcome("writer", f"valid input, written hive faulty: {after}", f"writer: {after}")
    if again.key("ResealFuzz\\Sub") is None:
        return Outcome("writer", "the key set is not there when read back", "writer: lost key")
    return Outcome("ok", f"fault: {fault}" if fault else "")


def _exercise_text(case: Case, scratch: Path) -> Outcome:
    if case.kind == "answer":
        from reseal.pipeline.answerfile import load_answer_file

        path = scratch / "answer.yaml"
        path.write_bytes(case.data)
        load_answer_file(path)
    else:
        from reseal.pipeline.unattend import import_unattend

        path = scratch / "unattend.xml"
        path.write_bytes(case.data)
        import_unattend(path)
    return Outcome("ok")


# ------------------------------------------------------------------------------ workers
def _worker(connection: Connection, scratch: str) -> None:
    limit_worker()
    directory = Path(scratch)
    for name in ("unattend-example.xml", "windows-domain.csv"):  # what the seeds refer to
        with open(REPO / "answerfiles" / name, "rb") as src:
            (directory / name).write_bytes(src.read())
    while True:
        try:
            case = connection.recv()
        except EOFError:
            return
        started = time.monotonic()
        result = exercise(case, directory)
        result.seconds = time.monotonic() - started
        connection.send(result)


class Worker:
    """One worker process; started again when a case kills or wedges it."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.case: Case | None = None  # the case it is running
        self.since = 0.0
        self._start()

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.parent, child = context.Pipe()
        self.process = context.Process(target=_worker, args=(child, str(self.scratch)),
                                       daemon=True)
        self.process.start()
        child.close()

    def submit(self, case: Case) -> None:
        self.case, self.since = case, time.monotonic()
        self.parent.send(case)

    def overdue(self) -> bool:
        """The alarm inside fires after CASE_SECONDS; this is the backstop."""
        return time.monotonic() - self.since > CASE_SECONDS + 20

    def collect(self) -> Outcome:
        """The outcome of the submitted case (call once its pipe is readable or overdue)."""
        self.case = None
        if self.parent.poll(0):
            try:
                result: Outcome = self.parent.recv()
                return result
            except EOFError:
                pass
        code = self.process.exitcode
        self.stop()
        self._start()
        if code is None:
            return Outcome("hang", "the worker stopped answering", "hang: worker")
        return Outcome("crash", f"worker died with {code}", f"crash {code}")

    def run(self, case: Case) -> Outcome:
        self.submit(case)
        self.parent.poll(CASE_SECONDS + 20)
        return self.collect()

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)


# ------------------------------------------------------------------------------ minimising
def minimise(case: Case, outcome: Outcome, check: Callable[[Case], Outcome]) -> Case:
    """A smaller input with the same finding: text by lines then characters (ddmin), hives
    by dropping mutated logs, truncating and zeroing whole pages that do not matter. A hang
    costs its full time on every trial, so hangs (and crashes) get few trials."""
    budget = [12 if outcome.outcome in ("hang", "memory", "crash") else 2000]

    def same(candidate: Case) -> bool:
        if budget[0] <= 0:
            return False
        budget[0] -= 1
        return check(candidate).signature == outcome.signature

    if case.kind != "hive":
        data = _ddmin(case.data.split(b"\n"), lambda parts: same(
            Case(case.kind, case.seed, case.mutations, b"\n".join(parts))), joiner=b"\n")
        data = _ddmin([bytes([b]) for b in data], lambda parts: same(
            Case(case.kind, case.seed, case.mutations, b"".join(parts))), joiner=b"",
            budget=300)
        return Case(case.kind, case.seed, case.mutations, data)
    best = case
    for index in range(len(best.logs)):
        trial = Case("hive", best.seed, best.mutations, best.data,
                     best.logs[:index] + best.logs[index + 1:])
        if same(trial):
            best = trial
            break
    if best.logs and same(Case("hive", best.seed, best.mutations, best.data, [])):
        best = Case("hive", best.seed, best.mutations, best.data, [])
    size = len(best.data)
    while size > BASE:  # the shortest prefix (in pages) that still shows it
        shorter = max(BASE, (size // 2) // BASE * BASE)
        trial = Case("hive", best.seed, best.mutations, best.data[:shorter], best.logs)
        if shorter == size or not same(trial):
            break
        best, size = trial, shorter
    data = bytearray(best.data)
    for page in range(len(data) // BASE - 1, 0, -1):  # zero pages that play no part
        saved = bytes(data[page * BASE:(page + 1) * BASE])
        data[page * BASE:(page + 1) * BASE] = bytes(BASE)
        if not same(Case("hive", best.seed, best.mutations, bytes(data), best.logs)):
            data[page * BASE:(page + 1) * BASE] = saved
    return Case("hive", best.seed, best.mutations, bytes(data), best.logs)


def _ddmin(parts: list[bytes], still_fails: Callable[[list[bytes]], bool], joiner: bytes,
           budget: int = 400) -> bytes:
    chunks = 2
    tries = 0
    while len(parts) >= 2 and tries < budget:
        size = max(1, len(parts) // chunks)
        reduced = False
        for start in range(0, len(parts), size):
            tries += 1
            candidate = parts[:start] + parts[start + size:]
            if candidate and still_fails(candidate):
                parts, chunks, reduced = candidate, max(chunks - 1, 2), True
                break
        if not reduced:
            if size == 1:
                break
            chunks = min(len(parts), chunks * 2)
    return joiner.join(parts)


# ------------------------------------------------------------------------------ campaign
@dataclass
class Summary:
    cases: Counter[str] = field(default_factory=Counter)  # kind -> count
    outcomes: Counter[str] = field(default_factory=Counter)  # "kind outcome" -> count
    findings: dict[str, dict[str, Any]] = field(default_factory=dict)  # signature -> example
    slowest: float = 0.0
    slowest_case: str = ""
    seconds: float = 0.0

    @property
    def bad(self) -> int:
        return sum(n for key, n in self.outcomes.items() if key.split()[1] in BAD_OUTCOMES)


def generate(counts: dict[str, int], seed: int) -> Iterator[Case]:
    rng = random.Random(seed)
    hives = hive_seeds() if counts.get("hive") else {}
    texts = {kind: text_seeds(kind) for kind in ("answer", "unattend") if counts.get(kind)}
    order = [kind for kind, n in counts.items() for _ in range(n)]
    rng.shuffle(order)
    for kind in order:
        if kind == "hive":
            yield make_hive_case(hives, rng)
        else:
            yield make_text_case(kind, texts[kind], rng)


def run_campaign(counts: dict[str, int], out: Path, *, seed: int = 1, jobs: int = 2,
                 progress: bool = False, minimise_findings: bool = True) -> Summary:
    out.mkdir(parents=True, exist_ok=True)
    summary = Summary()
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="fuzz-", dir=out))
    workers = [Worker(_scratch(scratch, i)) for i in range(jobs)]
    cases = generate(counts, seed)
    total = sum(counts.values())
    done = 0
    exhausted = False
    try:
        while True:
            for worker in workers:
                if worker.case is None and not exhausted:
                    case = next(cases, None)
                    if case is None:
                        exhausted = True
                    else:
                        worker.submit(case)
            busy = [w for w in workers if w.case is not None]
            if not busy:
                break
            ready = set(wait([w.parent for w in busy], timeout=1.0))
            for worker in busy:
                if worker.parent not in ready and not worker.overdue():
                    continue
                case = worker.case
                assert case is not None
                outcome = worker.collect()
                if outcome.seconds > summary.slowest:
                    summary.slowest = outcome.seconds
                    summary.slowest_case = (f"{case.kind} {case.seed}: {', '.join(case.mutations)}"
                                            f" -> {outcome.outcome} {outcome.detail[:120]}")
                done += 1
                summary.cases[case.kind] += 1
                summary.outcomes[f"{case.kind} {outcome.outcome}"] += 1
                if outcome.outcome in BAD_OUTCOMES and outcome.signature not in summary.findings:
                    _save_finding(out / "raw", case, outcome)
                    if progress:
                        print(f"finding: {outcome.signature} ({case.kind} {case.seed}: "
                              f"{', '.join(case.mutations)})", file=sys.stderr, flush=True)
                    small = minimise(case, outcome, worker.run) if minimise_findings else case
                    summary.findings[outcome.signature] = _save_finding(out, small, outcome)
                if progress and done % 250 == 0:
                    print(f"{done}/{total} cases, {summary.bad} findings "
                          f"({len(summary.findings)} distinct)", file=sys.stderr, flush=True)
    finally:
        for worker in workers:
            worker.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    summary.seconds = round(time.monotonic() - started, 1)
    return summary


def _scratch(base: Path, index: int) -> Path:
    path = base / f"worker-{index}"
    path.mkdir()
    return path


def _save_finding(out: Path, case: Case, outcome: Outcome) -> dict[str, Any]:
    digest = hashlib.sha256(case.data + b"".join(case.logs)).hexdigest()[:12]
    folder = out / "findings" / case.kind
    folder.mkdir(parents=True, exist_ok=True)
    suffix = {"hive": ".hive", "answer": ".yaml", "unattend": ".xml"}[case.kind]
    (folder / f"{digest}{suffix}").write_bytes(case.data)
    for index, log in enumerate(case.logs):
        (folder / f"{digest}{suffix}.LOG{index + 1}").write_bytes(log)
    record = {"file": f"{case.kind}/{digest}{suffix}", "seed": case.seed,
              "mutations": case.mutations, "outcome": outcome.outcome,
              "signature": outcome.signature, "detail": outcome.detail[-600:],
              "bytes": len(case.data), "logs": len(case.logs)}
    (folder / f"{digest}.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def load_regression(path: Path) -> Case:
    """A saved finding (or a hand-made regression file) as a case to replay."""
    kind = {".hive": "hive", ".yaml": "answer", ".xml": "unattend"}[path.suffix]
    logs = [p.read_bytes() for p in sorted(path.parent.glob(path.name + ".LOG*"))]
    return Case(kind, path.name, [], path.read_bytes(), logs)


def replay(paths: list[Path]) -> dict[str, Outcome]:
    """Run saved inputs through the same worker (limits included)."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="fuzz-replay-") as tmp:
        worker = Worker(Path(tmp))
        try:
            for path in paths:
                results[str(path)] = worker.run(load_regression(path))
        finally:
            worker.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hives", type=int, default=10000)
    parser.add_argument("--answers", type=int, default=2500)
    parser.add_argument("--unattends", type=int, default=2500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--out", type=Path, default=Path("/var/tmp/reseal-fuzz"))
    parser.add_argument("--regressions", type=Path,
                        help="copy the minimised findings here (tests/campaigns/regressions)")
    parser.add_argument("--no-minimise", action="store_true",
                        help="keep findings as found (faster when there are many)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    counts = {"hive": args.hives, "answer": args.answers, "unattend": args.unattends}
    summary = run_campaign(counts, args.out, seed=args.seed, jobs=args.jobs, progress=True,
                           minimise_findings=not args.no_minimise)
    if args.regressions is not None and summary.findings:
        for record in summary.findings.values():
            if record["seed"].startswith(tuple(SHARED_SEEDS)):
                # ../shared material is read in place, never copied into the repository:
                # make the same damage to one of the project's own hives instead
                print(f"not copied (made from ../shared {record['seed']}): {record['file']}",
                      file=sys.stderr)
                continue
            source = args.out / "findings" / record["file"]
            target = args.regressions / record["file"]
            target.parent.mkdir(parents=True, exist_ok=True)
            for sibling in source.parent.glob(source.name + "*"):
                shutil.copyfile(sibling, target.parent / sibling.name)
    report = {"cases": dict(summary.cases), "outcomes": dict(summary.outcomes),
              "findings": list(summary.findings.values()), "bad": summary.bad,
              "slowest_case_seconds": round(summary.slowest, 2),
              "slowest_case": summary.slowest_case, "seconds": summary.seconds}
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"{sum(summary.cases.values())} cases in {summary.seconds} s "
              f"(slowest {summary.slowest:.2f} s): {summary.bad} findings, "
              f"{len(summary.findings)} distinct")
        for key, count in sorted(summary.outcomes.items()):
            print(f"  {key:20} {count}")
        for record in summary.findings.values():
            print(f"  finding {record['signature']}: {record['file']} ({record['bytes']} bytes)")
    return 0 if summary.bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
