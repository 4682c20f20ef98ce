"""Peer benchmark: specjax vs Hugging Face transformers on the same SmolLM2-135M weights, prompts and machine, in
one run. Measures greedy tokens/s of AR decoding and of speculative decoding (specjax prompt lookup, early-exit
self-draft and EAGLE heads vs transformers' prompt lookup and early-exit assisted generation), prints a ratio table
last and writes JSON + PNG.

    python experiments/bench_peer.py --prompts 4 --max-new-tokens 64 --threads 2 --out results/bench_peer.json

The transformers side runs first, in its own subprocess (`--hf-worker`): in one process with JAX, torch's decoding
collapsed to ~1 tok/s after the JAX runs (both thread pools fighting over 2 cores). Both sides get the same thread
count (torch.set_num_threads; XLA's intra-op pool) and the same stopping rule (EOS or max_new_tokens).
Needs the `models` and `parity` extras.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BenchConfig:
    prompt_set: str = "mt_bench"
    prompts: int = 4
    max_new_tokens: int = 64
    exit_layer: int = 4
    num_draft: int = 4
    lookup_num_draft: int = 4
    threads: int = 2
    seed: int = 0


def hf_model_from(model):
    """A transformers LlamaForCausalLM (float32, eval) holding exactly the weights of a specjax `LlamaLM`."""
    import numpy as np
    import torch
    import transformers

    from specjax.io.weights import hf_tensors_from_model
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
    from specjax.io.smollm2 import load_smollm2
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
    ids_path.write_text(json.dumps({"config": cfg.__dict__, "ids": ids}))
    subprocess.run([sys.executable, __file__, "--hf-worker", str(ids_path), "--out", str(rows_path)], check=True)
    return json.loads(rows_path.read_text())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for f, v in BenchConfig().__dict__.items():
        p.add_argument(f"--{f.replace('_', '-')}", type=type(v), default=v)
    p.add_argument("--out", type=Path, default=Path("results/bench_peer.json"))
    p.add_argument("--hf-worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.hf_worker is not None:
        job = json.loads(args.hf_worker.read_text())
        return hf_worker(BenchConfig(**job["config"]), job["ids"], args.out)
    cfg = BenchConfig(**{f: getattr(args, f) for f in BenchConfig().__dict__})
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={cfg.threads}")

    from specjax.apps.bench import decode_prompts, summarize
    from specjax.apps.models import load_drafter, load_target
    from specjax.io.prompts import load_prompts
    from specjax.io.smollm2 import ModelNotInstalledError
    from specjax.sampling import SamplingConfig
    from specjax.speculators import make_method
    try:
        target = load_target("smollm2")
    except ModelNotInstalledError as e:
        print(e, file=sys.stderr)
        return 2
    prompts = load_prompts(cfg.prompt_set, cfg.prompts)
    ids = [target.encode_prompt(p) for p in prompts]
    print("transformers side (own process) ...", file=sys.stderr, flush=True)
    hf_rows = run_hf_side(cfg, ids, args.out.parent / "bench_peer_hf")
    greedy = SamplingConfig(temperature=0.0)
    common = dict(max_new_tokens=cfg.max_new_tokens, sampling=greedy, eos_id=target.eos_id, seed=cfg.seed)

    print("specjax side ...", file=sys.stderr, flush=True)
    rows = {}
    ar = decode_prompts(target.handle, ids, method="ar", **common)
    rows["specjax AR"] = summarize(ar)
    names = ["lookup:3", f"early-exit:{cfg.exit_layer}", "eagle", "eagle-lowrank:128"]
    sd_equal = True
    for name in names:
        k = cfg.lookup_num_draft if name.startswith("lookup") else cfg.num_draft
        sd = decode_prompts(target.handle, ids, method=make_method("chain", num_draft=k),
                            drafter=load_drafter(name, target), **common)
        rows[f"specjax {name} K{k}"] = summarize(sd)
        sd_equal = sd_equal and all(a.tokens == s.tokens for a, s in zip(ar, sd))
        print(f"  {name}: tau {rows[f'specjax {name} K{k}']['tau']:.2f}", file=sys.stderr, flush=True)

    hf_equal = hf_rows["transformers AR"]["outputs"] == [a.tokens for a in ar]
    for name, r in hf_rows.items():
        rows[name] = {k: v for k, v in r.items() if k != "outputs"}
    base = rows["transformers AR"]["tokens_per_s"]
    print(f"\nSmolLM2-135M, {cfg.prompt_set} x{cfg.prompts}, greedy, max_new_tokens={cfg.max_new_tokens}, "
          f"{cfg.threads} threads each")
    print(f"specjax AR output == transformers AR output: {hf_equal}; every specjax SD == specjax AR: {sd_equal}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'method':<38}{'tau':>6}{'tokens':>8}{'tok/s':>8}{'vs HF AR':>10}")
    for name, r in rows.items():
        r["ratio_vs_transformers_ar"] = r["tokens_per_s"] / base
        tau = f"{r['tau']:.2f}" if "tau" in r else "-"
        print(f"{name:<38}{tau:>6}{r['tokens']:>8d}{r['tokens_per_s']:>8.1f}{r['ratio_vs_transformers_ar']:>9.2f}x")
    best = max((n for n in rows if n.startswith("specjax") and n != "specjax AR"),
               key=lambda n: rows[n]["tokens_per_s"])
    print(f"ratio: specjax AR / transformers AR = {rows['specjax AR']['ratio_vs_transformers_ar']:.2f}x; "
          f"best specjax speculative ({best}) / transformers AR = {rows[best]['ratio_vs_transformers_ar']:.2f}x")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"config": cfg.__dict__, "rows": rows, "specjax_equals_transformers": hf_equal,
                                    "sd_equals_ar": sd_equal, "load_avg": os.getloadavg()}, indent=1))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(8, 3.5))
        ax.barh(list(rows), [r["tokens_per_s"] for r in rows.values()])
        ax.set_xlabel("tokens/s (greedy, batch 1)")
        fig.tight_layout()
        fig.savefig(args.out.with_suffix(".png"))
    except Exception as e:   # the PNG is a convenience; the JSON is the record
        print(f"no PNG: {e}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
