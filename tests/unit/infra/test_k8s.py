"""Kubernetes manifests: the base and the gpu overlay render (tests/unit/infra/kustomize.py, what
`kubectl kustomize infra/k8s/overlays/gpu` does for the features used), validate against the Kubernetes schemas of
kubernetes-validate (offline, strict: unknown fields fail), and agree with each other and with the service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]  # no type information upstream
import pytest
import typer.main
from kubernetes_validate.utils import SchemaNotFoundError  # type: ignore[import-untyped]

from journey.settings import Settings
from tests.unit.infra.files import INFRA
from tests.unit.infra.kustomize import KustomizeError, resources, strategic_merge

K8S = INFRA / "k8s"
TREES = {"base": K8S / "base", "gpu": K8S / "overlays" / "gpu"}
KUBERNETES_VERSIONS = ("1.29", "1.37")  # an older supported minor and the newest bundled schema
EXPECTED_KINDS = {
    "ConfigMap",
    "PersistentVolumeClaim",
    "Deployment",
    "Service",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "ServiceMonitor",
    "Job",
    "CronJob",
}
# The ServiceMonitor fields used here, as the Prometheus Operator's CRD (monitoring.coreos.com/v1) defines them;
# kubernetes-validate has only built-in kinds. Unknown fields fail, as with the strict built-in schemas.
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "labels": {"type": "object"}},
            "additionalProperties": False,
        },
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "jobLabel": {"type": "string"},
                "selector": {
                    "type": "object",
                    "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}},
                    "additionalProperties": False,
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "honorLabels": {"type": "boolean"},
                            "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                        },
                    },
                },
            },
        },
    },
}


def _rendered(tree: str) -> list[dict[str, Any]]:
    return resources(TREES[tree])


def _one(tree: str, kind: str, name: str | None = None) -> dict[str, Any]:
    found = [r for r in _rendered(tree) if r["kind"] == kind and name in (None, r["metadata"]["name"])]
    assert len(found) == 1, f"{tree}: {len(found)} {kind}"
    return found[0]


def _pod_specs(tree: str) -> list[dict[str, Any]]:
    specs = [_one(tree, "Deployment")["spec"]["template"]["spec"], _one(tree, "Job")["spec"]["template"]["spec"]]
    return [*specs, _one(tree, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]]


def _container(tree: str) -> dict[str, Any]:
    containers = _one(tree, "Deployment")["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "journey")


RESOURCES = [
    pytest.param(tree, resource, id=f"{tree}:{resource['kind']}/{resource['metadata']['name']}")
    for tree in TREES
    for resource in resources(TREES[tree])
]


@pytest.mark.parametrize("tree", TREES)
def test_tree_renders_every_kind_once(tree: str) -> None:
    kinds = [r["kind"] for r in _rendered(tree)]

    assert sorted(kinds) == sorted(EXPECTED_KINDS)


@pytest.mark.parametrize(("tree", "resource"), RESOURCES)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_resource_validates_against_the_kubernetes_schema(tree: str, resource: dict[str, Any], version: str) -> None:
    if resource["kind"] == "ServiceMonitor":
        jsonschema.validate(resource, SERVICE_MONITOR_SCHEMA)
        with pytest.raises(SchemaNotFoundError):  # a CRD: if the bundle ever has it, validate it there instead
            kubernetes_validate.validate(resource, version, strict=True)
        return

    kubernetes_validate.validate(resource, version, strict=True)


def test_strict_validation_rejects_a_misspelt_field() -> None:
    deployment = _one("base", "Deployment")
    broken = strategic_merge(
        deployment, {"spec": {"template": {"spec": {"containers": [{"name": "journey", "livenesProbe": {}}]}}}}
    )

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("tree", TREES)
def test_probes_use_livez_and_readyz_on_the_served_port(tree: str) -> None:
    container = _container(tree)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    config = _one(tree, "ConfigMap")["data"]

    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert ports["http"] == int(config["JOURNEY_SERVE_PORT"])
    assert config["JOURNEY_SERVE_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("tree", TREES)
def test_service_pdb_monitor_and_hpa_point_at_the_deployment(tree: str) -> None:
    deployment = _one(tree, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = _one(tree, "Service")
    monitor = _one(tree, "ServiceMonitor")["spec"]
    hpa = _one(tree, "HorizontalPodAutoscaler")["spec"]

    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert _one(tree, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {e["port"] for e in monitor["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}
    assert {e["path"] for e in monitor["endpoints"]} == {"/metrics"}
    # the metrics' own `endpoint` and `service` labels must win over the Operator's target labels of those names
    assert all(e["honorLabels"] for e in monitor["endpoints"])
    # the alert rules select job="journey": the Service label named by jobLabel gives the job its name
    assert service["metadata"]["labels"][monitor["jobLabel"]] == "journey"
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "journey"}
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]


@pytest.mark.parametrize("tree", TREES)
def test_settings_come_from_the_configmap_and_secret_and_name_real_settings(tree: str) -> None:
    fields = {f"JOURNEY_{name.upper()}" for name in Settings.model_fields}
    configmap = _one(tree, "ConfigMap")

    assert set(configmap["data"]) <= fields
    Settings.model_validate(
        {k.removeprefix("JOURNEY_").lower(): v for k, v in configmap["data"].items()} | {"admin_token": "x" * 16}
    )
    for spec in _pod_specs(tree):
        for container in spec["containers"]:
            assert container["envFrom"] == [{"configMapRef": {"name": configmap["metadata"]["name"]}}]
            secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
            assert {"JOURNEY_ADMIN_TOKEN", "JOURNEY_POSTGRES_DSN"} <= set(secret_env)
            assert set(secret_env) <= fields
            assert {ref["name"] for ref in secret_env.values()} == {"journey-secrets"}


@pytest.mark.parametrize("tree", TREES)
def test_every_container_has_requests_and_limits(tree: str) -> None:
    for spec in _pod_specs(tree):
        for container in spec["containers"]:
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert {"cpu", "memory"} <= set(container["resources"]["limits"])


def test_gpu_overlay_requests_one_gpu_and_keeps_the_rest_of_the_base() -> None:
    base, gpu = _container("base"), _container("gpu")
    pod = _one("gpu", "Deployment")["spec"]["template"]["spec"]

    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == gpu["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in str(base["resources"])
    assert {t["key"] for t in pod["tolerations"]} == {"nvidia.com/gpu"}
    assert gpu["image"] != base["image"]
    # merged, not replaced: everything else of the container comes from the base
    assert {k: v for k, v in gpu.items() if k not in ("image", "resources")} == {
        k: v for k, v in base.items() if k not in ("image", "resources")
    }
    assert (
        _one("gpu", "HorizontalPodAutoscaler")["spec"]["metrics"]
        == _one("base", "HorizontalPodAutoscaler")["spec"]["metrics"]
    )


def test_feature_jobs_run_cli_commands_that_exist() -> None:
    from cli import app

    features = typer.main.get_command(app).commands["features"]  # type: ignore[attr-defined]
    job = _one("base", "Job")["spec"]["template"]["spec"]["containers"][0]
    cron = _one("base", "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]

    job_script = " ".join(job["args"])
    assert "features apply" in job_script and "features materialize" in job_script
    assert cron["command"][-2:] == ["features", "materialize"]
    assert {"apply", "materialize"} <= set(features.commands)
    assert _one("base", "CronJob")["spec"]["concurrencyPolicy"] == "Forbid"


def test_renderer_refuses_kustomize_features_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nimages:\n  - name: journey\n    newTag: v2\n")

    with pytest.raises(KustomizeError, match="images"):
        resources(tmp_path)
