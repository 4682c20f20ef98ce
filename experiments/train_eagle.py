"""Train the EAGLE-style head for SmolLM2-135M by distillation on the target's own outputs over an offline corpus
(CPython standard library source + the KJV Bible text of Debian's `bible-kjv` package when installed), checkpoint
it with orbax, and measure acceptance (τ) of every drafter on MT-bench and HumanEval at temperature 0 and 1.

    python experiments/train_eagle.py train --steps 120 --out specjax/data/eagle_smollm2
    python experiments/train_eagle.py eval --ckpt specjax/data/eagle_smollm2 --prompts 3 --json results/eagle.json

The loss is KL(p || q) restricted to the VocabTrim set (the `trim` most frequent corpus tokens, renormalised on
both sides): it keeps the head's matmul small on a 2-core CPU and matches the trimmed drafter exactly.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class EagleTrainConfig:
    steps: int = 120
    batch_size: int = 8
    seq_len: int = 128
    learning_rate: float = 2e-3
    warmup_steps: int = 10
    d_ff: int = 768
    trim: int = 8192
    corpus_chars: int = 3_000_000
    seed: int = 0


def corpus_text(max_chars: int, seed: int) -> str:
    """Deterministic mix: stdlib .py files (sorted, sampled by seed) and, if `bible` is installed, KJV books."""
    rng = np.random.default_rng(seed)
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    files = [files[i] for i in rng.permutation(len(files))]
    parts, size = [], 0
    kjv = ""
    if shutil.which("bible"):
        books = ["Gen1:1-50:26", "Mat1:1-28:20", "Psa1:1-150:6", "Pro1:1-31:31"]
        out = [subprocess.run(["bible", "-f", b], capture_output=True, text=True, timeout=60).stdout for b in books]
        kjv = "\n".join(line.split(" ", 1)[1] for text in out for line in text.splitlines() if " " in line)
    budget_code = max_chars // 2 if kjv else max_chars
    for f in files:
        text = f.read_text(errors="ignore")
        parts.append(text)
        size += len(text)
        if size >= budget_code:
            break
    if kjv:
        parts.append(kjv[: max_chars - size])
    return "\n\n".join(parts)


def train(args) -> int:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from specjax.eagle import frequent_token_ids, init_eagle
    from specjax.io.checkpoint import save_checkpoint
    from specjax.io.smollm2 import load_smollm2
    from specjax.train_drafter import TrainConfig, corpus_batches, train_distill

    cfg = EagleTrainConfig(**{k: getattr(args, k) for k in asdict(EagleTrainConfig())})
    target, tok = load_smollm2()
    t0 = time.time()
    ids = np.asarray(tok.encode(corpus_text(cfg.corpus_chars, cfg.seed)), np.int32)
    keep = frequent_token_ids(ids, target.config.vocab_size, cfg.trim, always=(tok.eos_id, tok.bos_id))
    print(f"corpus: {ids.size} tokens ({time.time() - t0:.1f}s); trim set {keep.size}", flush=True)
    drafter, params = init_eagle(target, d_ff=cfg.d_ff, seed=cfg.seed)
    embedding = params["embedding"]
    keep_j = jnp.asarray(keep, jnp.int32)
    tgraph, tparams = nnx.split(target)

    def target_apply(tokens):
        positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
        _, hidden, _ = nnx.merge(tgraph, tparams)(tokens, positions)
        return hidden @ embedding[keep_j].T, hidden          # trimmed teacher logits

    def student_apply(head, tokens, hidden):
        positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
        features = jnp.concatenate([jnp.zeros_like(hidden[:, :1]), hidden[:, :-1]], axis=1)
        h, _ = drafter.hidden({"head": head, "embedding": embedding}, tokens, positions, features)
        return h @ embedding[keep_j].T

    tcfg = TrainConfig(steps=cfg.steps, learning_rate=cfg.learning_rate, warmup_steps=cfg.warmup_steps,
                       checkpoint_every=max(cfg.steps // 4, 1))
    work = Path(args.work)
    t0 = time.time()
    head, _, losses = train_distill(params["head"], student_apply, target_apply,
                                    corpus_batches(ids, cfg.batch_size, cfg.seq_len, cfg.seed), tcfg,
                                    checkpoint_dir=work, log_every=10, stop_after=args.stop_after)
    done = args.stop_after or cfg.steps
    print(f"trained {len(losses)} steps here (global step {done} of {cfg.steps}) in {time.time() - t0:.0f}s",
          flush=True)
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    head_bf16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), head)     # shipped at half size
    save_checkpoint(out, {"head": head_bf16, "keep_ids": jnp.asarray(keep, jnp.int32)}, step=done,
                    config=target.config, extra={"train": asdict(cfg), "stopped_at": done, "losses": losses})
    print(f"wrote {out}")
    return 0


def evaluate(args) -> int:
    import jax

    from specjax.cli_demo import decode_all, encode_prompts, summarize
    from specjax.drafters import early_exit_drafter
    from specjax.eagle import load_eagle
    from specjax.io.prompts import load_prompts
    from specjax.io.smollm2 import load_smollm2
    from specjax.sampling import SamplingConfig

    target, tok = load_smollm2()
    drafters = {f"early_exit_L{args.exit_layer}": early_exit_drafter(target, args.exit_layer),
                "eagle": load_eagle(args.ckpt, target),
                "eagle_vocabtrim": load_eagle(args.ckpt, target, trim=True)}
    results = {}
    for temp in (0.0, 1.0):
        sampling = SamplingConfig(temperature=temp)
        for set_name in ("mt_bench", "humaneval"):
            # one bucket for both sets, so each (method, temperature) compiles once
            tokens, lengths = encode_prompts(tok, load_prompts(set_name, args.prompts), bucket=args.bucket)
            common = dict(max_new_tokens=args.max_new_tokens, sampling=sampling, eos_id=tok.eos_id, seed=args.seed)
            ar = decode_all(target, tokens, lengths, method="ar", **common)
            row = {"ar": summarize(ar)}
            for name, d in drafters.items():
                runs = decode_all(target, tokens, lengths, method="chain", drafter=d, num_draft=args.num_draft,
                                  **common)
                row[name] = summarize(runs)
                if temp == 0.0:
                    row[name]["equals_ar"] = all(a.tokens == r.tokens for a, r in zip(ar, runs))
            results[f"T{temp:g}/{set_name}"] = row
            print(f"T={temp:g} {set_name}: " + ", ".join(f"{n} tau={r['tau']:.2f} {r['tokens_per_s']:.1f} tok/s"
                                                        for n, r in row.items()), flush=True)
    print(f"\n{'setting':<18}{'drafter':<20}{'tau':>6}{'tok/s':>8}{'vs AR':>8}")
    for key, row in results.items():
        for name, r in row.items():
            print(f"{key:<18}{name:<20}{r['tau']:>6.2f}{r['tokens_per_s']:>8.1f}"
                  f"{r['tokens_per_s'] / row['ar']['tokens_per_s']:>7.2f}x")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=1, default=str))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(8, 3.5))
        names = [n for n in next(iter(results.values())) if n != "ar"]
        for i, name in enumerate(names):
            ax.bar(np.arange(len(results)) + 0.25 * i, [row[name]["tau"] for row in results.values()], 0.25,
                   label=name)
        ax.set_xticks(np.arange(len(results)) + 0.25, list(results), fontsize=7)
        ax.set_ylabel("τ (tokens per target call)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(Path(args.json).with_suffix(".png"))
    except Exception as e:
        print(f"no PNG: {e}")
    print(f"wrote {args.json}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    for f, v in asdict(EagleTrainConfig()).items():
        t.add_argument(f"--{f.replace('_', '-')}", type=type(v), default=v)
    t.add_argument("--work", default="results/eagle_work", help="resumable training checkpoints")
    t.add_argument("--stop-after", type=int, default=None, help="stop (and ship) after this global step; "
                   "a later run with the same --work resumes")
    t.add_argument("--out", default="specjax/data/eagle_smollm2")
    e = sub.add_parser("eval")
    e.add_argument("--ckpt", default="specjax/data/eagle_smollm2")
    e.add_argument("--prompts", type=int, default=3)
    e.add_argument("--max-new-tokens", type=int, default=64)
    e.add_argument("--num-draft", type=int, default=4)
    e.add_argument("--exit-layer", type=int, default=4)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--bucket", type=int, default=256, help="prompts are right-padded to a multiple of this")
    e.add_argument("--json", default="results/eagle_eval.json")
    args = p.parse_args(argv)
    return train(args) if args.cmd == "train" else evaluate(args)


if __name__ == "__main__":
    sys.exit(main())
