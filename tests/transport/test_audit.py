"""The exactness audit: every rule specjax ships (and the settled paper algorithms) is lossless to rounding on the
enumerated model; every port variant, misuse and sensitivity case is biased; the experiment writes its files."""
import json

from experiments.audit_verifiers import AuditConfig, run
from transport.exact.audit import LOSSLESS_SOURCES, run_audit


def test_audit_separates_lossless_rules_from_biased_ones():
    rows = run_audit(seed=1)
    assert len(rows) >= 30
    for r in rows:
        if r.source in LOSSLESS_SOURCES:
            assert r.tv < 1e-12, (r.scheme, r.verifier, r.tv)
        else:
            assert r.tv > 1e-4, (r.scheme, r.verifier, r.tv)
    by = {(r.scheme.split(" (")[0], r.verifier): r.accepted for r in rows}
    assert by["chain K=3", "block"] >= by["chain K=3", "token"]          # block >= token (a theorem)
    assert by["chain K=3", "traversal"] == by["chain K=3", "block"]
    assert by["coupled k=1", "disd"] <= by["coupled k=2", "gumbel_list"]               # THEORY §3.11
    assert by["coupled k=2", "gumbel_list"] <= 1.0 and ("coupled k=1", "disd accept, standard residual on mismatch") in by


def test_experiment_writes_json_and_png(tmp_path):
    result = run(AuditConfig(seed=1), tmp_path / "audit")
    saved = json.loads((tmp_path / "audit.json").read_text())
    assert saved["rows"] == result["rows"] and (tmp_path / "audit.png").stat().st_size > 0
    assert saved["config"]["seed"] == 1 and saved["provenance"]["versions"]["numpy"]
    assert (tmp_path / "audit.csv").read_text().startswith("scheme,verifier,")
