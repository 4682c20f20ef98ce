"""The command line's scale-out flags: `--mesh data=N,model=M`, `--dtype`, `--memory-budget-gb`, each checked before
any model is built or traced."""
import pytest

from specjax.apps.cli import main
from specjax.apps.models import parse_mesh


def test_parse_mesh():
    assert parse_mesh("data=2,model=4") == {"data": 2, "model": 4}
    assert parse_mesh("model=8") == {"data": 1, "model": 8}
    for bad in ("data=0", "pipe=2", "data=two", "data"):
        with pytest.raises(ValueError, match="bad mesh"):
            parse_mesh(bad)


@pytest.mark.parametrize("flags,message", [
    (["--mesh", "data=512,model=1"], "needs 512 devices"),
    (["--mesh", "tensor=2"], "bad mesh"),
    (["--dtype", "int8"], "floating-point dtype"),
    (["--memory-budget-gb", "0.001"], "over the budget of 1.02 MiB"),
])
def test_scale_flags_refuse_bad_runs(flags, message, capsys, tmp_path):
    argv = ["generate", "--target", "random:byte-small", "--method", "ar", "--out", str(tmp_path / "g.json")]
    assert main(argv + flags) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "g.json").exists()
