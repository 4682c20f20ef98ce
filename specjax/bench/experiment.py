"""Experiments as configs: a frozen dataclass plus a seed, runnable from the command line and from a TOML or JSON
file, with the configuration and the software versions embedded in what it writes.

    @dataclass(frozen=True)
    class MyConfig:
        budgets: tuple[int, ...] = (8, 16)
        temperature: float = 0.0
        seed: int = 0

    cfg, out = parse_config(MyConfig, argv, __doc__, default_out="results/my_experiment")

Every field becomes an option (`budgets` -> `--budgets 8 16 32`; a bool alone, `--quick`, means true);
`--config FILE.toml|FILE.json` reads any subset of the fields (nested tuples, e.g. a sweep table, only from a file);
the command line overrides the file, the file the defaults. An unknown key in a file raises ValueError naming it, and
values are coerced to the annotated types (a list in a file becomes a tuple, so the dataclass stays hashable and
compares equal to the one built in code).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import platform
import sys
import time
import tomllib
import types
import typing
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence, TypeVar

C = TypeVar("C")
T = TypeVar("T")


def coerce(value: Any, hint: Any, name: str) -> Any:
    """`value` (as read from TOML/JSON or the command line) converted to the type `hint`; ValueError naming the
    field `name` when it cannot be."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for option in options:
            try:
                return coerce(value, option, name)
            except ValueError:
                pass
        raise ValueError(f"{name}: {value!r} is none of {options}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], f"{name}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ValueError(f"{name}: expected {len(args)} items, got {value!r}")
        return tuple(coerce(v, a, f"{name}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if hint is bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise ValueError(f"{name}: expected true or false, got {value!r}")
        return value
    if hint in (int, float, str):
        if isinstance(value, bool) or (hint is int and isinstance(value, float)) or \
                (hint is not str and isinstance(value, str) and not _numeric(value)):
            raise ValueError(f"{name}: expected {hint.__name__}, got {value!r}")
        if hint is str and not isinstance(value, str):
            raise ValueError(f"{name}: expected a string, got {value!r}")
        return hint(value)
    raise ValueError(f"{name}: unsupported field type {hint!r}")


def _numeric(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def config_from_dict(cls: type[C], values: dict[str, Any], source: str = "config") -> C:
    """`cls(**values)` with every value coerced to its field's type; ValueError naming an unknown key."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise ValueError(f"{source}: unknown key {key!r} for {cls.__name__}; known: {sorted(known)}")
    return cls(**{k: coerce(v, hints[k], f"{source}: {k}") for k, v in values.items()})


def load_config(cls: type[C], path: str | Path) -> C:
    """The config of class `cls` in a TOML or JSON file (any subset of its fields; the rest keep defaults)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no config file at {path}")
    text = path.read_text()
    values = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a config file holds a table of fields")
    return config_from_dict(cls, values.get("config", values) if path.suffix == ".json" else values, str(path))


def _is_simple(hint: Any) -> bool:
    """Whether a field of type `hint` can be given on the command line (scalars and flat tuples of scalars)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is tuple:
        return len(args) == 2 and args[1] is Ellipsis and args[0] in (int, float, str, bool)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return all(_is_simple(a) for a in args)
    return hint in (int, float, str, bool)


def parse_config(cls: type[C], argv: Sequence[str] | None, description: str, *, default_out: str,
                 presets: Mapping[str, C] | None = None, prog: str | None = None) -> tuple[C, Path]:
    """(config, output stem) from the command line: one option per simple field of `cls`, `--config FILE` (or
    `--config NAME` of one of `presets`), `--out STEM` (results go to STEM.json, STEM.png, ...). Bad values exit
    with the field named."""
    hints = typing.get_type_hints(cls)
    presets = dict(presets or {})
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    named = f" or a preset: {', '.join(presets)}" if presets else ""
    parser.add_argument("--config", help=f"a TOML or JSON file of fields{named} (the command line overrides it)")
    parser.add_argument("--out", type=Path, default=Path(default_out), help="output stem (STEM.json, STEM.png)")
    for field in dataclasses.fields(cls):
        if not _is_simple(hints[field.name]):
            continue
        flag = "--" + field.name.replace("_", "-")
        many = typing.get_origin(hints[field.name]) is tuple
        default = getattr(cls, field.name, field.default)
        shown = " ".join(map(str, default)) if many else default
        # a bool given alone means true (`--quick`), as a store_true flag did; `--quick false` still works
        arity = dict(nargs="?", const="true") if hints[field.name] is bool else dict(nargs="+" if many else None)
        parser.add_argument(flag, dest=field.name, default=argparse.SUPPRESS, help=f"(default: {shown})", **arity)
    args = vars(parser.parse_args(argv))
    config_path, out = args.pop("config"), args.pop("out")
    try:
        base = (cls() if config_path is None else presets[config_path] if config_path in presets
                else load_config(cls, config_path))
        cfg = dataclasses.replace(base, **{k: coerce(v, hints[k], "--" + k.replace("_", "-"))
                                           for k, v in args.items()})
    except ValueError as e:
        parser.error(str(e))
    return cfg, Path(os.path.splitext(out)[0])


def provenance() -> dict[str, Any]:
    """Software versions, device and time of a run, written beside its results."""
    import jax
    versions = {}
    for package in ("specjax", "jax", "jaxlib", "flax", "optax", "numpy", "scipy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"versions": versions, "python": sys.version.split()[0], "platform": platform.platform(),
            "device": str(jax.devices()[0]), "device_count": jax.device_count(),
            "cpu_count": os.cpu_count(), "load_average": os.getloadavg()[0],
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """Rows (dicts; the union of their keys, in first-seen order, is the header) as a CSV file."""
    header = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def progress(items: Iterable[T], total: int, label: str = "") -> Iterator[T]:
    """Yield `items`, printing a progress bar with the elapsed time and an estimate of the time left to stderr."""
    start = time.perf_counter()
    for i, item in enumerate(items):
        yield item
        done = i + 1
        elapsed = time.perf_counter() - start
        left = elapsed / done * (total - done)
        bar = "#" * (20 * done // total) + "." * (20 - 20 * done // total)
        print(f"\r{label} [{bar}] {done}/{total} {elapsed:.0f}s elapsed, ~{left:.0f}s left", end="",
              file=sys.stderr, flush=True)
    print(file=sys.stderr)
