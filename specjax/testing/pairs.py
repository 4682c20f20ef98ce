"""Test helpers that ship with the library: a tiny model pair whose loops compile in seconds, the exact law of a
target's first generated tokens by enumeration, and a runner that counts the tokens its drafter processes.
"""
from __future__ import annotations
import itertools
import jax
import jax.numpy as jnp
import numpy as np
from specjax.model.config import named_config
from specjax.model.decoder import init_model
from specjax.runners.base import Handle
from specjax.runners.model import model_handle
from specjax.sampling import SamplingConfig, warp_logits


# XLA's cheapest CPU code generation. Tests compile hundreds of programs and run each briefly, so compiling
# dominates: on a 2-core CPU these flags cut the tiny-model decode tests by about 40% and the whole suite by about
# 20%, though SmolLM2's decode loops (49k-token vocabulary) run slower unoptimised. They change how a program is
# compiled, not what it computes, and both sides of every comparison run under them. Benchmarks and experiments
# keep XLA's defaults.
FAST_COMPILE_XLA_FLAGS = ("--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true "
                          "--xla_cpu_use_fusion_emitters=false")


def tiny_pair(target_seed: int = 0, draft_seed: int = 1) -> tuple[Handle, Handle]:
    """Handles of a random V=16 target and a different random draft model (peaked laws, so p and q differ)."""
    return (model_handle(init_model(named_config("tiny"), target_seed)),
            model_handle(init_model(named_config("tiny-draft"), draft_seed)))


def exact_joint_law(target: Handle, prompt: list[int], sampling: SamplingConfig, length: int) -> np.ndarray:
    """The exact law of the first `length` tokens the target generates after `prompt` under `sampling`:
    `[V] * length` float64, by scoring every prefix (V^(length-1) sequences: tiny vocabularies only)."""
    v = target.config.vocab_size

    @jax.jit
    def next_probs(seqs):
        return warp_logits(target.score(seqs).logits[:, -1], sampling)

    law = np.ones(())
    for i in range(length):
        prefixes = list(itertools.product(range(v), repeat=i))
        seqs = jnp.asarray([list(prompt) + list(c) for c in prefixes], jnp.int32)
        probs = np.asarray(next_probs(seqs), np.float64).reshape((v,) * i + (v,))
        law = law[..., None] * probs
    return law


# Two tiny vocabularies over the alphabet "abc" that split strings differently (id 0: a special token spelling
# nothing): ten target tokens are drafter tokens too, the others ("ab", "ba", "bc", "bca", "cab") read as two.
TINY_TARGET_SPELLINGS = (None, b"a", b"b", b"c", b"ab", b"ba", b"ca", b"abc", b"cc", b"aa", b"bc", b"cab", b"bb",
                         b"ac", b"cb", b"bca")
TINY_DRAFTER_SPELLINGS = (None, b"a", b"b", b"c", b"aa", b"bb", b"cc", b"abc", b"ca", b"bab", b"cb", b"ac")


def tiny_cross_pair(target_seed: int = 0, draft_seed: int = 1) -> tuple[Handle, Handle]:
    """A V=16 target and a V=12 drafter of another vocabulary (`TINY_TARGET_SPELLINGS`, `TINY_DRAFTER_SPELLINGS`)."""
    draft = named_config("tiny-draft").replace(vocab_size=len(TINY_DRAFTER_SPELLINGS))
    return (model_handle(init_model(named_config("tiny"), target_seed)),
            model_handle(init_model(draft, draft_seed)))
