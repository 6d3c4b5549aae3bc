"""infra/compose.yaml: valid against the Compose Specification's JSON schema (vendored by check-jsonschema,
offline), with the five services, healthchecks, and paths and settings that exist."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema
import pytest
import yaml

from journey.settings import Settings
from tests.unit.infra.files import INFRA

COMPOSE = INFRA / "compose.yaml"
SERVICES = ("redis", "postgres", "journey", "prometheus", "grafana")


def _compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return document


def test_compose_file_validates_against_the_compose_spec_schema() -> None:
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    validator = jsonschema.validators.validator_for(schema)(schema)

    errors = sorted(validator.iter_errors(_compose()), key=lambda e: list(e.path))

    assert not errors, [f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors]


def test_compose_schema_rejects_a_misspelt_service_field() -> None:
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    broken = _compose()
    broken["services"]["redis"]["healthchek"] = broken["services"]["redis"].pop("healthcheck")

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


@pytest.mark.parametrize("service", SERVICES)
def test_long_running_service_has_a_healthcheck(service: str) -> None:
    definition = _compose()["services"][service]

    assert definition["healthcheck"]["test"][0] == "CMD"
    assert "profiles" not in definition  # started by a plain `docker compose up`


def test_journey_waits_for_healthy_stores_and_serves_the_prod_profile() -> None:
    journey = _compose()["services"]["journey"]
    env = journey["environment"]

    assert journey["depends_on"] == {
        "redis": {"condition": "service_healthy"},
        "postgres": {"condition": "service_healthy"},
    }
    assert env["JOURNEY_PROFILE"] == "prod"
    assert env["JOURNEY_REDIS_URL"].startswith("redis://redis:")
    assert "@postgres:5432/" in env["JOURNEY_POSTGRES_DSN"]
    assert "/readyz" in " ".join(journey["healthcheck"]["test"])
    assert set(env) <= {f"JOURNEY_{name.upper()}" for name in Settings.model_fields}


def test_secrets_are_required_from_the_environment_not_defaulted() -> None:
    text = COMPOSE.read_text(encoding="utf-8")

    for variable in ("JOURNEY_ADMIN_TOKEN", "POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD"):
        assert f"${{{variable}:?" in text
        assert f"${{{variable}:-" not in text
        assert f"{variable}=" in (INFRA / "compose.env.example").read_text(encoding="utf-8")


def test_prometheus_in_compose_scrapes_the_journey_service_on_its_port() -> None:
    compose = _compose()["services"]
    config = yaml.safe_load((INFRA / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "journey")

    assert job["static_configs"][0]["targets"] == [f"journey:{compose['journey']['environment']['JOURNEY_SERVE_PORT']}"]
    assert "./prometheus:/etc/prometheus:ro" in compose["prometheus"]["volumes"]


@pytest.mark.parametrize("service", SERVICES)
def test_bind_mounts_exist_in_the_repository(service: str) -> None:
    for volume in _compose()["services"][service].get("volumes", ()):
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (INFRA / source).exists(), volume
