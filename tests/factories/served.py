"""Model versions for serving tests: small real propensity models (no Feast needed), and copies of a trained
production version as further versions (routing tests against a real server).

`register_propensity(settings, count)` registers `count` purchase_propensity versions (v1 in production, the others
staging) whose scores differ per version, so a test can tell from an answer which version gave it. Their only
stored-feature-free input is `candidate_price`: a predictor without an online store (reader None) serves them from
the request alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from journey.registry import ModelVersion, Registry
from journey.settings import Settings

PURCHASE_MODEL = "purchase_propensity"
FEATURE_ORDER = ("candidate_price", "f1", "f2")


def propensity_onnx(path: Path, version: int) -> tuple[Path, str]:
    """An XGBoost classifier exported through training.export: P(buy) falls with price for odd versions and rises
    for even ones."""
    import xgboost

    from training.export import export_xgboost

    rng = np.random.default_rng(version)
    x = rng.uniform(0, 100, size=(400, len(FEATURE_ORDER))).astype(np.float32)
    cheap = x[:, 0] < 50
    y = (cheap if version % 2 else ~cheap).astype(int)
    model = xgboost.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1, random_state=version)
    model.fit(x[:300], y[:300])
    report = export_xgboost(model, list(FEATURE_ORDER), x[300:], path)
    return report.path, report.sha256


def register_propensity(settings: Settings, tmp: Path, count: int, *, actor: str = "test") -> list[ModelVersion]:
    """purchase_propensity v1..v<count>; v1 promoted to production."""
    versions = []
    with Registry(settings) as registry:
        for i in range(1, count + 1):
            path, sha = propensity_onnx(tmp / f"propensity-{i}.onnx", i)
            versions.append(
                registry.register(
                    name=PURCHASE_MODEL,
                    onnx_path=path,
                    expected_sha256=sha,
                    framework="xgboost",
                    feature_service="purchase_propensity_v1",
                    metrics={},
                    data_window={},
                    params={"feature_order": list(FEATURE_ORDER), "classes": [0, 1]},
                    actor=actor,
                )
            )
        registry.promote(PURCHASE_MODEL, 1, actor)
    return versions


def register_copy(
    settings: Settings, name: str, *, actor: str = "test", source: Settings | None = None
) -> ModelVersion:
    """The production version of `name` registered again as a new (staging) version: the cheapest second version
    a routing test can send traffic to (same scores, its own version number and variant). With `source`, the
    production version of that registry is copied into the one of `settings` (a deployment of its own)."""
    with Registry(source or settings) as origin, Registry(settings) as registry:
        source_version = origin.get(name, "production")
        return registry.register(
            name=source_version.name,
            onnx_path=origin.artifact_path(source_version),
            expected_sha256=source_version.onnx_sha256,
            framework=source_version.framework,
            feature_service=source_version.feature_service,
            metrics=source_version.metrics,
            data_window=source_version.data_window,
            params=source_version.params,
            report_path=source_version.report_path,
            actor=actor,
        )
