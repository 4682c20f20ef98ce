"""The EAGLE head for SmolLM2-135M, one module per subcommand of `experiments/train_eagle.py` (data, train,
evaluate, curve, gto; each has its `CONFIG`, its `DEFAULT_OUT` and a `main`), and the instruction pool the target
answers (instructions). The head's loss and checkpoint format are library code: `specjax.training.eagle`."""
