"""Training a next_item version of any kind: split, fit the chosen kind, export it, and judge it beside every baseline.

    train_next_item(frame, onnx_path, kind="gru4rec", ...) -> TrainingRun (pipeline.py evaluates, gates, registers)

One run: the time split of a next_item_v1 training frame (train, validation, test days); the inputs as serving builds
them (`journey.model_inputs.next_item_inputs`, `NextItemConfig.seq_len` steps); the chosen kind fitted on the
training days (tuning or stopping early on the validation days, never on the test days); its graph exported with
`top_k` = min(config.top_k, its vocabulary) and parity-checked on the first `holdout_rows` test rows; then every
baseline kind (kinds.BASELINES, the chosen one aside), fitted with its defaults and the same seed on the same rows,
and all of them asked for `eval_k` items on the validation days (the promotion gate's rows) and the test days (the
report's). Every version is a `next_item` version whatever its kind: params["kind"] says which, params["config"] its
hyper-parameters, params["index"] the size of an index kind's tables. With kind "auto" every kind is fitted and
the best on the validation days is exported (selection.py; params["selection"] records every kind's figures).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from journey.contracts import NEXT_ITEM_MODEL, NEXT_ITEM_V1
from journey.errors import InvalidInputError
from journey.model_inputs import next_item_inputs
from training.labels import LABEL, label_ids
from training.models.next_item.base import Inputs, LearningCurves, Recommender, SessionData, pad_columns
from training.models.next_item.gru import NextItemConfig
from training.models.next_item.kinds import AUTO, BASELINES, DEFAULT_KIND, GRU4REC, KINDS, Kind, kind_named
from training.models.next_item.selection import select_on_validation
from training.runs import Candidate, TrainingRun, session_groups, with_validation
from training.splits import TimeSplit, time_split
from training.torch_loop import Progress

log = logging.getLogger(__name__)

MODEL_NAME: Final = NEXT_ITEM_MODEL
PARTS: Final = ("train", "valid", "test")


def train_next_item(
    frame: pd.DataFrame,
    onnx_path: Path,
    *,
    kind: str = DEFAULT_KIND,
    config: NextItemConfig | None = None,
    kind_config: Any = None,
    seed: int = 42,
    progress: Progress | None = None,
) -> TrainingRun:
    """Fit `kind` on the earlier days of a next_item_v1 training set, export it to `onnx_path` (parity-checked) and
    score it and every baseline on the validation and test days.

    `config` sets the run (seq_len, top_k, holdout_rows, min_split_rows, eval_k) and is the GRU's hyper-parameters;
    `kind_config` is the kind's own config (its defaults when None; a neural kind's, without `config`, also sets the
    run). `kind="auto"` fits every kind and keeps the best on the validation days (selection.py; `kind_config` is
    then GRU4Rec's, the other kinds take their defaults; the losers are reported beside it like baselines).
    Raises InvalidInputError for an unknown kind (field "kind"), a frame without integer labels (field "label"), too
    few rows (field "rows") or a training split whose labels are all one item (nothing to rank, field "label").
    """
    if kind != AUTO:
        kind_named(kind)  # an unknown kind is refused before any work
    config = _run_config(config, kind_config)
    own_config = config if kind in (GRU4REC, AUTO) and kind_config is None else kind_config
    split, labels = _split(frame, config)
    started = time.perf_counter()
    inputs = {name: next_item_inputs(getattr(split, name), config.input_spec()) for name in PARTS}
    sessions = {name: session_groups(getattr(split, name)) for name in ("train", "valid")}
    data = SessionData(inputs["train"], labels["train"], inputs["valid"], labels["valid"], *sessions.values())
    seconds = {"inputs": time.perf_counter() - started}
    started = time.perf_counter()
    kind, model, others, selection = _fit(kind, data, seed, own_config, progress, config)
    seconds["fit"] = time.perf_counter() - started
    k = min(config.top_k, int(model.params()["vocabulary_size"]))
    started = time.perf_counter()
    holdout = {name: values[: config.holdout_rows] for name, values in inputs["test"].items()}
    report = model.export(onnx_path, holdout, k)
    seconds["export"] = time.perf_counter() - started
    started = time.perf_counter()
    baselines = others or {name: kind_named(name).fit(data, seed) for name in BASELINES if name != kind}
    seconds["baselines"] = time.perf_counter() - started
    candidates = _candidates(kind, model, baselines, inputs, min(config.eval_k, config.top_k), config.eval_k)
    log.info("next-item model trained", extra={"kind": kind, "rows": split.summary.rows, "path": str(onnx_path)})
    return TrainingRun(
        model_name=MODEL_NAME,
        framework=kind_named(kind).framework,
        feature_service=NEXT_ITEM_V1,
        export=report,
        feature_order=config.input_spec().source_features,
        classes=(),
        labels=labels["test"],
        candidates=candidates,
        split=split.summary,
        params=_params(model, config, seed, k, baselines) | ({"selection": selection} if selection else {}),
        history=model.curves() if isinstance(model, LearningCurves) else {},
        seconds=seconds,
        valid_labels=labels["valid"],
        valid_groups=session_groups(split.valid),
    )


def _fit(
    kind: str, data: SessionData, seed: int, own_config: Any, progress: Progress | None, run: NextItemConfig
) -> tuple[str, Recommender, dict[str, Recommender], dict[str, Any] | None]:
    """The kind fitted: (its name, the model, {}, None); for "auto" every kind fitted on the same rows with the same
    seed (`own_config` for GRU4Rec; the others their defaults, a network's inputs the run's) and the best on the
    validation days chosen: (its name, its model, the other fitted kinds, the selection record)."""
    if kind != AUTO:
        return kind, kind_named(kind).fit(data, seed, config=own_config, progress=progress), {}, None
    fitted = {
        name: each.fit(
            data, seed, config=own_config if name == GRU4REC else _defaults_for(each, run), progress=progress
        )
        for name, each in KINDS.items()
    }
    chosen, selection = select_on_validation(
        fitted, data.valid, data.valid_labels, run.eval_k, simple=BASELINES, groups=data.valid_sessions
    )
    log.info("next-item kind selected on the validation days", extra={"kind": chosen, **selection})
    return chosen, fitted[chosen], {name: m for name, m in fitted.items() if name != chosen}, selection


def _defaults_for(kind: Kind, run: NextItemConfig) -> Any:
    """`kind`'s default config, with the run's input fields when it has them (a network reads the run's inputs)."""
    fields = getattr(kind.config_type, "__dataclass_fields__", {})
    return kind.config_type(**{name: getattr(run, name) for name in RUN_FIELDS if name in fields})


RUN_FIELDS: Final = ("seq_len", "top_k", "eval_k", "holdout_rows", "min_split_rows")


def _run_config(config: NextItemConfig | None, kind_config: Any) -> NextItemConfig:
    """The run's settings: `config`; else those a neural kind's config carries (its inputs must be the run's);
    else the defaults."""
    if config is not None:
        return config
    if kind_config is not None and all(hasattr(kind_config, name) for name in RUN_FIELDS):
        return NextItemConfig(**{name: getattr(kind_config, name) for name in RUN_FIELDS})
    return NextItemConfig()


def _candidates(
    kind: str,
    model: Recommender,
    baselines: dict[str, Recommender],
    inputs: dict[str, Inputs],
    served: int,
    width: int,
) -> tuple[Candidate, ...]:
    """The model then each baseline: the `served` items a graph of the run's top_k answers (-1 past what a kind can
    name), padded to `width` columns; on the test days (the report) and the validation days (the gate)."""
    fitted = {kind: model, **baselines}

    def lists(part: str) -> list[Candidate]:
        return [
            Candidate(name, pad_columns(m.recommend(inputs[part], served)[0], width), is_model=name == kind)
            for name, m in fitted.items()
        ]

    return with_validation(lists("test"), lists("valid"))


def _split(frame: pd.DataFrame, config: NextItemConfig) -> tuple[TimeSplit, dict[str, np.ndarray]]:
    """The time split and its item-id labels; refuses bad labels (before any work) and a single training item."""
    label_ids(frame)
    split = time_split(frame, min_rows=config.min_split_rows)
    labels = {name: label_ids(getattr(split, name)) for name in PARTS}
    if len(np.unique(labels["train"])) < 2:
        raise InvalidInputError(
            f"every training example's next item is {labels['train'][0]}: nothing to rank",
            field=LABEL,
            value=int(labels["train"][0]),
        )
    return split, labels


def _params(
    model: Recommender, config: NextItemConfig, seed: int, k: int, baselines: dict[str, Recommender]
) -> dict[str, Any]:
    """What the registry keeps: the kind's own params, the seed, the inputs serving must build (input_spec, with the
    graph's top_k), and how each baseline beside it was fitted (its chosen config and index sizes)."""
    run = {name: getattr(config, name) for name in ("seq_len", "top_k", "eval_k", "holdout_rows", "min_split_rows")}
    return {
        **model.params(),
        "seed": seed,
        "run": run,
        "input_spec": {**config.input_spec().to_dict(), "top_k": k},
        "baselines": {
            name: {key: value for key, value in b.params().items() if key in ("config", "index", "vocabulary_size")}
            for name, b in baselines.items()
        },
    }
