"""`train_eagle.py curve`: τ against training data and training steps, from heads `train` wrote.

Each head's last training-time τ estimate on the held-out answers (stored in its metadata) is one point at (its
training tokens, its steps). Heads trained with growing `train --rows` on one data file share their held-out answers,
so they give τ against training tokens; heads trained on the same rows for more `--steps` give τ against compute.
Nothing is decoded or random (no seed).

    python experiments/train_eagle.py curve --heads results/head_rows22 results/head_rows44 results/head_rows88 \\
        results/head_all --out results/eagle_curve

Prints the table and writes `<out>.json` (config, points, versions) and `<out>.png`: left, τ against tokens (log
axis), one line per step count, for K = 1 and the deepest K; right, τ against steps (log axis), one line per K, for
each data size trained at several step counts (whether data or compute binds). Figures: experiments/RESULTS.md.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from specjax.bench.experiment import parse_config, provenance


@dataclass(frozen=True)
class EagleCurveConfig:
    """`curve`: τ against training tokens and steps, from heads `train` wrote (their final held-out τ estimate)."""

    heads: tuple[str, ...] = ()
    """head directories of `train` runs that differ in `rows` or `steps` (the same held-out answers)"""


CONFIG = EagleCurveConfig
DEFAULT_OUT = "results/eagle_curve"


def curve_points(heads) -> list[dict]:
    """One point per head directory, sorted by training tokens, then steps: head, training_tokens, step, ttt_depth
    and each `tau_T<temperature>` list (K = 1..) of its last τ estimate. ValueError for a head without them."""
    from specjax.model.io.checkpoint import read_meta

    points = []
    for head in heads:
        extra = read_meta(head)["extra"]
        if "training_tokens" not in extra or not extra.get("tau_estimates"):
            raise ValueError(f"{head} has no training tokens or τ estimate in its metadata (train it again)")
        last = extra["tau_estimates"][-1]
        points.append({"head": head, "training_tokens": extra["training_tokens"], "step": last["step"],
                       "ttt_depth": extra["train"].get("ttt_depth", 1),
                       **{k: v for k, v in last.items() if k.startswith("tau_")}})
    return sorted(points, key=lambda p: (p["training_tokens"], p["step"]))


def plot_curve(points: list[dict], keys: list[str], path: Path) -> None:
    """τ against training tokens (left) and against training steps (right) of `points` (`curve_points`)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_tokens, by_steps) = plt.subplots(1, 2, figsize=(11, 4))
    for steps in sorted({p["step"] for p in points}):
        group = [p for p in points if p["step"] == steps]
        for key in keys:
            depth = len(group[0][key])
            for k in sorted({1, depth}):
                by_tokens.plot([p["training_tokens"] for p in group], [p[key][k - 1] for p in group],
                               "o-" if k == depth else "o--", label=f"{steps} steps, {key[4:]} K={k}")
    by_tokens.set(xscale="log", xlabel="training tokens", ylabel="estimated chain τ (held-out answers)",
                  title="τ against training data")
    for tokens in sorted({p["training_tokens"] for p in points}):
        group = [p for p in points if p["training_tokens"] == tokens]
        if len(group) < 2:
            continue
        for key in keys:
            for k in range(len(group[0][key])):
                by_steps.plot([p["step"] for p in group], [p[key][k] for p in group], "o-",
                              label=f"{tokens} tokens, {key[4:]} K={k + 1}")
    by_steps.set(xscale="log", xlabel="training steps", title="τ against training steps (same data)")
    for ax in (by_tokens, by_steps):
        if ax.lines:
            ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def curve(cfg: EagleCurveConfig, out: Path) -> int:
    """The final training-time τ estimate of each head against its training tokens and steps: a table,
    `<out>.json` and `<out>.png`."""
    if not cfg.heads:
        raise ValueError("give the head directories: --heads DIR [DIR ...]")
    points = curve_points(cfg.heads)
    keys = sorted(k for k in points[0] if k.startswith("tau_"))
    print(f"{'training tokens':>16}{'steps':>7}  " + "  ".join(f"{k} (K = 1..)" for k in keys))
    for p in points:
        print(f"{p['training_tokens']:>16}{p['step']:>7}  " + "  ".join(" ".join(f"{x:.2f}" for x in p[k])
                                                                      for k in keys))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"config": asdict(cfg), "points": points,
                                                    "provenance": provenance()}, indent=1))
    plot_curve(points, keys, out.with_suffix(".png"))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")
    return 0


def main(argv=None) -> int:
    cfg, out = parse_config(CONFIG, argv, __doc__, default_out=DEFAULT_OUT, prog="train_eagle.py curve")
    return curve(cfg, out)
