"""One module per operation; `all_operations()` lists them in the order they run."""

from __future__ import annotations

import importlib
import pkgutil

from reseal.operations.base import Operation


def all_operations() -> list[Operation]:
    """Every operation module's OPERATION, sorted so that a run is deterministic.

    Order: by the module-level ORDER (default 50), then by name. Modules without OPERATION
    (helpers) are skipped.
    """
    found: list[tuple[int, str, Operation]] = []
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        operation = getattr(module, "OPERATION", None)
        if isinstance(operation, Operation):
            found.append((getattr(module, "ORDER", 50), operation.name, operation))
    return [op for _, _, op in sorted(found, key=lambda item: (item[0], item[1]))]


def get_operation(name: str) -> Operation:
    for operation in all_operations():
        if operation.name == name:
            return operation
    known = ", ".join(op.name for op in all_operations())
    from reseal.errors import BadInput

    raise BadInput(f"unknown operation {name!r}; known operations: {known}")
