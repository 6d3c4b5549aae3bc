"""One feature_store.yaml per profile: Journey's in-code config is the YAML as `feast -f` reads it, never a copy.

`feast -f` (Feast's `load_repo_config`) substitutes os.environ into the file; Journey substitutes the variables its
settings imply (`feast_environment`). Under that environment both must give the same RepoConfig, or a Feast user's
`feast serve` / `feast materialize-incremental` would read other stores than Journey's services.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from journey.contracts import DEFAULT_DATA_DIR
from journey.errors import InvalidInputError
from journey.settings import Profile, Settings
from journey.stores.connections import feast_environment
from journey.stores.feature_store import (
    FEATURE_REPO,
    FEATURE_STORE_YAML,
    load_feature_store_yaml,
    local_overrides,
    repo_config,
)

# a password YAML would misread unquoted (digits, ": ", " #") and one with a quote (YAML's '' escape)
AWKWARD_DSN = "postgresql+psycopg://feast:12%27%3A%20%23x@pg.internal:6432/features?sslmode=require"


def _prod(**overrides: Any) -> Settings:
    return Settings(profile=Profile.PROD, admin_token="a-real-secret", **overrides)


def _as_feast_reads_it(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Any:
    from feast.repo_config import load_repo_config

    for name, value in feast_environment(settings).items():
        monkeypatch.setenv(name, value)
    return load_repo_config(FEATURE_REPO, FEATURE_STORE_YAML[settings.profile])


def _assert_same(ours: Any, feasts: Any) -> None:
    assert ours.model_dump() == feasts.model_dump()
    assert (ours.registry, ours.online_store, ours.offline_store) == (
        feasts.registry,
        feasts.online_store,
        feasts.offline_store,
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {
            "postgres_dsn": AWKWARD_DSN,
            "redis_url": "redis://:s3cret@redis.internal:6380/2",
            "feast_project": "shop_eu",
            "offline_schema": "features_eu",
        },
    ],
    ids=["defaults", "other-stores"],
)
def test_prod_config_is_the_prod_yaml_under_the_printed_environment(
    overrides: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _prod(**overrides)
    ours = repo_config(settings)
    _assert_same(ours, _as_feast_reads_it(settings, monkeypatch))
    assert ours.project == settings.feast_project
    assert ours.registry.path == settings.postgres_dsn


def test_prod_yaml_carries_awkward_passwords_and_connection_strings_intact() -> None:
    config = repo_config(_prod(postgres_dsn=AWKWARD_DSN, redis_url="rediss://:pw@r:6380/3"))
    pg = config.offline_store
    assert (pg.host, pg.port, pg.database, pg.user, pg.password, pg.sslmode) == (
        "pg.internal",
        6432,
        "features",
        "feast",
        "12': #x",
        "require",
    )
    assert config.online_store.connection_string == "r:6380,db=3,password=pw,ssl=true"


def test_local_config_is_the_local_yaml_with_the_default_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("JOURNEY_DATA_DIR", "JOURNEY_FEAST_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(profile=Profile.LOCAL)
    assert settings.data_dir == DEFAULT_DATA_DIR  # journey.contracts' default is the settings' default
    _assert_same(repo_config(settings), _as_feast_reads_it(settings, monkeypatch))
    assert local_overrides(settings) == {}


def test_local_config_moves_only_project_and_files_to_the_settings(tmp_path: Path) -> None:
    settings = Settings(profile=Profile.LOCAL, data_dir=tmp_path / "data", feast_project="other")
    from feast.repo_config import load_repo_config

    ours, written = repo_config(settings), load_repo_config(FEATURE_REPO, FEATURE_STORE_YAML[Profile.LOCAL])
    assert ours.project == "other" and ours.registry.path == str(settings.feast_dir / "registry.db")
    assert ours.online_store.path == str(settings.feast_dir / "online.db")
    assert settings.feast_dir.is_dir()  # Feast's file registry creates one folder level only
    relocated = {"project", "registry_config", "online_config"}
    assert {k: v for k, v in ours.model_dump().items() if k not in relocated} == {
        k: v for k, v in written.model_dump().items() if k not in relocated
    }
    assert set(local_overrides(settings)) == {"project", "registry.path", "online_store.path"}


def test_every_variable_of_the_prod_yaml_is_set_by_journey_and_none_is_left_over() -> None:
    text = FEATURE_STORE_YAML[Profile.PROD].read_text(encoding="utf-8")
    config_lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    named = set(re.findall(r"\$\{(\w+)\}", "\n".join(config_lines)))
    assert named == set(feast_environment(_prod())) - {"JOURNEY_PROFILE"}  # the profile is for the sources


def test_no_connection_detail_is_written_in_a_yaml() -> None:
    prod = yaml.safe_load(FEATURE_STORE_YAML[Profile.PROD].read_text(encoding="utf-8"))
    secrets = [prod["registry"]["path"], prod["online_store"]["connection_string"]]
    secrets += [prod["offline_store"][k] for k in ("host", "database", "user", "password")]
    assert all(re.fullmatch(r"\$\{JOURNEY_\w+\}", str(value)) for value in secrets), secrets


def test_an_unset_variable_is_named(tmp_path: Path) -> None:
    yaml_file = tmp_path / "feature_store.yaml"
    yaml_file.write_text("project: ${JOURNEY_FEAST_PROJECT}\nregistry: ${NOT_SET_ANYWHERE}\n")
    with pytest.raises(InvalidInputError, match="NOT_SET_ANYWHERE"):
        load_feature_store_yaml(yaml_file, {"JOURNEY_FEAST_PROJECT": "p"})


def test_a_dsn_with_a_raw_quote_is_refused_with_the_fix() -> None:
    with pytest.raises(InvalidInputError, match="%27"):
        feast_environment(_prod(postgres_dsn="postgresql+psycopg://u:it's@h/db"))
