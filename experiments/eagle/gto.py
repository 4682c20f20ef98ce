"""`train_eagle.py gto`: fine-tune a trained EAGLE head by Group Tree Optimization (`trees.gto`).

At contexts cut from the answers of `data` (`--window` tokens before an answer token), the head's EAGLE-2 tree and
that of its frozen starting point (`--init`, also GTO's reference) are drafted and scored by the target; the loss is
the head's own training loss on the contexts (the anchor, `specjax.training.eagle.head_loss`) plus `--gto-weight`
times GTO's PPO-style surrogate on the exact tree reward. `--gto-weight 0` is the control: the same contexts,
rollouts, steps and compute without the surrogate. Trained by `specjax.training.distill.train_with_loss` (resumable
from `--work`).

    python experiments/train_eagle.py gto --steps 60 --out results/head_gto                   # from the shipped head
    python experiments/train_eagle.py gto --steps 60 --gto-weight 0 --out results/head_gto0   # its control

Ships the head to the checkpoint directory `<out>` with, in its metadata, the paired held-out reward of both heads
(E[accepted | tree] + 1 at the same held-out contexts, every `--eval-every` steps) and their τ decoded at the end on
`--eval-prompts` MT-bench prompts (EAGLE-2 tree and chain K = 4, at the rollouts' temperature).
Figures: experiments/RESULTS.md.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from experiments.eagle.data import answer_info, load_data
from specjax.bench.experiment import parse_config, progress, provenance


@dataclass(frozen=True)
class EagleGTOConfig:
    """`gto`: Group Tree Optimization (`trees.gto`) of a trained head: at contexts cut from the answers of `data`,
    the head's EAGLE-2 tree and its starting point's (frozen) are drafted and scored by the target; the loss is the
    head's own training loss on the contexts (the anchor) plus `gto_weight` times GTO's surrogate. `gto_weight 0`
    is the control: the same contexts, rollouts, steps and compute, without the surrogate."""

    init: str = "specjax/data/eagle_smollm2"
    """the head to start from (a `train` output); it is also GTO's frozen reference"""
    data: tuple[str, ...] = ("results/eagle_data",)
    work: str = "results/gto_work"
    """resumable training checkpoints"""
    stop_after: int | None = None
    steps: int = 100
    contexts: int = 16
    """contexts per step (one rollout each)"""
    window: int = 96
    """tokens of context before each round's root"""
    budget: int = 32
    """the EAGLE-2 tree's node budget"""
    temperature: float = 0.0
    """of the rollouts' verification (0: greedy, where a tree's reward is its accepted length)"""
    learning_rate: float = 3e-4
    warmup_steps: int = 10
    gto_weight: float = 1.0
    feature_weight: float = 1.0
    clip: float = 0.2
    held_out: int = 16
    """answers (the last ones) kept out of training; the paired reward of both heads is measured on them"""
    held_contexts: int = 64
    eval_every: int = 25
    eval_prompts: int = 8
    """MT-bench prompts decoded at the end with both heads (tree and chain τ at `temperature`)"""
    eval_tokens: int = 96
    seed: int = 0

    def __post_init__(self):
        if self.window < 2 or self.contexts < 2 or self.budget < 1 or self.gto_weight < 0:
            raise ValueError("need window >= 2, contexts >= 2, budget >= 1 and gto_weight >= 0")


CONFIG = EagleGTOConfig
DEFAULT_OUT = "results/head_gto"


def gto_contexts(tokens: np.ndarray, lengths: np.ndarray, prompt_lengths: np.ndarray, count: int, window: int,
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` (context `[window]`, pending token) pairs cut at random answer positions of random rows, a pure
    function of the seed: the context is the `window` tokens before the cut, the pending token the one at it."""
    rng = np.random.default_rng(seed)
    lo = np.maximum(prompt_lengths, window)                   # the root is an answer token with a full window
    rows = np.flatnonzero(lengths > lo)
    if rows.size == 0:
        raise ValueError(f"no answer is long enough for a {window}-token window")
    pick = rows[rng.integers(0, rows.size, count)]
    cuts = lo[pick] + (rng.random(count) * (lengths[pick] - lo[pick])).astype(np.int64)
    contexts = tokens[pick[:, None], cuts[:, None] - window + np.arange(window)[None, :]]
    return contexts.astype(np.int32), tokens[pick, cuts].astype(np.int32)


def context_data(cfg: EagleGTOConfig, tok, vocab_size: int):
    """(batch function, held-out (contexts `[H, W]`, pending `[H]`), data configs) from the answers of `cfg.data`:
    batch(step) cuts `cfg.contexts` contexts from the answers trained on (a pure function of seed and step, so a
    resumed run sees the same), the held-out ones come from the last `cfg.held_out` answers. ValueError (from
    `trees.gto.check_contexts`) for tokens outside the vocabulary."""
    import jax.numpy as jnp

    from trees.gto import check_contexts

    tokens, lengths, _, data_configs = load_data(list(cfg.data))
    prompt_lengths, _ = answer_info(list(cfg.data), tok)
    n_train = len(tokens) - min(cfg.held_out, len(tokens) // 4)

    def batch(step: int) -> dict:
        contexts, pending = gto_contexts(tokens[:n_train], lengths[:n_train], prompt_lengths[:n_train], cfg.contexts,
                                         cfg.window, seed=cfg.seed * 100003 + step)
        return {"contexts": jnp.asarray(contexts), "pending": jnp.asarray(pending), "step": jnp.int32(step)}

    held = gto_contexts(tokens[n_train:], lengths[n_train:], prompt_lengths[n_train:], cfg.held_contexts, cfg.window,
                        seed=cfg.seed + 7)
    check_contexts(*held, vocab_size)
    check_contexts(*[np.asarray(x) for x in (batch(0)["contexts"], batch(0)["pending"])], vocab_size)
    return batch, held, data_configs


def gto_loss(cfg: EagleGTOConfig, target_handle, reference, builder, key):
    """`loss_fn(head, batch)`: the anchor (the head's teacher-forced training loss on the rollouts' contexts, the
    target's features) plus `cfg.gto_weight` times GTO's surrogate of the head's tree against the frozen
    `reference`'s; batch: contexts `[B, W]`, pending `[B]`, step (the rollouts' key is folded with it)."""
    import jax
    import jax.numpy as jnp

    from specjax.runners.base import Handle
    from specjax.sampling import SamplingConfig
    from specjax.training.eagle import head_loss
    from trees.gto import GTOConfig, gto_surrogate, rollout

    params = reference.params
    embedding_kept = params.embedding[params.keep_ids]
    d = target_handle.config.d_model
    sampling, gcfg = SamplingConfig(temperature=cfg.temperature), GTOConfig(clip=cfg.clip)

    def loss_fn(head, b):
        drafter = Handle(reference.runner, params.replace(head=head))
        frozen = Handle(reference.runner, params.replace(head=jax.lax.stop_gradient(head)))
        rolled = rollout(target_handle, frozen, reference, builder, b["contexts"], b["pending"],
                         jax.random.fold_in(key, b["step"]), sampling)
        surrogate, prefix = gto_surrogate(drafter, reference, rolled, gcfg)
        anchor = head_loss([prefix.hidden], rolled.hidden[..., -d:], jnp.ones(rolled.contexts.shape, jnp.float32),
                           embedding_kept, 1.0, cfg.feature_weight)
        return anchor + cfg.gto_weight * surrogate
    return loss_fn


def held_out_rewards(cfg: EagleGTOConfig, end: int, paired, held_ctx: np.ndarray, held_pending: np.ndarray,
                     evals: list):
    """`on_step(done, head)`: every `cfg.eval_every` steps and at `end`, appends to `evals` the mean E[accepted |
    tree] + 1 of both heads' trees at the same held-out contexts (a paired comparison) and its difference's se.
    paired(head, contexts, pending): the rollout of the head against the reference."""
    import jax.numpy as jnp

    def on_step(done: int, head) -> None:
        if not (done == end or (cfg.eval_every and done % cfg.eval_every == 0)):
            return
        cur, ref = [], []
        for lo in range(0, len(held_ctx), cfg.contexts):
            hi = lo + cfg.contexts
            r = paired(head, jnp.asarray(held_ctx[lo:hi]), jnp.asarray(held_pending[lo:hi]))
            cur += np.asarray(r.current.reward).tolist()
            ref += np.asarray(r.reference.reward).tolist()
        diff = np.asarray(cur) - np.asarray(ref)
        evals.append({"step": done, "tree_tau": 1 + float(np.mean(cur)), "reference_tree_tau": 1 + float(np.mean(ref)),
                      "gain_se": float(diff.std(ddof=1) / np.sqrt(len(diff)))})
        print(f"step {done}: held-out predicted tree τ {evals[-1]['tree_tau']:.3f} (start "
              f"{evals[-1]['reference_tree_tau']:.3f}, difference se {evals[-1]['gain_se']:.3f})", flush=True)
    return on_step


def decoded_taus(cfg: EagleGTOConfig, target_handle, reference, heads: dict, tok) -> dict:
    """{"<method>/<head name>": τ} of `heads` ({name: head params}) decoding the same `cfg.eval_prompts` MT-bench
    prompts with the EAGLE-2 tree and a K = 4 chain at the rollouts' temperature."""
    import jax

    from specjax.bench.prompts import load_prompts
    from specjax.decode.batching import pad_prompts
    from specjax.decode.loop import generate
    from specjax.methods import make_method
    from specjax.runners.base import Handle
    from specjax.sampling import SamplingConfig
    from trees import make_speculator

    ids = [tok.chat_ids(p) for p in load_prompts("mt_bench", cfg.eval_prompts)]
    prompt_tokens, prompt_lens = pad_prompts(ids)
    methods = {"eagle2_tree": make_speculator("eagle", budget=cfg.budget),
               "chain_K4": make_method("chain", num_draft=4)}
    decoded = {}
    cells = [(m, h) for m in methods.items() for h in heads.items()]
    for (m_name, method), (h_name, h) in progress(cells, len(cells), "decode τ"):
        result = generate(target_handle, prompt_tokens, prompt_lens, jax.random.key(cfg.seed), method=method,
                          drafter=Handle(reference.runner, reference.params.replace(head=h)),
                          max_new_tokens=cfg.eval_tokens, sampling=SamplingConfig(temperature=cfg.temperature),
                          eos_id=tok.eos_id)
        decoded[f"{m_name}/{h_name}"] = result.acceptance_length
    return decoded


def gto(cfg: EagleGTOConfig, out: Path) -> int:
    """GTO fine-tuning of the head `cfg.init`; ships it to `out` with the held-out paired rewards and the decoded
    τ of both heads (EAGLE-2 tree and chain K = 4, MT-bench, at the rollouts' temperature) in its metadata."""
    import jax
    import jax.numpy as jnp

    from specjax.model.io.checkpoint import read_meta
    from specjax.model.io.smollm2 import load_smollm2
    from specjax.runners.base import Handle
    from specjax.runners.eagle import eagle_target, load_eagle
    from specjax.runners.model import model_handle
    from specjax.sampling import SamplingConfig
    from specjax.training.distill import TrainConfig, train_with_loss
    from specjax.training.eagle import ship_head
    from trees import make_speculator
    from trees.gto import rollout

    target, tok = load_smollm2()
    target_handle = eagle_target(cfg.init, model_handle(target))         # fused features if the head reads them
    reference = load_eagle(cfg.init, target_handle, trim=True)
    params = reference.params
    batch, (held_ctx, held_pending), data_configs = context_data(cfg, tok, target.config.vocab_size)
    builder = make_speculator("eagle", budget=cfg.budget).builder
    key = jax.random.key(cfg.seed)
    paired = jax.jit(lambda head, c, p: rollout(target_handle, Handle(reference.runner, params.replace(head=head)),
                                                reference, builder, c, p, key, SamplingConfig(cfg.temperature)))
    evals, end = [], min(cfg.steps, cfg.stop_after or cfg.steps)
    on_step = held_out_rewards(cfg, end, paired, held_ctx, held_pending, evals)
    tcfg = TrainConfig(steps=cfg.steps, learning_rate=cfg.learning_rate, warmup_steps=cfg.warmup_steps,
                       checkpoint_every=max(cfg.steps // 4, 1))
    t0 = time.time()
    head, _, losses = train_with_loss(jax.tree.map(jnp.copy, params.head), gto_loss(cfg, target_handle, reference,
                                                                                    builder, key),
                                      batch, tcfg, checkpoint_dir=Path(cfg.work), log_every=10,
                                      stop_after=cfg.stop_after, on_step=on_step)
    seconds = time.time() - t0
    if not evals or evals[-1]["step"] != end:
        on_step(end, head)
    print(f"trained {len(losses)} steps here (global step {end} of {cfg.steps}) in {seconds:.0f}s", flush=True)
    decoded = {}
    if cfg.eval_prompts:                                       # τ by decoding, both heads, the same prompts
        decoded = decoded_taus(cfg, target_handle, reference, {"start": params.head, "gto": head}, tok)
        for m_name in ("eagle2_tree", "chain_K4"):
            print(f"decoded τ, {m_name}: start {decoded[m_name + '/start']:.3f}, after GTO "
                  f"{decoded[m_name + '/gto']:.3f}", flush=True)
    init_meta = read_meta(cfg.init)["extra"]
    ship_head(out, head, np.asarray(params.keep_ids), target.config, end,
              {"train": init_meta.get("train", {}), "gto": asdict(cfg), "data": data_configs, "stopped_at": end,
               "losses": losses, "held_out_rewards": evals, "decoded_tau": decoded, "train_seconds": seconds,
               "training_tokens": init_meta.get("training_tokens"),
               "feature_layers": init_meta.get("feature_layers", []), "provenance": provenance()},
              moment=params.feature_moment)
    print(f"wrote {out}")
    return 0


def main(argv=None) -> int:
    cfg, out = parse_config(CONFIG, argv, __doc__, default_out=DEFAULT_OUT, prog="train_eagle.py gto")
    return gto(cfg, out)
