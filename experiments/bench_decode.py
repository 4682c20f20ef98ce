"""Benchmark: tokens/s and τ of autoregressive vs chain speculative decoding, measured in one run on this machine.

Models are random-weight presets (no trained pair is required), so τ reflects how alike the random target and
drafter are, not a real model pair; the speed ratio is what this benchmark is for. Prints a table (ratio last)
and writes JSON and CSV (config and software versions embedded).

    python experiments/bench_decode.py --out results/bench_decode
    python experiments/bench_decode.py --config quick          # batch 1, T = 0, 32 new tokens
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import jax
import numpy as np

from specjax.bench.timing import timed
from specjax.bench.experiment import parse_config, provenance, write_csv
from specjax.model.config import named_config
from specjax.decode.loop import generate
from specjax.model.decoder import init_model
from specjax.runners.model import early_exit, model_handle
from specjax.sampling import SamplingConfig
from specjax.methods import make_method


@dataclass(frozen=True)
class BenchConfig:
    target: str = "byte-small"
    draft: str = "byte-small-draft"
    early_exit_layers: int = 2
    batch_sizes: tuple[int, ...] = (1, 8)
    num_draft: tuple[int, ...] = (4,)
    temperatures: tuple[float, ...] = (0.0, 1.0)
    prompt_len: int = 32
    max_new_tokens: int = 128
    repeats: int = 3
    seed: int = 0


CONFIG = BenchConfig
PRESETS = {"quick": BenchConfig(batch_sizes=(1,), temperatures=(0.0,), max_new_tokens=32, repeats=1)}


def _time(fn, repeats):
    """(best seconds over `repeats` compiled runs, last result)."""
    fn()                                        # compile + warm up
    runs = [timed(fn) for _ in range(repeats)]
    return min(s for _, s in runs), runs[-1][0]


def run(config: BenchConfig, seed: int) -> list[dict]:
    target = model_handle(init_model(named_config(config.target), seed))
    drafters = {"draft-model": model_handle(init_model(named_config(config.draft), seed + 1)),
                f"early-exit-L{config.early_exit_layers}": early_exit(target, config.early_exit_layers)}
    rng = np.random.default_rng(seed)
    rows = []
    for batch in config.batch_sizes:
        prompts = rng.integers(0, 256, (batch, config.prompt_len)).astype(np.int32)
        lengths = np.full(batch, config.prompt_len, np.int32)
        for temp in config.temperatures:
            sampling = SamplingConfig(temperature=temp)
            key = jax.random.key(seed)
            common = dict(max_new_tokens=config.max_new_tokens, sampling=sampling)
            ar_s, ar = _time(lambda: generate(target, prompts, lengths, key, **common), config.repeats)
            ar_tps = float(np.asarray(ar.lengths).sum() / ar_s)
            rows.append(dict(batch=batch, temperature=temp, method="ar", drafter="-", num_draft=0,
                             tokens_per_s=ar_tps, tau=1.0, speedup=1.0))
            print(f"batch {batch} T={temp}: AR {ar_tps:.1f} tok/s", flush=True)
            for name, drafter in drafters.items():
                for k in config.num_draft:
                    chain = make_method("chain", num_draft=k)
                    sd_s, sd = _time(lambda: generate(target, prompts, lengths, key, method=chain,
                                                      drafter=drafter, **common), config.repeats)
                    tps = float(np.asarray(sd.lengths).sum() / sd_s)
                    rows.append(dict(batch=batch, temperature=temp, method="chain", drafter=name, num_draft=k,
                                     tokens_per_s=tps, tau=sd.acceptance_length, speedup=tps / ar_tps))
                    print(f"  chain {name} K={k}: {tps:.1f} tok/s, tau {sd.acceptance_length:.2f}", flush=True)
    return rows


def main(argv=None) -> None:
    config, out = parse_config(BenchConfig, argv, __doc__, default_out="results/bench_decode", presets=PRESETS)
    rows = run(config, config.seed)
    print(f"\n{'batch':>5} {'T':>4} {'method':>6} {'drafter':>14} {'K':>2} {'tok/s':>8} {'tau':>5} {'SD/AR':>6}")
    for r in rows:
        print(f"{r['batch']:>5} {r['temperature']:>4} {r['method']:>6} {r['drafter']:>14} {r['num_draft']:>2} "
              f"{r['tokens_per_s']:>8.1f} {r['tau']:>5.2f} {r['speedup']:>6.2f}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"config": asdict(config), "provenance": provenance(),
                                                    "rows": rows}, indent=1))
    write_csv(out.with_suffix(".csv"), rows)
    print(f"wrote {out}.json and {out}.csv")


if __name__ == "__main__":
    main()
