"""Where an AR step goes: SmolLM2-135M autoregressive decoding against the weight-streaming bound, this code and a
baseline checkout measured in one run (issue 16, item 5).

Measured in rounds; within a round every figure is taken back to back, the two code versions in alternating order,
and the tables report medians over rounds (the machine is shared with other jobs, so single timings are noisy):
- bound: a bare XLA matrix-vector product over every weight matrix of the model (538 MB in float32), chained as in
  a forward (each product reads the previous one's output; the tied head reads the embedding as stored), `inner`
  passes per jitted loop; GB/s = weight bytes / seconds per pass;
- AR step: batch 1, greedy, a `prompt_len`-token prompt; the difference between `generate` runs of
  `max_new_tokens` and `short_tokens` new tokens (the same compiled loop: both in one bucket) over the steps
  between, so prefill and per-run overhead cancel; GB/s = weight bytes / step seconds.
Each code version runs in its own worker process (`--worker`, with PYTHONPATH set to its checkout), so a baseline is
any other checkout of specjax, e.g. main's: `git worktree add /tmp/specjax-main main`. Both must emit the same
tokens (checked: the change may not alter the decoding). Besides wall time, each figure's process CPU time is kept
(less sensitive to other jobs' load; on 2 cores a CPU-time fraction reads differently from a wall one).

    python experiments/ar_roofline.py --baseline /tmp/specjax-main --rounds 15 --out results/ar_roofline
Writes `<out>.json` (medians, every round's samples; rerun to resume an interrupted run).

Single rounds vary widely on a shared machine: compare versions only within one run, on a machine with nothing
else running. The last run (main against the bound, and a branch against main): experiments/RESULTS.md.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class RooflineConfig:
    baseline: str = ""
    """Another checkout of specjax to measure beside this one ("" = this code only)."""
    prompt_len: int = 256
    """Prompt tokens (random ids from the seed); the cache holds its bucket + the new-token bucket."""
    max_new_tokens: int = 128
    short_tokens: int = 72
    """The shorter run; must share max_new_tokens' bucket so both use one compiled loop."""
    rounds: int = 7
    inner: int = 8
    """Passes per timed bound loop."""
    seed: int = 0


# ---- worker: one process per code version ---------------------------------------------------------------------

def worker(cfg: RooflineConfig) -> None:
    """Answer `bound`, `ar <n>` and `quit` on stdin with one JSON line each on stdout."""
    import jax
    import jax.numpy as jnp

    import specjax
    from specjax.decode.loop import generate
    from specjax.model.io.smollm2 import load_smollm2
    from specjax.runners.model import model_handle
    from specjax.sampling import GREEDY

    model, _ = load_smollm2()
    target = model_handle(model)
    mats = [a for a in jax.tree.leaves(target.params) if a.ndim == 2]
    embedding, rest = mats[0], mats[1:]
    assert embedding.shape == (model.config.vocab_size, model.config.d_model), "the first matrix is the embedding"
    width = max(m.shape[0] for m in rest)

    @jax.jit
    def bound(v):
        def one_pass(_, v):
            x = v
            for m in rest:
                y = x[:, :m.shape[0]] @ m
                x = jnp.pad(y, ((0, 0), (0, width - y.shape[1]))) * 1e-3 + v
            logits = jnp.einsum("bd,vd->bv", x[:, :embedding.shape[1]], embedding)
            return v + logits[:, :width] * 1e-30
        return jax.lax.fori_loop(0, cfg.inner, one_pass, v)

    rng = np.random.default_rng(cfg.seed)
    prompt = rng.integers(0, model.config.vocab_size, (1, cfg.prompt_len)).astype(np.int32)
    lengths = np.array([cfg.prompt_len], np.int32)

    def ar(n):
        return generate(target, prompt, lengths, jax.random.key(cfg.seed), max_new_tokens=n,
                        sampling=GREEDY)

    def timed(fn):
        t, c = time.perf_counter(), time.process_time()
        out = jax.block_until_ready(fn())
        return out, time.perf_counter() - t, time.process_time() - c

    v0 = jnp.ones((1, width), jnp.float32)
    jax.block_until_ready(bound(v0))
    tokens = np.asarray(ar(cfg.max_new_tokens).tokens[0]).tolist()
    ar(cfg.short_tokens).tokens.block_until_ready()
    print(json.dumps({"ready": True, "specjax": list(specjax.__path__)[0], "tokens": tokens,
                      "weight_bytes": int(sum(m.size * m.dtype.itemsize for m in mats))}), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "quit":
            return
        if cmd[0] == "bound":
            _, wall, cpu = timed(lambda: bound(v0))
            print(json.dumps({"wall": wall / cfg.inner, "cpu": cpu / cfg.inner}), flush=True)
        else:
            _, wall, cpu = timed(lambda: ar(int(cmd[1])))
            print(json.dumps({"wall": wall, "cpu": cpu}), flush=True)


class Worker:
    """A worker process on the checkout at `path`."""

    def __init__(self, path: Path, cfg: RooflineConfig):
        env = dict(os.environ, PYTHONPATH=str(path))
        args = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(asdict(cfg))]
        self.proc = subprocess.Popen(args, env=env, cwd=path, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        self.info = self._read()
        self.info["commit"] = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True,
                                             text=True).stdout.strip()
        if not Path(self.info["specjax"]).resolve().is_relative_to(path.resolve()):
            raise RuntimeError(f"the worker for {path} imported specjax from {self.info['specjax']}")

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker exited with {self.proc.wait()}")
        return json.loads(line)

    def ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait()


# ---- driver ----------------------------------------------------------------------------------------------------

STATS = ("median", "min")
"""How rounds become one figure: the median of the per-round step estimates, or the minimum of each run's time
over rounds (other jobs only ever slow a run down, so the minimum is the steadier estimate on a loaded machine)."""


def summarize(records: list[dict], cfg: RooflineConfig, weight_bytes: int, versions: list[str]) -> dict:
    steps = cfg.max_new_tokens - cfg.short_tokens
    out = {}
    for stat in STATS:
        for clock in ("wall", "cpu"):
            out[f"{stat} {clock}"] = _row(records, stat, clock, steps, weight_bytes, versions)
    return out


def _row(records, stat, clock, steps, weight_bytes, versions) -> dict:
    def times(v, run):
        return [r[v][run][clock] for r in records]

    bound_s = float((np.median if stat == "median" else np.min)([r["bound"][clock] for r in records]))
    row = {"bound_gb_per_s": weight_bytes / bound_s / 1e9}
    for v in versions:
        if stat == "median":
            step = float(np.median([(f - s) / steps for f, s in zip(times(v, "full"), times(v, "short"))]))
        else:
            step = (min(times(v, "full")) - min(times(v, "short"))) / steps
        row[v] = {"step_ms": step * 1e3, "tokens_per_s": 1 / step, "gb_per_s": weight_bytes / step / 1e9,
                  "fraction_of_bound": bound_s / step}
    return row


def run(cfg: RooflineConfig, out: Path) -> dict:
    from specjax.bench.decoding import Results
    from specjax.bench.experiment import provenance

    paths = {"this": ROOT} | ({"baseline": Path(cfg.baseline)} if cfg.baseline else {})
    results = Results(out.with_suffix(".json"), asdict(cfg))
    workers = {name: Worker(path, cfg) for name, path in paths.items()}
    try:
        tokens = {name: w.info["tokens"] for name, w in workers.items()}
        if len({json.dumps(t) for t in tokens.values()}) != 1:
            raise RuntimeError(f"the versions decode different tokens: {tokens}")
        weight_bytes = workers["this"].info["weight_bytes"]
        for r in range(cfg.rounds):
            key = f"round {r}"
            if results.done(key):
                continue
            order = list(workers) if r % 2 == 0 else list(reversed(workers))
            record = {"bound": workers["this"].ask("bound")}
            for name in order:
                record[name] = {"full": workers[name].ask(f"ar {cfg.max_new_tokens}"),
                                "short": workers[name].ask(f"ar {cfg.short_tokens}")}
            results.add(key, record)
            steps = cfg.max_new_tokens - cfg.short_tokens
            print(f"{key}: bound {weight_bytes / record['bound']['wall'] / 1e9:.1f} GB/s, " + ", ".join(
                f"{n} step {(record[n]['full']['wall'] - record[n]['short']['wall']) * 1e3 / steps:.1f} ms"
                for n in order), flush=True)
    finally:
        for w in workers.values():
            w.close()
    records = [results.records[f"round {r}"] for r in range(cfg.rounds)]
    summary = summarize(records, cfg, weight_bytes, list(paths))
    results.add("summary", {"weight_bytes": weight_bytes, "tokens_equal": True, "medians": summary,
                            "commits": {name: w.info["commit"] for name, w in workers.items()},
                            "provenance": provenance()})
    return summary


CONFIG = RooflineConfig  # what `main` parses (tests/apps/test_experiments.py)


def main(argv=None) -> None:
    from specjax.bench.experiment import config_from_dict, parse_config

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--worker"]:                         # a worker process (`Worker`), not a user's command
        worker(config_from_dict(RooflineConfig, json.loads(argv[1])))
        return
    cfg, out = parse_config(RooflineConfig, argv, __doc__, default_out="results/ar_roofline")
    summary = run(cfg, out)
    versions = [v for v in ("baseline", "this") if v in summary["median wall"]]
    print(f"\n{cfg.rounds} interleaved rounds (prompt {cfg.prompt_len}, batch 1, greedy; load average "
          f"{os.getloadavg()[0]:.1f}: a shared machine)")
    print(f"{'statistic':>11} {'version':>9} {'step ms':>8} {'tok/s':>7} {'GB/s':>6} {'bound GB/s':>10} "
          f"{'of bound':>8} {'vs base':>7}")
    for name, row in summary.items():
        for v in versions:
            r = row[v]
            ratio = r["tokens_per_s"] / row["baseline"]["tokens_per_s"] if "baseline" in row else float("nan")
            print(f"{name:>11} {v:>9} {r['step_ms']:>8.1f} {r['tokens_per_s']:>7.1f} {r['gb_per_s']:>6.1f} "
                  f"{row['bound_gb_per_s']:>10.1f} {r['fraction_of_bound']:>8.2f} {ratio:>7.2f}")
    print(f"wrote {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
