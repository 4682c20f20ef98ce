"""`specjax generate --method auto`: the choice per request follows the profile it is given (AR on a device where
T-token calls are dear, chains where they are nearly free), its choices and the learned estimate are written, the
text equals AR's at T = 0, the machine's profile is measured once and then read from the cache, and clashing flags,
a missing profile file or one measured for another pair exit 2 before anything is decoded."""
import json

import pytest

from specjax.apps import cli
from specjax.costs.profile import CostCurve, DeviceProfile, ProfileEntry

GRID = tuple(range(1, 10))


def device(slope: float, drafter_s: float, meta=None) -> DeviceProfile:
    curve = CostCurve(GRID, tuple(1e-3 * (1 + slope * (t - 1)) for t in GRID), "target")
    return DeviceProfile("synthetic", "measured", (ProfileEntry(
        512, 1, curve, CostCurve(GRID, tuple(1e-3 * drafter_s for _ in GRID), "drafter")),), meta=meta or {})


def run(tmp_path, capsys, *flags):
    code = cli.main(["generate", "--target", "random:byte-tiny", "--temperature", "0", "--max-new-tokens", "8",
                     "--prompt", "ab", "--prompt", "ba c", "--prompt", "cab", *flags, "--out", str(tmp_path / "g.json")])
    captured = capsys.readouterr()
    return code, captured.out.split("\ntau ")[0], captured.err


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECJAX_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_auto_follows_the_profile_and_writes_its_choices(tmp_path, capsys, cache):
    ar = run(tmp_path, capsys, "--method", "ar")[1]
    device(0.01, 0.05).save(tmp_path / "gpu.json")
    code, text, err = run(tmp_path, capsys, "--method", "auto", "-K", "3", "--profile", str(tmp_path / "gpu.json"))
    assert code == 0 and text == ar
    stats = json.loads((tmp_path / "g.json").read_text())
    assert stats["method"] == "auto" and len(stats["auto"]["choices"]) == 3
    first = stats["auto"]["choices"][0]
    assert first["method"] == "chain" and 1 <= first["num_draft"] <= 3 and first["predicted_speedup"] > 1.05
    saved = json.loads((cache / stats["auto"]["estimate_file"].split("/")[-1]).read_text())
    assert sum(saved["tried"]) > 0                                   # learned from the rounds it ran, and kept
    device(0.5, 0.5).save(tmp_path / "cpu.json")
    code, text, _ = run(tmp_path, capsys, "--method", "auto", "--profile", str(tmp_path / "cpu.json"))
    assert code == 0 and text == ar
    stats = json.loads((tmp_path / "g.json").read_text())
    assert [c["method"] for c in stats["auto"]["choices"]] == ["ar"] * 3 and stats["tau"] == 1.0


def test_the_machine_profile_is_measured_once_then_cached(tmp_path, capsys, cache, monkeypatch):
    import specjax.bench.profile as bench_profile
    calls = []

    def fake_measure(target, drafter, cfg, labels, log=print):
        calls.append(cfg)
        return device(0.5, 0.5, meta=labels)

    monkeypatch.setattr(bench_profile, "measure_profile", fake_measure)
    assert run(tmp_path, capsys, "--method", "auto")[0] == 0
    assert run(tmp_path, capsys, "--method", "auto")[0] == 0
    assert len(calls) == 1 and calls[0].tokens == GRID
    cached = list(cache.glob("profile-*.json"))
    assert len(cached) == 1 and json.loads((tmp_path / "g.json").read_text())["auto"]["profile"] == str(cached[0])


@pytest.mark.parametrize("flags, message", [
    (["--verifier", "block"], "does not take --verifier"),
    (["--draft-policy", "confidence:0.5"], "does not take --draft-policy"),
    (["--profile", "/nonexistent/p.json"], "no such file"),
])
def test_bad_auto_runs_exit_2(tmp_path, capsys, cache, flags, message):
    code, _, err = run(tmp_path, capsys, "--method", "auto", *flags)
    assert code == 2 and message in err


def test_a_profile_of_another_pair_is_refused(tmp_path, capsys, cache):
    device(0.01, 0.05, meta={"drafter": "eagle"}).save(tmp_path / "other.json")
    code, _, err = run(tmp_path, capsys, "--method", "auto", "--profile", str(tmp_path / "other.json"))
    assert code == 2 and "measured with drafter 'eagle'" in err
