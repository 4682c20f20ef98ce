"""One way to name models: every target and drafter form parses, and every bad name raises a ValueError saying why
before any model is built (configurations only: a GGUF's metadata, a checkpoint's config.json)."""
import json

import numpy as np
import pytest

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
