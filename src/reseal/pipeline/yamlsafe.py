"""Load YAML as plain data that keeps where every value came from (line and column).

Answer files are written by people and sometimes by other tools, so the loader assumes the
worst: it refuses files over a size limit before parsing, refuses alias expansion bombs by
counting aliases and expanded nodes, and refuses every tag that would construct an object.
The result is a small tree of `YMap`/`YSeq`/`YScalar` with 1-based marks, so that each
validation error can point at `file:line:column`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml
import yaml.constructor
import yaml.nodes

from reseal.errors import BadInput

MAX_FILE_BYTES = 1 << 20  # 1 MiB: an answer file for thousands of machines fits easily
MAX_ALIASES = 200  # `*name` references in one file
MAX_EXPANDED_NODES = 200_000  # nodes visited after alias expansion
MAX_DEPTH = 64
MAX_NUMBER_CHARS = 40  # a seed is at most 20 digits; nothing here needs more

_CORE = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_CORE}{name}" for name in ("str", "int", "float", "bool", "null", "timestamp")}


@dataclass(frozen=True)
class Mark:
    line: int  # 1-based
    column: int  # 1-based


@dataclass
class YScalar:
    value: object  # str, int, float, bool or None
    mark: Mark


@dataclass
class YSeq:
    items: list[YNode]
    mark: Mark


@dataclass
class YMap:
    items: dict[str, YNode]
    key_marks: dict[str, Mark]
    mark: Mark


YNode = YScalar | YSeq | YMap


def describe(node: YNode) -> str:
    """A type name for error messages: 'a string', 'a list', ..."""
    if isinstance(node, YMap):
        return "a mapping"
    if isinstance(node, YSeq):
        return "a list"
    value = node.value
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"a number ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    return f"a string ({value!r})"


class YamlRefused(BadInput):
    """The YAML text itself is unacceptable; `errors` holds `file:line:column: ...` lines."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass
class _Counter:
    aliases: int = 0
    expanded: int = 0
    errors: list[str] = field(default_factory=list)


class _CountingLoader(yaml.SafeLoader):
    """SafeLoader that only composes (never constructs), counts alias references and bounds
    the nesting depth while composing (PyYAML's composer recurses once per level, so a file
    nested thousands deep would otherwise end in RecursionError)."""

    alias_count: int = 0
    depth: int = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self.alias_count += 1
            if self.alias_count > MAX_ALIASES:
                event = self.peek_event()
                raise yaml.MarkedYAMLError(
                    problem=f"more than {MAX_ALIASES} aliases: refused as a possible alias bomb",
                    problem_mark=event.start_mark,
                )
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH + 1:
                raise yaml.MarkedYAMLError(
                    problem=f"nested deeper than {MAX_DEPTH} levels",
                    problem_mark=self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


def _show_tag(tag: str) -> str:
    return "!!" + tag[len(_CORE):] if tag.startswith(_CORE) else tag


def read_limited(path: Path, limit: int = MAX_FILE_BYTES, what: str = "answer file") -> bytes:
    """Read a small input file; a file over `limit` is refused before any byte is parsed.
    Only a regular file is read: a FIFO would block, a device never end."""
    from reseal.fileio import open_regular

    try:
        fd = open_regular(path, what=what, follow=True)
    except OSError as exc:
        raise BadInput(f"{path}: cannot read {what}: {exc.strerror or exc}") from exc
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise BadInput(
                f"{path}: {what} is {size} bytes, over the {limit} byte limit; "
                "split it or use machines_csv for large machine tables"
            )
        chunks = []
        total = 0
        while chunk := os.read(fd, 1 << 16):
            total += len(chunk)
            if total > limit:  # a file that grows while it is read
                raise BadInput(f"{path}: {what} is over the {limit} byte limit")
            chunks.append(chunk)
    except OSError as exc:
        raise BadInput(f"{path}: cannot read {what}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    return b"".join(chunks)


def load_yaml(path: Path, *, display: str | None = None) -> YNode | None:
    """Parse `path` into a marked tree; None for an empty document. Raises YamlRefused."""
    name = display or str(path)
    data = read_limited(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlRefused([f"{name}:1:1: (file): not UTF-8 text (byte {exc.start})"]) from exc
    loader = _CountingLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{mark.line + 1}:{mark.column + 1}" if mark is not None else "1:1"
        problem = exc.problem or exc.context or "invalid YAML"
        raise YamlRefused([f"{name}:{where}: (yaml): {problem}"]) from exc
    except yaml.YAMLError as exc:
        raise YamlRefused([f"{name}:1:1: (yaml): {exc}"]) from exc
    finally:
        loader.dispose()
    if root is None:
        return None
    counter = _Counter()
    tree = _convert(root, name, "", counter, 0)
    if counter.errors:
        raise YamlRefused(counter.errors)
    return tree


def _convert(node: yaml.Node, name: str, path: str, counter: _Counter, depth: int) -> YNode:
    counter.expanded += 1
    mark = _mark(node)
    where = f"{name}:{mark.line}:{mark.column}: {path or '(top)'}"
    if counter.expanded > MAX_EXPANDED_NODES:
        raise YamlRefused([f"{where}: aliases expand to more than {MAX_EXPANDED_NODES} "
                           "values: refused as an alias bomb"])
    if depth > MAX_DEPTH:
        raise YamlRefused([f"{where}: nested deeper than {MAX_DEPTH} levels"])
    if isinstance(node, yaml.ScalarNode):
        if node.tag not in _SCALAR_TAGS:
            counter.errors.append(
                f"{where}: tag {_show_tag(node.tag)} is not allowed: an answer file holds "
                "plain data (strings, numbers, booleans, lists, mappings)"
            )
            return YScalar(None, mark)
        if node.tag == f"{_CORE}timestamp":
            return YScalar(str(node.value), mark)
        if node.tag == f"{_CORE}int" and len(node.value) > MAX_NUMBER_CHARS:
            counter.errors.append(f"{where}: a number of {len(node.value)} characters; "
                                  f"numbers here have at most {MAX_NUMBER_CHARS}")
            return YScalar(None, mark)
        constructor = yaml.constructor.SafeConstructor()
        try:
            return YScalar(constructor.construct_object(node, deep=True), mark)
        except (ValueError, OverflowError) as exc:
            counter.errors.append(f"{where}: {node.value[:40]!r} cannot be read: {exc}")
            return YScalar(None, mark)
    if isinstance(node, yaml.SequenceNode):
        if node.tag != f"{_CORE}seq":
            counter.errors.append(f"{where}: tag {_show_tag(node.tag)} is not allowed: "
                                  "an answer file holds plain data")
            return YSeq([], mark)
        return YSeq([_convert(child, name, f"{path}[{i}]", counter, depth + 1)
                     for i, child in enumerate(node.value)], mark)
    assert isinstance(node, yaml.MappingNode)
    if node.tag != f"{_CORE}map":
        counter.errors.append(f"{where}: tag {_show_tag(node.tag)} is not allowed: "
                              "an answer file holds plain data")
        return YMap({}, {}, mark)
    items: dict[str, YNode] = {}
    key_marks: dict[str, Mark] = {}
    for key_node, value_node in node.value:
        key_mark = _mark(key_node)
        key_where = f"{name}:{key_mark.line}:{key_mark.column}: {path or '(top)'}"
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag == f"{_CORE}merge":
            counter.errors.append(f"{key_where}: merge keys (<<) are not supported; "
                                  "put shared values under defaults")
            continue
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _SCALAR_TAGS:
            counter.errors.append(f"{key_where}: keys must be plain words")
            continue
        key = str(key_node.value)
        child_path = f"{path}.{key}" if path else key
        if key in items:
            first = key_marks[key]
            counter.errors.append(
                f"{name}:{key_mark.line}:{key_mark.column}: {child_path}: duplicate key "
                f"(first given at line {first.line})"
            )
            continue
        key_marks[key] = key_mark
        items[key] = _convert(value_node, name, child_path, counter, depth + 1)
    return YMap(items, key_marks, mark)
