from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from journey.settings import LOCAL_DEV_ADMIN_TOKEN, Profile, Settings


def test_defaults_to_the_embedded_local_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNEY_PROFILE", raising=False)
    s = Settings()
    assert s.profile is Profile.LOCAL
    assert s.admin_token is not None and s.admin_token.get_secret_value() == LOCAL_DEV_ADMIN_TOKEN


def test_reads_journey_prefixed_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JOURNEY_REDIS_URL", "redis://cache.internal:6380/2")
    monkeypatch.setenv("JOURNEY_DATA_DIR", str(tmp_path / "d"))
    s = Settings()
    assert s.redis_url == "redis://cache.internal:6380/2"
    assert s.data_dir == (tmp_path / "d").resolve()


def test_relative_paths_are_resolved_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNEY_DATA_DIR", "some/rel")
    assert Settings().data_dir.is_absolute()


def test_prod_profile_refuses_a_missing_admin_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNEY_PROFILE", "prod")
    monkeypatch.delenv("JOURNEY_ADMIN_TOKEN", raising=False)
    with pytest.raises(ValidationError, match="JOURNEY_ADMIN_TOKEN"):
        Settings()


def test_prod_profile_refuses_the_local_dev_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNEY_PROFILE", "prod")
    monkeypatch.setenv("JOURNEY_ADMIN_TOKEN", LOCAL_DEV_ADMIN_TOKEN)
    with pytest.raises(ValidationError, match="real secret"):
        Settings()


def test_prod_profile_accepts_a_real_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNEY_PROFILE", "prod")
    monkeypatch.setenv("JOURNEY_ADMIN_TOKEN", "s3cret-from-vault")
    assert Settings().profile is Profile.PROD


def test_unknown_profile_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNEY_PROFILE", "staging")
    with pytest.raises(ValidationError, match="profile"):
        Settings()
