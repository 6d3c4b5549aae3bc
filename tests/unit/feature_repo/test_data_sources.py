"""The repo's batch sources: chosen from the environment on import (nothing else happens then), and refused by
`feast apply` when the applied feature_store.yaml's offline store cannot read them."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from journey.contracts import feature_repo_environment
from journey.settings import Profile, Settings
from journey.stores.connections import feast_environment
from journey.stores.feature_store import repo_config

REPO = Path(__file__).resolve().parents[3] / "feature_repo"
BATCH = ("user_activity", "item_popularity", "session_activity", "user_profile")
JOURNEY_VARIABLES = ("JOURNEY_PROFILE", "JOURNEY_DATA_DIR", "JOURNEY_OFFLINE_SCHEMA", "JOURNEY_ADMIN_TOKEN")

Importer = Callable[[], ModuleType]


@pytest.fixture
def import_sources(monkeypatch: pytest.MonkeyPatch) -> Iterator[Importer]:
    """Imports `data_sources` anew each call (as Feast does, by bare name from the repo folder), with no JOURNEY_*
    variable set unless the test sets one."""
    for name in JOURNEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.syspath_prepend(str(REPO))

    def fresh() -> ModuleType:
        sys.modules.pop("data_sources", None)
        return importlib.import_module("data_sources")

    yield fresh
    sys.modules.pop("data_sources", None)


def _batch(module: ModuleType) -> dict[str, Any]:
    return {view: getattr(module, f"{view}_source") for view in BATCH}


def test_prod_sources_come_from_the_environment_without_settings_or_side_effects(
    import_sources: Importer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("JOURNEY_PROFILE", "prod")  # and no admin token: journey.settings would refuse to load
    monkeypatch.setenv("JOURNEY_OFFLINE_SCHEMA", "shop_eu")
    monkeypatch.setenv("JOURNEY_DATA_DIR", str(tmp_path / "never"))
    sources = _batch(import_sources())
    assert {view: source.get_table_query_string() for view, source in sources.items()} == {
        view: f"shop_eu.{view}" for view in BATCH
    }
    assert not (tmp_path / "never").exists()


def test_local_sources_are_parquet_files_in_the_data_folder(
    import_sources: Importer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("JOURNEY_DATA_DIR", str(tmp_path / "data"))
    module = import_sources()
    assert {view: s.path for view, s in _batch(module).items()} == {
        view: str(tmp_path / "data" / "offline" / f"{view}.parquet") for view in BATCH
    }
    assert module.session_activity_push.batch_source is module.session_activity_source
    assert not (tmp_path / "data").exists()


def test_journeys_apply_environment_wins_over_the_process_environment(
    import_sources: Importer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("JOURNEY_PROFILE", "prod")
    local = Settings(profile=Profile.LOCAL, data_dir=tmp_path)
    with feature_repo_environment(feast_environment(local)):
        module = import_sources()
    assert module.user_activity_source.path == str(local.offline_dir / "user_activity.parquet")


def test_an_unknown_profile_is_named(import_sources: Importer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNEY_PROFILE", "staging")
    with pytest.raises(ValueError, match="JOURNEY_PROFILE='staging'"):
        import_sources()


def test_parquet_sources_refuse_the_prod_yaml(import_sources: Importer) -> None:
    """`feast -f prod/feature_store.yaml apply` without JOURNEY_PROFILE=prod: Feast validates every batch source
    before it writes anything, and these fail."""
    prod_config = repo_config(Settings(profile=Profile.PROD, admin_token="a-real-secret"))
    for view, source in _batch(import_sources()).items():
        with pytest.raises(ValueError, match=rf"{view}_source is a file source .*offline store is 'postgres'"):
            source.validate(prod_config)


def test_postgres_sources_refuse_the_local_yaml(
    import_sources: Importer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("JOURNEY_PROFILE", "prod")
    local_config = repo_config(Settings(profile=Profile.LOCAL, data_dir=tmp_path))
    with pytest.raises(ValueError, match=r"postgres source .*offline store is 'file'"):
        import_sources().user_activity_source.validate(local_config)


def test_sources_accept_their_own_profiles_yaml(
    import_sources: Importer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("JOURNEY_DATA_DIR", str(tmp_path))
    local_config = repo_config(Settings(profile=Profile.LOCAL, data_dir=tmp_path))
    for source in _batch(import_sources()).values():
        source.validate(local_config)  # a missing Parquet file is Feast's warning, not an error
    monkeypatch.setenv("JOURNEY_PROFILE", "prod")
    prod_config = repo_config(Settings(profile=Profile.PROD, admin_token="a-real-secret"))
    for source in _batch(import_sources()).values():
        source.validate(prod_config)


def test_sources_are_feasts_own_classes_so_the_registry_can_read_them_back(import_sources: Importer) -> None:
    from feast import FileSource
    from feast.data_source import DataSource

    source = import_sources().user_activity_source
    assert type(source) is FileSource
    assert DataSource.from_proto(source.to_proto()) == source
