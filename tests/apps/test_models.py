"""One way to name models: every target and drafter form parses, and every bad name raises a ValueError saying why
before any model is built (configurations only: a GGUF's metadata, a checkpoint's config.json)."""
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from flax import nnx

from specjax.model import decoder as model_mod
from specjax.apps import cli
from specjax.apps.models import check_names, parse_drafter, parse_target, target_config


@pytest.fixture
def no_building(monkeypatch):
    """Fail the test if anything builds a model."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was built before the names were checked")
    monkeypatch.setattr(model_mod, "init_model", refuse)


def write_gguf(path, arch: str) -> None:
    gguf = pytest.importorskip("gguf")
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(1)
    writer.add_token_list(["a", "b"])
    writer.add_tensor("token_embd.weight", np.zeros((2, 4), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def hf_dir(tmp_path, vocab: int = 64):
    directory = tmp_path / f"hf{vocab}"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(dict(
        model_type="llama", vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, rope_theta=10000.0,
        tie_word_embeddings=True)))
    (directory / "model.safetensors").write_bytes(b"")
    return directory


def test_every_target_form_parses(tmp_path):
    assert parse_target("smollm2") == ("smollm2", "")
    assert parse_target("random:byte-tiny") == ("random", "byte-tiny")
    gguf_file = tmp_path / "m.gguf"
    gguf_file.write_bytes(b"")
    assert parse_target(str(gguf_file)) == ("gguf", str(gguf_file))
    directory = hf_dir(tmp_path)
    assert parse_target(str(directory)) == ("hf", str(directory))
    assert target_config(str(directory)).vocab_size == 64
    assert target_config("random:byte-tiny").vocab_size == 259


def test_every_drafter_form_parses():
    assert parse_drafter("eagle") == ("eagle", None)
    assert parse_drafter("eagle-full") == ("eagle-full", None)
    assert parse_drafter("eagle-lowrank:64") == ("eagle-lowrank", 64)
    assert parse_drafter("early-exit:8") == ("early-exit", 8)
    assert parse_drafter("lookup:3") == ("lookup", 3)
    assert parse_drafter("model:random:byte-tiny-draft") == ("model", "random:byte-tiny-draft")


@pytest.mark.parametrize("target, drafter, message", [
    ("random:nope", None, "unknown preset 'nope'"),
    ("/nowhere/model.gguf", None, "no GGUF file at /nowhere/model.gguf"),
    ("gpt-17", None, "unknown target 'gpt-17'"),
    ("random:byte-tiny", "lookup:0", "lookup takes a positive integer"),
    ("random:byte-tiny", "early-exit:x", "early-exit takes a positive integer"),
    ("random:byte-tiny", "medusa", "unknown drafter 'medusa'"),
    ("random:byte-tiny", "model:random:nope", "unknown preset 'nope'"),
    ("random:byte-tiny", "model:random:tiny", "vocabulary 16, the target random:byte-tiny 259"),
    ("random:byte-tiny", "early-exit:2", "fewer layers than the target's 2"),
    ("random:byte-tiny", "eagle", "trained for SmolLM2"),
])
def test_bad_names_fail_before_any_model_is_built(target, drafter, message, no_building):
    with pytest.raises(ValueError, match=message):
        check_names(target, drafter)


def test_bad_checkpoints_fail_before_any_model_is_built(tmp_path, no_building):
    gpt2 = tmp_path / "gpt2.gguf"
    write_gguf(gpt2, "gpt2")
    with pytest.raises(ValueError, match="GGUF architecture 'gpt2' is not supported"):
        check_names(str(gpt2))
    not_hf = tmp_path / "plain"
    not_hf.mkdir()
    with pytest.raises(ValueError, match="not a Hugging Face checkpoint directory"):
        check_names(str(not_hf))
    with pytest.raises(ValueError, match="vocabulary 64, the target random:byte-tiny 259"):
        check_names("random:byte-tiny", f"model:{hf_dir(tmp_path)}")


def test_generate_reports_bad_names_and_prompt_sets(tmp_path, capsys, no_building):
    out = str(tmp_path / "g.json")
    assert cli.main(["generate", "--target", "random:byte-tiny", "--drafter", "model:random:tiny", "--out", out]) == 2
    assert "vocabulary 16" in capsys.readouterr().err
    assert cli.main(["generate", "--target", "random:byte-tiny", "--method", "ar", "--prompt-set", "mt_bench:x",
                     "--out", out]) == 2
    assert "count after ':'" in capsys.readouterr().err
    assert cli.main(["generate", "--target", "random:byte-tiny", "--method", "ar", "--prompt-set", "alpaca",
                     "--out", out]) == 2
    assert "unknown prompt set 'alpaca'" in capsys.readouterr().err


def test_generate_decodes_a_named_prompt_set(tmp_path, capsys):
    out = tmp_path / "g.json"
    assert cli.main(["generate", "--target", "random:byte-tiny", "--method", "ar", "--prompt-set", "mt_bench:2",
                     "--max-new-tokens", "4", "--temperature", "0", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert printed.out.count("--- 'Compose an engaging travel blog") == 1 and printed.out.count("--- ") == 2
    assert "RANDOMLY INITIALISED" in printed.err
    assert json.loads(out.read_text())["batch"] == 2


def test_target_specs_read_each_name_once(tmp_path):
    """`target_spec`: kind, source, configuration and context length, read without loading weights."""
    from specjax.apps.models import TargetSpec, target_spec
    spec = target_spec("random:byte-tiny")
    assert (spec.kind, spec.source, spec.config.max_positions, spec.reader, spec.label) == \
        ("random", "byte-tiny", None, None, "random:byte-tiny")
    assert spec.random_weights and not spec.has_tokenizer and spec.tokenizer is None
    directory = hf_dir(tmp_path)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 128}))
    spec = target_spec(str(directory))
    assert (spec.kind, spec.config.vocab_size, spec.config.max_positions, spec.label) == ("hf", 64, 128, "hf64")
    with pytest.raises(ValueError, match="passes the context the target was trained for \\(128 positions\\)"):
        spec.check_length(100, 29)
    spec.check_length(100, 28)
    with pytest.raises(AttributeError):
        spec.kind = "gguf"                                             # frozen
    assert isinstance(spec, TargetSpec)


def test_drafter_specs_are_typed():
    from specjax.apps.drafters import (EagleSpec, EarlyExitSpec, HybridSpec, ModelDrafterSpec, ProposalSpec,
                                       drafter_spec)
    assert drafter_spec("eagle") == EagleSpec(trim=True) and drafter_spec("eagle-full") == EagleSpec(trim=False)
    assert drafter_spec("eagle-lowrank:64") == EagleSpec(rank=64)
    assert drafter_spec("early-exit:8") == EarlyExitSpec(8)
    assert drafter_spec("rest") == ProposalSpec("rest", 4) and drafter_spec("lookup:3") == ProposalSpec("lookup", 3)
    model = drafter_spec("model:random:byte-tiny-draft")
    assert isinstance(model, ModelDrafterSpec) and model.target.config.vocab_size == 259
    hybrid = drafter_spec("eagle+rest+lookup:3")
    assert hybrid == HybridSpec((EagleSpec(), ProposalSpec("rest", 4), ProposalSpec("lookup", 3)))
    assert hybrid.name == "eagle+rest:4+lookup:3"


@dataclass(frozen=True)
class Facts:
    """A stand-in target for `fit`: a configuration, a display label and whether it has a tokenizer."""

    config: Any
    label: str
    has_tokenizer: bool = True


def test_eagle_fit_reads_the_configuration_not_the_label():
    from specjax.apps.models import EagleSpec, load_drafter
    from specjax.apps.models import LoadedTarget
    from specjax.model.config import ModelConfig
    from specjax.model.io.checkpoint import read_meta
    from specjax.runners.eagle import default_eagle_path
    from specjax.testing.pairs import tiny_pair

    smollm2 = ModelConfig(**read_meta(default_eagle_path())["config"])
    EagleSpec().fit(Facts(smollm2, "any label"))
    EagleSpec().fit(Facts(smollm2.replace(dtype="bfloat16"), "any label"))      # a dtype is no other model
    with pytest.raises(ValueError, match="rank must be at most the target's width 576"):
        EagleSpec(rank=577).fit(Facts(smollm2, "SmolLM2"))
    with pytest.raises(ValueError, match="trained for SmolLM2"):
        EagleSpec().fit(Facts(smollm2.replace(n_layers=2), "SmolLM2-135M-Instruct"))
    impostor = LoadedTarget(tiny_pair()[0], None, None, "SmolLM2-135M-Instruct")
    with pytest.raises(ValueError, match="trained for SmolLM2"):
        load_drafter("eagle", impostor)


def test_gguf_target_spec_keeps_its_reader(tmp_path, no_building):
    pytest.importorskip("tokenizers")
    from specjax.apps.models import target_spec
    from tests.models.test_gguf import CONFIG, write_tiny_gguf
    path = tmp_path / "tiny.gguf"
    write_tiny_gguf(path, model_mod.LlamaLM(CONFIG, rngs=nnx.Rngs(0)))
    spec = target_spec(str(path))
    assert (spec.kind, spec.config.n_layers, spec.config.max_positions, spec.label) == ("gguf", 2, 64, "tiny.gguf")
    assert spec.reader is not None and spec.tokenizer.eos_id == 1 and spec.tokenizer is spec.tokenizer
    with pytest.raises(ValueError, match="fewer layers than the target's 2"):
        check_names(str(path), "early-exit:2")
    with pytest.raises(ValueError, match="vocabulary 259, the target tiny.gguf 40"):
        check_names(str(path), "model:random:byte-tiny-draft")
    check_names(str(path), "rest+aded")


def hf_dir_with_words(tmp_path, name: str, words: list[str]):
    """A Hugging Face directory whose tokenizer.json is a word-level vocabulary of `words` (and "[UNK]")."""
    import tokenizers
    (tmp_path / name).mkdir()
    directory = hf_dir(tmp_path / name, vocab=len(words) + 1)
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel({w: i for i, w in enumerate(["[UNK]"] + words)},
                                                              unk_token="[UNK]"))
    backend.save(str(directory / "tokenizer.json"))
    return directory


def test_cross_vocab_flags_are_checked_before_any_weights(tmp_path, capsys, no_building):
    """--cross-vocab: SLRS and OmniDraft refused with their measured reasons, SLEM only for plain chains, only for a model drafter, both models need token strings,
    and token-level intersection needs enough shared tokens (the count is said)."""
    out = str(tmp_path / "g.json")
    base = ["generate", "--target", "random:byte-tiny", "--out", out]
    assert cli.main(base + ["--drafter", "model:random:tiny", "--cross-vocab", "slrs"]) == 2
    assert "exponential" in capsys.readouterr().err
    assert cli.main(base + ["--drafter", "model:random:tiny", "--cross-vocab", "omnidraft"]) == 2
    assert "lossy at T > 0 (TV 0.013" in capsys.readouterr().err
    assert cli.main(base + ["--drafter", "lookup:3", "--cross-vocab", "tli"]) == 2
    assert "separate draft model" in capsys.readouterr().err
    assert cli.main(base + ["--drafter", "model:random:tiny", "--cross-vocab", "tli"]) == 2
    assert "no tokenizer" in capsys.readouterr().err
    target = hf_dir_with_words(tmp_path, "t", [f"w{i}" for i in range(300)])
    drafter = hf_dir_with_words(tmp_path, "d", [f"w{i}" for i in range(200)] + [f"v{i}" for i in range(100)])
    from specjax.apps.models import drafter_spec, target_spec
    with pytest.raises(ValueError, match="shares 201 tokens .* needs at least 256"):
        drafter_spec(f"model:{drafter}").with_cross_vocab("tli").fit(target_spec(str(target)))
    with pytest.raises(ValueError, match="does not give back the bytes"):          # words: no byte round trip
        drafter_spec(f"model:{drafter}").with_cross_vocab("slem").fit(target_spec(str(target)))
    drafter = hf_dir_with_words(tmp_path, "d2", [f"w{i}" for i in range(300)] + ["v"])
    for flags, said in ((["--method", "eagle2"], "chains"), (["--regex", "a+"], "grammar")):
        assert cli.main(["generate", "--target", str(target), "--drafter", f"model:{drafter}", "--cross-vocab",
                         "slem", "--out", out] + flags) == 2
        assert said in capsys.readouterr().err
