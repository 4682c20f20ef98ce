"""`specjax generate --method auto`: the machine's cost profile and the pair's acceptance estimate, each cached per
machine and pair, and the requests decoded by `specjax.decode.auto`.

The profile is `--profile FILE` (from `specjax profile`), else the cached one, else measured on first use (a small
grid: one cache capacity, batch 1, T = 1..FIRST_USE_MAX_T; a minute or two) and cached. The acceptance estimate
starts from a prior (per-position acceptance 0.5) and is saved after every run, so each run starts from what the
drafter achieved on this machine before. Cache folder: $SPECJAX_CACHE, else ~/.cache/specjax.
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

FIRST_USE_MAX_T = 9          # chains up to K = 8 (T = K + 1); a larger -K needs `specjax profile`
FIRST_USE_CONTEXT = 512


def cache_dir() -> Path:
    return Path(os.environ.get("SPECJAX_CACHE") or Path.home() / ".cache" / "specjax")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def check_auto(args) -> None:
    """ValueError for flags `--method auto` does not combine with (before any weights are loaded)."""
    clashes = [flag for flag, value in (("--verifier", args.verifier), ("--draft-policy", args.draft_policy),
                                        ("--mesh", args.mesh), ("--regex", args.regex),
                                        ("--json-schema", args.json_schema)) if value]
    if clashes:
        raise ValueError(f"--method auto chooses between AR and plain chains of up to -K drafts: it does not take "
                         f"{', '.join(clashes)}")
    if args.cross_vocab == "slem":
        raise ValueError("--method auto runs the jitted loop: --cross-vocab slem is host-stepped (use tli)")
    if args.profile is not None and not Path(args.profile).is_file():
        raise ValueError(f"--profile {args.profile}: no such file (write one with `specjax profile`)")


def first_use_config():
    """The grid measured on first use: one cache capacity, batch 1, T = 1..FIRST_USE_MAX_T, few repeats."""
    from specjax.bench.profile import ProfileConfig
    return ProfileConfig(contexts=(FIRST_USE_CONTEXT,), tokens=tuple(range(1, FIRST_USE_MAX_T + 1)),
                         level_tokens=(1, 2), repeats=3, overhead_runs=2)


def machine_profile(target, drafter, drafter_name: str, args, log=print):
    """(DeviceProfile, where it came from): --profile, the cache, or measured now and cached. ValueError when a
    profile names another target or drafter than this run's."""
    from specjax.bench.profile import device_name, measure_profile
    from specjax.costs.profile import DeviceProfile

    labels = {"target": target.label, "drafter": drafter_name}
    path = Path(args.profile) if args.profile else (
        cache_dir() / f"profile-{_slug(device_name())}-{_slug(target.label)}-{_slug(drafter_name)}.json")
    if path.is_file():
        profile = DeviceProfile.load(path)
        for key, value in labels.items():
            if profile.meta.get(key, value) != value:
                raise ValueError(f"the profile {path} was measured with {key} {profile.meta[key]!r}, this run uses "
                                 f"{value!r}")
        return profile, str(path)
    cfg = first_use_config()
    log(f"auto: measuring this machine's cost profile once ({target.label} + {drafter_name}), cached at {path}")
    profile = measure_profile(target.handle, drafter, cfg, labels, log=lambda m: None)
    profile.save(path)
    return profile, f"measured, cached at {path}"


def estimate_path(target_label: str, drafter_name: str, temperature: float) -> Path:
    return cache_dir() / f"acceptance-{_slug(target_label)}-{_slug(drafter_name)}-T{temperature:g}.json"


def load_estimate(path: Path):
    from specjax.costs.choice import AcceptanceEstimate
    return AcceptanceEstimate.from_dict(json.loads(path.read_text())) if path.is_file() else AcceptanceEstimate()


def decode_auto(plan, target, drafter, tokens, lengths, args):
    """(result, seconds, compile seconds, the report's `auto` entry): every request by its chosen method, timed
    after an untimed pass that compiles (the estimate it learns is discarded, so the timed pass starts from the same
    estimate)."""
    import jax
    import numpy as np

    from specjax.bench.timing import timed
    from specjax.decode.auto import generate_auto

    profile, source = machine_profile(target, drafter, plan.drafter_name, args,
                                      log=lambda m: print(m, file=sys.stderr))
    capacity = int(np.asarray(lengths).max()) + args.max_new_tokens
    context = min(max(capacity, profile.contexts[0]), profile.contexts[-1])
    costs = profile.at(context, 1)
    path = estimate_path(target.label, plan.drafter_name, args.temperature)
    estimate = load_estimate(path)
    prompts = [np.asarray(t[:n]).tolist() for t, n in zip(np.asarray(tokens), np.asarray(lengths))]
    kwargs = dict(profile=costs, estimate=estimate, max_draft=args.num_draft, max_new_tokens=args.max_new_tokens,
                  sampling=plan.sampling, eos_id=target.eos_id)
    key = jax.random.key(args.seed)
    _, compile_seconds = timed(generate_auto, target.handle, drafter, prompts, key, **kwargs)
    run, seconds = timed(generate_auto, target.handle, drafter, prompts, key, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run.estimate.to_dict()))
    for i, c in enumerate(run.choices):
        label = "AR" if c["method"] == "ar" else f"chain K={c['num_draft']}"
        print(f"auto: request {i}: {label} (τ estimate {c['tau_estimate']:.2f}, predicted {c['predicted_speedup']:.2f}x "
              f"AR; observed τ {c['observed_tau']:.2f})", file=sys.stderr)
    entry = {"profile": source, "profile_context": context, "estimate_file": str(path), "choices": run.choices}
    return run.result, seconds, compile_seconds, entry
