"""The training-time τ estimate against τ measured by decoding: SmolLM2-135M with the shipped EAGLE head, chains of
K = 1..K_max drafts, at each temperature, one batch of prompts decoded at once.

- measured: the chain decodes the prompts (batch = every prompt); τ = the mean over its rounds of accepted + 1, with
  the standard error over rounds beside it (the last round of a row, cut by the token budget or EOS, is dropped);
- estimate: `specjax.bench.acceptance.text_chain_tau` on the AR answers to the same prompts at the same temperature
  (the target's own text, which is what the estimator needs): the head unrolled on its own outputs along that text,
  E[prod min(1, q/p) * sum min(p, q)] per depth; no decoding of the chain. At temperature 0 the estimate is the
  exact τ on the AR text; what separates it from the measured τ is the drafter's cache (in decoding it holds the
  accepted drafts as the head scored them, re-scored here with the target's features) and which starts rounds fall
  on.

    python experiments/tau_estimate.py --prompts 8 --max-new-tokens 96 --out results/tau_estimate
Writes `<out>.json` (resumable per temperature), `<out>.csv` and `<out>.png`.

Its last run, against the head shipped before 2026-11-30: experiments/RESULTS.md.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from specjax.bench.experiment import parse_config, progress, write_csv


@dataclass(frozen=True)
class TauEstimateConfig:
    prompt_set: str = "mt_bench"
    prompts: int = 8
    """prompts decoded together (the batch)"""
    max_new_tokens: int = 96
    k_max: int = 5
    """chains of K = 1..k_max drafts"""
    temperatures: tuple[float, ...] = (0.0, 1.0)
    drafter: str = "eagle"
    ckpt: str = ""
    """a head trained by `train_eagle.py train` (its VocabTrim variant) instead of `drafter`"""
    seed: int = 0


CONFIG = TauEstimateConfig


def measured_tau(accepted: np.ndarray) -> tuple[float, float]:
    """(mean of accepted + 1 over the rounds that ran, its standard error); accepted `[B, R]` (-1: no round). Each
    row's last round is dropped: the token budget or EOS may have cut it short."""
    per_round = []
    for row in accepted:
        ran = row[row >= 0]
        per_round += (ran[:-1] + 1).tolist()
    x = np.asarray(per_round, np.float64)
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x)))


def run_temperature(cfg: TauEstimateConfig, target, drafter, ids: list[list[int]], temperature: float) -> dict:
    import jax

    from specjax.bench.acceptance import text_chain_tau
    from specjax.decode.batching import pad_prompts
    from specjax.decode.loop import generate
    from specjax.sampling import SamplingConfig
    from specjax.methods import make_method

    sampling = SamplingConfig(temperature=temperature)
    tokens, lengths = pad_prompts(ids)
    common = dict(max_new_tokens=cfg.max_new_tokens, sampling=sampling, eos_id=target.eos_id)
    ar = generate(target.handle, tokens, lengths, jax.random.key(cfg.seed), **common)
    texts = [p + np.asarray(ar.tokens[i, :int(ar.lengths[i])]).tolist() for i, p in enumerate(ids)]
    keep = [i for i, t in enumerate(texts) if len(t) > len(ids[i]) + cfg.k_max + 1]
    estimate = text_chain_tau(target.handle, drafter, [texts[i] for i in keep], [len(ids[i]) for i in keep],
                              cfg.k_max, sampling)
    rows = []
    for k in range(1, cfg.k_max + 1):
        out = generate(target.handle, tokens, lengths, jax.random.key(cfg.seed + k), method=make_method(
            "chain", num_draft=k), drafter=drafter, **common)
        tau, se = measured_tau(np.asarray(out.accepted))
        rows.append({"temperature": temperature, "K": k, "measured_tau": tau, "measured_se": se,
                     "estimated_tau": float(estimate[k - 1]), "error": float(estimate[k - 1]) / tau - 1,
                     # every round alike (e.g. an untrained head accepting nothing): no spread to count in
                     "error_in_se": (float(estimate[k - 1]) - tau) / se if se > 0 else float("nan")})
    return {"rows": rows, "answer_tokens": int(sum(len(t) - len(p) for t, p in zip(texts, ids)))}


def plot(rows: list[dict], path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for t in sorted({r["temperature"] for r in rows}):
        rs = [r for r in rows if r["temperature"] == t]
        ks = [r["K"] for r in rs]
        ax.errorbar(ks, [r["measured_tau"] for r in rs], yerr=[2 * r["measured_se"] for r in rs], fmt="o",
                    capsize=3, label=f"measured, T = {t:g} (±2 se)")
        ax.plot(ks, [r["estimated_tau"] for r in rs], "x--", label=f"estimate, T = {t:g}")
    ax.set(xlabel="K (chain drafts)", ylabel="τ (tokens per round)", title="training-time τ estimate vs decoding")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    from specjax.bench.decoding import Results
    from specjax.apps.models import load_drafter, load_target
    from specjax.bench.prompts import load_prompts

    cfg, out = parse_config(TauEstimateConfig, argv, __doc__, default_out="results/tau_estimate")
    results = Results(out.with_suffix(".json"), asdict(cfg))
    target = load_target("smollm2", cfg.seed)
    if cfg.ckpt:
        import dataclasses

        from specjax.runners.eagle import eagle_target, load_eagle
        target = dataclasses.replace(target, handle=eagle_target(cfg.ckpt, target.handle))    # fused features?
        drafter = load_eagle(cfg.ckpt, target.handle, trim=True)
    else:
        drafter = load_drafter(cfg.drafter, target, cfg.seed + 1)
    ids = [target.encode_prompt(p) for p in load_prompts(cfg.prompt_set, cfg.prompts)]
    for t in progress(cfg.temperatures, len(cfg.temperatures), "temperatures"):
        if not results.done(f"T={t:g}"):
            results.add(f"T={t:g}", run_temperature(cfg, target, drafter, ids, t))
    rows = [r for rec in results.records.values() for r in rec["rows"]]
    print(f"\n{'T':>4} {'K':>3} {'measured':>9} {'se':>6} {'estimate':>9} {'error':>7} {'in se':>6}")
    for r in rows:
        print(f"{r['temperature']:>4g} {r['K']:>3} {r['measured_tau']:>9.3f} {r['measured_se']:>6.3f} "
              f"{r['estimated_tau']:>9.3f} {100 * r['error']:>6.1f}% {r['error_in_se']:>6.1f}")
    write_csv(out.with_suffix(".csv"), rows)
    plot(rows, out.with_suffix(".png"))
    print(f"wrote {out.with_suffix('.json')}, .csv and .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
