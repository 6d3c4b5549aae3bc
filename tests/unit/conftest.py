"""Unit-test fixtures: a small synthetic shop with features built and the Feast repo applied (session-scoped).

Built once per session (about 20 s): the trainers and the pipeline are tested on real point-in-time training
sets, not on frames shaped by hand to look like one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from journey.contracts import NEXT_ACTION_V1, PURCHASE_PROPENSITY_V1
from journey.datasets.store import DatasetStore
from journey.datasets.synthetic import SyntheticConfig, generate
from journey.settings import Profile, Settings

SHOP = "shop"


@dataclass(frozen=True)
class Shop:
    settings: Settings
    dataset: str
    propensity: pd.DataFrame
    next_action: pd.DataFrame


@pytest.fixture(scope="session")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Shop:
    from journey.stores.feature_store import apply, opened_store
    from training.datasets import build_training_set
    from training.pipeline import build_offline

    root: Path = tmp_path_factory.mktemp("shop")
    settings = Settings(profile=Profile.LOCAL, data_dir=root / "data", reports_dir=root / "reports")
    data = generate(SyntheticConfig(n_users=2_000, n_items=2_000, days=14, seed=11))
    DatasetStore(settings.events_dir).write(SHOP, data.events, source={"kind": "synthetic"})
    build_offline(SHOP, settings)
    apply(settings)
    with opened_store(settings) as store:
        propensity, _ = build_training_set(SHOP, PURCHASE_PROPENSITY_V1, settings, store=store, max_examples=30_000)
        next_action, _ = build_training_set(SHOP, NEXT_ACTION_V1, settings, store=store, max_examples=30_000)
    return Shop(settings, SHOP, propensity, next_action)
