"""The generator's config: every inconsistency is refused naming its field, YAML problems name the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from journey.datasets.synthetic import DEFAULT_CONFIG_PATH, SegmentConfig, SyntheticConfig
from journey.errors import ConfigError


def _with_matrix(rows: list[list[float]]) -> dict[str, object]:
    base = SyntheticConfig().segments["browser"].model_dump()
    return {"browser": {**base, "transitions": rows, "share": 1.0}}


EXIT_ROW = [0.0, 0.0, 0.0, 0.0, 1.0]
GOOD = [
    [0.5, 0.2, 0.0, 0.0, 0.3],
    [0.3, 0.3, 0.1, 0.0, 0.3],
    [0.0, 0.0, 0.0, 0.5, 0.5],
    [0.0, 0.0, 0.0, 0.5, 0.5],
    EXIT_ROW,
]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([[0.5, 0.2, 0.0, 0.0, 0.2], *GOOD[1:]], "sums to"),
        (GOOD[:4], "must be 5x5"),
        ([[0.5, 0.2, 0.0, 0.0, 0.3, 0.0], *GOOD[1:]], "has 6 values"),
        ([[0.7, 0.2, -0.2, 0.0, 0.3], *GOOD[1:]], "negative"),
        ([*GOOD[:4], [0.0, 0.0, 0.0, 0.5, 0.5]], "absorbing"),
        ([*GOOD[:3], [0.0, 0.0, 0.0, 1.0, 0.0], EXIT_ROW], "unreachable"),
    ],
    ids=["row-sum", "rows", "columns", "negative", "exit-not-absorbing", "no-way-out"],
)
def test_bad_transition_matrix_is_rejected_naming_the_field(rows: list[list[float]], message: str) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        SyntheticConfig.model_validate({"segments": _with_matrix(rows)})
    assert info.value.errors()[0]["loc"] == ("segments", "browser", "transitions")


def test_segment_shares_not_summing_to_one_are_rejected() -> None:
    seg = SyntheticConfig().segments["browser"]
    with pytest.raises(ValidationError, match="shares sum to") as info:
        SyntheticConfig(segments={"a": seg, "b": seg})
    assert info.value.errors()[0]["loc"] == ("segments",)


def test_initial_distribution_must_not_start_in_exit() -> None:
    with pytest.raises(ValidationError, match="initial"):
        SegmentConfig(
            share=1,
            sessions_per_user=1,
            intent=0.5,
            initial=(0.5, 0, 0, 0, 0.5),
            transitions=tuple(tuple(r) for r in GOOD),
        )


@pytest.mark.parametrize("field", ["p_add_to_cart", "p_add_after_repeat_view"])
def test_cart_probabilities_above_one_are_rejected(field: str) -> None:
    with pytest.raises(ValidationError, match="p_remove_from_cart must be <= 1"):
        SyntheticConfig.model_validate({field: 0.97, "p_remove_from_cart": 0.06})


def test_gap_at_or_above_the_timeout_is_rejected() -> None:
    with pytest.raises(ValidationError, match="gap_max_s"):
        SyntheticConfig(gap_max_s=1800)


def test_unknown_config_key_is_rejected() -> None:
    with pytest.raises(ValidationError, match="n_user"):
        SyntheticConfig.model_validate({"n_user": 5})


def test_default_yaml_equals_the_defaults() -> None:
    assert SyntheticConfig.from_yaml(DEFAULT_CONFIG_PATH) == SyntheticConfig()


def test_from_yaml_on_broken_yaml_raises_config_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("n_users: [1, 2\nseed: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken\.yaml") as info:
        SyntheticConfig.from_yaml(path)
    assert info.value.path == str(path)


def test_from_yaml_on_invalid_value_names_file_and_field_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "segments:\n  browser:\n    share: 1.0\n    sessions_per_user: 1\n    intent: 0.5\n"
        "    initial: [1, 0, 0, 0, 0]\n    transitions: [[1, 0, 0, 0, 0]]\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"bad\.yaml.*segments\.browser\.transitions"):
        SyntheticConfig.from_yaml(path)


def test_from_yaml_on_a_missing_file_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml"):
        SyntheticConfig.from_yaml(tmp_path / "nope.yaml")
