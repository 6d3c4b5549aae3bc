"""Hyper-parameters from YAML and command-line options (training/configs.py): defaults, then the file, then the
options; every problem a ConfigError that names where it came from and the key. The shipped configs/*.yaml are
the defaults, so they document what a run does when given nothing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from journey.errors import ConfigError, InvalidInputError
from training.configs import COMMAND_LINE, load_config
from training.models.next_action import NextActionConfig
from training.models.next_item import NextItemConfig, SASRecConfig
from training.models.next_item.sknn import SknnConfig

ROOT = Path(__file__).resolve().parents[3]


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("name", "config_type"),
    [("next_item_gru4rec", NextItemConfig), ("next_item_sasrec", SASRecConfig), ("next_action", NextActionConfig)],
)
def test_the_shipped_configs_are_the_defaults_key_for_key(name: str, config_type: type) -> None:
    assert load_config(config_type, ROOT / "configs" / f"{name}.yaml") == config_type()


def test_the_file_sets_what_it_names_and_options_override_it(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "max_steps: 3000\nbatch_size: 128\nlayers: 3\nselect: mrr\n")
    config = load_config(SASRecConfig, path, {"batch_size": 512, "lr": None, "search_trials": 4})
    assert (config.max_steps, config.batch_size, config.layers, config.select) == (3000, 512, 3, "mrr")
    assert config.lr == SASRecConfig().lr and config.search_trials == 4  # None: an option not given
    assert load_config(SASRecConfig) == SASRecConfig()
    assert load_config(SASRecConfig, _yaml(tmp_path, "")) == SASRecConfig()  # an empty file: the defaults


def test_an_unknown_key_is_refused_naming_the_file_and_the_key(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "max_steps: 100\nbatch_sise: 64\n")
    with pytest.raises(ConfigError) as raised:
        load_config(NextItemConfig, path)
    assert raised.value.path == str(path) and "batch_sise: unknown key" in str(raised.value)
    assert raised.value.exit_code == 2


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("max_steps: 0\n", "max_steps"),
        ("lr: fast\n", "lr"),
        ("select: precision\n", "select"),
        ("dropout: 1.5\n", "dropout"),
    ],
)
def test_a_bad_value_is_refused_naming_the_file_and_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = _yaml(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_config(SASRecConfig, path)
    assert str(raised.value).startswith(f"{path}: {key}: ")


def test_a_bad_option_is_refused_naming_the_command_line() -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(NextActionConfig, None, {"arch": "lstm"})
    assert raised.value.path == COMMAND_LINE and "arch" in str(raised.value)
    with pytest.raises(ConfigError, match="max_steps: unknown key"):
        load_config(SknnConfig, None, {"max_steps": 10})  # an index kind has no step budget


def test_a_file_that_is_no_mapping_or_no_yaml_is_refused(tmp_path: Path) -> None:
    for text in ("- 1\n- 2\n", "a: [1\n"):
        with pytest.raises(ConfigError) as raised:
            load_config(NextItemConfig, _yaml(tmp_path, text))
        assert raised.value.path == str(tmp_path / "config.yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(NextItemConfig, tmp_path / "missing.yaml")


def test_a_stdlib_dataclass_config_is_checked_by_its_own_post_init(tmp_path: Path) -> None:
    @dataclass(frozen=True)
    class Small:
        k: int = 3

        def __post_init__(self) -> None:
            if self.k < 1:
                raise InvalidInputError("k must be >= 1", field="k", value=self.k)

    assert load_config(Small, _yaml(tmp_path, "k: 5\n")) == Small(5)
    with pytest.raises(ConfigError, match=r"k: k must be >= 1"):
        load_config(Small, _yaml(tmp_path, "k: 0\n"))
