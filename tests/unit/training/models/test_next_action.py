"""The next-action trainer: ONNX parity and the serving path, determinism, refusals, and the two baselines.

The training frame is built without Feast (the Feast path is tested in test_datasets.py): labelled entities from a
small synthetic shop, the session state at each decision time from `session_rows` (what the offline store holds),
and pseudo user features with gaps. A tiny network keeps each run to a few seconds; the export dominates.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest

from journey.contracts import USER_ACTIVITY_FEATURES
from journey.errors import InvalidInputError
from journey.model_inputs import DEFAULT_DENSE_FEATURES, NextActionInputSpec, next_action_inputs
from journey.onnx_contract import EXPORTER_TORCH_DYNAMO, NEXT_ACTION_INPUT_NAMES, NEXT_ACTION_OUTPUT_NAME
from tests.factories.session_frames import session_training_frame
from training.export import read_metadata
from training.labels import NEXT_ACTION_LABELS, next_action_entities
from training.models.baselines import LAST_ACTION_REPEAT, MARKOV_FIRST_ORDER
from training.models.next_action import NextActionConfig, class_weights, train_next_action
from training.runs import TrainingRun
from training.splits import time_split

TINY = NextActionConfig(
    item_buckets=256,
    category_buckets=32,
    type_dim=4,
    item_dim=4,
    category_dim=4,
    hidden=16,
    dense_hidden=16,
    epochs=3,
    batch_size=256,
    holdout_rows=64,
    max_threads=1,
)
SEED = 11


def _frame() -> pd.DataFrame:
    """A next_action_v1 training frame: entities, the session state at t, user features (some missing)."""
    joined = session_training_frame(next_action_entities)
    rng = np.random.default_rng(5)
    for name in USER_ACTIVITY_FEATURES:
        joined[name] = np.where(rng.random(len(joined)) < 0.3, np.nan, rng.poisson(4.0, len(joined)))
    return joined


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return _frame()


@pytest.fixture(scope="module")
def run(frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> TrainingRun:
    path = tmp_path_factory.mktemp("next_action") / "model.onnx"
    return train_next_action(frame, path, config=TINY, seed=SEED)


def _session(path: Path) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.slow  # the module's training run + export: ~15 s once
def test_the_export_is_parity_checked_with_named_inputs_and_probabilities_out(run: TrainingRun) -> None:
    report = run.export
    assert report.exporter == EXPORTER_TORCH_DYNAMO
    assert report.input_names == NEXT_ACTION_INPUT_NAMES
    assert report.output_names == (NEXT_ACTION_OUTPUT_NAME,)
    assert {1, 7, 1024, TINY.holdout_rows} <= set(report.max_abs_diff)
    assert report.parity_max_abs_diff <= 1e-4
    assert json.loads(read_metadata(report.path)["journey.input_names"]) == list(NEXT_ACTION_INPUT_NAMES)


@pytest.mark.slow  # the module's training run + export: ~15 s once
def test_onnx_on_inputs_built_as_serving_builds_them_reproduces_the_test_scores(
    run: TrainingRun, frame: pd.DataFrame
) -> None:
    spec = NextActionInputSpec.from_dict(json.loads(json.dumps(run.params["input_spec"])))
    test = time_split(frame, min_rows=TINY.min_split_rows).test
    # the online reader's shape: a dict of python lists, None where a value is missing
    online = {name: [None if _missing(v) else _plain(v) for v in test[name]] for name in spec.source_features}
    (probabilities,) = _session(run.export.path).run(None, next_action_inputs(online, spec))
    assert probabilities.shape == (len(test), len(NEXT_ACTION_LABELS))
    np.testing.assert_allclose(probabilities, run.model.scores, atol=1e-5)


def _missing(value: object) -> bool:
    return isinstance(value, float) and np.isnan(value)


def _plain(value: object) -> object:
    return value.tolist() if isinstance(value, np.ndarray) else value


@pytest.mark.slow  # the module's training run + export: ~15 s once
def test_an_unknown_session_and_user_still_get_probabilities(run: TrainingRun) -> None:
    spec = NextActionInputSpec.from_dict(run.params["input_spec"])
    unknown = {key: [None, None] for key in spec.source_features}
    (probabilities,) = _session(run.export.path).run(None, next_action_inputs(unknown, spec))
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.slow  # the module's training run + export: ~15 s once
def test_the_run_carries_the_model_then_the_baselines_scored_on_the_test_days(
    run: TrainingRun, frame: pd.DataFrame
) -> None:
    assert (run.model_name, run.framework, run.feature_service) == ("next_action", "pytorch", "next_action_v1")
    assert run.classes == NEXT_ACTION_LABELS
    assert [(c.name, c.is_model) for c in run.candidates] == [
        ("gru", True),
        (LAST_ACTION_REPEAT, False),
        (MARKOV_FIRST_ORDER, False),
    ]
    n = run.split.rows["test"]
    assert sum(run.split.rows.values()) == len(frame)
    assert run.labels.shape == (n,) and set(np.unique(run.labels)) <= set(range(len(NEXT_ACTION_LABELS)))
    for candidate in run.candidates:
        assert candidate.scores.shape == (n, len(NEXT_ACTION_LABELS))
        np.testing.assert_allclose(candidate.scores.sum(axis=1), 1.0, atol=1e-5)
    assert run.feature_order == (
        "session_last_item_ids",
        "session_last_event_types",
        "session_last_event_ts",
        "session_last_category_ids",
        *DEFAULT_DENSE_FEATURES,
    )
    assert len(run.history["train_loss"]) == len(run.history["valid_loss"]) == run.params["epochs_run"] >= 1
    assert set(run.seconds) == {"inputs", "fit", "export"}
    assert json.loads(json.dumps(run.params))["seed"] == SEED


def test_the_exported_graph_records_no_source_file_or_line(run: TrainingRun) -> None:
    """So the bytes (and the registry's sha256) do not depend on where the training code was checked out."""
    model = onnx.load(str(run.export.path))
    keys = {p.key for node in model.graph.node for p in node.metadata_props}

    assert model.graph.node and not any("stack_trace" in key for key in keys)
    assert str(Path(__file__).resolve().parents[4]) not in model.SerializeToString().decode("latin-1")


@pytest.mark.slow
def test_the_same_seed_gives_the_same_onnx_model(run: TrainingRun, frame: pd.DataFrame, tmp_path: Path) -> None:
    again = train_next_action(frame, tmp_path / "again.onnx", config=TINY, seed=SEED)
    assert again.export.sha256 == run.export.sha256  # byte-identical: the registry's hash names the same model
    np.testing.assert_array_equal(again.model.scores, run.model.scores)
    assert again.history == run.history

    other = train_next_action(frame, tmp_path / "other.onnx", config=replace(TINY, epochs=1), seed=SEED + 1)
    assert not np.array_equal(other.model.scores, run.model.scores)


@pytest.fixture(scope="module")
def transformer(frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> TrainingRun:
    """The transformer encoder, on a step budget: 40 steps, evaluated every 10."""
    config = replace(TINY, arch="transformer", heads=2, layers=1, max_steps=40, eval_every=10)
    return train_next_action(frame, tmp_path_factory.mktemp("transformer") / "model.onnx", config=config, seed=SEED)


@pytest.mark.slow  # one more training run + export: ~20 s once
def test_the_transformer_is_exported_with_parity_and_answers_as_serving_builds_its_inputs(
    transformer: TrainingRun, frame: pd.DataFrame
) -> None:
    report = transformer.export
    assert report.exporter == EXPORTER_TORCH_DYNAMO and report.parity_max_abs_diff <= 1e-4
    assert {1, 7, 1024, TINY.holdout_rows} <= set(report.max_abs_diff)
    assert [(c.name, c.is_model) for c in transformer.candidates] == [
        ("transformer", True),
        (LAST_ACTION_REPEAT, False),
        (MARKOV_FIRST_ORDER, False),
    ]
    spec = NextActionInputSpec.from_dict(transformer.params["input_spec"])
    test = time_split(frame, min_rows=TINY.min_split_rows).test
    online = {name: [None if _missing(v) else _plain(v) for v in test[name]] for name in spec.source_features}
    (probabilities,) = _session(report.path).run(None, next_action_inputs(online, spec))
    np.testing.assert_allclose(probabilities, transformer.model.scores, atol=1e-5)
    (unknown,) = _session(report.path).run(None, next_action_inputs({k: [None] for k in spec.source_features}, spec))
    assert np.isfinite(unknown).all() and unknown.sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
def test_a_step_budget_evaluates_every_eval_every_steps(transformer: TrainingRun) -> None:
    assert transformer.params["config"]["arch"] == "transformer" and transformer.params["config"]["max_steps"] == 40
    assert transformer.params["epochs_run"] == len(transformer.history["valid_loss"]) <= 4  # evaluations


def test_a_transformer_width_its_heads_do_not_divide_is_refused(frame: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as raised:
        train_next_action(frame, tmp_path / "m.onnx", config=replace(TINY, arch="transformer", hidden=15, heads=2))
    assert raised.value.field == "heads"


def test_a_single_class_in_the_training_days_is_refused(frame: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="nothing to learn") as raised:
        train_next_action(frame.assign(label="view"), tmp_path / "m.onnx", config=TINY)
    assert raised.value.field == "label"
    assert not (tmp_path / "m.onnx").exists()


def test_too_few_rows_and_unknown_labels_are_refused(frame: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as few:
        train_next_action(frame.head(30), tmp_path / "m.onnx", config=TINY)
    assert few.value.field == "rows"
    bad = frame.copy()
    bad.loc[3, "label"] = "click"
    with pytest.raises(InvalidInputError, match="'click'") as unknown:
        train_next_action(bad, tmp_path / "m.onnx", config=TINY)
    assert unknown.value.field == "label"
    with pytest.raises(InvalidInputError, match="no 'label' column"):
        train_next_action(frame.drop(columns=["label"]), tmp_path / "m.onnx", config=TINY)


# --------------------------------------------------------------------------------------------------------------
# Helpers (no training); the baselines are tested in test_baselines.py
# --------------------------------------------------------------------------------------------------------------

VIEW, CART, BUY = 0, 1, 3  # NEXT_ACTION_LABELS order


def test_sqrt_inverse_weights_favour_rare_classes_and_average_to_one() -> None:
    labels = np.array([VIEW] * 90 + [CART] * 9 + [BUY])
    assert class_weights(labels, "none").tolist() == [1.0] * 5
    w = class_weights(labels, "sqrt_inverse")
    assert w[BUY] > w[CART] > w[VIEW]
    assert w[labels].mean() == pytest.approx(1.0)
    with pytest.raises(InvalidInputError):
        class_weights(labels, "inverse")
