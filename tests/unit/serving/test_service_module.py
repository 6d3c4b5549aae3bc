"""What importing the BentoML service module costs: BentoML's supervisor imports it too, before any worker starts.

Imported in a fresh interpreter: what a module pulls in depends on what the process imported before (and BentoML's
import warns about a pathspec deprecation that the test run's warning filter would turn into an error).
"""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("aiohttp", "feast", "onnxruntime", "pandas", "torch")


def _python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_service_module_imports_no_model_or_feature_code() -> None:
    out = _python(f"import sys, serving.service; print(sorted(set({HEAVY!r}) & set(sys.modules)))")
    assert out == "[]"


def test_every_routed_endpoint_of_the_contracts_is_an_api_of_the_service() -> None:
    out = _python(
        "from journey.contracts import ENDPOINT_MODELS; from serving import service; "
        "print(sorted(set(ENDPOINT_MODELS) - set(service.Journey.apis)), sorted(service.API_PATHS))"
    )
    assert out == "[] ['/events', '/predict_next_action', '/predict_purchase', '/recommend']"
