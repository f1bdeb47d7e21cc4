"""Offline Windows registry hives (regf): read, edit, recover from logs, write back safely."""

from reseal.registry.hive import Hive, find_logs, split_path
from reseal.registry.nodes import Key, Value
from reseal.registry.types import RegType

__all__ = ["Hive", "Key", "RegType", "Value", "find_logs", "split_path"]
