"""The README tells the truth: its first lines are the two commands (install + main job, install + tests), every
Python block runs as written (in order, in one namespace, as a reader would paste them), and every path its layout
table names exists."""
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_first_lines_are_the_two_commands():
    block = re.search(r"```bash\n(.*?)```", README, flags=re.S)
    assert block is not None and README.index(block.group(0)) < 50
    install_run, install_test = block.group(1).strip().splitlines()
    assert "pip install -e" in install_run and install_run.endswith("specjax demo")
    assert "[test" in install_test and install_test.endswith("python -m pytest -q")


def test_every_python_block_runs():
    blocks = python_blocks(README)
    assert len(blocks) >= 3
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"README.md python block {i}", "exec"), namespace)
    # what the blocks promise: speculative and AR decoding agree in shape, and the bounds are exact numbers
    assert namespace["out"].tokens.shape == (2, 32) and namespace["ar"].tokens.shape == (2, 32)
    assert np.isfinite(namespace["tree"].acceptance_length) and namespace["block"].acceptance_length >= 1.0


def test_the_checks_see_a_broken_block():
    """Negative control: a block that does not run is caught by the same exec."""
    try:
        exec(compile("from specjax import no_such_name", "broken", "exec"), {})
    except (ImportError, AttributeError):
        return
    raise AssertionError("a broken README block would pass")


def test_every_path_in_the_layout_table_exists():
    table = README[README.index("## Layout"):README.index("## Using it from Python")]
    paths = re.findall(r"^\| `([^`]+)`", table, flags=re.M)
    assert len(paths) >= 12
    for path in paths:
        first = path.split(",")[0].strip()
        assert (ROOT / first).exists(), first
