"""`cd feature_repo && feast apply` works as Feast users expect (embedded profile, Feast's own CLI)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2] / "feature_repo"


def test_feast_cli_applies_the_repo_in_place(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO, checkout / "feature_repo", ignore=shutil.ignore_patterns("__pycache__"))
    (checkout / "data" / "feast").mkdir(parents=True)  # the checkout ships this folder (data/feast/.gitkeep)
    env = {**os.environ, "JOURNEY_DATA_DIR": str(checkout / "data")}
    env.pop("JOURNEY_PROFILE", None)

    def feast(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(Path(sys.executable).with_name("feast")), *args],
            cwd=checkout / "feature_repo",
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )

    done = feast("apply")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Created feature service purchase_propensity_v1" in done.stdout
    assert (checkout / "data" / "feast" / "registry.db").exists()
    listed = feast("feature-services", "list")
    assert "next_action_v1" in listed.stdout, listed.stdout + listed.stderr
