"""Experiments as configs: TOML/JSON files round-trip into the frozen dataclass, unknown keys and bad values are
named, the command line overrides the file, and an interrupted experiment resumes to the same records."""
import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import pytest

from experiments import tree_ablation
from specjax.decode.chain import ChainSpeculator
from specjax.bench.experiment import config_from_dict, load_config, parse_config


@dataclass(frozen=True)
class Toy:
    budgets: tuple[int, ...] = (8, 16)
    temperature: float = 0.0
    label: str | None = None
    sweeps: tuple[tuple[str, tuple[float, ...]], ...] = (("confidence", (0.2, 0.4)),)
    greedy: bool = False
    seed: int = 0


def test_toml_and_json_round_trip_into_the_dataclass(tmp_path):
    cfg = Toy(budgets=(4, 32), temperature=0.7, label="x", sweeps=(("feedback", (0.3,)),), greedy=True, seed=3)
    toml = tmp_path / "toy.toml"
    toml.write_text('budgets = [4, 32]\ntemperature = 0.7\nlabel = "x"\nsweeps = [["feedback", [0.3]]]\n'
                    'greedy = true\nseed = 3\n')
    assert load_config(Toy, toml) == cfg
    as_json = tmp_path / "toy.json"
    as_json.write_text(json.dumps(dataclasses.asdict(cfg)))
    assert load_config(Toy, as_json) == cfg
    # a results file (config embedded beside its records) reloads as the config it was written for
    as_json.write_text(json.dumps({"config": dataclasses.asdict(cfg), "records": {}}))
    assert load_config(Toy, as_json) == cfg
    assert hash(load_config(Toy, as_json)) == hash(cfg)


@pytest.mark.parametrize("values, message", [
    ({"budget": [8]}, "unknown key 'budget'"),
    ({"budgets": 8}, "budgets: expected a list"),
    ({"budgets": [8.5]}, r"budgets\[0\]: expected int"),
    ({"temperature": "hot"}, "temperature: expected float"),
    ({"greedy": 1}, "greedy: expected true or false"),
    ({"sweeps": [["feedback"]]}, r"sweeps\[0\]: expected 2 items"),
])
def test_bad_config_values_are_named(values, message):
    with pytest.raises(ValueError, match=message):
        config_from_dict(Toy, values)


def test_command_line_overrides_the_file(tmp_path, capsys):
    toml = tmp_path / "toy.toml"
    toml.write_text("budgets = [4]\ntemperature = 0.5\n")
    cfg, out = parse_config(Toy, ["--config", str(toml), "--temperature", "1", "--out", "r/x.json"], "toy",
                            default_out="results/toy")
    assert cfg == Toy(budgets=(4,), temperature=1.0) and str(out) == "r/x"
    with pytest.raises(SystemExit):
        parse_config(Toy, ["--budgets", "a"], "toy", default_out="results/toy")
    assert "--budgets" in capsys.readouterr().err
    toml.write_text("bugdets = [4]\n")
    with pytest.raises(SystemExit):
        parse_config(Toy, ["--config", str(toml)], "toy", default_out="results/toy")
    assert "unknown key 'bugdets'" in capsys.readouterr().err


def test_a_bool_alone_means_true_and_a_preset_names_a_config():
    assert parse_config(Toy, ["--greedy"], "toy", default_out="r")[0].greedy
    assert not parse_config(Toy, ["--greedy", "false"], "toy", default_out="r")[0].greedy
    cfg, _ = parse_config(Toy, ["--config", "small", "--seed", "2"], "toy", default_out="r",
                          presets={"small": Toy(budgets=(2,))})
    assert cfg == Toy(budgets=(2,), seed=2)


def test_tree_ablation_resumes_to_the_same_records(tmp_path, monkeypatch):
    cfg = tree_ablation.TreeAblationConfig(target="random:byte-tiny", drafter="model:random:byte-tiny-draft",
                                           methods=("eagle",), budgets=(4,), temperatures=(0.0,),
                                           prompt_sets=("mt_bench",), prompts=1, max_new_tokens=6, probe_contexts=4)
    out = tmp_path / "ablation"
    whole = tree_ablation.run(cfg, out).records
    assert list(whole) == ["mt_bench/T=0.0/ar", "mt_bench/T=0.0/eagle/4"]
    cell = whole["mt_bench/T=0.0/eagle/4"]
    assert 1.0 <= cell["predicted_tau"] <= 1 + 3 and cell["tau"] >= 1.0 and cell["nodes"] == 4

    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["provenance"]["versions"]["jax"] and saved["config"]["budgets"] == [4]
    del saved["records"]["mt_bench/T=0.0/eagle/4"]                 # interrupted after the AR cell
    out.with_suffix(".json").write_text(json.dumps(saved))
    decoded = []
    real = tree_ablation.decode_prompts
    monkeypatch.setattr(tree_ablation, "decode_prompts",
                        lambda *a, **k: decoded.append((k["method"], None)) or real(*a, **k))
    resumed = tree_ablation.run(cfg, out).records
    # only the unfinished cell ran (the tree, then AR re-timed beside it), not the AR group cell
    ar = ChainSpeculator(0)
    assert len(decoded) == 2 and decoded[0][0] != ar and decoded[1][0] == ar
    timing = {"seconds", "tokens_per_s", "speedup", "ar_tokens_per_s"}
    strip = lambda records: {k: {f: v for f, v in r.items() if f not in timing} for k, r in records.items()}
    assert strip(resumed) == strip(whole)


def test_tree_ablation_rejects_bad_configs():
    with pytest.raises(ValueError, match="unknown tree method 'beam'"):
        tree_ablation.TreeAblationConfig(methods=("beam",))
    with pytest.raises(ValueError, match="budgets"):
        tree_ablation.TreeAblationConfig(budgets=(0,))


def test_spec_bench_reports_every_category_against_ar(tmp_path, monkeypatch):
    from experiments import spec_bench
    short = [("writing", "Write a haiku."), ("math", "What is 2 + 2?"), ("humaneval", "def f(x):")]
    monkeypatch.setattr(spec_bench, "categorized_prompts", lambda per_category: short)
    cfg = spec_bench.SpecBenchConfig(target="random:byte-tiny", drafters=("model:random:byte-tiny-draft",),
                                     tree_methods=(), max_new_tokens=4, per_category=1)
    records = spec_bench.run(cfg, tmp_path / "bench").records
    assert list(records) == ["ar", "chain K=4 model:random:byte-tiny-draft"]
    rows = spec_bench.rows(records)
    assert {r["category"] for r in rows} == {"writing", "math", "humaneval", "overall"}
    assert all(r["speedup"] == 1.0 for r in rows if r["configuration"] == "ar")
    assert all(r["tau"] >= 1.0 and r["tokens_per_s"] > 0 for r in rows)
    table = spec_bench.format_tables(records)
    assert "| chain K=4 model:random:byte-tiny-draft |" in table and "speedup over AR" in table
    with pytest.raises(ValueError, match="unknown drafter"):
        spec_bench.SpecBenchConfig(drafters=("medusa",))


def test_eagle_curve_reads_each_heads_final_estimate(tmp_path, capsys):
    """`train_eagle.py curve`: one point per head, sorted by training tokens and then steps, from the last τ estimate
    each head's metadata stores; a head without them is named."""
    from experiments import train_eagle

    def head(name, tokens, taus, steps=400):
        d = tmp_path / name
        d.mkdir()
        estimates = [{"step": 100, "tau_T0.7": [1.0, 1.0]}, {"step": steps, "tau_T0.7": taus}]
        (d / "specjax_meta.json").write_text(json.dumps({"extra": {"training_tokens": tokens, "train": {},
                                                                   "tau_estimates": estimates}}))
        return str(d)
    heads = (head("long", 32000, [1.5, 1.7], steps=1200), head("big", 32000, [1.4, 1.5]),
             head("small", 4000, [1.2, 1.25]))
    assert train_eagle.main(["curve", "--heads", *heads, "--out", str(tmp_path / "curve")]) == 0
    points = json.loads((tmp_path / "curve.json").read_text())["points"]
    assert [(p["training_tokens"], p["step"]) for p in points] == [(4000, 400), (32000, 400), (32000, 1200)]
    assert [p["tau_T0.7"] for p in points] == [[1.2, 1.25], [1.4, 1.5], [1.5, 1.7]]
    assert (tmp_path / "curve.png").stat().st_size > 0
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "specjax_meta.json").write_text(json.dumps({"extra": {"train": {}}}))
    with pytest.raises(ValueError, match="no training tokens"):
        train_eagle.main(["curve", "--heads", str(bare)])


def test_gto_contexts_cut_full_windows_before_answer_tokens():
    """`train_eagle.py gto`'s contexts: `window` tokens of the text right before the pending token, which is an
    answer token (never the prompt, never padding); a pure function of the seed; rows too short are never picked."""
    from experiments.eagle.gto import gto_contexts

    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 50, (3, 20)).astype(np.int32)
    lengths, prompt_lengths = np.array([20, 9, 14]), np.array([3, 2, 12])
    contexts, pending = gto_contexts(tokens, lengths, prompt_lengths, 64, 10, seed=1)
    assert contexts.shape == (64, 10) and pending.shape == (64,)
    for ctx, tok in zip(contexts, pending):
        row = 0 if ctx.tolist() in [tokens[0, c - 10:c].tolist() for c in range(10, 20)] else 2
        cut = next(c for c in range(10, lengths[row]) if tokens[row, c - 10:c].tolist() == ctx.tolist())
        assert tokens[row, cut] == tok and max(10, prompt_lengths[row]) <= cut < lengths[row]
    again = gto_contexts(tokens, lengths, prompt_lengths, 64, 10, seed=1)
    np.testing.assert_array_equal(again[0], contexts)
    with pytest.raises(ValueError, match="long enough"):
        gto_contexts(tokens, lengths, prompt_lengths, 4, 20, seed=1)


def test_eagle_data_shards_resume_to_the_same_rows(tmp_path):
    """`train_eagle.py data` writes one shard per prompt batch; a run stopped after one shard, with a torn write
    left behind, resumes to shards equal to an uninterrupted run's: every prompt once, none lost or repeated.
    Shards of another config are refused, and `train` refuses answers of a target other than SmolLM2."""
    from experiments import train_eagle
    from experiments.eagle.data import data_files, load_data
    from experiments.eagle.instructions import instruction_prompts

    args = ["data", "--target", "random:byte-tiny", "--prompts", "6", "--batch-size", "2", "--max-new-tokens", "6",
            "--sampled-fraction", "0.5", "--feature-layers", "1"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert train_eagle.main(args + ["--out", str(whole)]) == 0
    assert train_eagle.main(args + ["--out", str(parts), "--stop-after", "1"]) == 0
    assert [p.name for p in data_files([parts])] == ["shard_00000.npz"]
    (parts / "shard_00001.partial.npz").write_bytes(b"torn")         # a write cut short: ignored, then replaced
    assert train_eagle.main(args + ["--out", str(parts)]) == 0
    files = data_files([parts])
    assert [p.name for p in files] == [f"shard_0000{i}.npz" for i in range(3)]
    for a, b in zip(data_files([whole]), files):
        with np.load(a) as x, np.load(b) as y:
            for name in ("tokens", "lengths", "hidden", "prompts", "prompt_lengths", "temperatures"):
                np.testing.assert_array_equal(x[name], y[name], err_msg=name)
    prompts = [str(p) for f in files for p in np.load(f)["prompts"]]
    assert prompts == instruction_prompts(6, 0)
    with np.load(files[0]) as f:
        assert f["hidden"].shape[-1] == 2 * 32                          # fused: layer 1's states, then the final
    temperatures = [np.load(f)["temperatures"].tolist() for f in files]       # every other batch sampled
    np.testing.assert_allclose(temperatures, [[0, 0], [0.7, 0.7], [0, 0]], atol=1e-6)
    with pytest.raises(ValueError, match="another `data` config"):
        train_eagle.main(args[:-2] + ["--out", str(parts)])
    with pytest.raises(ValueError, match="SmolLM2's answers"):
        load_data([str(parts)])
    with pytest.raises(ValueError, match="no data at"):
        data_files([tmp_path / "missing"])


def test_eagle_instructions_are_many_and_never_evaluation_prompts():
    from experiments.eagle.data import EagleDataConfig
    from experiments.eagle.instructions import instruction_pool, instruction_prompts
    from specjax.bench.prompts import load_prompts

    pool = instruction_pool()
    assert len(pool) == len(set(pool)) > 3000
    assert sorted(instruction_prompts(len(pool), 0)) == sorted(pool)
    with pytest.raises(ValueError, match="distinct instructions"):
        EagleDataConfig(prompts=len(pool) + 1)
    assert not set(pool) & (set(load_prompts("mt_bench")) | set(load_prompts("humaneval")))
    assert instruction_prompts(50, 3) == instruction_prompts(50, 3)


def test_retrieval_bench_needed_tau_is_the_measured_round_cost():
    """The benchmark's τ to break even is what its own timings say: a configuration at ratio r to AR with τ t spends
    t / r AR steps per round, so at that cost it equals AR at τ = t / r; prompts a configuration did not finish are
    left out, and a run whose tokens differ from AR's is flagged."""
    from experiments import bench_retrieval
    cfg = bench_retrieval.BenchConfig(prompt_sets="humaneval", prompts=3, drafters="rest", repeats=1)
    runs = bench_retrieval.configurations(cfg)
    assert [label for label, *_ in runs] == ["AR", "rest chain K4", "rest eagle tree 16"]
    records = {}
    for i in range(2):                                        # prompt 2 unfinished: no tree record
        records[f"humaneval/AR/{i}/0"] = {"tokens": [1] * 10, "seconds": 1.0, "tau": 1.0}
        records[f"humaneval/rest chain K4/{i}/0"] = {"tokens": [1] * 10, "seconds": 0.5, "tau": 3.0}
        records[f"humaneval/rest eagle tree 16/{i}/0"] = {"tokens": [1] * 9 + [i], "seconds": 2.0, "tau": 2.0}
    records["humaneval/AR/2/0"] = records["humaneval/rest chain K4/2/0"] = records["humaneval/AR/0/0"]
    rows = bench_retrieval.summarize_set(records, "humaneval", runs, cfg)
    chain, tree = rows["rest chain K4"], rows["rest eagle tree 16"]
    assert chain["prompts"] == 2 and chain["ratio_to_ar"] == pytest.approx(2.0)
    assert chain["tau_break_even"] == pytest.approx(1.5) and chain["tau_for_aim"] == pytest.approx(2.25)
    assert tree["tau_break_even"] == pytest.approx(4.0) and tree["scored_per_round"] == 17
    assert chain["equal_to_ar"] and not tree["equal_to_ar"]
    assert rows["AR"]["tau_break_even"] == pytest.approx(1.0)
