"""Benchmark: tokens/s and per-device memory of a ~1B-parameter bf16 model (random weights, the `llama-1b` preset)
for several (data, model) mesh shapes against a one-device baseline measured in the same run.

Each mesh, the 1x1 baseline first, runs in its own process with its own copy of the model, created straight in its
layout (`specjax.parallel.sharding.init_sharded`: no device ever holds more than its shards; the same weights
whatever the layout). Per mesh: the planner's bytes per device (`specjax.parallel.memory`), the bytes actually
placed on device 0 (weights, the KV cache as `init_cache` lays it out), XLA's own figure for the compiled decode
loop (arguments + temporaries per device), the collectives the partitioner inserted into it (counted in the compiled
HLO), the process's peak host memory, the end-to-end tokens/s of AR decoding (prefill included), the decode-only
tokens/s (the difference between a long and a short run), and whether the tokens equal the baseline's for the same
key (informative only: in bf16, with the near-uniform laws of random weights, another matmul shape or reduction
order can flip a sampled token; exact equality is what tests/core/test_sharding.py asserts, in float32).
Prints the figures, then each mesh's ratios to the baseline, and writes JSON.

On a CPU host the "devices" are `--xla_force_host_platform_device_count` slices of the same cores, so the speed
ratios say what the partitioned program costs in collectives and smaller matmuls, not what a pod gains, and host
memory is every device's memory added up. XLA's CPU backend also computes bf16 dots in float32 and hoists the
weight conversions out of the decode loop: a float32 copy of each device's weights shows up in XLA's temporaries
(the planner, which counts bf16 weights as GPUs and TPUs use them, does not). So the default meshes stop at
data = 2 (1x1, 1x8, 2x4; the host memory each took at the full 16 layers: experiments/RESULTS.md); `--layers 2`
keeps the 1B widths (the same per-layer shards and collectives) at a fraction of the memory; add 4x2 or 8x1 with
--meshes where the host has the memory (`--meshes 1x8 2x4 4x2`).

    python experiments/bench_sharding.py --out results/bench_sharding
    python experiments/bench_sharding.py --layers 2 --max-new-tokens 8 --out results/bench_sharding_2l
Writes `<out>.json` (config, software versions, one record per mesh; resumable: rerun the same command after an
interruption) and `<out>.csv` (the rows, then each mesh's ratios).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import jax
import numpy as np

from specjax.decode import loop as decode
from specjax.bench.decoding import Results
from specjax.bench.timing import timed
from specjax.bench.experiment import config_from_dict, parse_config, progress, write_csv
from specjax.decode.batching import bucket_size
from specjax.model.config import named_config
from specjax.decode.loop import generate
from specjax.model.io.weights import param_shapes
from specjax.parallel.memory import plan_generate
from specjax.sampling import SamplingConfig
from specjax.parallel.sharding import init_sharded, shard_batch
from specjax.model.layout import make_mesh
from specjax.methods import make_method

BASELINE = (1, 1)
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
MIB = 2 ** 20


@dataclass(frozen=True)
class BenchConfig:
    model: str = "llama-1b"
    """A named preset (`specjax.model.config.NAMED_CONFIGS`)."""
    layers: int | None = None
    """Override the preset's layer count (same widths, so the same per-layer shards and collectives)."""
    meshes: tuple[str, ...] = ("1x8", "2x4")
    """DATAxMODEL shapes compared with the one-device baseline 1x1, which always runs first (`1x8,2x4` works too)."""
    batch: int = 8
    prompt_len: int = 32
    max_new_tokens: int = 16
    short_new_tokens: int = 2
    """The short run whose time is subtracted to get decode-only tokens/s."""
    temperature: float = 1.0
    host_devices: int = 8
    """CPU devices to fake (XLA_FLAGS, set before jax starts; only the CPU platform reads it)."""
    seed: int = 0

    def __post_init__(self):
        for mesh in self.meshes:
            for shape in mesh.split(","):
                if not re.fullmatch(r"\d+x\d+", shape):
                    raise ValueError(f"meshes: {shape!r} is not DATAxMODEL (e.g. 2x4)")

    @property
    def mesh_shapes(self) -> tuple[tuple[int, int], ...]:
        """The baseline (1, 1), then every other (data, model) of `meshes`."""
        shapes = [tuple(int(x) for x in shape.split("x")) for mesh in self.meshes for shape in mesh.split(",")]
        return (BASELINE,) + tuple(dict.fromkeys(s for s in shapes if s != BASELINE))

    def model_config(self):
        config = named_config(self.model)
        return config if self.layers is None else config.replace(n_layers=self.layers)


CONFIG = BenchConfig


def _device0_bytes(tree) -> int:
    """Bytes of `tree`'s arrays held by the first device."""
    device = jax.devices()[0]
    return sum(s.data.nbytes for x in jax.tree.leaves(tree) for s in x.addressable_shards if s.device == device)


def _compile_loop(target, tokens, lengths, key, config: BenchConfig, capacity: int):
    """The decode loop `generate` runs for this AR configuration, compiled (the same static arguments)."""
    speculator = make_method("ar")
    return decode._generate.lower(
        target, None, tokens, lengths, key, np.int32(config.max_new_tokens), np.int32(decode.NO_EOS),
        speculator=speculator, sampling=SamplingConfig(config.temperature),
        new_bucket=bucket_size(config.max_new_tokens), capacity=capacity).compile()


def _collectives(hlo: str) -> dict[str, int]:
    """Collective instructions in compiled HLO text, by kind (async `-start` halves counted once)."""
    return {kind: len(re.findall(rf"\s{kind}(?:-start)?\(", hlo)) for kind in COLLECTIVES}


def run_mesh(config: BenchConfig, data: int, model: int, seed: int) -> dict:
    """One mesh's row (run in its own process by `run`, so each mesh starts from an empty host)."""
    model_config = config.model_config()
    rng = np.random.default_rng(seed)
    prompts = rng.integers(0, model_config.vocab_size, (config.batch, config.prompt_len)).astype(np.int32)
    lengths = np.full(config.batch, config.prompt_len, np.int32)
    key = jax.random.key(seed)
    mesh = make_mesh(data=data, model=model)
    target, seconds_init = timed(init_sharded, model_config, mesh, seed)
    width = bucket_size(config.prompt_len)
    capacity = width + bucket_size(config.max_new_tokens) + make_method("ar").capacity_margin + 1   # as `generate`
    plan = plan_generate(target, None, batch=config.batch, capacity=capacity, round_tokens=1, prompt_len=width,
                         mesh=mesh)
    cache = jax.jit(target.runner.init_cache, static_argnums=(1, 2))(target.params, config.batch, capacity)
    cache_bytes = _device0_bytes(cache)
    del cache
    tokens = shard_batch(np.pad(prompts, ((0, 0), (0, width - config.prompt_len))), mesh)
    compiled = _compile_loop(target, tokens, shard_batch(lengths, mesh), key, config, capacity)
    stats = compiled.memory_analysis()
    xla_bytes = None if stats is None else int(stats.argument_size_in_bytes + stats.temp_size_in_bytes)
    collectives = _collectives(compiled.as_text())
    del compiled
    kw = dict(sampling=SamplingConfig(config.temperature), mesh=mesh)
    _, seconds_first = timed(generate, target, prompts, lengths, key, max_new_tokens=config.max_new_tokens, **kw)
    if bucket_size(config.short_new_tokens) != bucket_size(config.max_new_tokens):     # another loop: compile it
        timed(generate, target, prompts, lengths, key, max_new_tokens=config.short_new_tokens, **kw)  # unclocked
    _, seconds_short = timed(generate, target, prompts, lengths, key, max_new_tokens=config.short_new_tokens, **kw)
    out, seconds_long = timed(generate, target, prompts, lengths, key, max_new_tokens=config.max_new_tokens, **kw)
    decode_tokens = config.batch * (config.max_new_tokens - config.short_new_tokens)
    return dict(data=data, model=model, init_s=seconds_init, first_call_s=seconds_first,
                tokens_per_s=float(np.asarray(out.lengths).sum()) / seconds_long,
                decode_tokens_per_s=decode_tokens / (seconds_long - seconds_short),
                planned_bytes=plan.total, planned_weights=plan.weights, planned_caches=plan.caches,
                planned_activations=plan.activations, placed_weights=_device0_bytes(target.params),
                placed_caches=cache_bytes, xla_arguments_and_temps=xla_bytes, collectives=collectives,
                tokens_sha1=hashlib.sha1(np.asarray(out.tokens).tobytes()).hexdigest(),
                host_peak_rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def run(config: BenchConfig, out: Path) -> Results:
    """The baseline, then every mesh of `config` not yet in `<out>.json`, each in a fresh process (one mesh's
    buffers never crowd the next on a CPU host)."""
    results = Results(out.with_suffix(".json"), asdict(config))
    shapes = config.mesh_shapes
    for data, model in progress(shapes, len(shapes), "meshes"):
        name = f"{data}x{model}"
        if results.done(name):
            continue
        argv = [sys.executable, __file__, "--one-mesh", name, "--mesh-config", json.dumps(asdict(config))]
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode:
            print(f"mesh {name}: failed ({proc.returncode})\n{proc.stderr[-2000:]}", flush=True)
            if (data, model) == BASELINE:
                raise SystemExit("the baseline failed: no ratios to report")
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        results.add(name, row)
        print(f"mesh {name}: {row['tokens_per_s']:.2f} tok/s end to end, {row['decode_tokens_per_s']:.2f} "
              f"decode tok/s, weights/device {row['placed_weights'] / MIB:.0f} MiB (planned "
              f"{row['planned_weights'] / MIB:.0f}), first call {row['first_call_s']:.0f} s", flush=True)
    return results


def ratios(rows: list[dict]) -> list[dict]:
    """Each mesh's figures over the baseline's (the first row)."""
    base = rows[0]
    return [dict(data=r["data"], model=r["model"], tokens_per_s=r["tokens_per_s"] / base["tokens_per_s"],
                 decode_tokens_per_s=r["decode_tokens_per_s"] / base["decode_tokens_per_s"],
                 weights_per_device=r["placed_weights"] / base["placed_weights"],
                 caches_per_device=r["placed_caches"] / base["placed_caches"],
                 planned_per_device=r["planned_bytes"] / base["planned_bytes"],
                 same_tokens=r["tokens_sha1"] == base["tokens_sha1"]) for r in rows[1:]]


def print_tables(rows: list[dict], table: list[dict]) -> None:
    print(f"\n{'mesh':>5} {'tok/s':>7} {'decode tok/s':>12} {'planned MiB':>11} {'weights MiB':>11} "
          f"{'cache MiB':>9} {'XLA args+temp MiB':>17} {'host peak GiB':>13}  collectives in the loop")
    for r in rows:
        xla = "-" if r["xla_arguments_and_temps"] is None else f"{r['xla_arguments_and_temps'] / MIB:.0f}"
        found = ", ".join(f"{n} {k}" for k, n in r["collectives"].items() if n) or "none"
        print(f"{r['data']}x{r['model']:<3} {r['tokens_per_s']:>7.2f} {r['decode_tokens_per_s']:>12.2f} "
              f"{r['planned_bytes'] / MIB:>11.0f} {r['placed_weights'] / MIB:>11.0f} {r['placed_caches'] / MIB:>9.1f} "
              f"{xla:>17} {r['host_peak_rss'] / 2 ** 30:>13.1f}  {found}")
    base = rows[0]
    print(f"\nratios to the {base['data']}x{base['model']} baseline (same run)")
    print(f"{'mesh':>5} {'tok/s':>7} {'decode tok/s':>12} {'weights/dev':>11} {'cache/dev':>9} {'planned/dev':>11} "
          f"{'same tokens':>11}")
    for r in table:
        print(f"{r['data']}x{r['model']:<3} {r['tokens_per_s']:>7.2f} {r['decode_tokens_per_s']:>12.2f} "
              f"{r['weights_per_device']:>11.3f} {r['caches_per_device']:>9.3f} {r['planned_per_device']:>11.3f} "
              f"{str(r['same_tokens']):>11}")


def fake_host_devices(count: int) -> None:
    """Ask XLA for `count` CPU devices unless XLA_FLAGS already says how many; effective only before jax's
    backend starts (the first `jax.devices()` or computation), so `main` calls it first."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--one-mesh" in argv:                         # a child of `run`: one mesh, its row as a JSON line
        parser = argparse.ArgumentParser()
        parser.add_argument("--one-mesh", required=True)
        parser.add_argument("--mesh-config", required=True, help="the parent's BenchConfig as JSON")
        args = parser.parse_args(argv)
        config = config_from_dict(BenchConfig, json.loads(args.mesh_config))
        fake_host_devices(config.host_devices)
        data, model = (int(x) for x in args.one_mesh.split("x"))
        print(json.dumps(run_mesh(config, data, model, config.seed)))
        return 0
    config, out = parse_config(BenchConfig, argv, __doc__, default_out="results/bench_sharding")
    fake_host_devices(config.host_devices)
    model_config = config.model_config()       # fail here, not in a child, on a bad preset or layer count
    for data, model in config.mesh_shapes:
        if data * model > len(jax.devices()) or config.batch % data:
            raise SystemExit(f"mesh {data}x{model}: needs {data * model} of {len(jax.devices())} devices and a "
                             f"batch ({config.batch}) divisible by {data}")
    params = sum(int(np.prod(shape)) for shape in param_shapes(model_config).values())
    print(f"{len(jax.devices())} x {jax.devices()[0].platform} devices; model {config.model} "
          f"({model_config.n_layers} layers, {params / 1e6:,.1f}M parameters, {model_config.dtype}); batch "
          f"{config.batch}, prompt {config.prompt_len}, {config.max_new_tokens} new tokens, T={config.temperature}",
          flush=True)
    rows = [r for r in run(config, out).records.values()]
    table = ratios(rows)
    print_tables(rows, table)
    write_csv(out.with_suffix(".csv"), [dict(kind="mesh", **{k: v for k, v in r.items() if k != "collectives"},
                                             **r["collectives"]) for r in rows]
              + [dict(kind="ratio to 1x1", **r) for r in table])
    print(f"wrote {out}.json and {out}.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
