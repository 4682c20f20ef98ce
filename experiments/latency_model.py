"""The latency model against this device: predicted vs measured tokens/s of AR, chains K = 1..8 and every tree
builder at budgets 8/16/32 on SmolLM2-135M + the shipped EAGLE head (T = 0, MT-bench prompts, batch 1), in one
run; then the best configuration (Sequoia trees, chains, AR) for this CPU and for roofline accelerators under the
same acceptance profile, and the speedup surface over τ and the round's cost ratio.

1. Profile (`specjax.bench.profile`): target calls, drafter steps and tree levels on exactly the T each method needs,
   at the smallest and largest cache capacity the runs use (the model interpolates between), and the overheads.
2. End to end (`specjax.bench.decoding.decode_interleaved`): every method on the same prompts (all in one prompt-width
   bucket, so each method compiles once), no EOS (every run makes `max_new_tokens` tokens), in groups of methods
   timed in rounds over each other; after each round, the profile points the group's methods use (at the group's
   smallest and largest capacity) are timed again, so prediction and measurement share the machine's drift.
3. Prediction (`specjax.costs.latency.predict`) per prompt with that prompt's measured τ, capacity and width, from the
   group's own profile points (the overheads from step 1); predicted tokens/s = tokens / Σ predicted seconds;
   error = predicted / measured - 1 (beside it: the error from step 1's profile alone).
4. Acceptance, teacher-forced on the AR text (`specjax.bench.acceptance`): τ of each chain and static tree predicted
   from the ranks (beside the measured τ), and the positional rates for Sequoia (`trees.sequoia`); the search
   (`trees.configure`) on this CPU's profile and on roofline profiles; the CPU's and the accelerator's best
   configurations are then decoded here too.

    python experiments/latency_model.py --prompts 3 --max-new-tokens 48 --out results/latency_model
Writes `<out>.json` and `<out>.png`; `<out>.partial.json` keeps finished steps (rerun to resume; delete it to start
afresh). Every field of `LatencyConfig` is an option, or comes from `--config FILE.toml`.

The last run's prediction errors and chosen configurations: experiments/RESULTS.md.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import jax
import numpy as np

import trees
from specjax.apps.models import load_drafter, load_target
from specjax.bench.acceptance import teacher_forced_ranks
from specjax.bench.decoding import decode_interleaved, summarize
from specjax.bench.experiment import parse_config, provenance
from specjax.bench.profile import (ProfileConfig, build_profile, curve_jobs, device_name, measure_profile, restat,
                                   roofline)
from specjax.bench.prompts import load_prompts
from specjax.bench.timing import STATS, CallTimer
from specjax.costs.latency import AcceptanceProfile, Workload, ar_plan, chain_plan, predict
from specjax.costs.profile import DeviceProfile
from specjax.decode.batching import bucket_size
from specjax.decode.chain import ChainSpeculator
from specjax.decode.loop import needed_capacity
from specjax.methods import make_method
from specjax.sampling import SamplingConfig
from trees.builders import StaticTree
from trees.configure import best_configuration, tree_round_plan
from trees.sequoia import empirical_reward


@dataclass(frozen=True)
class LatencyConfig:
    """The run."""

    prompts: int = 3
    """MT-bench prompts (the first ones whose chat-formatted length falls in `prompt_bucket`)."""
    prompt_bucket: int = 64
    """Their padded width W (one compiled loop per method)."""
    max_new_tokens: int = 48
    """Tokens per prompt."""
    chain_drafts: tuple[int, ...] = tuple(range(1, 9))
    """Chain K values."""
    budgets: tuple[int, ...] = (8, 16, 32)
    """Tree budgets for every builder."""
    methods: tuple[str, ...] = trees.TREE_METHODS
    """Tree builders."""
    drafter: str = "eagle"
    """The drafter."""
    repeats: int = 5
    """Timed loops per profile point."""
    e2e_repeats: int = 3
    """Timed runs per prompt and method (in rounds over the prompts and the methods of a group)."""
    group: int = 6
    """Methods compiled together and timed in rounds over each other."""
    profile_per_round: int = 2
    """Samples of each of a group's own profile points taken after each of its timed rounds."""
    stat: str = "median"
    """The statistic of repeats behind the main table ('median' or 'min'); the other is reported beside it."""
    inner: int = 2
    """Calls per timed loop."""
    depth: int = 8
    """Depths of the teacher-forced acceptance profile."""
    ranks: int = 4
    """Ranks per depth of the acceptance profile (Sequoia's children per node)."""
    accelerators: tuple[str, ...] = ("h200", "h100", "tpu-v5e")
    """Roofline devices to configure for."""
    search_budgets: tuple[int, ...] = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
    """Budgets of Sequoia's trees in the search."""
    seed: int = 0

    def __post_init__(self):
        if self.group < 1:
            raise ValueError(f"group must be >= 1, got {self.group}")
        if self.stat not in STATS:
            raise ValueError(f"stat must be one of {sorted(STATS)}, got {self.stat!r}")


CONFIG = LatencyConfig


def method_list(cfg: LatencyConfig) -> list[tuple[str, object, object]]:
    """(name, speculator, round plan) of every measured method, AR first."""
    out = [("ar", make_method("ar"), ar_plan())]
    out += [(f"chain K={k}", make_method("chain", num_draft=k), chain_plan(k)) for k in cfg.chain_drafts]
    for m in cfg.methods:
        for n in cfg.budgets:
            spec = make_method(m, budget=n)
            out.append((f"{m} {n}", spec, tree_round_plan(spec.builder, f"{m} {n}")))
    return out


def profile_config(cfg: LatencyConfig, plans, contexts) -> ProfileConfig:
    """Exactly the T values the methods (and the search, on a coarse grid) need."""
    target = {1, cfg.prompt_bucket} | {p.verify_tokens for p in plans}
    target |= {b + 1 for b in cfg.search_budgets} | set(range(1, 10))
    levels = {t for p in plans for t in p.tree_levels} | {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64}
    return ProfileConfig(contexts=tuple(contexts), tokens=tuple(sorted(target)), level_tokens=tuple(sorted(levels)),
                         inner=cfg.inner, repeats=cfg.repeats, stat=cfg.stat)


def predicted_rate(profile: DeviceProfile, spec, plan, runs, widths, new_tokens) -> tuple[float, list[dict]]:
    """Predicted tokens/s over the prompts (each with its measured τ), and the per-prompt terms."""
    terms, seconds = [], 0.0
    for run, w in zip(runs, widths):
        pred = predict(profile.at(needed_capacity(w, spec, new_tokens)), plan, run.tau,
                       Workload(len(run.tokens), w))
        seconds += pred.run_s
        terms.append(pred.terms())
    return sum(len(r.tokens) for r in runs) / seconds, terms


def acceptance_taus(ranks: np.ndarray, methods) -> dict[str, float]:
    """τ of each chain and static tree (no deeper than the ranks) predicted from the teacher-forced ranks."""
    out = {}
    for name, spec, _ in methods:
        if isinstance(spec, ChainSpeculator) and 0 < spec.num_draft <= ranks.shape[1]:
            out[name] = 1 + empirical_reward([(0,) * d for d in range(1, spec.num_draft + 1)], ranks)
        elif isinstance(getattr(spec, "builder", None), StaticTree) and spec.builder.max_depth <= ranks.shape[1]:
            out[name] = 1 + empirical_reward(spec.builder.paths, ranks)
    return out


def measured_rate(runs, stat: str) -> float:
    """Tokens/s over the prompts, each prompt's seconds the statistic of its timed repeats."""
    return sum(len(r.tokens) for r in runs) / sum(float(STATS[stat](r.samples)) for r in runs)


def _save(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, indent=1, default=str))


def group_timers(cfg, target, drafter, group, width) -> tuple[list[tuple[int, str, tuple, int]], list]:
    """The profile points a group of methods ((name, speculator, plan)) is predicted from, at the smallest and
    largest cache capacity of the group: [(context, curve, T grid, first job index)] and the jobs (`CallTimer`)."""
    plans = [plan for _, _, plan in group]
    caps = [needed_capacity(width, spec, cfg.max_new_tokens) for _, spec, _ in group]
    tokens = {1, width} | {p.verify_tokens for p in plans} | {t for p in plans for t in p.drafter_steps}
    levels = {t for p in plans for t in p.tree_levels} or {1}
    parts = ("target",) + (("drafter",) if any(p.drafts for p in plans) else ()) + \
        (("tree_level",) if any(p.tree_levels for p in plans) else ())
    pcfg = ProfileConfig(contexts=(min(caps), max(caps)), tokens=tuple(sorted(tokens)),
                         level_tokens=tuple(sorted(levels)), inner=cfg.inner, stat=cfg.stat)
    index, jobs = [], []
    for context in sorted(set(pcfg.contexts)):
        for name, (grid, curve) in curve_jobs(target.handle, drafter, pcfg, context, 1, parts).items():
            index.append((context, name, tuple(grid), len(jobs)))
            jobs += curve
    return index, jobs


def group_profile(base: DeviceProfile, index, samples) -> dict:
    """The `DeviceProfile` (as a dict) of a group's own profile points (`group_timers`), timed in the group's
    rounds; the overheads are the base profile's (measured once)."""
    raw = {}
    for context, name, grid, lo in index:
        entry = raw.setdefault(context, {"context": context, "batch": 1})
        entry[name] = {"tokens": list(grid), "samples": samples[lo:lo + len(grid)]}
    meta = {**base.meta, "raw": list(raw.values())}
    return build_profile(base.device, meta, base.meta["stat"]).to_dict()


def run_methods(cfg, target, drafter, ids, methods, state, partial_path, base: DeviceProfile) -> dict:
    """Decode every method (resuming finished groups from `state`), return {name: [Run dicts]}. Methods go in
    groups of `cfg.group`, timed in rounds over the group (`decode_interleaved`), so drift of the machine between
    time windows is shared by the methods compared; the profile points the group's predictions use are timed in
    the same rounds (`cfg.profile_per_round` samples each), so they share it too (stored per method under
    `state["group_profiles"]`)."""
    common = dict(max_new_tokens=cfg.max_new_tokens, sampling=SamplingConfig(temperature=0.0), eos_id=None)
    done = state.setdefault("runs", {})
    profiles = state.setdefault("group_profiles", {})
    todo = [m for m in methods if m[0] not in done]
    for lo in range(0, len(todo), cfg.group):
        group = todo[lo:lo + cfg.group]
        index, jobs = group_timers(cfg, target, drafter, group, cfg.prompt_bucket)
        timer = CallTimer(jobs, cfg.inner)
        configs = {name: dict(method=spec, drafter=None if name == "ar" else drafter, **common)
                   for name, spec, _ in group}

        def between():
            for _ in range(cfg.profile_per_round):
                timer.round()
        runs = decode_interleaved(target.handle, ids, configs, seed=cfg.seed, repeats=cfg.e2e_repeats,
                                  between=between)
        own = group_profile(base, index, timer.samples)
        for name, _, _ in group:
            profiles[name] = own
            done[name] = {"runs": [asdict(r) for r in runs[name]], "summary": summarize(runs[name]),
                          "load_avg": os.getloadavg()}
            print(f"{name:<16} tau {done[name]['summary']['tau']:.2f}  {measured_rate(runs[name], cfg.stat):.2f} "
                  f"tok/s ({cfg.stat})  (load {os.getloadavg()[0]:.1f})", flush=True)
        _save(partial_path, state)
        jax.clear_caches()              # a long run of compiled SmolLM2 loops exhausts the JIT's code memory
    return done


def error_table(cfg, base: DeviceProfile, own: dict, methods, done, width) -> list[dict]:
    """Predicted vs measured tokens/s per method (each prompt with its own τ): predicted from the profile points
    timed in the method's own group (`own`: {name: profile dict}) under `cfg.stat` (`error`) and the other
    statistic (`error_<other>`), and from the profile measured once before the decodes (`error_once`)."""
    alt = "min" if cfg.stat == "median" else "median"
    rows = []
    for name, spec, plan in methods:
        runs = [_run(d) for d in done[name]["runs"]]
        widths = [width] * len(runs)
        profile = DeviceProfile.from_dict(own[name])
        pred, terms = predicted_rate(profile, spec, plan, runs, widths, cfg.max_new_tokens)
        meas = measured_rate(runs, cfg.stat)
        rate = lambda p, stat: predicted_rate(p, spec, plan, runs, widths, cfg.max_new_tokens)[0] \
            / measured_rate(runs, stat) - 1
        mid = terms[len(terms) // 2]
        rows.append({"method": name, "tau": float(np.mean([r.tau for r in runs])), "measured_tokens_per_s": meas,
                     "predicted_tokens_per_s": pred, "error": pred / meas - 1,
                     f"error_{alt}": rate(restat(profile, alt), alt), "error_once": rate(base, cfg.stat),
                     "verify_tokens": plan.verify_tokens, "drafter_tokens": plan.drafter_tokens, "terms": terms,
                     "draft_ms": 1e3 * mid["draft_s"], "verify_ms": 1e3 * mid["verify_s"],
                     "overhead_ms": 1e3 * mid["overhead_s"], "prefill_ms": 1e3 * mid["prefill_s"]})
    return rows


def _run(d: dict):
    from specjax.bench.decoding import Run
    return Run(**d)


def print_errors(rows: list[dict], acc_taus: dict[str, float], stat: str) -> None:
    alt = "min" if stat == "median" else "median"
    print(f"\n{'method':<22}{'tau':>6}{'tau(TF)':>8}{'draft ms':>9}{'verify ms':>10}{'ovh ms':>7}{'prefill':>8}"
          f"{'meas tok/s':>11}{'pred tok/s':>11}{'error':>8}{'(' + alt + ')':>9}{'(once)':>9}")
    for r in rows:
        tf = acc_taus.get(r["method"])
        print(f"{r['method']:<22}{r['tau']:>6.2f}{'' if tf is None else f'{tf:.2f}':>8}{r['draft_ms']:>9.1f}"
              f"{r['verify_ms']:>10.1f}{r['overhead_ms']:>7.1f}{r['prefill_ms']:>8.0f}"
              f"{r['measured_tokens_per_s']:>11.2f}{r['predicted_tokens_per_s']:>11.2f}{100 * r['error']:>7.1f}%"
              f"{100 * r['error_' + alt]:>8.1f}%{100 * r['error_once']:>8.1f}%")
    for key, label in (("error", f"{stat} of repeats, group's own profile"),
                       ("error_" + alt, f"{alt} of repeats, group's own profile"),
                       ("error_once", f"{stat} of repeats, profile measured once before the decodes")):
        errs = np.abs([r[key] for r in rows])
        print(f"|error| ({label}): median {100 * np.median(errs):.1f}%, max {100 * errs.max():.1f}%, "
              f"within 10%: {int(np.sum(errs <= 0.10))}/{len(errs)}")


def configure(cfg, profile, target, drafter, acc, context, width) -> dict:
    """The search on this device's profile and on each roofline, same acceptance profile and workload."""
    work = Workload(cfg.max_new_tokens, width)
    kw = dict(budgets=cfg.search_budgets, depths=tuple(range(1, cfg.depth + 1)), workload=work)
    out = {"cpu": best_configuration(profile.at(context), acc, **kw)}
    for name in cfg.accelerators:
        rp = roofline(target.handle, drafter, name, (context,), (1,), tuple(range(1, 130)))
        out[name] = best_configuration(rp.at(context), acc, **kw)
        out[name + "_profile"] = rp
    return out


def describe(search) -> dict:
    def one(c):
        p = c.prediction
        return {"label": c.label, "method": c.method, "options": {k: v for k, v in c.options.items()},
                "tokens_per_s": c.tokens_per_s, "tau": p.tau, "draft_ms": 1e3 * p.draft_s,
                "verify_ms": 1e3 * p.verify_s, "overhead_ms": 1e3 * p.overhead_s,
                "speedup_vs_ar": c.tokens_per_s / search.best_of("ar").tokens_per_s}
    return {"best": one(search.best), "best_chain": one(search.best_of("chain")),
            "best_static": one(search.best_of("static")), "ar": one(search.best_of("ar")),
            "top": [one(c) for c in search.candidates[:5]]}


def print_configs(searches: dict, names) -> None:
    print(f"\n{'device':<10}{'best configuration':<24}{'tau':>6}{'pred tok/s':>12}{'vs AR':>7}   best chain; "
          "best static tree")
    for name in names:
        d = describe(searches[name])
        b, c, s = d["best"], d["best_chain"], d["best_static"]
        print(f"{name:<10}{b['label']:<24}{b['tau']:>6.2f}{b['tokens_per_s']:>12.1f}{b['speedup_vs_ar']:>6.2f}x"
              f"   {c['label']} ({c['speedup_vs_ar']:.2f}x); {s['label']} ({s['speedup_vs_ar']:.2f}x)")


def surface_points(profile_at, methods, taus) -> list[dict]:
    """Each method's place on the speedup surface of one device: x = (draft + verify) / c(1), its verification
    alone c(T)/c(1), τ, and the model's steady speedup."""
    ar = predict(profile_at, ar_plan(), 1.0)
    c1, o = ar.verify_s, ar.overhead_s
    pts = []
    for name, _, plan in methods:
        p = predict(profile_at, plan, taus[name])
        pts.append({"method": name, "tau": taus[name], "x": (p.draft_s + p.verify_s) / c1,
                    "verify_ratio": p.verify_s / c1, "speedup": p.steady_tokens_per_s / ar.steady_tokens_per_s,
                    "overhead_ratio": o / c1})
    return pts


def plot(path: Path, rows: list[dict], panels: list[tuple[str, list[dict], dict[str, float]]]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    from specjax.costs.latency import speedup

    fig, axes = plt.subplots(1, 1 + len(panels), figsize=(6 * (1 + len(panels)), 5.2))
    ax = axes[0]
    kind = lambda m: "AR" if m == "ar" else "chain" if m.startswith("chain") else m.split()[0]
    for k in dict.fromkeys(kind(r["method"]) for r in rows):
        sel = [r for r in rows if kind(r["method"]) == k]
        ax.scatter([r["measured_tokens_per_s"] for r in sel], [r["predicted_tokens_per_s"] for r in sel], label=k,
                   s=22)
    lim = [0, 1.1 * max(max(r["measured_tokens_per_s"], r["predicted_tokens_per_s"]) for r in rows)]
    ax.plot(lim, lim, "k-", lw=0.8)
    ax.fill_between(lim, [0.9 * v for v in lim], [1.1 * v for v in lim], color="0.85", label="±10%")
    ax.set(xlim=lim, ylim=lim, xlabel="measured tokens/s", ylabel="predicted tokens/s",
           title="latency model on this CPU (SmolLM2 + EAGLE, T=0)")
    ax.legend(fontsize=7)
    for ax, (title, pts, measured) in zip(axes[1:], panels):
        o = pts[0]["overhead_ratio"]
        xmax = max(8.0, 1.1 * max(p["x"] for p in pts))
        x, tau = np.meshgrid(np.linspace(1, xmax, 200), np.linspace(1, 4, 200))
        s = speedup(tau, x, 0.0, o)
        im = ax.pcolormesh(x, tau, s, cmap="RdBu", norm=TwoSlopeNorm(1.0, 0.2, max(2.0, s.max())), shading="auto")
        cs = ax.contour(x, tau, s, levels=[0.5, 1.0, 1.5, 2.0, 3.0], colors="k", linewidths=[0.5, 1.8, .5, .5, .5])
        ax.clabel(cs, fmt="%.1fx", fontsize=7)
        for p in pts:
            ax.plot([p["verify_ratio"], p["x"]], [p["tau"], p["tau"]], color="0.3", lw=0.6)
            ax.scatter([p["verify_ratio"]], [p["tau"]], facecolors="none", edgecolors="k", s=14)
            ax.scatter([p["x"]], [p["tau"]], c="gold" if p["method"].startswith("best") else "k", s=18,
                       marker="*" if p["method"].startswith("best") else "o")
            if p["method"] in measured:
                ax.annotate(f"{measured[p['method']]:.2f}x", (p["x"], p["tau"]), fontsize=5, xytext=(2, 2),
                            textcoords="offset points")
        fig.colorbar(im, ax=ax, label="speedup over AR  τ(1+o)/(x+o)")
        ax.set(xlabel="round cost / target call c(1):  x = (draft + c(T)) / c(1)   (hollow: c(T)/c(1) alone)",
               ylabel="τ (tokens per round)", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def select_prompts(target, cfg: LatencyConfig) -> tuple[list[str], list[list[int]]]:
    chosen = [(q, target.encode_prompt(q)) for q in load_prompts("mt_bench")]
    chosen = [(q, ids) for q, ids in chosen if bucket_size(len(ids)) == cfg.prompt_bucket][:cfg.prompts]
    if len(chosen) < cfg.prompts:
        raise ValueError(f"only {len(chosen)} MT-bench prompts fall in the {cfg.prompt_bucket}-token bucket")
    return [q for q, _ in chosen], [ids for _, ids in chosen]


def resume_state(cfg, partial_path: Path) -> dict:
    """The finished steps in `partial_path` when it was written for `cfg` (else a fresh state), with this start's
    load average appended."""
    state = json.loads(partial_path.read_text()) if partial_path.exists() else {}
    if state and state.get("config") != json.loads(json.dumps(asdict(cfg))):
        print("the partial results were made with another config: starting afresh", flush=True)
        state = {}
    state["config"] = asdict(cfg)
    state.setdefault("load_avg", []).append(os.getloadavg())
    return state


def teacher_forced_acceptance(cfg, target, drafter, ids, ar_runs) -> tuple[np.ndarray, AcceptanceProfile]:
    """(ranks `[starts, cfg.depth]` of the AR text's tokens under the drafter, teacher-forced on AR's answers
    `ar_runs` to the prompts `ids`; the acceptance profile over the depths that some start's path reaches inside the
    top-`cfg.ranks` tree, plus one)."""
    texts_ar = [list(i) + r["tokens"] for i, r in zip(ids, ar_runs)]
    ranks = np.concatenate([teacher_forced_ranks(target.handle, drafter, z, len(i), cfg.depth)
                            for z, i in zip(texts_ar, ids)])
    inside = np.cumprod(ranks < cfg.ranks, axis=1)              # starts whose path stays in the top-k tree
    depth = int(min(cfg.depth, 2 + np.max(np.nonzero(inside.any(axis=0))[0], initial=-1)))
    return ranks, AcceptanceProfile.from_ranks(ranks[:, :depth], cfg.ranks)


def main(argv=None) -> int:
    cfg, out = parse_config(LatencyConfig, argv, __doc__, default_out="results/latency_model")
    partial_path = out.with_suffix(".partial.json")
    state = resume_state(cfg, partial_path)
    target = load_target("smollm2")
    drafter = load_drafter(cfg.drafter, target)
    texts, ids = select_prompts(target, cfg)
    width, n = cfg.prompt_bucket, cfg.max_new_tokens
    methods = method_list(cfg)
    print(f"{device_name()}, load {os.getloadavg()}; {len(methods)} methods, {len(ids)} prompts "
          f"({[len(i) for i in ids]} tokens), {n} new tokens", flush=True)

    search_context = width + bucket_size(n) + max(cfg.search_budgets) + 2
    caps = [needed_capacity(width, spec, n) for _, spec, _ in methods] + [search_context]
    if "profile" not in state:
        pcfg = profile_config(cfg, [pl for _, _, pl in methods], (min(caps), max(caps)))
        prof = measure_profile(target.handle, drafter, pcfg, {"target": target.label, "drafter": cfg.drafter},
                               log=lambda m: print(m, flush=True))
        state["profile"] = prof.to_dict()
        _save(partial_path, state)
    profile = DeviceProfile.from_dict(state["profile"])
    done = run_methods(cfg, target, drafter, ids, methods, state, partial_path, profile)

    ranks, acc = teacher_forced_acceptance(cfg, target, drafter, ids, done["ar"]["runs"])
    context = width + bucket_size(n) + 18                      # a mid-size tree's cache (the search uses one)
    searches = configure(cfg, profile, target, drafter, acc, context, width)
    best = {"best cpu": searches["cpu"].best, f"best {cfg.accelerators[0]}": searches[cfg.accelerators[0]].best}
    extra = []
    for label, c in best.items():
        spec = c.speculator()
        extra.append((f"{label}", spec, replace(c.prediction.plan, name=label)))
    extra = [e for e in extra if e[2].verify_tokens > 1]       # AR is measured already
    done = run_methods(cfg, target, drafter, ids, extra, state, partial_path, profile)
    all_methods = methods + extra

    rows = error_table(cfg, profile, state["group_profiles"], all_methods, done, width)
    acc_taus = acceptance_taus(ranks, all_methods)
    print_errors(rows, acc_taus, cfg.stat)
    print_configs(searches, ["cpu", *cfg.accelerators])
    print(f"acceptance profile (teacher-forced, {ranks.shape[0]} starts), rates[depth][rank]:\n"
          + "\n".join(f"  d={d + 1}: " + " ".join(f"{x:.3f}" for x in row) for d, row in enumerate(acc.rates)))
    rate = {name: measured_rate([_run(d) for d in done[name]["runs"]], cfg.stat) for name, _, _ in all_methods}
    measured = {name: rate[name] / rate["ar"] for name, _, _ in all_methods}
    taus = {name: max(1.0, done[name]["summary"]["tau"]) for name, _, _ in all_methods}
    acc0 = cfg.accelerators[0]
    panels = [("this CPU (measured profile; dots = measured configurations)",
               surface_points(profile.at(context), all_methods, taus), measured),
              (f"{acc0.upper()} roofline (same τ; predicted)",
               surface_points(searches[acc0 + "_profile"].at(context), all_methods, taus), {})]
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(out.with_suffix(".png"), rows, panels)
    result = {"config": asdict(cfg), "provenance": provenance(), "device": device_name(),
              "load_avg": state["load_avg"] + [os.getloadavg()],
              "prompts": texts, "profile": state["profile"], "errors": rows, "acceptance_taus": acc_taus,
              "acceptance_rates": acc.rates, "configurations": {k: describe(v) for k, v in searches.items()
                                                                 if not k.endswith("_profile")},
              "surface": {title: pts for title, pts, _ in panels}, "runs": done}
    _save(out.with_suffix(".json"), result)
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
