"""The real-law gap study on a stored-laws file made from the tiny random pair (teacher-forced logits of a random
text, one forward per model): α* >= every verifier's acceptance and α*_wor >= α*_iid on every context, the file
round-trips, malformed files raise ValueError, and `specjax bounds --laws` reads a file."""
import dataclasses
import json

import numpy as np
import pytest

from specjax.bench.acceptance import next_token_logits
from specjax.apps.cli import main as cli_main
from specjax.runners.model import early_exit
from specjax.verify.names import OPTIMUM_LAW
from transport.studies.law_file import StoredLaws, load_laws
from transport.studies.law_gap import TOLERANCE, LawStudyConfig, cell_key, compute_cell

KS = (1, 2, 3)


@pytest.fixture(scope="module")
def stored(tiny_pair):
    """Two 'prompt sets' of two texts each, 2 contexts per text, a separate drafter and an early-exit one."""
    target, drafter = tiny_pair
    rng = np.random.default_rng(0)
    texts = rng.integers(0, 16, (4, 10)).astype(np.int32)
    rows, cols = np.repeat(np.arange(4), 2), np.tile(np.arange(5, 7), 4)
    pairs = [next_token_logits(target, d, texts, rows, cols) for d in (drafter, early_exit(target, 1))]
    return StoredLaws(target="random:tiny", drafters=("model:random:tiny-draft", "early-exit:1"),
                      temperatures=(0.7, 1.5), target_logits=pairs[0][0],
                      drafter_logits=np.stack([q for _, q in pairs]),
                      prompt_set=np.where(rows < 2, "set_a", "set_b"), prompt_index=rows % 2,
                      position=cols - 5, token=texts[rows, cols + 1])


def test_alpha_star_bounds_every_verifier_on_every_stored_context(stored):
    config = LawStudyConfig(ks=KS)
    seen = set()
    for drafter in stored.drafters:
        for t in stored.temperatures:
            p, q = stored.laws(drafter, t)
            for k in KS:
                rec = compute_cell(p, q, k, config)
                stars = {law: np.asarray(v) for law, v in rec["alpha_star"].items()}
                assert np.all(stars["without_replacement"] >= stars["iid"] - TOLERANCE)
                for ver, acc in rec["acceptance"].items():
                    assert np.all(np.asarray(acc) <= stars[OPTIMUM_LAW[ver]] + TOLERANCE), (drafter, t, k, ver)
                    seen.add(ver)
    # V = 16: every verifier is exact here (khisti_lp for k <= 2, RRS without replacement by enumeration)
    assert seen == set(config.verifiers)


def test_laws_file_round_trips(stored, tmp_path):
    path = stored.save(tmp_path / "laws.npz")
    back = load_laws(path)
    for f in dataclasses.fields(StoredLaws):
        assert np.array_equal(np.asarray(getattr(back, f.name)), np.asarray(getattr(stored, f.name))), f.name
    p, q = back.laws("early-exit:1", 0.7)
    assert p.dtype == np.float64 and np.allclose(p.sum(1), 1.0, atol=1e-12) and np.allclose(q.sum(1), 1.0)


def _bad(stored, tmp_path, **changes):
    arrays = {f.name: np.asarray(getattr(stored, f.name)) for f in dataclasses.fields(StoredLaws)}
    arrays.update(version=np.int64(1), **changes)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    path = tmp_path / "bad.npz"
    with path.open("wb") as fh:
        np.savez(fh, **arrays)
    return path


@pytest.mark.parametrize("change, message", [
    ({"token": None}, "missing"),
    ({"drafter_logits": "narrow"}, "vocabulary"),
    ({"target_logits": "nan"}, "NaN"),
    ({"drafter_logits": "all_masked"}, "no finite logit"),
    ({"temperatures": np.array([0.0])}, "temperatures"),
    ({"position": np.arange(3)}, "one entry per context"),
])
def test_malformed_files_raise(stored, tmp_path, change, message):
    (key, value), = change.items()
    if isinstance(value, str):
        x = np.array(getattr(stored, key), np.float32)
        if value == "narrow":
            x = x[..., :-1]
        elif value == "nan":
            x[2, 3] = np.nan
        else:
            x[0, 1] = -np.inf
        value = x
    with pytest.raises(ValueError, match=message):
        load_laws(_bad(stored, tmp_path, **{key: value}))
    with pytest.raises(ValueError, match="no stored-laws file"):
        load_laws(tmp_path / "absent.npz")


def test_bounds_command_studies_a_laws_file_and_resumes(stored, tmp_path, capsys):
    path = stored.save(tmp_path / "laws.npz")
    out = tmp_path / "gap"
    argv = ["bounds", "--laws", str(path), "--ks", "1", "2", "--out", str(out)]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert "| verifier |" in printed and "checks: every verifier <= its alpha*" in printed
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["violations"] == [] and out.with_suffix(".png").stat().st_size > 0
    assert result["laws"]["contexts"] == {"set_a": 4, "set_b": 4}
    rows = {(r["drafter"], r["temperature"], r["prompt_set"], r["k"], r["verifier"]): r for r in result["rows"]}
    assert rows["early-exit:1", 0.7, "set_a", 2, "spechub"]["worst_gap"] < 1e-12       # optimal for its law
    assert rows["early-exit:1", 0.7, "set_a", 1, "rrs"]["frac_within"] == 1.0          # k = 1: Σ min(p, q) = α*
    assert all(len(r["worst_contexts"]) == 3 for r in result["rows"])
    records = json.loads(out.with_name("gap.records.json").read_text())["records"]
    assert cell_key("early-exit:1", 1.5, "set_b", 2) in records
    assert cli_main(argv) == 0                                    # resumed: every cell is read back, same summary
    assert json.loads(out.with_suffix(".json").read_text())["rows"] == result["rows"]
