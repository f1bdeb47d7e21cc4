"""What Linux operations of one run share: a once-per-run path check and the run's random
source (seeded when the request has a seed, so batches and tests are reproducible)."""

from __future__ import annotations

import random
import uuid

from reseal.linux.guest import resolve_written_paths
from reseal.operations.base import OperationContext

_PREFLIGHT_KEY = "linux:preflight-done"
_RANDOM_KEY = "linux:random"


def preflight(ctx: OperationContext) -> None:
    """Resolve every path Linux operations may touch, once per run; raises UnsafePath before
    any write."""
    if ctx.shared.get(_PREFLIGHT_KEY):
        return
    resolve_written_paths(ctx.system.fs)
    ctx.shared[_PREFLIGHT_KEY] = True


def rng(ctx: OperationContext) -> random.Random:
    """One random source per run: seeded when the request has a seed (reproducible tests)."""
    source = ctx.shared.get(_RANDOM_KEY)
    if source is None:
        seed = ctx.request.seed
        source = random.Random(seed) if seed is not None else random.SystemRandom()
        ctx.shared[_RANDOM_KEY] = source
    assert isinstance(source, random.Random)
    return source


def new_uuid(ctx: OperationContext) -> str:
    return str(uuid.UUID(int=rng(ctx).getrandbits(128), version=4))


def new_hex(ctx: OperationContext, digits: int) -> str:
    return f"{rng(ctx).getrandbits(digits * 4):0{digits}x}"
