"""Python's automatic garbage collection paused while a batch of requests is worked out.

Every stage works over a batch (256 requests), which keeps some thousands of young
objects alive at once (docs, hits, explanations), all freed by reference counting once
the batch is done. Collections in between walk them all and move the survivors to
older generations, whose full collections then walk the loaded libraries and model too
(~220,000 objects): measured on ``classify_many``, that was 6-12% of the time, ~1% with
collection paused per batch.
"""
from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def collector_paused() -> Iterator[None]:
    """Automatic collection off for the block, then as the caller had it (also when the
    block fails). Blocks may nest. Garbage in reference cycles made meanwhile is
    collected by the first collection after the block."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:  # another thread's block may have paused it first: then that one restores it
            gc.enable()
