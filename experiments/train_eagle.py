"""Train the EAGLE-style head for SmolLM2-135M by self-distillation: the target answers templated instructions
(none from MT-bench or HumanEval), its answers and final hidden states are stored, and the head learns to match the
target's next-token law (KL over the VocabTrim set) and its hidden state (EAGLE's feature regression, so the head's
own output can stand in for the target feature when drafting several tokens). With `--ttt-depth D > 1` the KL is
put on every depth 1..D of the head unrolled on its own outputs (EAGLE-3's training-time test,
`specjax.training.distill.unrolled_distill_loss`). Checkpointed with orbax; `eval` measures acceptance (τ) and tokens/s
of every drafter on MT-bench and HumanEval at temperature 0 and 1.

    python experiments/train_eagle.py data --out results/eagle_data          # target answers + hidden states, sharded
    python experiments/train_eagle.py data --prompts 1536 --seed 1 --out results/eagle_data_s1   # rerun to resume
    python experiments/train_eagle.py train --data results/eagle_data results/eagle_data_s1 --steps 1200
    python experiments/train_eagle.py eval --ckpt specjax/data/eagle_smollm2 --prompts 4 --out results/eagle_eval
    python experiments/train_eagle.py data --feature-layers 2 15 --out results/eagle_data_f3   # EAGLE-3 features
    python experiments/train_eagle.py gto --steps 60 --out results/head_gto      # GTO from the shipped head
    python experiments/train_eagle.py gto --steps 60 --gto-weight 0 --out results/head_gto0   # its control

A `data` file made with `--feature-layers L1 L2` also stores the target's states after those layers (EAGLE-3's fused
low/mid/high features, `specjax.runners.model.fused_features`); a head trained on it reads them through a `fuse` layer and
decodes with the fused target handle (`specjax.runners.eagle.eagle_target`). `gto` fine-tunes a trained head by Group Tree
Optimization (`trees.gto`): EAGLE-2 trees of the head and of its frozen starting point at contexts cut from the
answers, the exact tree reward, and a PPO-style surrogate beside the head's own loss.

Last runs (τ at T = 0 on 8 MT-bench prompts x 96 tokens; standard errors 0.02-0.03):
  fused features (layers 2, 15 + last) vs EAGLE-1 features, both `--ttt-depth 3`, 400 steps, the same 32k tokens:
  chains K = 1 / 2 / 5: 1.278 / 1.351 / 1.380 against 1.260 / 1.322 / 1.348 (+1.4-2.4%, within noise); the
  held-out estimate is equal (1.36 / 1.51 / 1.62 against 1.36 / 1.51 / 1.64).
  `gto --steps 60` from the shipped head against its `--gto-weight 0` control (same contexts and compute): EAGLE-2
  tree (budget 32) 1.800 against 1.786 (start 1.796), chain K = 4 1.453 against 1.431 (start 1.410); the held-out
  predicted tree τ has the opposite sign (2.234 against 2.297, start 2.156, se about 0.07). No gain beyond noise.

Training-time test vs EAGLE-1 training, from scratch on the same data (`data --prompts 192`, seed 0: 32k training
tokens, 16 answers held out), T = 0 MT-bench, τ measured by decoding 8 prompts x 96 tokens
(`tau_estimate.py --ckpt <head> --temperatures 0`), chains K = 1 / 2 / 5:
  EAGLE-1 loss, 400 steps (350 s):                1.244 / 1.282 / 1.282
  --ttt-depth 3, 171 steps (363 s, equal time):   1.246 / 1.300 / 1.320   (K = 5: +3.0%)
  --ttt-depth 3, 400 steps (817 s, equal steps):  1.260 / 1.322 / 1.348   (K = 5: +5.1%)
(standard errors 0.017-0.031). The training-time estimate on the 16 held-out answers (T = 0.7), K = 1 / 2 / 5:
1.38 / 1.47 / 1.49, 1.31 / 1.41 / 1.46, 1.36 / 1.51 / 1.64. So at equal steps TTT clearly drafts deeper chains
better; at equal time the two disagree in sign and neither difference exceeds its noise. Each TTT step costs 2.3x
an EAGLE-1 step (three head passes). All three are below the head shipped then (1200 steps on 138k tokens: 1.330 /
1.386 / 1.404 by the same command).

`curve --heads DIR ...` plots the held-out τ estimate of heads trained on growing `--rows` against their training
tokens. Last curve (EAGLE-1 loss, 400 steps each, the same data file, `--rows 22 / 44 / 88` and all 176 answers;
held-out estimate at T = 0.7, K = 1 / 5): 3.9k tokens 1.24 / 1.30, 7.8k 1.28 / 1.36, 15.7k 1.34 / 1.45, 32.3k
1.38 / 1.49: about +0.06 at K = 5 per doubling of data, a little less in the last one. Extended with the
sharded `data --prompts 1536 --batch-size 64 --seed 2 --out results/eagle_data_s2` (277k tokens) and
`train --data results/eagle_data_s2 results/eagle_data.npz --rows N` (the held-out answers stay the old file's last
16), still 400 steps: 64.6k tokens 1.40 / 1.55, 127.8k 1.40 / 1.53, 309.8k 1.41 / 1.57. Past ~64k tokens, 400
steps (614k token visits) and not data bind: a larger data set needs proportionally more steps.
Steps scaled on the 309.8k tokens (`train --data results/eagle_data_s2 results/eagle_data.npz --steps N
--eval-every 0`), the same held-out estimate, K = 1 / 2 / 5: 400 steps 1.41 / 1.53 / 1.57, 1200 steps (1209 s)
1.48 / 1.64 / 1.70, 3600 steps (3289 s) 1.53 / 1.75 / 1.89: each tripling of steps adds +0.13 and then +0.19 at
K = 5, so compute still binds at 3600 steps (5.5M token visits, 18 epochs). The 3600-step head is the shipped one:
decoded at T = 0 on MT-bench (`tau_estimate.py --ckpt results/head_s3600 --temperatures 0`) K = 1 / 2 / 5 1.393 /
1.489 / 1.516 (se 0.021-0.038) against 1.330 / 1.386 / 1.404 for the head it replaced.

Each subcommand has its own config (`train_eagle.py data --help`; `--config FILE.toml` works for each). `data`
writes the directory `<out>` of shards (`shard_NNNNN.npz`, one per batch of prompts: tokens, hidden states, prompts,
config, generation seconds and software versions; a rerun writes only the missing ones), `train` the checkpoint
directory `<out>` (config, data configs, versions, losses, τ estimates and training tokens in its metadata; `--work`
keeps resumable training checkpoints), `eval` `<out>.json` (config, versions, one record per temperature and prompt
set; resumable), `<out>.csv` and `<out>.png`, `curve` `<out>.json` and `<out>.png`.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from specjax.bench.experiment import parse_config, progress, provenance, write_csv

TEMPLATES = (
    "Explain {t} to a high-school student.", "Write a short story that involves {t}.",
    "What are the pros and cons of {t}?", "Give me five facts about {t}.", "Write a haiku about {t}.",
    "How would you teach a child about {t}?", "Summarize the history of {t} in a paragraph.",
    "Write a persuasive paragraph in favour of {t}.", "What are common misconceptions about {t}?",
    "Describe {t} as if you were a tour guide.", "Write an email to a friend recommending {t}.",
    "List three questions a scientist might ask about {t}, and answer them.",
    "Compare {t} with something similar and explain the differences.", "Write a product description for {t}.",
    "Give step-by-step advice for someone getting started with {t}.", "Why is {t} important today?",
    "Write a short dialogue between two friends discussing {t}.", "What would the world look like without {t}?",
    "Write a limerick about {t}.", "Describe a typical day of someone who works with {t}.",
    "Write the opening paragraph of a news article about {t}.", "What are the biggest open questions about {t}?",
    "Explain {t} using an analogy from cooking.", "Write a quiz of four multiple-choice questions about {t}.",
)
CODE_TEMPLATES = (
    "Write a Python function that {t}.", "Write a Python function that {t}, with a docstring and an example.",
    "Explain, with Python code, how to write a function that {t}.",
    "Write a Python function that {t}, and a unit test for it.", "Write a JavaScript function that {t}.",
    "Write a Python function that {t}, and explain its time complexity.",
)
TOPICS = (
    "volcanoes", "the water cycle", "photosynthesis", "the Roman empire", "jazz music", "electric cars",
    "black holes", "honey bees", "the printing press", "chess", "recycling", "the human heart", "rainforests",
    "machine learning", "the Olympic games", "coffee", "earthquakes", "the moon landing", "vaccines", "origami",
    "public libraries", "solar panels", "the Great Wall of China", "dinosaurs", "meditation", "bicycles",
    "the stock market", "coral reefs", "the internet", "classical architecture", "gardening", "penguins",
    "time management", "the French revolution", "renewable energy", "board games", "cloud computing",
    "healthy breakfast ideas", "learning a second language", "the solar system",
    "glaciers", "the Silk Road", "octopuses", "3D printing", "the immune system", "wind turbines", "ancient Egypt",
    "sourdough bread", "the Amazon river", "quantum computers", "migratory birds", "the Renaissance", "tea",
    "deserts", "electric guitars", "the periodic table", "public transport", "volunteering", "the deep sea",
    "smartphones", "the Industrial Revolution", "mushrooms", "hiking", "climate change", "the violin",
    "space stations", "the Vikings", "wolves", "bridges", "podcasts", "the Mediterranean diet", "tornadoes",
    "the human brain", "typography", "the Olympic marathon", "pottery", "antibiotics", "lighthouses",
    "cryptography", "urban gardens", "the Moon", "submarines", "chocolate", "the Maya civilisation",
    "rivers", "robotics", "ballet", "sleep", "nuclear fusion", "bees and pollination", "the metric system",
    "saving money", "trains", "the Arctic", "photography", "elephants", "composting", "the Great Barrier Reef",
    "marathons", "windmills", "the history of medicine", "social media", "the Andes", "spiders",
    "the piano", "desalination", "kites", "the Pyramids of Giza", "open-source software", "first aid",
    "whales", "clocks", "the Sahara", "video games", "sign language", "the Eiffel Tower", "bamboo",
    "ocean tides", "camping", "the theory of evolution",
)
CODE_TASKS = (
    "reverses a string", "counts the vowels in a sentence", "returns the n-th Fibonacci number",
    "merges two sorted lists", "checks whether a word is a palindrome", "computes the factorial of n",
    "finds the largest element of a list", "removes duplicates from a list while keeping order",
    "converts Celsius to Fahrenheit", "returns the sum of the digits of an integer", "sorts a list of tuples by "
    "their second element", "counts how often each word appears in a text", "checks whether a year is a leap year",
    "flattens a nested list", "returns the greatest common divisor of two integers", "validates an email address",
    "computes the mean and median of a list", "transposes a matrix given as a list of lists",
    "returns all prime numbers below n", "capitalizes the first letter of every word",
    "checks whether two strings are anagrams", "converts a Roman numeral to an integer",
    "returns the second largest number in a list", "counts the lines of a text file",
    "computes the dot product of two vectors", "finds the longest word in a sentence",
    "rotates a list by k positions", "checks whether a number is prime", "returns the binary representation of n",
    "groups a list of words by their first letter", "computes compound interest",
    "returns the intersection of two lists", "parses a date string in YYYY-MM-DD format",
    "computes the running average of a list", "finds the index of a value in a sorted list by binary search",
    "counts the uppercase letters in a string", "returns the n-th triangular number",
    "checks whether parentheses in a string are balanced", "splits a list into chunks of size n",
    "returns a dictionary that inverts keys and values", "computes the Hamming distance of two strings",
    "generates all permutations of a short string", "returns the most common element of a list",
    "converts a list of strings to integers, skipping invalid ones", "computes the area of a triangle from its sides",
    "removes all whitespace from a string", "returns the squares of the even numbers in a list",
    "checks whether a list is sorted", "computes the power set of a small list",
    "replaces every vowel in a string with a star",
)


@dataclass(frozen=True)
class EagleDataConfig:
    """`data`: the target's answers to templated instructions and its final hidden states."""

    prompts: int = 192
    max_new_tokens: int = 160
    batch_size: int = 32
    sampled_fraction: float = 0.5
    """this share of answers is sampled at temperature 0.7, the rest greedy"""
    feature_layers: tuple[int, ...] = ()
    """also store the target's states after these layers, before the final one (EAGLE-3's fused low/mid/high
    features, e.g. 2 15 on SmolLM2's 30 layers; a head trained on the file reads them)"""
    target: str = "smollm2"
    """the answering model (`specjax.apps.models` names; `train` and `gto` take SmolLM2's answers only)"""
    stop_after: int | None = None
    """stop after the shards of the first `stop_after` batches; a later run with the same `out` resumes"""
    seed: int = 0

    def __post_init__(self):
        if not 0 < self.prompts <= len(instruction_pool()) or self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError(f"need prompts in [1, {len(instruction_pool())}] (the distinct instructions), "
                             "max_new_tokens >= 1 and batch_size >= 1")
        if not 0 <= self.sampled_fraction <= 1:
            raise ValueError(f"sampled_fraction must be in [0, 1], got {self.sampled_fraction}")


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


@dataclass(frozen=True)
class EagleEvalConfig:
    """`eval`: τ and tokens/s of every drafter (chains) against AR, per temperature and prompt set."""

    ckpt: str = "specjax/data/eagle_smollm2"
    prompts: int = 3
    max_new_tokens: int = 64
    num_draft: int = 4
    exit_layer: int = 4
    temperatures: tuple[float, ...] = (0.0, 1.0)
    prompt_sets: tuple[str, ...] = ("mt_bench", "humaneval")
    seed: int = 0


@dataclass(frozen=True)
class EagleCurveConfig:
    """`curve`: τ against training tokens and steps, from heads `train` wrote (their final held-out τ estimate)."""

    heads: tuple[str, ...] = ()
    """head directories of `train` runs that differ in `rows` or `steps` (the same held-out answers)"""


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


# the config of each subcommand (`COMMANDS` below: what runs it and its default output)
CONFIG = {"data": EagleDataConfig, "train": EagleTrainConfig, "eval": EagleEvalConfig, "curve": EagleCurveConfig,
          "gto": EagleGTOConfig}


def instruction_pool() -> list[str]:
    """Every templated instruction: each template with each topic, then each code template with each task."""
    return [t.format(t=x) for t in TEMPLATES for x in TOPICS] + [t.format(t=x) for t in CODE_TEMPLATES
                                                                for x in CODE_TASKS]


def instruction_prompts(n: int, seed: int) -> list[str]:
    """`n` distinct templated instructions (a quarter of them coding tasks, while they last), a pure function of
    the seed; ValueError when the pool holds fewer than `n`."""
    pool = instruction_pool()
    if not 0 < n <= len(pool):
        raise ValueError(f"asked for {n} instructions; the pool holds {len(pool)} distinct ones")
    rng = np.random.default_rng(seed)
    n_code = len(CODE_TEMPLATES) * len(CODE_TASKS)
    weights = np.r_[np.full(len(pool) - n_code, 0.75 / (len(pool) - n_code)), np.full(n_code, 0.25 / n_code)]
    return [pool[i] for i in rng.choice(len(pool), size=n, replace=False, p=weights)]


def answer_temperature(cfg: EagleDataConfig, batch_index: int) -> float:
    """The temperature of the answers of batch i: 0.7 when i * sampled_fraction crosses an integer, else 0."""
    sampled = int((batch_index + 1) * cfg.sampled_fraction) > int(batch_index * cfg.sampled_fraction)
    return 0.7 if sampled else 0.0


def shard_path(out: Path, index: int) -> Path:
    """Where `data` writes the answers of prompt batch `index` (one shard per batch)."""
    return out / f"shard_{index:05d}.npz"


def data_files(paths) -> list[Path]:
    """The `.npz` files of `data` outputs: a file as given, a directory's shards in order; ValueError on a path
    that is neither, or a directory without shards."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            shards = sorted(path.glob("shard_*[0-9].npz"))
            if not shards:
                raise ValueError(f"{path} holds no shards of `train_eagle.py data`")
            files += shards
        elif path.is_file():
            files.append(path)
        elif path.with_suffix(".npz").is_file():                 # a single-file output of an older `data`
            files.append(path.with_suffix(".npz"))
        else:
            raise ValueError(f"no data at {path}: give a `data` output directory or .npz file")
    return files


def make_data(cfg: EagleDataConfig, out: Path) -> int:
    """The target's answers to the instructions and its hidden states (final, and after `cfg.feature_layers`
    concatenated before it), one shard per batch of prompts in the directory `out`. Resumable: a shard is written
    whole (to a temporary name, then renamed) and is a pure function of (config, batch), so a rerun makes only the
    missing shards, and the shards of an interrupted and a whole run are the same."""
    import jax
    import jax.numpy as jnp

    from specjax.apps.models import load_target
    from specjax.decode.batching import pad_prompts
    from specjax.model.block import Block
    from specjax.decode.loop import generate
    from specjax.runners.model import fused_features
    from specjax.sampling import SamplingConfig

    settings = json.dumps({k: v for k, v in asdict(cfg).items() if k != "stop_after"})
    prompts = instruction_prompts(cfg.prompts, cfg.seed)
    batches = range((len(prompts) + cfg.batch_size - 1) // cfg.batch_size)
    for index in batches:                                     # refuse to mix runs before anything is loaded
        if shard_path(out, index).exists():
            with np.load(shard_path(out, index)) as f:
                if str(f["settings"]) != settings:
                    raise ValueError(f"{out} holds shards of another `data` config ({f['settings']}); use a new --out")
    missing = [i for i in batches if not shard_path(out, i).exists()]
    todo = [i for i in missing if cfg.stop_after is None or i < cfg.stop_after]
    print(f"{out}: {len(batches) - len(missing)} of {len(batches)} shards already written", flush=True)
    if not todo:
        return 0
    target = load_target(cfg.target)
    handle = target.handle
    features = fused_features(handle, tuple(cfg.feature_layers)) if cfg.feature_layers else handle

    @jax.jit
    def hidden_states(toks):
        block = Block.chain(toks, jnp.zeros((toks.shape[0],), jnp.int32))
        return features.forward(features.init_cache(toks.shape[0], toks.shape[1]), block).hidden

    out.mkdir(parents=True, exist_ok=True)
    made, t0 = 0, time.perf_counter()
    for index in progress(todo, len(todo), "shards"):
        started = time.perf_counter()
        lo = index * cfg.batch_size
        batch = prompts[lo:lo + cfg.batch_size]
        prompt_ids = [target.encode_prompt(p) for p in batch]
        tokens, lengths = pad_prompts(prompt_ids)
        sampling = SamplingConfig(temperature=answer_temperature(cfg, index))
        answers = generate(handle, tokens, lengths, jax.random.key(cfg.seed * 1000 + lo), 
                           max_new_tokens=cfg.max_new_tokens, sampling=sampling, eos_id=target.eos_id)
        sequences = [ids + np.asarray(answers.tokens[row, :int(answers.lengths[row])]).tolist()
                     for row, ids in enumerate(prompt_ids)]
        width = -(-max(map(len, sequences)) // 32) * 32       # few widths: the hidden-state pass compiles few times
        rows = np.zeros((len(sequences), width), np.int32)
        for i, seq in enumerate(sequences):
            rows[i, :len(seq)] = seq
        hidden = np.concatenate([np.asarray(hidden_states(jnp.asarray(rows[i:i + 8])))
                                 for i in range(0, len(rows), 8)])
        seq_lengths = np.array([len(s) for s in sequences], np.int32)
        partial = out / f"{shard_path(out, index).stem}.partial.npz"
        np.savez(partial, tokens=rows, lengths=seq_lengths, hidden=hidden, prompts=np.array(batch),
                 prompt_lengths=np.array([len(i) for i in prompt_ids], np.int32),
                 temperatures=np.full(len(batch), sampling.temperature, np.float32), settings=settings,
                 config=json.dumps(asdict(cfg)), seconds=time.perf_counter() - started,
                 provenance=json.dumps(provenance()))
        partial.replace(shard_path(out, index))               # a shard exists whole or not at all
        made += int(seq_lengths.sum())
    hours = (time.perf_counter() - t0) / 3600
    print(f"wrote {len(todo)} shards to {out}: {made} tokens with prompts, {made / hours:,.0f} tokens/hour",
          flush=True)
    return 0


def data_batches(tokens: np.ndarray, lengths: np.ndarray, hidden: np.ndarray, batch_size: int, seq_len: int,
                 seed: int):
    """Batch function: random rows and windows of `seq_len`, a pure function of (seed, step); dict of tokens
    `[B, T]`, hidden `[B, T, D]`, mask `[B, T]` (1 inside the sequence)."""
    def batch(step: int) -> dict:
        rng = np.random.default_rng([seed, step])
        rows = rng.integers(0, len(tokens), batch_size)
        starts = (rng.random(batch_size) * np.maximum(lengths[rows] - seq_len, 0)).astype(np.int64)
        idx = starts[:, None] + np.arange(seq_len)[None, :]
        idx = np.minimum(idx, tokens.shape[1] - 1)
        return {"tokens": tokens[rows[:, None], idx], "hidden": hidden[rows[:, None], idx],
                "mask": (idx < lengths[rows][:, None]).astype(np.float32)}
    return batch


def answer_info(paths: list[str], tok) -> tuple[np.ndarray, np.ndarray]:
    """(prompt lengths `[N]`, answer temperatures `[N]`) of the sequences of `load_data(paths)`: stored by `data`,
    or rebuilt from a file's prompts and config (files written before they were stored)."""
    lengths, temps = [], []
    for path in data_files(paths):
        f = np.load(path)
        if "prompt_lengths" in f:
            lengths.append(f["prompt_lengths"])
            temps.append(f["temperatures"])
            continue
        cfg = EagleDataConfig(**json.loads(str(f["config"])))
        lengths.append(np.array([len(tok.chat_ids(str(p))) for p in f["prompts"]], np.int32))
        temps.append(np.array([answer_temperature(cfg, i // cfg.batch_size) for i in range(len(f["prompts"]))]))
    return np.concatenate(lengths), np.concatenate(temps)


def load_data(paths: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
    """Concatenate the outputs of the `data` subcommand (shard directories or files, `data_files`): tokens `[N, L]`,
    lengths `[N]`, hidden `[N, L, F]` (F = D, or the fused width of `feature_layers`), configs (one per file).
    ValueError when the files store different feature layers or another target's answers."""
    files = [np.load(p) for p in data_files(paths)]
    configs = [json.loads(str(f["config"])) for f in files]
    layers = {tuple(c.get("feature_layers", ())) for c in configs}
    if len(layers) > 1:
        raise ValueError(f"the data files store the features of different layers: {sorted(layers)}")
    targets = {c.get("target", "smollm2") for c in configs}
    if targets != {"smollm2"}:
        raise ValueError(f"the head is trained on SmolLM2's answers; the data holds answers of {sorted(targets)}")
    width = max(f["tokens"].shape[1] for f in files)
    pad = [((0, 0), (0, width - f["tokens"].shape[1])) for f in files]
    tokens = np.concatenate([np.pad(f["tokens"], w) for f, w in zip(files, pad)])
    hidden = np.concatenate([np.pad(f["hidden"], w + ((0, 0),)) for f, w in zip(files, pad)])
    return tokens, np.concatenate([f["lengths"] for f in files]), hidden, configs


def head_loss(head_hidden: list, target_hidden, mask, embedding_kept, decay: float, feature_weight: float):
    """The head's training loss: KL over the VocabTrim set at each unrolled depth (`unrolled_distill_loss`; head
    hidden states `[B, T, D]` per depth) plus EAGLE's feature regression at depth 1: smooth-L1 (Huber, delta 1)
    between the head's and the target's hidden states `[B, T, D]`, so the head's own output can stand in for the
    target feature at deeper drafts. mask `[B, T]` (1 = counted)."""
    import jax.numpy as jnp
    import optax

    from specjax.training.distill import unrolled_distill_loss

    kl = unrolled_distill_loss([h @ embedding_kept.T for h in head_hidden], target_hidden @ embedding_kept.T, mask,
                               decay)
    huber = optax.huber_loss(head_hidden[0] - target_hidden, delta=1.0).mean(-1)
    return kl + feature_weight * jnp.sum(huber * mask) / jnp.maximum(mask.sum(), 1)


def ship_head(out: Path, head, keep, moment, target_config, step: int, extra: dict) -> None:
    """Write a trained head to the directory `out` (replaced): bf16 parameters, the VocabTrim set, the feature
    moment, and `extra` (config, losses, figures) in its metadata."""
    import jax
    import jax.numpy as jnp

    from specjax.model.io.checkpoint import save_checkpoint

    if out.exists():
        shutil.rmtree(out)
    head_bf16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), head)     # shipped at half size
    state = {"head": head_bf16, "keep_ids": jnp.asarray(keep, jnp.int32)}
    if moment is not None:
        state["feature_moment"] = moment
    save_checkpoint(out, state, step=step, config=target_config,
                    extra={**extra, "feature_moment": moment is not None, "provenance": provenance()})
    print(f"wrote {out}")


def train(cfg: EagleTrainConfig, out: Path) -> int:
    """Distil the head on `cfg.data`; ship it (bf16, with the trim set and feature moment) to the directory `out`."""
    import jax.numpy as jnp

    from specjax.bench.acceptance import hidden_chain_tau
    from specjax.runners.eagle import frequent_token_ids, init_eagle
    from specjax.model.io.smollm2 import load_smollm2
    from specjax.runners.base import Handle
    from specjax.runners.model import fused_features, model_handle
    from specjax.sampling import SamplingConfig
    from specjax.training.distill import TrainConfig, train_with_loss
    from specjax.training.unrolled import unrolled_drafts

    target, tok = load_smollm2()
    tokens, lengths, hidden, data_configs = load_data(list(cfg.data))
    layers = tuple(data_configs[0].get("feature_layers", ()))            # EAGLE-3's fused features, if stored
    d = target.config.d_model
    prompt_lengths, temperatures = answer_info(list(cfg.data), tok)
    held = min(cfg.held_out, len(tokens) // 4)
    train_rows = np.arange(len(tokens) - held)                # the last `held` answers are never trained on
    if cfg.rows:
        if not 0 < cfg.rows <= len(train_rows):
            raise ValueError(f"rows must be in [1, {len(train_rows)}] (the answers not held out), got {cfg.rows}")
        train_rows = train_rows[:cfg.rows]
    valid = np.arange(tokens.shape[1])[None, :] < lengths[train_rows, None]
    keep = frequent_token_ids(tokens[train_rows][valid], target.config.vocab_size, cfg.trim,
                              always=(tok.eos_id, tok.bos_id))
    print(f"data: {len(tokens)} sequences ({held} held out), {int(lengths[train_rows].sum())} training tokens; "
          f"trim set {keep.size}", flush=True)
    target_handle = fused_features(model_handle(target), layers) if layers else model_handle(target)
    eagle = init_eagle(target_handle, d_ff=cfg.d_ff, seed=cfg.seed)
    params = eagle.params
    embedding_kept = params.embedding[jnp.asarray(keep, jnp.int32)]
    end = min(cfg.steps, cfg.stop_after or cfg.steps)
    evals = []

    def estimate_tau(done: int, head) -> None:
        """The training-time τ estimate of chains K = 1..eval_depth on the held-out answers, per temperature."""
        if not held or not (done == end or (cfg.eval_every and done % cfg.eval_every == 0)):
            return
        drafter = Handle(eagle.runner, params.replace(head=head, keep_ids=jnp.asarray(keep, jnp.int32)))
        row = {"step": done, "tokens_seen": done * cfg.batch_size * cfg.seq_len}
        for temp in sorted(set(temperatures[-held:].tolist())):
            rows = len(tokens) - held + np.flatnonzero(temperatures[-held:] == temp)
            row[f"tau_T{temp:g}"] = hidden_chain_tau(
                target_handle, drafter, tokens[rows], hidden[rows], lengths[rows], prompt_lengths[rows],
                cfg.eval_depth, SamplingConfig(temperature=temp), chunk=4).tolist()
        evals.append(row)
        print(f"step {done}: estimated chain tau (K = 1..{cfg.eval_depth}) " + "; ".join(
            f"{k}: " + " ".join(f"{x:.2f}" for x in v) for k, v in row.items() if k.startswith("tau")), flush=True)

    def loss_fn(head, batch):
        toks, target_hidden, mask = batch["tokens"], batch["hidden"], batch["mask"]
        outs = list(unrolled_drafts(Handle(eagle.runner, params.replace(head=head)), toks, target_hidden,
                                    cfg.ttt_depth))
        return head_loss([o.hidden for o in outs], target_hidden[..., -d:], mask, embedding_kept, cfg.ttt_decay,
                         cfg.feature_weight)

    tcfg = TrainConfig(steps=cfg.steps, learning_rate=cfg.learning_rate, warmup_steps=cfg.warmup_steps,
                       checkpoint_every=max(cfg.steps // 4, 1))
    t0 = time.time()
    batches = data_batches(tokens[train_rows], lengths[train_rows], hidden[train_rows], cfg.batch_size, cfg.seq_len,
                           cfg.seed)
    head, _, losses = train_with_loss(params.head, loss_fn, batches, tcfg, checkpoint_dir=Path(cfg.work),
                                      log_every=10, stop_after=cfg.stop_after, on_step=estimate_tau)
    done = end
    if not evals or evals[-1]["step"] != done:               # a resumed run with no step left still reports it
        estimate_tau(done, head)
    print(f"trained {len(losses)} steps here (global step {done} of {cfg.steps}) in {time.time() - t0:.0f}s",
          flush=True)
    states = hidden[train_rows][valid][:, -d:].astype(np.float64)        # the features the head learns to emit
    moment = jnp.asarray(states.T @ states / len(states), jnp.float32)    # for the data-aware low-rank head
    ship_head(out, head, keep, moment, target.config, done,
              {"train": asdict(cfg), "data": data_configs, "stopped_at": done, "losses": losses,
               "tau_estimates": evals, "training_tokens": int(lengths[train_rows].sum()),
               "feature_layers": list(layers)})
    return 0


def evaluate(cfg: EagleEvalConfig, out: Path) -> int:
    """AR and chains with every drafter on each (temperature, prompt set) not yet in `<out>.json`; tables, CSV, PNG."""
    from specjax.bench.acceptance import text_chain_tau
    from specjax.bench.decoding import Results, decode_prompts, summarize
    from specjax.apps.models import load_drafter, load_target
    from specjax.runners.eagle import load_eagle, with_low_rank_head
    from specjax.bench.prompts import load_prompts
    from specjax.sampling import SamplingConfig
    from specjax.methods import make_method

    results = Results(out.with_suffix(".json"), asdict(cfg))
    target = load_target("smollm2", cfg.seed)
    drafters = {name: load_drafter(name, target, cfg.seed + 1) for name in ("lookup:3", f"early-exit:{cfg.exit_layer}")}
    drafters["eagle_full"] = load_eagle(cfg.ckpt, target.handle)
    drafters["eagle_trim"] = load_eagle(cfg.ckpt, target.handle, trim=True)
    drafters["eagle_trim_lowrank"] = with_low_rank_head(drafters["eagle_trim"], 128)
    chain = make_method("chain", num_draft=cfg.num_draft)
    cells = [(temp, set_name) for temp in cfg.temperatures for set_name in cfg.prompt_sets]
    for temp, set_name in progress(cells, len(cells), "eval"):
        key = f"T{temp:g}/{set_name}"
        if results.done(key):
            continue
        ids = [target.encode_prompt(p) for p in load_prompts(set_name, cfg.prompts)]
        common = dict(max_new_tokens=cfg.max_new_tokens, sampling=SamplingConfig(temperature=temp),
                      eos_id=target.eos_id, seed=cfg.seed)
        ar = decode_prompts(target.handle, ids, **common)
        row = {"ar": summarize(ar)}
        texts = [i + r.tokens for i, r in zip(ids, ar)]            # the target's own answers at this temperature
        for name, d in drafters.items():
            runs = decode_prompts(target.handle, ids, method=chain, drafter=d, **common)
            row[name] = summarize(runs)
            if name.startswith("eagle"):                            # the training-time estimate on the AR answers
                row[name]["tau_estimate"] = float(text_chain_tau(target.handle, d, texts, [len(i) for i in ids],
                                                                 cfg.num_draft, common["sampling"])[-1])
            if temp == 0.0:
                row[name]["equals_ar"] = all(a.tokens == r.tokens for a, r in zip(ar, runs))
        results.add(key, row)
    rows = [dict(setting=key, drafter=name, vs_ar=r["tokens_per_s"] / row["ar"]["tokens_per_s"], **r)
            for key, row in results.records.items() for name, r in row.items()]
    print(f"\n{'setting':<18}{'drafter':<20}{'tau':>6}{'est. tau':>9}{'tok/s':>8}{'vs AR':>8}")
    for r in rows:
        est = f"{r['tau_estimate']:.2f}" if "tau_estimate" in r else ""
        print(f"{r['setting']:<18}{r['drafter']:<20}{r['tau']:>6.2f}{est:>9}{r['tokens_per_s']:>8.1f}"
              f"{r['vs_ar']:>7.2f}x")
    write_csv(out.with_suffix(".csv"), rows)
    plot_taus(results.records, out.with_suffix(".png"))
    print(f"wrote {out}.json, {out}.csv and {out}.png")
    return 0


def plot_taus(records: dict, path: Path) -> None:
    """τ of every drafter, grouped by (temperature, prompt set)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 3.5))
    names = [n for n in next(iter(records.values())) if n != "ar"]
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        ax.bar(np.arange(len(records)) + width * i, [row[name]["tau"] for row in records.values()], width, label=name)
    ax.set_xticks(np.arange(len(records)) + 0.4 - width / 2, list(records), fontsize=7)
    ax.set_ylabel("τ (tokens per target call)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def curve(cfg: EagleCurveConfig, out: Path) -> int:
    """The final training-time τ estimate of each head against its training tokens and its training steps: a table,
    `<out>.json`, and `<out>.png`. Left: τ against tokens (log axis), one line per step count, for K = 1 and the
    deepest K. Right: τ against steps (log axis), one line per K, for each data size trained at several step counts
    (the comparison that tells whether data or compute binds)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from specjax.model.io.checkpoint import read_meta

    if not cfg.heads:
        raise ValueError("give the head directories: --heads DIR [DIR ...]")
    points = []
    for head in cfg.heads:
        extra = read_meta(head)["extra"]
        if "training_tokens" not in extra or not extra.get("tau_estimates"):
            raise ValueError(f"{head} has no training tokens or τ estimate in its metadata (train it again)")
        last = extra["tau_estimates"][-1]
        points.append({"head": head, "training_tokens": extra["training_tokens"], "step": last["step"],
                       "ttt_depth": extra["train"].get("ttt_depth", 1),
                       **{k: v for k, v in last.items() if k.startswith("tau_")}})
    points.sort(key=lambda p: (p["training_tokens"], p["step"]))
    keys = sorted(k for k in points[0] if k.startswith("tau_"))
    print(f"{'training tokens':>16}{'steps':>7}  " + "  ".join(f"{k} (K = 1..)" for k in keys))
    for p in points:
        print(f"{p['training_tokens']:>16}{p['step']:>7}  " + "  ".join(" ".join(f"{x:.2f}" for x in p[k])
                                                                      for k in keys))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"config": asdict(cfg), "points": points,
                                                    "provenance": provenance()}, indent=1))
    fig, (by_tokens, by_steps) = plt.subplots(1, 2, figsize=(11, 4))
    for steps in sorted({p["step"] for p in points}):
        group = [p for p in points if p["step"] == steps]
        for key in keys:
            depth = len(group[0][key])
            for k in sorted({1, depth}):
                by_tokens.plot([p["training_tokens"] for p in group], [p[key][k - 1] for p in group],
                               "o-" if k == depth else "o--", label=f"{steps} steps, {key[4:]} K={k}")
    by_tokens.set(xscale="log", xlabel="training tokens", ylabel="estimated chain τ (held-out answers)",
                  title="τ against training data")
    for tokens in sorted({p["training_tokens"] for p in points}):
        group = [p for p in points if p["training_tokens"] == tokens]
        if len(group) < 2:
            continue
        for key in keys:
            for k in range(len(group[0][key])):
                by_steps.plot([p["step"] for p in group], [p[key][k] for p in group], "o-",
                              label=f"{tokens} tokens, {key[4:]} K={k + 1}")
    by_steps.set(xscale="log", xlabel="training steps", title="τ against training steps (same data)")
    for ax in (by_tokens, by_steps):
        if ax.lines:
            ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)
    plt.close(fig)
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")
    return 0


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


def gto(cfg: EagleGTOConfig, out: Path) -> int:
    """GTO fine-tuning of the head `cfg.init`; ships it to `out` with the held-out paired rewards and the decoded
    τ of both heads (EAGLE-2 tree and chain K = 4, MT-bench, at the rollouts' temperature) in its metadata."""
    import jax
    import jax.numpy as jnp

    from specjax.decode.loop import generate
    from specjax.decode.batching import pad_prompts
    from specjax.runners.eagle import eagle_target, load_eagle
    from specjax.model.io.checkpoint import read_meta
    from specjax.bench.prompts import load_prompts
    from specjax.model.io.smollm2 import load_smollm2
    from specjax.runners.base import Handle
    from specjax.runners.model import model_handle
    from specjax.sampling import SamplingConfig
    from specjax.methods import make_method
    from specjax.training.distill import TrainConfig, train_with_loss
    from trees import make_speculator
    from trees.gto import GTOConfig, check_contexts, gto_surrogate, rollout

    target, tok = load_smollm2()
    target_handle = eagle_target(cfg.init, model_handle(target))         # fused features if the head reads them
    reference = load_eagle(cfg.init, target_handle, trim=True)
    params = reference.params
    embedding_kept = params.embedding[params.keep_ids]
    d = target.config.d_model
    tokens, lengths, _, data_configs = load_data(list(cfg.data))
    prompt_lengths, _ = answer_info(list(cfg.data), tok)
    held = min(cfg.held_out, len(tokens) // 4)
    n_train = len(tokens) - held
    builder = make_speculator("eagle", budget=cfg.budget).builder
    sampling = SamplingConfig(temperature=cfg.temperature)
    gcfg = GTOConfig(clip=cfg.clip)
    key = jax.random.key(cfg.seed)

    def batch(step: int) -> dict:
        contexts, pending = gto_contexts(tokens[:n_train], lengths[:n_train], prompt_lengths[:n_train], cfg.contexts,
                                         cfg.window, seed=cfg.seed * 100003 + step)
        return {"contexts": jnp.asarray(contexts), "pending": jnp.asarray(pending), "step": jnp.int32(step)}

    def loss_fn(head, b):
        drafter = Handle(reference.runner, params.replace(head=head))
        frozen = Handle(reference.runner, params.replace(head=jax.lax.stop_gradient(head)))
        rolled = rollout(target_handle, frozen, reference, builder, b["contexts"], b["pending"],
                         jax.random.fold_in(key, b["step"]), sampling)
        surrogate, prefix = gto_surrogate(drafter, reference, rolled, gcfg)
        # the anchor: the head's own training loss on the contexts (teacher-forced, the target's features)
        anchor = head_loss([prefix.hidden], rolled.hidden[..., -d:], jnp.ones(rolled.contexts.shape, jnp.float32),
                           embedding_kept, 1.0, cfg.feature_weight)
        return anchor + cfg.gto_weight * surrogate

    held_ctx, held_pending = gto_contexts(tokens[n_train:], lengths[n_train:], prompt_lengths[n_train:],
                                          cfg.held_contexts, cfg.window, seed=cfg.seed + 7)
    check_contexts(held_ctx, held_pending, target.config.vocab_size)
    check_contexts(*[np.asarray(x) for x in (batch(0)["contexts"], batch(0)["pending"])], target.config.vocab_size)
    paired = jax.jit(lambda head, c, p: rollout(target_handle, Handle(reference.runner, params.replace(head=head)),
                                                reference, builder, c, p, key, sampling))
    evals = []
    end = min(cfg.steps, cfg.stop_after or cfg.steps)

    def held_out_reward(done: int, head) -> None:
        """Mean E[accepted | tree] + 1 of both heads' trees at the same held-out contexts (a paired comparison)."""
        if not (done == end or (cfg.eval_every and done % cfg.eval_every == 0)):
            return
        cur, ref = [], []
        for lo in range(0, len(held_ctx), cfg.contexts):
            r = paired(head, jnp.asarray(held_ctx[lo:lo + cfg.contexts]), jnp.asarray(held_pending[lo:lo + cfg.contexts]))
            cur += np.asarray(r.current.reward).tolist()
            ref += np.asarray(r.reference.reward).tolist()
        diff = np.asarray(cur) - np.asarray(ref)
        evals.append({"step": done, "tree_tau": 1 + float(np.mean(cur)), "reference_tree_tau": 1 + float(np.mean(ref)),
                      "gain_se": float(diff.std(ddof=1) / np.sqrt(len(diff)))})
        print(f"step {done}: held-out predicted tree τ {evals[-1]['tree_tau']:.3f} (start "
              f"{evals[-1]['reference_tree_tau']:.3f}, difference se {evals[-1]['gain_se']:.3f})", flush=True)

    tcfg = TrainConfig(steps=cfg.steps, learning_rate=cfg.learning_rate, warmup_steps=cfg.warmup_steps,
                       checkpoint_every=max(cfg.steps // 4, 1))
    t0 = time.time()
    head, _, losses = train_with_loss(jax.tree.map(jnp.copy, params.head), loss_fn, batch, tcfg,
                                      checkpoint_dir=Path(cfg.work), log_every=10, stop_after=cfg.stop_after,
                                      on_step=held_out_reward)
    seconds = time.time() - t0
    if not evals or evals[-1]["step"] != end:
        held_out_reward(end, head)
    print(f"trained {len(losses)} steps here (global step {end} of {cfg.steps}) in {seconds:.0f}s", flush=True)
    decoded = {}
    if cfg.eval_prompts:                                       # τ by decoding, both heads, the same prompts
        ids = [tok.chat_ids(p) for p in load_prompts("mt_bench", cfg.eval_prompts)]
        prompt_tokens, prompt_lens = pad_prompts(ids)
        methods = {"eagle2_tree": make_speculator("eagle", budget=cfg.budget),
                   "chain_K4": make_method("chain", num_draft=4)}
        heads = {"start": params.head, "gto": head}
        for (m_name, method), (h_name, h) in progress([(m, h) for m in methods.items() for h in heads.items()],
                                                       4, "decode τ"):
            result = generate(target_handle, prompt_tokens, prompt_lens, jax.random.key(cfg.seed), method=method,
                              drafter=Handle(reference.runner, params.replace(head=h)),
                              max_new_tokens=cfg.eval_tokens, sampling=sampling, eos_id=tok.eos_id)
            decoded[f"{m_name}/{h_name}"] = result.acceptance_length
        for m_name in methods:
            print(f"decoded τ, {m_name}: start {decoded[m_name + '/start']:.3f}, after GTO "
                  f"{decoded[m_name + '/gto']:.3f}", flush=True)
    init_meta = read_meta(cfg.init)["extra"]
    ship_head(out, head, np.asarray(params.keep_ids), params.feature_moment, target.config, end,
              {"train": init_meta.get("train", {}), "gto": asdict(cfg), "data": data_configs, "stopped_at": end,
               "losses": losses, "held_out_rewards": evals, "decoded_tau": decoded, "train_seconds": seconds,
               "training_tokens": init_meta.get("training_tokens"),
               "feature_layers": init_meta.get("feature_layers", [])})
    return 0


COMMANDS = {"curve": (curve, "results/eagle_curve"), "data": (make_data, "results/eagle_data"),
            "train": (train, "specjax/data/eagle_smollm2"),
            "eval": (evaluate, "results/eagle_eval"), "gto": (gto, "results/head_gto")}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in CONFIG:
        print(__doc__, file=sys.stderr)
        asked = bool(argv) and argv[0] in ("-h", "--help")
        raise SystemExit(0 if asked else f"usage: train_eagle.py {{{','.join(CONFIG)}}} [--help] [options]")
    command, rest = argv[0], argv[1:]
    run_command, default_out = COMMANDS[command]
    cfg, out = parse_config(CONFIG[command], rest, __doc__, default_out=default_out, prog=f"train_eagle.py {command}")
    return run_command(cfg, out)


if __name__ == "__main__":
    sys.exit(main())
