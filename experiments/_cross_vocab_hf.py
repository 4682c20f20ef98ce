"""The transformers side of the cross-vocabulary benchmark: tokens/s of Hugging Face's *universal assisted
generation* (UAG: an assistant with a different tokenizer, drafts crossing over as re-encoded text) on a real pair,
Gemma 3 270M and SmolLM2-135M either way round, and of transformers' AR decoding of the same target.

    python experiments/_cross_vocab_hf.py --worker IN.json --rows OUT.json   (cross_vocab_bench.py runs it)

IN.json: {"pair": "gemma3-270m<-smollm2" (target<-assistant) or "smollm2<-gemma3-270m", "ids": the target's prompts
(batch 1 each, encoded as specjax does, Gemma's BOS included), "max_new_tokens", "temperature" (0: greedy), "threads",
"seed"}. OUT.json: {"transformers AR": row, "transformers UAG": row}, rows as bench_peer.py's `hf_decode` makes them.
The weights are specjax's: Gemma's GGUF read by transformers' GGUF loader (as tests/models/test_gemma3.py does),
SmolLM2's specjax parameters copied (bench_peer's `hf_model_from`); the tokenizers are specjax's, wrapped.

It runs in a process of its own (`run_hf_cross_vocab` starts one): beside JAX, torch's and XLA's thread pools fight
over the cores and torch's decoding collapses (experiments/RESULTS.md). Needs the `models` and `parity` extras.
"""
from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_peer  # hf_model_from, hf_decode

PAIRS = {"gemma3-270m<-smollm2": ("gemma3-270m", "smollm2"),     # pair -> (target, assistant)
         "smollm2<-gemma3-270m": ("smollm2", "gemma3-270m")}


def hf_tokenizer(tok):
    """A `PreTrainedTokenizerFast` over (a copy of) a specjax `Tokenizer`'s backend, with its BOS / EOS / pad. UAG
    encodes re-tokenized text with `add_special_tokens=True`, so a tokenizer whose prompts start with BOS (Gemma)
    gets a post-processor adding it, as Hugging Face's own Gemma tokenizer has."""
    import tokenizers
    import transformers
    backend = tokenizers.Tokenizer.from_str(tok.backend.to_str())
    name = backend.id_to_token
    if tok.add_bos:
        bos = name(tok.bos_id)
        backend.post_processor = tokenizers.processors.TemplateProcessing(single=f"{bos} $A",
                                                                          special_tokens=[(bos, tok.bos_id)])
    pad = name(tok.eos_id) if backend.token_to_id("<pad>") is None else "<pad>"
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=name(tok.bos_id),
                                                eos_token=name(tok.eos_id), pad_token=pad)


def load_hf(name: str):
    """(transformers model in float32 eval mode, specjax `Tokenizer`) of "gemma3-270m" or "smollm2", with the
    weights specjax uses."""
    import gguf
    import numpy as np
    import torch
    import transformers
    from transformers.initialization import no_init_weights
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    from specjax.apps.targets import target_spec
    if name == "smollm2":
        from specjax.model.io.smollm2 import load_smollm2
        return bench_peer.hf_model_from(load_smollm2()[0]), target_spec(name).tokenizer
    # one reader for specjax's tokenizer and transformers, the file read into an array (~790k metadata views for the
    # vocabulary, each ~3x cheaper than a memmap's: tests/models/test_gemma3.py)
    in_memory = types.SimpleNamespace(**{**vars(np), "memmap": lambda path, mode="r": np.fromfile(path, np.uint8)})
    saved = gguf.GGUFReader, gguf.gguf_reader.np
    gguf.GGUFReader, gguf.gguf_reader.np = functools.lru_cache(maxsize=1)(gguf.GGUFReader), in_memory
    try:
        spec = target_spec(name)
        tok = spec.tokenizer                                              # built from the same reader
        # transformers maps tensor names through a model's parameters: a meta skeleton with the layer count
        with torch.device("meta"):
            skeleton = transformers.AutoModelForCausalLM.from_config(
                transformers.Gemma3TextConfig(num_hidden_layers=spec.config.n_layers))
        parsed = load_gguf_checkpoint(spec.source, return_tensors=True, model_to_load=skeleton)
    finally:
        gguf.GGUFReader, gguf.gguf_reader.np = saved
    with no_init_weights():                                               # the weights come from the file
        hf = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**parsed["config"]))
    missing, unexpected = hf.load_state_dict(parsed["tensors"], strict=False, assign=True)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)      # tied to the embedding
    hf.tie_weights()
    return hf.float().eval(), tok


class _Sampling:
    """`hf` whose `generate` samples at `temperature` from the plain softmax (no top-k / top-p), for `hf_decode`."""

    def __init__(self, hf, temperature: float):
        self.hf, self.temperature = hf, temperature

    def generate(self, *args, **kwargs):
        kwargs.update(do_sample=True, temperature=self.temperature, top_k=0, top_p=1.0)
        return self.hf.generate(*args, **kwargs)


def _fix_uag_cache_rollback() -> str:
    """Work around a transformers 5.x bug in greedy UAG: `AssistedCandidateGeneratorDifferentTokenizers` records the
    drafted length (`_last_ids_length`, by which the assistant's cache is rolled back) in target tokens, the cache
    counting assistant tokens; the cache outgrows the assistant's input and a draft crashes ("cannot reshape tensor
    of 0 elements"). Counted in assistant tokens here, as `AssistedCandidateGenerator` does. Drafts only: the target
    verifies every token."""
    from transformers.generation.candidate_generator import AssistedCandidateGeneratorDifferentTokenizers as G
    get_candidates = G.get_candidates
    if not hasattr(get_candidates, "unfixed"):
        def fixed(self, input_ids, **kwargs):
            out = get_candidates(self, input_ids, **kwargs)
            self._last_ids_length = self.prev_assistant_ids.shape[-1]       # assistant_output.sequences' length
            return out
        fixed.unfixed = get_candidates
        G.get_candidates = fixed
    return "AssistedCandidateGeneratorDifferentTokenizers._last_ids_length in assistant tokens"


def hf_cross_vocab_worker(pair: str, ids: list[list[int]], max_new_tokens: int, temperature: float, threads: int,
                          seed: int) -> dict:
    """Rows "transformers AR" and "transformers UAG" of `pair` (see PAIRS) on the target's prompts `ids`, greedy at
    temperature 0, else sampled; each timed after a warm-up call. The UAG row records the assistant's settings
    (transformers' defaults: none are set here) and, greedy, the bug worked around (`_fix_uag_cache_rollback`)."""
    import copy

    import torch
    import transformers
    torch.set_num_threads(threads)
    patched = _fix_uag_cache_rollback()
    (target, target_tok), (assistant, assistant_tok) = (load_hf(name) for name in PAIRS[pair])
    uag = {"assistant_model": assistant, "tokenizer": hf_tokenizer(target_tok),
           "assistant_tokenizer": hf_tokenizer(assistant_tok)}
    model = target if temperature == 0 else _Sampling(target, temperature)
    rows = {}
    for label, kwargs in (("transformers AR", {}), ("transformers UAG", uag)):
        torch.manual_seed(seed)
        rows[label] = bench_peer.hf_decode(model, ids, max_new_tokens, target_tok.eos_id, **kwargs)
        rows[label]["software"] = {"transformers": transformers.__version__, "torch": torch.__version__}
    g = copy.deepcopy(assistant.generation_config)                  # resolved as AssistedCandidateGenerator does
    g.update(**g._get_default_generation_params(), defaults_only=True)
    keys = ("num_assistant_tokens", "num_assistant_tokens_schedule", "assistant_confidence_threshold",
            "assistant_lookbehind", "target_lookbehind")
    rows["transformers UAG"]["assistant"] = {
        **{k: getattr(g, k) for k in keys},
        "generator": "AssistedCandidateGeneratorDifferentTokenizers" if temperature == 0 else
                     "UniversalSpeculativeDecodingGenerator",             # sampling: USD, its own get_candidates
        "patched": patched if temperature == 0 else None}
    return rows


def run_hf_cross_vocab(pair: str, ids: list[list[int]], max_new_tokens: int, temperature: float, threads: int,
                       seed: int, workdir: Path) -> dict:
    """Run `hf_cross_vocab_worker` in a fresh Python process (its inputs and rows kept in `workdir`); its rows."""
    workdir.mkdir(parents=True, exist_ok=True)
    stem = "hf_cross_vocab_" + pair.replace("<-", "_from_")
    job, rows = workdir / f"{stem}_in.json", workdir / f"{stem}_rows.json"
    job.write_text(json.dumps({"pair": pair, "ids": ids, "max_new_tokens": max_new_tokens,
                               "temperature": temperature, "threads": threads, "seed": seed}))
    subprocess.run([sys.executable, __file__, "--worker", str(job), "--rows", str(rows)], check=True)
    return json.loads(rows.read_text())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", type=Path, required=True, help="the job's JSON")
    p.add_argument("--rows", type=Path, required=True, help="where the rows' JSON goes")
    args = p.parse_args(argv)
    args.rows.write_text(json.dumps(hf_cross_vocab_worker(**json.loads(args.worker.read_text()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
