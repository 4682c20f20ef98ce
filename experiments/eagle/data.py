"""`train_eagle.py data`: the target's answers to templated instructions (`experiments/eagle/instructions.py`) and
its hidden states over them, the training data of the EAGLE head; and the readers `train` and `gto` use.

    python experiments/train_eagle.py data --out results/eagle_data          # 192 answers, 6 shards
    python experiments/train_eagle.py data --prompts 1536 --batch-size 64 --seed 2 --out results/eagle_data_s2
    python experiments/train_eagle.py data --feature-layers 2 15 --out results/eagle_data_f3   # EAGLE-3 features

Writes the directory `<out>` of shards `shard_NNNNN.npz`, one per batch of prompts: tokens `[B, L]` (prompt then
answer, zero-padded to a multiple of 32), lengths `[B]`, hidden `[B, L, F]` (the target's final hidden states, F = D;
with `--feature-layers L1 L2`, its states after those layers before them, F = 3D: EAGLE-3's fused low/mid/high
features, `specjax.runners.model.fused_features`), the prompts, their token lengths, the answers' temperatures, the
config, generation seconds and software versions. Half the batches (`--sampled-fraction`) are answered at T = 0.7,
the rest greedily. Resumable: a shard is a pure function of (config, batch) written whole, so rerunning the same
command writes only the missing shards (`--stop-after N` stops after the first N batches).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from experiments.eagle.instructions import instruction_pool, instruction_prompts
from specjax.bench.experiment import parse_config, progress, provenance


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


CONFIG = EagleDataConfig
DEFAULT_OUT = "results/eagle_data"


def answer_temperature(cfg: EagleDataConfig, batch_index: int) -> float:
    """The temperature of the answers of batch i: 0.7 when i * sampled_fraction crosses an integer, else 0."""
    sampled = int((batch_index + 1) * cfg.sampled_fraction) > int(batch_index * cfg.sampled_fraction)
    return 0.7 if sampled else 0.0


def shard_path(out: Path, index: int) -> Path:
    """Where `data` writes the answers of prompt batch `index` (one shard per batch)."""
    return out / f"shard_{index:05d}.npz"


def data_files(paths) -> list[Path]:
    """The `.npz` files of `data` outputs: a file as given, a directory's shards in order; ValueError on a path
    that is neither, or a directory without shards. Single files are what `data` wrote before it was sharded (the
    192-answer `results/eagle_data.npz` the shipped head was trained on with the shards of `eagle_data_s2`)."""
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


def answer_info(paths: list[str], tok) -> tuple[np.ndarray, np.ndarray]:
    """(prompt lengths `[N]`, answer temperatures `[N]`) of the sequences of `load_data(paths)`: stored by `data`,
    or rebuilt with the tokenizer `tok` from a file's prompts and config (single files written before they were
    stored)."""
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


def check_shards(out: Path, batches: range, settings: str) -> list[int]:
    """The batches whose shard `out` does not hold yet; ValueError when a shard there was written by another
    config (`settings`: the config without `stop_after`, as JSON), before anything is loaded."""
    for index in batches:
        if shard_path(out, index).exists():
            with np.load(shard_path(out, index)) as f:
                if str(f["settings"]) != settings:
                    raise ValueError(f"{out} holds shards of another `data` config ({f['settings']}); use a new --out")
    return [i for i in batches if not shard_path(out, i).exists()]


def hidden_state_pass(handle, feature_layers: tuple[int, ...]):
    """Jitted tokens `[B, L]` -> the target's hidden states `[B, L, F]` over them (fused when `feature_layers`)."""
    import jax

    from specjax.runners.model import fused_features

    features = fused_features(handle, tuple(feature_layers)) if feature_layers else handle

    @jax.jit
    def hidden_states(toks):
        return features.score(toks).hidden
    return hidden_states


def write_shard(cfg: EagleDataConfig, out: Path, index: int, batch: list[str], target, hidden_states,
                settings: str) -> int:
    """Answer the prompts of batch `index`, score prompt + answer for the hidden states, and write the shard whole
    (to a temporary name, then renamed: a shard exists whole or not at all); returns its tokens."""
    import jax
    import jax.numpy as jnp

    from specjax.decode.batching import pad_prompts
    from specjax.decode.loop import generate
    from specjax.sampling import SamplingConfig

    started = time.perf_counter()
    lo = index * cfg.batch_size
    prompt_ids = [target.encode_prompt(p) for p in batch]
    tokens, lengths = pad_prompts(prompt_ids)
    sampling = SamplingConfig(temperature=answer_temperature(cfg, index))
    answers = generate(target.handle, tokens, lengths, jax.random.key(cfg.seed * 1000 + lo),
                       max_new_tokens=cfg.max_new_tokens, sampling=sampling, eos_id=target.eos_id)
    sequences = [ids + np.asarray(answers.tokens[row, :int(answers.lengths[row])]).tolist()
                 for row, ids in enumerate(prompt_ids)]
    width = -(-max(map(len, sequences)) // 32) * 32           # few widths: the hidden-state pass compiles few times
    rows = np.zeros((len(sequences), width), np.int32)
    for i, seq in enumerate(sequences):
        rows[i, :len(seq)] = seq
    hidden = np.concatenate([np.asarray(hidden_states(jnp.asarray(rows[i:i + 8]))) for i in range(0, len(rows), 8)])
    seq_lengths = np.array([len(s) for s in sequences], np.int32)
    partial = out / f"{shard_path(out, index).stem}.partial.npz"
    np.savez(partial, tokens=rows, lengths=seq_lengths, hidden=hidden, prompts=np.array(batch),
             prompt_lengths=np.array([len(i) for i in prompt_ids], np.int32),
             temperatures=np.full(len(batch), sampling.temperature, np.float32), settings=settings,
             config=json.dumps(asdict(cfg)), seconds=time.perf_counter() - started,
             provenance=json.dumps(provenance()))
    partial.replace(shard_path(out, index))
    return int(seq_lengths.sum())


def make_data(cfg: EagleDataConfig, out: Path) -> int:
    """The target's answers to the instructions and its hidden states, one shard per batch of prompts in the
    directory `out`. Resumable: a shard is a pure function of (config, batch), so a rerun makes only the missing
    shards, and the shards of an interrupted and a whole run are the same."""
    from specjax.apps.models import load_target

    settings = json.dumps({k: v for k, v in asdict(cfg).items() if k != "stop_after"})
    prompts = instruction_prompts(cfg.prompts, cfg.seed)
    batches = range((len(prompts) + cfg.batch_size - 1) // cfg.batch_size)
    missing = check_shards(out, batches, settings)             # refuse to mix runs before anything is loaded
    todo = [i for i in missing if cfg.stop_after is None or i < cfg.stop_after]
    print(f"{out}: {len(batches) - len(missing)} of {len(batches)} shards already written", flush=True)
    if not todo:
        return 0
    target = load_target(cfg.target)
    hidden_states = hidden_state_pass(target.handle, cfg.feature_layers)
    out.mkdir(parents=True, exist_ok=True)
    made, t0 = 0, time.perf_counter()
    for index in progress(todo, len(todo), "shards"):
        batch = prompts[index * cfg.batch_size:(index + 1) * cfg.batch_size]
        made += write_shard(cfg, out, index, batch, target, hidden_states, settings)
    hours = (time.perf_counter() - t0) / 3600
    print(f"wrote {len(todo)} shards to {out}: {made} tokens with prompts, {made / hours:,.0f} tokens/hour",
          flush=True)
    return 0


def main(argv=None) -> int:
    cfg, out = parse_config(CONFIG, argv, __doc__, default_out=DEFAULT_OUT, prog="train_eagle.py data")
    return make_data(cfg, out)
