"""Train and study the EAGLE-style head for SmolLM2-135M by self-distillation: the target answers templated
instructions (none from MT-bench or HumanEval), its answers and hidden states are stored, and the head learns the
target's next-token law and hidden state (`specjax.training.eagle`). One module per subcommand, in
experiments/eagle/ (each one's docstring says what it does and writes; `train_eagle.py SUB --help` prints it):

    data   experiments/eagle/data.py      the target's answers + hidden states, sharded and resumable
    train  experiments/eagle/train.py     distil the head (`--ttt-depth`: EAGLE-3's training-time test); ship it
    eval   experiments/eagle/evaluate.py  τ and tokens/s of every drafter, MT-bench and HumanEval, T = 0 and 1
    curve  experiments/eagle/curve.py     τ against training tokens and steps, from trained heads
    gto    experiments/eagle/gto.py       Group Tree Optimization of a trained head (`--gto-weight 0`: its control)

    python experiments/train_eagle.py data --out results/eagle_data
    python experiments/train_eagle.py train --data results/eagle_data --steps 400 --out results/head
    python experiments/train_eagle.py eval --ckpt specjax/data/eagle_smollm2 --prompts 4 --out results/eagle_eval
    python experiments/train_eagle.py gto --steps 60 --out results/head_gto

Each subcommand has its own config (`--config FILE.toml` works for each). How the shipped head was made:
specjax/data/README.md; every measured figure (TTT, fused features, GTO, τ against data and steps):
experiments/RESULTS.md.
"""
from __future__ import annotations

import sys
from pathlib import Path

if not __package__:                  # run as `python experiments/train_eagle.py`: put the repository on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.eagle import curve, data, evaluate, gto, train  # noqa: E402

SUBCOMMANDS = {"data": data, "train": train, "eval": evaluate, "curve": curve, "gto": gto}
# the config of each subcommand, as the experiments' tests and `--config` files expect
CONFIG = {name: module.CONFIG for name, module in SUBCOMMANDS.items()}


def main(argv=None) -> int:
    """Run the subcommand `argv[0]` on the rest of `argv` (its module's `main`)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in SUBCOMMANDS:
        print(__doc__, file=sys.stderr)
        asked = bool(argv) and argv[0] in ("-h", "--help")
        raise SystemExit(0 if asked else f"usage: train_eagle.py {{{','.join(SUBCOMMANDS)}}} [--help] [options]")
    return SUBCOMMANDS[argv[0]].main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
