"""`specjax bounds`: the verifier-vs-optimum gap experiment (transport.studies.gap) at its default setting, or with
`--laws FILE.npz` the same study on stored real next-token laws (`experiments/real_laws.py collect`)."""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path


def add_bounds_parser(subparsers) -> argparse.ArgumentParser:
    """Register the `bounds` subcommand on an argparse subparsers object."""
    parser = subparsers.add_parser("bounds", help="exact optimal multi-draft acceptance vs every verifier")
    parser.add_argument("--out", default="results/bounds", help="directory for verifier_gap.json and .png "
                        "(with --laws: the output stem, STEM.json / .md / .png)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--small", action="store_true", help="the small, fast setting")
    parser.add_argument("--laws", help="a stored-laws .npz: the gap study on those real laws instead")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6, 7, 8], help="with --laws")
    parser.add_argument("--wor-ks", type=int, nargs="*", default=None,
                        help="with --laws: the k >= 3 at which α* without replacement is computed (default all)")
    parser.set_defaults(func=run_bounds)
    return parser


def run_bounds(args: argparse.Namespace) -> int:
    """Run the gap experiment (or the real-law study), print its table, write JSON + PNG to args.out."""
    if getattr(args, "laws", None):
        from specjax.bench.law_study import report, run_law_study
        from transport.studies.law_gap import LawStudyConfig
        wor_ks = None if args.wor_ks is None else tuple(args.wor_ks)
        print(report(run_law_study(args.laws, LawStudyConfig(ks=tuple(args.ks), wor_ks=wor_ks), args.out),
                     args.out))
        return 0
    from specjax.bench.experiment import progress
    from specjax.bench.studies_plots import plot_verifier_gap
    from transport.studies.gap import GapConfig, format_table, run_verifier_gap
    config = replace(GapConfig.small() if getattr(args, "small", False) else GapConfig.default(), seed=args.seed)
    result = run_verifier_gap(config, args.out, each=lambda cells: progress(cells, len(cells), "bounds"))
    plot_verifier_gap(result, Path(args.out) / "verifier_gap.png")
    print(format_table(result))
    print(f"wrote {args.out}/verifier_gap.json and verifier_gap.png")
    return 0
