"""Hyper-parameters from YAML files and command-line options: what a training run fits with, typed.

    load_config(config_type, path=None, overrides=None)   -> a config_type (a frozen dataclass: NextItemConfig,
                                                             SASRecConfig, NextActionConfig, an index kind's config)

A config file is a flat YAML mapping of the config's fields (`configs/*.yaml` hold every field with its default
and what it does); a key it leaves out keeps the default, an unknown key is an error, and so is a value of the
wrong type or out of range. Command-line options (`--max-steps 3000 --batch-size 256 ...`) override the file.
Every problem is a ConfigError (exit code 2) that names where it came from (the file, or "command-line options")
and the key, as `journey.datasets.formats` does for source mappings, so nothing is ever silently ignored or
defaulted.

The config types are the trainers' own dataclasses; the neural ones are pydantic dataclasses (`extra="forbid"`,
ranges on the fields), the others stdlib dataclasses whose `__post_init__` checks their values: both are handled.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, TypeVar

import yaml
from pydantic import ValidationError

from journey.errors import ConfigError, InvalidInputError

C = TypeVar("C")
COMMAND_LINE: Final = "command-line options"


def load_config(config_type: type[C], path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> C:
    """The defaults of `config_type`, then the file's values, then the overrides that are not None."""
    config = config_type()
    if path is not None:
        config = _with(config, _read(path), str(path))
    given = {name: value for name, value in (overrides or {}).items() if value is not None}
    return _with(config, given, COMMAND_LINE) if given else config


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config: {exc}", path=str(path)) from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(key, str) for key in raw):
        raise ConfigError("a config must be a YAML mapping of field names to values", path=str(path))
    return raw


def _with(config: C, values: Mapping[str, Any], source: str) -> C:
    """`config` with `values` replaced, every problem a ConfigError naming `source` and the key."""
    known = [f.name for f in dataclasses.fields(config)]  # type: ignore[arg-type]  # every config is a dataclass
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown key (known: {', '.join(known)})", path=source)
    try:
        result: C = dataclasses.replace(config, **values)  # type: ignore[type-var]  # a dataclass, as above
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(problems, path=source) from exc
    except InvalidInputError as exc:
        raise ConfigError(f"{exc.field}: {exc}", path=source) from exc
    except TypeError as exc:  # a stdlib dataclass given a value its __post_init__ cannot compare or use
        raise ConfigError(str(exc), path=source) from exc
    return result
