"""Vendored offline prompt sets."""
import pytest

from specjax.bench.prompts import load_prompts


def test_prompt_sets():
    mt = load_prompts("mt_bench")
    he = load_prompts("humaneval")
    assert len(mt) == 80 and len(he) == 164
    assert mt[0].startswith("Compose an engaging travel blog post")
    assert he[0].lstrip().startswith("from typing import List") and "def has_close_elements" in he[0]
    assert load_prompts("humaneval", 3) == he[:3]
    with pytest.raises(ValueError, match="unknown prompt set"):
        load_prompts("gsm8k")
    with pytest.raises(ValueError, match="limit"):
        load_prompts("mt_bench", 0)
