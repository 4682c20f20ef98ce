"""Probes for tests: a runner that counts the tokens its drafter processes.
"""
from __future__ import annotations
from dataclasses import dataclass
from specjax.model.block import Block
from specjax.runners.base import Forward, Handle, WrappingRunner


@dataclass(frozen=True)
class CountingRunner(WrappingRunner):
    """Wraps a runner and records, at trace time, the number of tokens of every forward call in `calls` (a list
    owned by the test; the wrapper stays hashable because it compares by identity)."""

    calls: list

    def __hash__(self):
        return id(self)

    def __eq__(self, other):
        return self is other

    def forward(self, params, cache, block: Block) -> Forward:
        self.calls.append(block.length)
        return self.inner.forward(params, cache, block)


def counting(handle: Handle, calls: list) -> Handle:
    """`handle` with a `CountingRunner` that appends each forward's token count to `calls`."""
    return Handle(CountingRunner(handle.runner, calls), handle.params)
