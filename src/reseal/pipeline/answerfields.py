"""Typed reading of a marked YAML tree, collecting every error with its file position.

The answer-file loader describes its schema with `MapReader` calls; each wrong key, wrong
type or bad value becomes one `file:line:column: key.path: what is wrong` line, and all of
them are reported together so that a user fixes a file in one pass.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import os
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from reseal.errors import BadInput
from reseal.pipeline.yamlsafe import Mark, YMap, YNode, YScalar, YSeq, describe

_NodeT = TypeVar("_NodeT", YMap, YSeq)


class AnswerFileError(BadInput):
    """The answer file is wrong; `errors` holds one `file:line:column: path: message` each."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass
class ErrorSink:
    """Collects positioned errors for one file."""

    filename: str
    errors: list[str] = field(default_factory=list)

    def add(self, mark: Mark, path: str, message: str) -> None:
        line = f"{self.filename}:{mark.line}:{mark.column}: {path}: {message}"
        if line not in self.errors:  # shared settings fail the same way for every machine
            self.errors.append(line)

    def raise_if_any(self) -> None:
        if self.errors:
            raise AnswerFileError(self.errors)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def join_path(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


class MapReader:
    """Reads the keys of one mapping; unknown keys are reported when it is created."""

    def __init__(self, node: YMap, path: str, sink: ErrorSink, allowed: Iterable[str]) -> None:
        self.node = node
        self.path = path
        self.sink = sink
        allowed = list(allowed)
        for key in node.items:
            if key not in allowed:
                self.sink.add(node.key_marks[key], join_path(path, key),
                              f"unknown key{did_you_mean(key, allowed)}; "
                              f"known keys: {', '.join(allowed)}")

    def has(self, key: str) -> bool:
        return key in self.node.items

    def node_of(self, key: str) -> YNode | None:
        return self.node.items.get(key)

    def mark_of(self, key: str) -> Mark:
        return self.node.key_marks.get(key, self.node.mark)

    def sub(self, key: str) -> str:
        return join_path(self.path, key)

    def wrong(self, key: str, expected: str) -> None:
        node = self.node.items[key]
        self.sink.add(node.mark, self.sub(key), f"expected {expected}, got {describe(node)}")

    def text(self, key: str) -> str | None:
        node = self.node.items.get(key)
        if node is None or (isinstance(node, YScalar) and node.value is None):
            return None
        if isinstance(node, YScalar) and isinstance(node.value, str):
            return node.value
        hint = " (quote it)" if isinstance(node, YScalar) else ""
        self.wrong(key, "a string" + hint)
        return None

    def number(self, key: str, *, minimum: int | None = None,
               maximum: int | None = None) -> int | None:
        node = self.node.items.get(key)
        if node is None or (isinstance(node, YScalar) and node.value is None):
            return None
        if (isinstance(node, YScalar) and isinstance(node.value, int)
                and not isinstance(node.value, bool)):
            if minimum is not None and node.value < minimum:
                self.sink.add(node.mark, self.sub(key), f"must be at least {minimum}")
                return None
            if maximum is not None and node.value > maximum:
                self.sink.add(node.mark, self.sub(key), f"must be at most {maximum}")
                return None
            return node.value
        self.wrong(key, "a whole number")
        return None

    def str_list(self, key: str) -> list[tuple[str, Mark]]:
        node = self.node.items.get(key)
        if node is None or (isinstance(node, YScalar) and node.value is None):
            return []
        if not isinstance(node, YSeq):
            self.wrong(key, "a list of strings")
            return []
        out: list[tuple[str, Mark]] = []
        for index, item in enumerate(node.items):
            if isinstance(item, YScalar) and isinstance(item.value, str):
                out.append((item.value, item.mark))
            else:
                self.sink.add(item.mark, f"{self.sub(key)}[{index}]",
                              f"expected a string, got {describe(item)}")
        return out

    def _optional(self, key: str, kind: type[_NodeT], expected: str) -> _NodeT | None:
        """The node at `key` if it is of `kind`; None when absent or null (an error when it is
        something else)."""
        node = self.node.items.get(key)
        if node is None or (isinstance(node, YScalar) and node.value is None):
            return None
        if not isinstance(node, kind):
            self.wrong(key, expected)
            return None
        return node

    def mapping(self, key: str, allowed: Iterable[str]) -> MapReader | None:
        node = self._optional(key, YMap, "a mapping")
        return None if node is None else MapReader(node, self.sub(key), self.sink, allowed)

    def raw_map(self, key: str) -> YMap | None:
        return self._optional(key, YMap, "a mapping")

    def seq(self, key: str) -> YSeq | None:
        return self._optional(key, YSeq, "a list")


# --- typed values for operation options -------------------------------------------------


class _Invalid(Exception):
    """A value does not fit a type; the message says what was expected."""


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "nothing (null)"
    if origin in (list, tuple, set, frozenset):
        return f"a list of {_type_name(typing.get_args(tp)[0])}s"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    names = {bool: "a boolean", int: "a whole number", float: "a number", str: "a string",
             Path: "a path"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def convert_value(node: YNode, tp: Any, base_dir: Path) -> object:
    """Convert a marked node to the Python type `tp`; raises _Invalid with a message."""
    origin = typing.get_origin(tp)
    if tp is Any or tp is object:
        return _plain(node)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if isinstance(node, YScalar) and node.value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert_value(node, arg, base_dir)
            except _Invalid:
                continue
        raise _Invalid(f"expected {_type_name(tp)}, got {describe(node)}")
    if origin is typing.Literal:
        if isinstance(node, YScalar) and node.value in typing.get_args(tp):
            return node.value
        raise _Invalid(f"expected {_type_name(tp)}, got {describe(node)}")
    if origin in (list, tuple, set, frozenset):
        if not isinstance(node, YSeq):
            raise _Invalid(f"expected {_type_name(tp)}, got {describe(node)}")
        item_type = typing.get_args(tp)[0] if typing.get_args(tp) else Any
        items = [convert_value(item, item_type, base_dir) for item in node.items]
        return origin(items) if origin is not list else items
    if origin is dict:
        if not isinstance(node, YMap):
            raise _Invalid(f"expected a mapping, got {describe(node)}")
        value_type = typing.get_args(tp)[1] if typing.get_args(tp) else Any
        return {k: convert_value(v, value_type, base_dir) for k, v in node.items.items()}
    if not isinstance(node, YScalar):
        raise _Invalid(f"expected {_type_name(tp)}, got {describe(node)}")
    value = node.value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
        raise _Invalid(f"expected a string, got {describe(node)} (quote it)")
    elif tp is Path:
        if isinstance(value, str) and value:
            path = Path(value)
            return path if path.is_absolute() else base_dir / path
    elif isinstance(tp, type) and issubclass(tp, enum.Enum):
        for member in tp:
            if value == member.value or value == member.name:
                return member
    else:
        raise _Invalid(f"has a type ({_type_name(tp)}) that answer files cannot set")
    raise _Invalid(f"expected {_type_name(tp)}, got {describe(node)}")


def _plain(node: YNode) -> object:
    if isinstance(node, YScalar):
        return node.value
    if isinstance(node, YSeq):
        return [_plain(item) for item in node.items]
    return {k: _plain(v) for k, v in node.items.items()}


def option_fields(options_type: type[Any]) -> dict[str, Any]:
    """Field name -> resolved type of an operation's options dataclass."""
    hints = typing.get_type_hints(options_type)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(options_type)
            if f.init and not f.name.startswith("_")}


def read_option_values(node: YMap, options_type: type[Any], path: str, sink: ErrorSink,
                       base_dir: Path) -> dict[str, object]:
    """Validated keyword arguments for `options_type` from a mapping node."""
    fields = option_fields(options_type)
    values: dict[str, object] = {}
    for key, value_node in node.items.items():
        key_path = join_path(path, key)
        if key not in fields:
            known = ", ".join(fields) or "(none)"
            sink.add(node.key_marks[key], key_path,
                     f"unknown option{did_you_mean(key, fields)}; known options: {known}")
            continue
        try:
            values[key] = convert_value(value_node, fields[key], base_dir)
        except _Invalid as exc:
            sink.add(value_node.mark, key_path, str(exc))
    return values


def convert_text(text: str, tp: Any, base_dir: Path, mark: Mark) -> object:
    """Convert a CSV cell to `tp`, reading it the way YAML would read a plain scalar."""
    import yaml

    if text.strip() == "":
        value: object = None
    elif text.lstrip()[:1] in ("[", "{") or len(text) > 4096:
        value = text  # a collection becomes text anyway; never parse nesting from a cell
    else:
        try:
            value = yaml.safe_load(text) if tp is not str else text
        except (yaml.YAMLError, ValueError):
            value = text
        if isinstance(value, dict | list):
            value = text
    if tp is str or (isinstance(value, str) is False and _accepts_str_only(tp)):
        value = text
    return convert_value(YScalar(value, mark), tp, base_dir)


def _accepts_str_only(tp: Any) -> bool:
    args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    return all(a in (str, Path, type(None)) for a in args)


Invalid = _Invalid


def resolve_path(base_dir: Path, text: str) -> Path:
    """A path from an answer file: `~` expanded, relative to the answer file's folder."""
    path = Path(os.path.expanduser(text))
    return Path(os.path.normpath(path if path.is_absolute() else base_dir / path))


def read_drivers(reader: MapReader, key: str, sink: ErrorSink, base_dir: Path) -> list[Path]:
    """A list of driver files or folders; each must exist."""
    out = []
    for index, (text, mark) in enumerate(reader.str_list(key)):
        path = resolve_path(base_dir, text)
        if not path.exists():
            sink.add(mark, f"{reader.sub(key)}[{index}]", f"{path}: no such driver file or folder")
        out.append(path)
    return out
