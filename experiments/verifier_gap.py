"""Verifier-vs-optimum gap: `python experiments/verifier_gap.py --config small|default --seed 0 --out DIR`."""
from __future__ import annotations

import argparse

from transport.gap import GapConfig, format_table, run_verifier_gap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", choices=("small", "default"), default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/verifier_gap")
    args = parser.parse_args()
    config = GapConfig.small() if args.config == "small" else GapConfig.default()
    print(format_table(run_verifier_gap(config, args.seed, args.out)))


if __name__ == "__main__":
    main()
