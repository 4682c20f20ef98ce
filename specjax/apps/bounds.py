"""`specjax bounds`: the verifier-vs-optimum gap experiment (transport.gap) at its default setting."""
from __future__ import annotations

import argparse
from dataclasses import replace


def add_bounds_parser(subparsers) -> argparse.ArgumentParser:
    """Register the `bounds` subcommand on an argparse subparsers object."""
    parser = subparsers.add_parser("bounds", help="exact optimal multi-draft acceptance vs every verifier")
    parser.add_argument("--out", default="results/bounds", help="directory for verifier_gap.json and .png")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--small", action="store_true", help="the small, fast setting")
    parser.set_defaults(func=run_bounds)
    return parser


def run_bounds(args: argparse.Namespace) -> int:
    """Run the gap experiment, print its table, write JSON + PNG to args.out."""
    from specjax.apps.experiment import progress
    from transport.gap import GapConfig, format_table, run_verifier_gap
    config = replace(GapConfig.small() if getattr(args, "small", False) else GapConfig.default(), seed=args.seed)
    result = run_verifier_gap(config, args.out, each=lambda cells: progress(cells, len(cells), "bounds"))
    print(format_table(result))
    print(f"wrote {args.out}/verifier_gap.json and verifier_gap.png")
    return 0
