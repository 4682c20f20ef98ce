"""One way to name models, shared by the command line and every experiment: a target name (`specjax.apps.targets`)
and a drafter name (`specjax.apps.drafters`) are each read once into a typed, frozen spec and checked before any
weights are loaded; `load_target` and `load_drafter` build what a spec (or a name, parsed and checked first)
describes. The names a caller needs are importable from here.
"""
from __future__ import annotations

# the names a caller of the model-name layer needs, importable from this one module
from specjax.apps.drafters import (DRAFTER_FORMS, DrafterSpec, EagleSpec, default_drafter, drafter_spec, eagle_fits,
                                   parse_drafter)
from specjax.apps.targets import (SMOLLM2_LABEL, LoadedTarget, TargetSpec, encode_prompt, load_target, parse_target,
                                  target_config, target_spec)
from specjax.runners.base import Handle

__all__ = ["DRAFTER_FORMS", "SMOLLM2_LABEL", "DrafterSpec", "EagleSpec", "LoadedTarget", "TargetSpec", "check_names",
           "default_drafter", "drafter_spec", "eagle_fits", "encode_prompt", "load_drafter", "load_target",
           "parse_drafter", "parse_mesh", "parse_target", "target_config", "target_spec"]


def check_names(target: str, drafter: str | None = None) -> None:
    """ValueError, before any weights are loaded, if either name is malformed, a file is missing or unsupported, or
    the drafter does not fit the target (`target_spec`, `drafter_spec`, its `fit`)."""
    spec = target_spec(target)
    if drafter is not None:
        drafter_spec(drafter).fit(spec)


def parse_mesh(text: str) -> dict[str, int]:
    """`data=2,model=4` -> {"data": 2, "model": 4} (either may be left out: size 1); ValueError on anything else."""
    sizes = {"data": 1, "model": 1}
    for part in filter(None, text.replace(" ", "").split(",")):
        axis, _, size = part.partition("=")
        if axis not in sizes or not size.isdigit() or int(size) < 1:
            raise ValueError(f"bad mesh {text!r}: use data=N,model=M with positive sizes")
        sizes[axis] = int(size)
    return sizes


def load_drafter(name: str | DrafterSpec, target: LoadedTarget, seed: int = 1, *, dtype: str | None = None
                 ) -> Handle:
    """The drafter for `target` a name names (parsed, then checked against `target`), or a `drafter_spec` already
    checked with its `fit`; a separate model in `dtype`."""
    if not isinstance(name, str):
        return name.build(target, seed, dtype)
    spec = drafter_spec(name)
    spec.fit(target)
    return spec.build(target, seed, dtype)
