"""specjax: a JAX research framework for speculative sampling theory and tree drafting.

The public API, loaded lazily (importing `specjax` imports nothing heavy; each name is imported on first use):

    import jax, specjax
    target, draft = specjax.tiny_pair()
    out = specjax.generate(target, prompts, lengths, jax.random.key(0),
                           method=specjax.make_method("chain", num_draft=4), drafter=draft,
                           sampling=specjax.SamplingConfig(temperature=0.7))

The packages, in the direction of their imports (each imports only those before it):
`validation`, `sampling`, `metrics` (shared leaves) -> `model` (config, families, the one decoder, cache, block,
layout, io) -> `runners` (the runner protocol and every drafter) -> `constrain` (grammar automata carried by a
runner) -> `verify` (acceptance rules) -> `decode` (the
loop, the round contract, chains, policies) -> `parallel`, `costs`, `training`, `testing`; above them `trees`,
`transport`, then `specjax.methods` (every method by name), `specjax.bench` (the experiment library) and
`specjax.apps` (the commands). `tests/test_layering.py` checks every rule.
"""
from __future__ import annotations

import importlib
from typing import Any

_API = {
    # decoding
    "generate": "specjax.decode.loop", "prefill": "specjax.decode.loop", "GenerateResult": "specjax.decode.loop",
    "make_method": "specjax.methods", "METHODS": "specjax.methods",
    "ChainSpeculator": "specjax.decode.chain", "Speculator": "specjax.decode.speculator",
    "SamplingConfig": "specjax.sampling", "GREEDY": "specjax.sampling",
    "accept_chain": "specjax.verify.chain",
    # grammar constraints (regexes and JSON schemas as token automata)
    "compile_regex": "specjax.constrain.compile", "regex_from_json_schema": "specjax.constrain.compile",
    "TokenAutomaton": "specjax.constrain.automaton",
    # models, handles and drafters
    "ModelConfig": "specjax.model.config", "named_config": "specjax.model.config", "init_model": "specjax.model.decoder",
    "Handle": "specjax.runners.base", "model_handle": "specjax.runners.model", "early_exit": "specjax.runners.model",
    "fused_features": "specjax.runners.model", "init_eagle": "specjax.runners.eagle",
    "load_eagle": "specjax.runners.eagle", "lookup_handle": "specjax.runners.lookup",
    # loaders by name (the names the command line takes: smollm2, FILE.gguf, HF_DIR, random:<preset>)
    "load_target": "specjax.apps.models", "load_drafter": "specjax.apps.models",
    # scale
    "make_mesh": "specjax.model.layout",
    # tests and examples
    "tiny_pair": "specjax.testing.pairs",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'specjax' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value                 # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
