"""`train_eagle.py train`: distil the EAGLE head for SmolLM2-135M on the target's own answers (`data`).

The head learns the target's next-token law (KL over the VocabTrim set of the `--trim` most frequent training tokens)
and its hidden state (EAGLE's feature regression, so the head's own output can stand in for the target's feature
when it drafts several tokens): `specjax.training.eagle.head_loss`, trained by
`specjax.training.distill.train_with_loss` (AdamW, warmup then cosine decay, orbax checkpoints in `--work`). With
`--ttt-depth D > 1` the KL is put on every depth 1..D of the head unrolled on its own outputs (EAGLE-3's training-time
test). A file of `data --feature-layers` trains a head that reads EAGLE-3's fused features. The last `--held-out`
answers are never trained on: every `--eval-every` steps and at the end, the training-time τ estimate of chains
K = 1..`--eval-depth` on them (`specjax.bench.acceptance.hidden_chain_tau`), per answer temperature.

    python experiments/train_eagle.py train --data results/eagle_data_s2 results/eagle_data.npz --steps 3600 \\
        --eval-every 0 --work results/work_s3600                      # the shipped head (specjax/data/README.md)
    python experiments/train_eagle.py train --data results/eagle_data --ttt-depth 3 --out results/head_ttt3
    python experiments/train_eagle.py train --data results/eagle_data --rows 44 --out results/head_rows44

Ships the head (`specjax.training.eagle.ship_head`: bf16, its VocabTrim set and feature moment) to the checkpoint
directory `<out>`, with its config, the data configs, the losses, the τ estimates, the training tokens and software
versions in its metadata. A run stopped by `--stop-after` resumes from `--work`. Figures: experiments/RESULTS.md.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from experiments.eagle.data import answer_info, load_data
from specjax.bench.experiment import parse_config, provenance


@dataclass(frozen=True)
class EagleTrainConfig:
    """`train`: the head, distilled on files of `data`."""

    data: tuple[str, ...] = ("results/eagle_data",)
    """outputs of the `data` subcommand (shard directories, or .npz files of older runs)"""
    work: str = "results/eagle_work"
    """resumable training checkpoints"""
    stop_after: int | None = None
    """stop (and ship) after this global step; a later run with the same `work` resumes"""
    steps: int = 400
    batch_size: int = 8
    seq_len: int = 192
    learning_rate: float = 3e-3
    warmup_steps: int = 20
    d_ff: int = 768
    trim: int = 8192
    feature_weight: float = 1.0
    """weight of EAGLE's smooth-L1 feature regression next to the KL"""
    held_out: int = 16
    """answers (the last ones) kept out of training, on which the τ estimate is reported"""
    eval_every: int = 100
    """steps between τ estimates (0: none; always one at the end)"""
    eval_depth: int = 5
    """chains of K = 1..eval_depth drafts in the τ estimate"""
    ttt_depth: int = 1
    """training-time test (EAGLE-3): the KL is put on depths 1..ttt_depth of the head unrolled on its own outputs
    (1: EAGLE-1's teacher-forced training)"""
    ttt_decay: float = 0.8
    """weight of depth d is ttt_decay^(d-1)"""
    rows: int = 0
    """train on the first `rows` answers only (0: every answer not held out); the held-out answers stay the same,
    so heads trained on growing `rows` give τ against training tokens (`curve`)"""
    seed: int = 0

    def __post_init__(self):
        if self.ttt_depth < 1 or not 0 < self.ttt_decay <= 1:
            raise ValueError(f"need ttt_depth >= 1 and ttt_decay in (0, 1], got {self.ttt_depth}, {self.ttt_decay}")


CONFIG = EagleTrainConfig
DEFAULT_OUT = "specjax/data/eagle_smollm2"


def data_batches(tokens: np.ndarray, lengths: np.ndarray, hidden: np.ndarray, batch_size: int, seq_len: int,
                 seed: int):
    """Batch function: random rows and windows of `seq_len`, a pure function of (seed, step), so a resumed run
    sees the batches of an uninterrupted one; dict of tokens `[B, T]`, hidden `[B, T, F]`, mask `[B, T]` (1 inside
    the sequence)."""
    def batch(step: int) -> dict:
        rng = np.random.default_rng([seed, step])
        rows = rng.integers(0, len(tokens), batch_size)
        starts = (rng.random(batch_size) * np.maximum(lengths[rows] - seq_len, 0)).astype(np.int64)
        idx = starts[:, None] + np.arange(seq_len)[None, :]
        idx = np.minimum(idx, tokens.shape[1] - 1)
        return {"tokens": tokens[rows[:, None], idx], "hidden": hidden[rows[:, None], idx],
                "mask": (idx < lengths[rows][:, None]).astype(np.float32)}
    return batch


def training_rows(cfg: EagleTrainConfig, n: int) -> tuple[np.ndarray, int]:
    """(indices of the answers trained on, count held out): the last `held` of `n` answers are never trained on,
    and `cfg.rows` keeps only the first rows of the rest."""
    held = min(cfg.held_out, n // 4)
    rows = np.arange(n - held)
    if cfg.rows:
        if not 0 < cfg.rows <= len(rows):
            raise ValueError(f"rows must be in [1, {len(rows)}] (the answers not held out), got {cfg.rows}")
        rows = rows[:cfg.rows]
    return rows, held


def tau_estimator(cfg: EagleTrainConfig, end: int, target_handle, eagle, keep, data, held: int, evals: list):
    """`on_step(done, head)` for `train_with_loss`: at every `cfg.eval_every` steps and at `end`, appends to `evals`
    the training-time τ estimate of chains K = 1..eval_depth on the held-out answers, per answer temperature.
    data: (tokens `[N, L]`, hidden `[N, L, F]`, lengths `[N]`, prompt lengths `[N]`, temperatures `[N]`)."""
    import jax.numpy as jnp

    from specjax.bench.acceptance import hidden_chain_tau
    from specjax.runners.base import Handle
    from specjax.sampling import SamplingConfig

    tokens, hidden, lengths, prompt_lengths, temperatures = data

    def estimate_tau(done: int, head) -> None:
        if not held or not (done == end or (cfg.eval_every and done % cfg.eval_every == 0)):
            return
        drafter = Handle(eagle.runner, eagle.params.replace(head=head, keep_ids=jnp.asarray(keep, jnp.int32)))
        row = {"step": done, "tokens_seen": done * cfg.batch_size * cfg.seq_len}
        for temp in sorted(set(temperatures[-held:].tolist())):
            rows = len(tokens) - held + np.flatnonzero(temperatures[-held:] == temp)
            row[f"tau_T{temp:g}"] = hidden_chain_tau(
                target_handle, drafter, tokens[rows], hidden[rows], lengths[rows], prompt_lengths[rows],
                cfg.eval_depth, SamplingConfig(temperature=temp), chunk=4).tolist()
        evals.append(row)
        print(f"step {done}: estimated chain tau (K = 1..{cfg.eval_depth}) " + "; ".join(
            f"{k}: " + " ".join(f"{x:.2f}" for x in v) for k, v in row.items() if k.startswith("tau")), flush=True)
    return estimate_tau


def train(cfg: EagleTrainConfig, out: Path) -> int:
    """Distil the head on `cfg.data`; ship it (bf16, with the trim set and feature moment) to the directory `out`."""
    import jax.numpy as jnp

    from specjax.model.io.smollm2 import load_smollm2
    from specjax.runners.base import Handle
    from specjax.runners.eagle import frequent_token_ids, init_eagle
    from specjax.runners.model import fused_features, model_handle
    from specjax.training.distill import TrainConfig, train_with_loss
    from specjax.training.eagle import head_loss, ship_head
    from specjax.training.unrolled import unrolled_drafts

    target, tok = load_smollm2()
    tokens, lengths, hidden, data_configs = load_data(list(cfg.data))
    layers = tuple(data_configs[0].get("feature_layers", ()))            # EAGLE-3's fused features, if stored
    d = target.config.d_model
    prompt_lengths, temperatures = answer_info(list(cfg.data), tok)
    train_rows, held = training_rows(cfg, len(tokens))
    valid = np.arange(tokens.shape[1])[None, :] < lengths[train_rows, None]
    keep = frequent_token_ids(tokens[train_rows][valid], target.config.vocab_size, cfg.trim,
                              always=(tok.eos_id, tok.bos_id))
    print(f"data: {len(tokens)} sequences ({held} held out), {int(lengths[train_rows].sum())} training tokens; "
          f"trim set {keep.size}", flush=True)
    target_handle = fused_features(model_handle(target), layers) if layers else model_handle(target)
    eagle = init_eagle(target_handle, d_ff=cfg.d_ff, seed=cfg.seed)
    embedding_kept = eagle.params.embedding[jnp.asarray(keep, jnp.int32)]
    end = min(cfg.steps, cfg.stop_after or cfg.steps)
    evals = []
    estimate_tau = tau_estimator(cfg, end, target_handle, eagle, keep,
                                 (tokens, hidden, lengths, prompt_lengths, temperatures), held, evals)

    def loss_fn(head, batch):
        toks, target_hidden, mask = batch["tokens"], batch["hidden"], batch["mask"]
        outs = unrolled_drafts(Handle(eagle.runner, eagle.params.replace(head=head)), toks, target_hidden,
                               cfg.ttt_depth)
        return head_loss([o.hidden for o in outs], target_hidden[..., -d:], mask, embedding_kept, cfg.ttt_decay,
                         cfg.feature_weight)

    tcfg = TrainConfig(steps=cfg.steps, learning_rate=cfg.learning_rate, warmup_steps=cfg.warmup_steps,
                       checkpoint_every=max(cfg.steps // 4, 1))
    t0 = time.time()
    batches = data_batches(tokens[train_rows], lengths[train_rows], hidden[train_rows], cfg.batch_size, cfg.seq_len,
                           cfg.seed)
    head, _, losses = train_with_loss(eagle.params.head, loss_fn, batches, tcfg, checkpoint_dir=Path(cfg.work),
                                      log_every=10, stop_after=cfg.stop_after, on_step=estimate_tau)
    if not evals or evals[-1]["step"] != end:                # a resumed run with no step left still reports it
        estimate_tau(end, head)
    print(f"trained {len(losses)} steps here (global step {end} of {cfg.steps}) in {time.time() - t0:.0f}s",
          flush=True)
    states = hidden[train_rows][valid][:, -d:].astype(np.float64)        # the features the head learns to emit
    moment = jnp.asarray(states.T @ states / len(states), jnp.float32)    # for the data-aware low-rank head
    ship_head(out, head, keep, target.config, end,
              {"train": asdict(cfg), "data": data_configs, "stopped_at": end, "losses": losses,
               "tau_estimates": evals, "training_tokens": int(lengths[train_rows].sum()),
               "feature_layers": list(layers), "provenance": provenance()}, moment=moment)
    print(f"wrote {out}")
    return 0


def main(argv=None) -> int:
    cfg, out = parse_config(CONFIG, argv, __doc__, default_out=DEFAULT_OUT, prog="train_eagle.py train")
    return train(cfg, out)
