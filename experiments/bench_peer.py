"""Peer benchmark: specjax vs Hugging Face transformers on the same SmolLM2-135M weights, prompts and machine, in
one run. Measures greedy tokens/s of AR decoding and of speculative decoding (specjax prompt lookup, early-exit
self-draft and EAGLE heads vs transformers' prompt lookup and early-exit assisted generation), prints a ratio table
last and writes JSON + PNG.

    python experiments/bench_peer.py --prompts 4 --max-new-tokens 64 --threads 2 --out results/bench_peer

The transformers side runs first, in its own subprocess (`--hf-worker`): in one process with JAX, torch's decoding
collapsed after the JAX runs (both thread pools fighting over 2 cores; experiments/RESULTS.md). Both sides get the
same thread count (torch.set_num_threads; XLA's intra-op pool) and the same stopping rule (EOS or max_new_tokens).
Writes `<out>.json` (config, software versions, one record per side / method, decoded tokens included; resumable),
`<out>.csv` and `<out>.png`. Needs the `models` and `parity` extras.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from specjax.bench.decoding import Results
from specjax.bench.experiment import config_from_dict, parse_config, progress, write_csv


@dataclass(frozen=True)
class BenchConfig:
    prompt_set: str = "mt_bench"
    prompts: int = 4
    max_new_tokens: int = 64
    exit_layer: int = 4
    """the early-exit drafter's layer, on both sides"""
    num_draft: int = 4
    """K of the early-exit and EAGLE chains"""
    lookup_num_draft: int = 4
    """K of specjax's prompt-lookup chains"""
    threads: int = 2
    """torch's threads and XLA's intra-op pool, each side"""
    seed: int = 0


CONFIG = BenchConfig


def hf_model_from(model):
    """A transformers LlamaForCausalLM (float32, eval) holding exactly the weights of a specjax `LlamaLM`."""
    import numpy as np
    import torch
    import transformers

    from specjax.model.io.weights import hf_tensors_from_model
    c = model.config
    cfg = transformers.LlamaConfig(vocab_size=c.vocab_size, hidden_size=c.d_model, intermediate_size=c.d_ff,
                                   num_hidden_layers=c.n_layers, num_attention_heads=c.n_heads,
                                   num_key_value_heads=c.n_kv_heads, rms_norm_eps=c.rms_eps, rope_theta=c.rope_theta,
                                   tie_word_embeddings=c.tie_embeddings, max_position_embeddings=8192,
                                   bos_token_id=1, eos_token_id=2)
    hf = transformers.LlamaForCausalLM(cfg).float().eval()
    state = {k: torch.from_numpy(np.array(v)) for k, v in hf_tensors_from_model(model).items()}
    hf.load_state_dict(state, strict=False)
    hf.tie_weights()
    return hf


def hf_decode(hf, prompts_ids, max_new_tokens: int, eos_id: int, **gen_kwargs) -> dict:
    """Greedy generate each prompt (batch 1) after one warm-up call; tokens, seconds, tokens/s, outputs."""
    import torch
    outs, secs, toks = [], 0.0, 0
    with torch.no_grad():
        hf.generate(torch.tensor([prompts_ids[0]]), max_new_tokens=4, do_sample=False, eos_token_id=eos_id,
                    pad_token_id=eos_id, **gen_kwargs)
        for ids in prompts_ids:
            t0 = time.perf_counter()
            out = hf.generate(torch.tensor([ids]), max_new_tokens=max_new_tokens, do_sample=False,
                              eos_token_id=eos_id, pad_token_id=eos_id, **gen_kwargs)
            secs += time.perf_counter() - t0
            new = out[0, len(ids):].tolist()
            if eos_id in new:          # count up to and including EOS, as specjax does
                new = new[:new.index(eos_id) + 1]
            toks += len(new)
            outs.append(new)
    return {"tokens": toks, "seconds": secs, "tokens_per_s": toks / secs, "outputs": outs}


def hf_worker(cfg: BenchConfig, ids: list[list[int]], out: Path) -> int:
    """The transformers side, run in its own process: AR, early-exit assisted and prompt-lookup decoding."""
    import torch
    torch.set_num_threads(cfg.threads)
    from specjax.model.io.smollm2 import load_smollm2
    target, tok = load_smollm2()
    hf = hf_model_from(target)
    del target
    rows = {"transformers AR": hf_decode(hf, ids, cfg.max_new_tokens, tok.eos_id),
            f"transformers early-exit L{cfg.exit_layer}": hf_decode(hf, ids, cfg.max_new_tokens, tok.eos_id,
                                                                    assistant_early_exit=cfg.exit_layer),
            "transformers prompt lookup": hf_decode(hf, ids, cfg.max_new_tokens, tok.eos_id,
                                                    prompt_lookup_num_tokens=10)}
    out.write_text(json.dumps(rows))
    return 0


def run_hf_side(cfg: BenchConfig, ids: list[list[int]], workdir: Path) -> dict:
    """Run `hf_worker` in a fresh Python process and return its rows."""
    workdir.mkdir(parents=True, exist_ok=True)
    ids_path, rows_path = workdir / "hf_prompts.json", workdir / "hf_rows.json"
    ids_path.write_text(json.dumps({"config": asdict(cfg), "ids": ids}))
    subprocess.run([sys.executable, __file__, "--hf-worker", str(ids_path), "--hf-rows", str(rows_path)], check=True)
    return json.loads(rows_path.read_text())


def run(cfg: BenchConfig, out: Path) -> Results | None:
    """The transformers side (one record, its own process), then specjax AR and each drafter's chains, every
    record not yet in `<out>.json`; None when SmolLM2 is not installed."""
    from specjax.bench.decoding import decode_prompts, summarize
    from specjax.apps.models import load_drafter, load_target
    from specjax.bench.prompts import load_prompts
    from specjax.model.io.smollm2 import ModelNotInstalledError
    from specjax.sampling import SamplingConfig
    from specjax.methods import make_method

    results = Results(out.with_suffix(".json"), asdict(cfg))
    try:
        target = load_target("smollm2", cfg.seed)
    except ModelNotInstalledError as e:
        print(e, file=sys.stderr)
        return None
    ids = [target.encode_prompt(p) for p in load_prompts(cfg.prompt_set, cfg.prompts)]
    if not results.done("transformers"):
        print("transformers side (own process) ...", file=sys.stderr, flush=True)
        results.add("transformers", run_hf_side(cfg, ids, out.parent / f"{out.name}_hf"))
    common = dict(max_new_tokens=cfg.max_new_tokens, sampling=SamplingConfig(temperature=0.0), eos_id=target.eos_id,
                  seed=cfg.seed)
    chains = (("lookup:3", cfg.lookup_num_draft), (f"early-exit:{cfg.exit_layer}", cfg.num_draft),
              ("eagle", cfg.num_draft), ("eagle-lowrank:128", cfg.num_draft))
    drafters = [("specjax AR", None, 0)] + [(f"specjax {name} K{k}", name, k) for name, k in chains]
    for label, name, k in progress(drafters, len(drafters), "specjax side"):
        if results.done(label):
            continue
        method = make_method("ar") if name is None else make_method("chain", num_draft=k)
        runs = decode_prompts(target.handle, ids, method=method,
                              drafter=None if name is None else load_drafter(name, target, cfg.seed + 1), **common)
        row = dict(summarize(runs), outputs=[r.tokens for r in runs])
        if name is not None:
            row["equals_ar"] = row["outputs"] == results.records["specjax AR"]["outputs"]
        results.add(label, row)
    return results


def table(records: dict) -> dict[str, dict]:
    """Rows by method name (without the decoded tokens), each with its tokens/s over transformers AR's."""
    rows = {**{name: r for name, r in records.items() if name != "transformers"}, **records["transformers"]}
    rows = {name: {k: v for k, v in r.items() if k != "outputs"} for name, r in rows.items()}
    base = rows["transformers AR"]["tokens_per_s"]
    for r in rows.values():
        r["ratio_vs_transformers_ar"] = r["tokens_per_s"] / base
    return rows


def plot(rows: dict[str, dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.barh(list(rows), [r["tokens_per_s"] for r in rows.values()])
    ax.set_xlabel("tokens/s (greedy, batch 1)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--hf-worker" in argv:                        # the child: the transformers side, rows to --hf-rows
        p = argparse.ArgumentParser()
        p.add_argument("--hf-worker", type=Path, required=True)
        p.add_argument("--hf-rows", type=Path, required=True)
        args = p.parse_args(argv)
        job = json.loads(args.hf_worker.read_text())
        return hf_worker(config_from_dict(BenchConfig, job["config"]), job["ids"], args.hf_rows)
    cfg, out = parse_config(BenchConfig, argv, __doc__, default_out="results/bench_peer")
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={cfg.threads}")
    results = run(cfg, out)
    if results is None:
        return 2
    records = results.records
    ar = records["specjax AR"]["outputs"]
    hf_equal = records["transformers"]["transformers AR"]["outputs"] == ar
    sd_equal = all(r.get("equals_ar", True) for r in records.values())
    rows = table(records)
    print(f"\nSmolLM2-135M, {cfg.prompt_set} x{cfg.prompts}, greedy, max_new_tokens={cfg.max_new_tokens}, "
          f"{cfg.threads} threads each")
    print(f"specjax AR output == transformers AR output: {hf_equal}; every specjax SD == specjax AR: {sd_equal}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'method':<38}{'tau':>6}{'tokens':>8}{'tok/s':>8}{'vs HF AR':>10}")
    for name, r in rows.items():
        tau = f"{r['tau']:.2f}" if "tau" in r else "-"
        print(f"{name:<38}{tau:>6}{r['tokens']:>8d}{r['tokens_per_s']:>8.1f}{r['ratio_vs_transformers_ar']:>9.2f}x")
    best = max((n for n in rows if n.startswith("specjax") and n != "specjax AR"),
               key=lambda n: rows[n]["tokens_per_s"])
    print(f"ratio: specjax AR / transformers AR = {rows['specjax AR']['ratio_vs_transformers_ar']:.2f}x; "
          f"best specjax speculative ({best}) / transformers AR = {rows[best]['ratio_vs_transformers_ar']:.2f}x")
    write_csv(out.with_suffix(".csv"), [dict(method=name, **r) for name, r in rows.items()])
    plot(rows, out.with_suffix(".png"))
    print(f"wrote {out}.json, {out}.csv and {out}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
