"""The method registry: a name and options -> a speculator, for every decoding method of the core (`ar`, `chain`)
and of `trees` (`eagle2`, alias `eagle`; `rsd-c`, `rsd-s`, `specinfer`, `static`).

It sits above both (the core never imports `trees`), so every method is registered here, by name, without an import
side effect: `make_method("chain", num_draft=4)`, `make_method("eagle2", budget=32)`. A speculator object can also be
built directly (`ChainSpeculator(4)`, `trees.make_speculator("rsd-c", budget=16)`); `generate` takes either.
"""
from __future__ import annotations

import inspect
from functools import partial
from typing import Any, Callable

from specjax.decode.chain import ChainSpeculator
from specjax.decode.dynamic_exit import DynamicExitSpeculator
from specjax.decode.policies import DraftPolicy, Fixed, check_k_max, parse_policy
from specjax.decode.speculator import Speculator
from trees import TREE_METHODS, make_speculator
from trees.builders import ALIASES

METHODS: dict[str, Callable[..., Speculator]] = {}


def register_method(name: str, factory: Callable[..., Speculator]) -> None:
    """Make `make_method(name, **options)` build `factory(**options)` (re-registering a name replaces it)."""
    METHODS[name] = factory


def make_method(name: str, **options: Any) -> Speculator:
    """The speculator registered as `name`, built with `options` (e.g. `make_method("chain", num_draft=4)`,
    `make_method("rsd-c", budget=16)`). ValueError on an unknown name or an option the method does not take;
    the options are checked against the factory's signature, so an error raised inside a factory is not mistaken
    for a bad option."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; registered: {sorted(METHODS)}")
    factory = METHODS[name]
    try:
        inspect.signature(factory).bind(**options)
    except TypeError as e:
        raise ValueError(f"method {name!r}: {e}") from None
    return factory(**options)


def ar() -> Speculator:
    """Autoregressive decoding: one target call per token, nothing drafted."""
    return ChainSpeculator(0)


def chain(num_draft: int = 4, verifier: str = "token", policy: str | DraftPolicy | None = None,
          allow_lossy: bool = False) -> Speculator:
    """Chain speculative decoding: up to `num_draft` (K_max) drafts a round, verified by `verifier`, each row's
    length chosen by `policy` (a `specjax.decode.policies` spec such as `confidence:0.4`; a self-drafting policy,
    `del`, makes the target draft itself from early exits). allow_lossy: accept a lossy verifier ("hsd")."""
    check_k_max(num_draft)
    if isinstance(policy, str):
        policy = parse_policy(policy)
    if policy is not None and policy.self_drafting:
        return DynamicExitSpeculator(num_draft, verifier, policy, allow_lossy)
    return ChainSpeculator(num_draft, verifier, None if isinstance(policy, Fixed) else policy, allow_lossy)


register_method("ar", ar)
register_method("chain", chain)
for _name in TREE_METHODS + tuple(ALIASES):         # `eagle` stays a name of the EAGLE-2 tree (`eagle2`)
    register_method(_name, partial(make_speculator, _name))
