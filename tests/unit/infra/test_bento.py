"""`bentoml build` packs the service offline into the layout infra/compose.yaml and infra/k8s assume: the image's
entrypoint serves the Bento, and its src/ holds the Journey CLI the feature jobs run (workingDir)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.unit.infra.files import INFRA, REPO_ROOT

BENTOML = Path(sys.executable).with_name("bentoml")
BENTO_SRC = "/home/bentoml/bento/src"  # BENTO_PATH of BentoML's Dockerfile template, + src/


@pytest.mark.slow
def test_bento_builds_offline_with_the_entrypoint_and_sources_the_manifests_use(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOURNEY_", "PROMETHEUS_"))}
    env |= {"BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "True"}

    result = subprocess.run(
        [str(BENTOML), "build", "--output", "tag"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    bento = next((tmp_path / "bentoml" / "bentos" / "journey").glob("*/bento.yaml")).parent
    dockerfile = (bento / "env" / "docker" / "Dockerfile").read_text(encoding="utf-8")
    assert 'ENTRYPOINT [ "/home/bentoml/bento/env/docker/entrypoint.sh" ]' in dockerfile
    assert "EXPOSE 3000" in dockerfile
    assert (bento / "src" / "cli" / "__init__.py").is_file()
    assert (bento / "src" / "serving" / "service.py").is_file()
    assert (bento / "src" / "feature_repo").is_dir()
    job = yaml.safe_load((INFRA / "k8s" / "base" / "job-features-init.yaml").read_text(encoding="utf-8"))
    compose = yaml.safe_load((INFRA / "compose.yaml").read_text(encoding="utf-8"))
    assert job["spec"]["template"]["spec"]["containers"][0]["workingDir"] == BENTO_SRC
    assert compose["services"]["features"]["working_dir"] == BENTO_SRC
