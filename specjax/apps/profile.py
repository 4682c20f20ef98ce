"""`specjax profile`: the command that measures (or, for a named accelerator, computes) the cost profile of a
target/drafter pair and writes it as JSON for the latency model; the measuring lives in `specjax.bench.profile`.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from specjax.bench.profile import (DEFAULT_LEVEL_TOKENS, DEFAULT_TOKENS, ProfileConfig, device_name, measure_profile,
                                   roofline)


def add_profile_parser(subparsers) -> None:
    p = subparsers.add_parser("profile", help="cost profile of a target/drafter pair on this device (or a "
                                              "roofline accelerator), as JSON for the latency model")
    p.set_defaults(func=run_profile)
    p.add_argument("--target", default="smollm2", help="a target name (see `specjax generate --help`)")
    p.add_argument("--drafter", default="eagle", help="a drafter name, or 'none'")
    p.add_argument("--contexts", type=int, nargs="+", default=list(ProfileConfig.contexts))
    p.add_argument("--batches", type=int, nargs="+", default=list(ProfileConfig.batches))
    p.add_argument("--tokens", type=int, nargs="+", default=list(DEFAULT_TOKENS))
    p.add_argument("--level-tokens", type=int, nargs="+", default=list(DEFAULT_LEVEL_TOKENS))
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--repeats", type=int, default=ProfileConfig.repeats)
    p.add_argument("--stat", choices=sorted(("median", "min")), default=ProfileConfig.stat)
    p.add_argument("--roofline", default=None, help="instead of measuring: the roofline of a named accelerator "
                                                    "(h100, h200, tpu-v5e)")
    p.add_argument("--out", type=Path, default=Path("results/profile.json"))


def run_profile(args: argparse.Namespace) -> int:
    from specjax.apps.models import drafter_spec, load_drafter, load_target, target_spec
    from specjax.costs.roofline import ACCELERATORS
    from specjax.model.io.smollm2 import ModelNotInstalledError
    from specjax.validation import check_int

    try:                                             # every check before a model is loaded
        spec = target_spec(args.target)
        draft = None if args.drafter == "none" else drafter_spec(args.drafter)
        if draft is not None:
            draft.fit(spec)
        if args.roofline:
            if args.roofline not in ACCELERATORS:
                raise ValueError(f"unknown accelerator {args.roofline!r}; known: {sorted(ACCELERATORS)}")
            for name in ("contexts", "batches", "tokens"):
                for v in getattr(args, name):
                    check_int(name, v, low=1)
        else:
            cfg = ProfileConfig(tuple(args.contexts), tuple(args.batches), tuple(sorted(set(args.tokens))),
                                tuple(sorted(set(args.level_tokens))), args.temperature, repeats=args.repeats,
                                stat=args.stat)
        target = load_target(spec)
        drafter = None if draft is None else load_drafter(draft, target)
        labels = {"target": target.label, "drafter": args.drafter}
        if args.roofline:
            profile = roofline(target.handle, drafter, args.roofline, args.contexts, args.batches, args.tokens)
            profile = dataclasses.replace(profile, meta={**labels, **profile.meta})
        else:
            print(f"profiling {target.label} + {args.drafter} on {device_name()} (load {os.getloadavg()})",
                  flush=True)
            profile = measure_profile(target.handle, drafter, cfg, labels,
                                      log=lambda m: print(m, flush=True))
    except (ValueError, ModelNotInstalledError) as e:
        print(f"specjax profile: {e}", file=sys.stderr)
        return 2
    base = profile.at(profile.contexts[0], profile.batches[0]).target
    t0 = base.tokens[0]
    ratios = ", ".join(f"T={t}: {base.ratio(t):.2f}x" for t in (2, 5, 8, 16, 32, 64, 128) if t0 < t <= base.tokens[-1])
    print(f"{profile.device}: target call cost relative to T={t0} at S={profile.contexts[0]}: {ratios}")
    print(f"wrote {profile.save(args.out)}")
    return 0
