"""The ONNX Runtime session manager on real files: a hand-built graph, an exported XGBoost model, a next-action GRU.

The hand-built graph has one input of each kind the checks care about (a fixed feature axis, a dynamic sequence axis,
an int32 input for range checks), so each refusal is tested once, on the input it concerns.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import xgboost
from onnx import TensorProto, helper

from journey import onnx_contract
from serving.runtime import CPU, CUDA, InputError, ModelLoadError, ModelRuntime, cuda, resolve_providers
from serving.runtime.providers import place
from training import export
from training.export import export_xgboost

REPO_ROOT = Path(__file__).resolve().parents[3]
N_FEATURES = 12
FEATURE_NAMES = [f"feat_{i}" for i in range(N_FEATURES)]
TINY_INPUTS = ["features", "ids", "codes"]
TINY_OUTPUTS = ["doubled", "ids_out", "codes_out"]
TINY_FEATURES = ["a", "b", "c", "d"]


def _tiny_metadata(**overrides: str | None) -> dict[str, str]:
    meta: dict[str, str | None] = {
        onnx_contract.META_INPUT_NAMES: json.dumps(TINY_INPUTS),
        onnx_contract.META_OUTPUT_NAMES: json.dumps(TINY_OUTPUTS),
        onnx_contract.META_FEATURE_ORDER: json.dumps(TINY_FEATURES),
        onnx_contract.META_FRAMEWORK: "pytorch",  # a network: CUDA-eligible ("onnx" index graphs stay on the CPU)
        onnx_contract.META_EXPORTER: "onnx.helper",
        onnx_contract.META_PARITY: "0.0",
        **overrides,
    }
    return {k: v for k, v in meta.items() if v is not None}


def _tiny_model(path: Path, metadata: dict[str, str]) -> Path:
    """features float32 [batch, 4] -> x2; ids int64 [batch, steps] and codes int32 [batch] passed through."""
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["features", "two"], ["doubled"]),
            helper.make_node("Identity", ["ids"], ["ids_out"]),
            helper.make_node("Identity", ["codes"], ["codes_out"]),
        ],
        "tiny",
        [
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "steps"]),
            helper.make_tensor_value_info("codes", TensorProto.INT32, ["batch"]),
        ],
        [
            helper.make_tensor_value_info("doubled", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("ids_out", TensorProto.INT64, ["batch", "steps"]),
            helper.make_tensor_value_info("codes_out", TensorProto.INT32, ["batch"]),
        ],
        initializer=[helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    return path


def _tiny_feeds(rows: int = 3) -> dict[str, np.ndarray]:
    return {
        "features": np.arange(rows * 4, dtype=np.float32).reshape(rows, 4),
        "ids": np.arange(rows * 5, dtype=np.int64).reshape(rows, 5),
        "codes": np.arange(rows, dtype=np.int32),
    }


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_model(tmp_path_factory.mktemp("tiny") / "tiny.onnx", _tiny_metadata())


@pytest.fixture(scope="module")
def tiny(tiny_path: Path) -> ModelRuntime:
    return ModelRuntime.load(tiny_path, providers=[CPU], intra_op_threads=1)


@pytest.fixture(scope="module")
def xgb(tmp_path_factory: pytest.TempPathFactory) -> tuple[xgboost.XGBClassifier, ModelRuntime, np.ndarray]:
    """A small classifier on random data, exported through training.export (parity-checked) and loaded."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, N_FEATURES)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] * x[:, 2] + rng.normal(scale=0.5, size=500) > 0.3).astype(int)
    model = xgboost.XGBClassifier(n_estimators=30, max_depth=4, tree_method="hist", n_jobs=1, random_state=0)
    model.fit(x[:400], y[:400])
    report = export_xgboost(model, FEATURE_NAMES, x[400:], tmp_path_factory.mktemp("xgb") / "propensity.onnx")
    return model, ModelRuntime.load(report.path, providers=[CPU], intra_op_threads=1), x[400:]


# ---------------------------------------------------------------------------------------------------------------
# Providers
# ---------------------------------------------------------------------------------------------------------------


def test_default_providers_ask_for_cuda_only_when_onnxruntime_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cuda, "nvidia_device_present", lambda: True)
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU])
    assert resolve_providers() == [CPU]
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["TensorrtExecutionProvider", CUDA, CPU])
    assert resolve_providers() == [CUDA, CPU]


def test_default_providers_skip_cuda_on_a_host_without_an_nvidia_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """The onnxruntime-gpu wheel lists CUDA everywhere; asking for it without a GPU only fails a library load."""
    monkeypatch.setattr(cuda, "nvidia_device_present", lambda: False)
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    assert resolve_providers() == [CPU]
    assert resolve_providers([CUDA]) == [CUDA, CPU]  # asked for explicitly: tried (and reported if it falls back)


def test_explicit_providers_drop_unavailable_ones_and_end_with_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU])
    assert resolve_providers([CUDA, "NoSuchExecutionProvider"]) == [CPU]
    assert resolve_providers([CPU, CPU]) == [CPU]


@pytest.mark.skipif(cuda.nvidia_device_present(), reason="on a GPU host the session runs on CUDA")
def test_provider_reported_is_cpu_on_a_host_without_cuda(tiny_path: Path) -> None:
    runtime = ModelRuntime.load(tiny_path)  # default providers: CUDA is asked for when the wheel lists it

    assert runtime.provider == CPU
    assert runtime.providers == (CPU,)
    assert runtime.requested_providers[-1] == CPU
    assert CUDA not in runtime.requested_providers


def test_fallback_from_the_preferred_provider_is_logged_as_a_warning(
    tiny_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Deterministic on any host: ORT is told CUDA exists, and the session it builds only has CPU."""
    open_session = cuda.open_session
    monkeypatch.setattr(cuda, "nvidia_device_present", lambda: True)
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(cuda, "open_session", lambda path, providers, intra, inter: open_session(path, [CPU], 1, 1))

    with caplog.at_level(logging.WARNING, logger="serving.runtime"):
        runtime = ModelRuntime.load(tiny_path)

    assert runtime.requested_providers == (CUDA, CPU) and runtime.provider == CPU
    [record] = [r for r in caplog.records if "fell back" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert record.__dict__["provider"] == CPU and record.__dict__["requested_providers"] == [CUDA, CPU]


class _ClaimsCuda:
    """A CPU session that reports CUDA first, as a CUDA session of a tree model does on a GPU host."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self._session = session

    def get_providers(self) -> list[str]:
        return [CUDA, CPU]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def test_tree_model_gets_a_cpu_session_even_when_cuda_is_available(
    xgb: tuple[Any, ModelRuntime, np.ndarray], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    open_session = cuda.open_session
    asked: list[list[str]] = []

    def fake_open(path: Path, providers: list[str], intra: int, inter: int) -> Any:
        asked.append(providers)
        session = open_session(path, [CPU], 1, 1)
        return _ClaimsCuda(session) if CUDA in providers else session

    monkeypatch.setattr(cuda, "nvidia_device_present", lambda: True)
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(cuda, "open_session", fake_open)

    with caplog.at_level(logging.WARNING, logger="serving.runtime"):
        runtime = ModelRuntime.load(xgb[1].path)

    assert asked == [[CUDA, CPU], [CPU]]  # the CUDA session is replaced once the metadata says "xgboost"
    assert runtime.requested_providers == (CPU,) and runtime.provider == CPU
    assert not [r for r in caplog.records if "fell back" in r.getMessage()]


def test_cuda_sessions_are_opened_with_tf32_off(tiny_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ORT's CUDA default, TF32, put the next-action GRU 7e-4 from the CPU on an H200 (reports/gpu/gpu-tf32.md),
    past the export's 1e-4 parity: serving asks for full float32. (The session itself runs on the CPU here.)"""
    asked: list[Any] = []
    real_session = ort.InferenceSession

    def recording_session(path: str, sess_options: Any = None, providers: Any = None) -> ort.InferenceSession:
        asked.append(providers)
        return real_session(path, sess_options=sess_options, providers=[CPU])

    monkeypatch.setattr(ort, "InferenceSession", recording_session)
    monkeypatch.setattr(cuda, "preload_cuda_libraries", lambda: "not on this host")

    cuda.open_session(tiny_path, [CUDA, CPU], 1, 1)

    assert asked == [[(CUDA, {"use_tf32": "0"}), CPU]]


def test_cuda_libraries_are_not_preloaded_on_a_host_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cuda, "nvidia_device_present", lambda: False)
    cuda.preload_cuda_libraries.cache_clear()
    try:
        assert cuda.preload_cuda_libraries().startswith("not needed")
    finally:
        cuda.preload_cuda_libraries.cache_clear()


@pytest.mark.gpu
@pytest.mark.skipif(CUDA not in ort.get_available_providers(), reason="onnxruntime build without CUDA")
@pytest.mark.skipif(not cuda.nvidia_device_present(), reason="no NVIDIA GPU on this host")
def test_cuda_provider_is_used_on_a_gpu_host(tiny_path: Path) -> None:
    runtime = ModelRuntime.load(tiny_path)

    assert runtime.provider == CUDA
    out = runtime.run(_tiny_feeds())
    np.testing.assert_array_equal(out["doubled"], _tiny_feeds()["features"] * 2)


# ---------------------------------------------------------------------------------------------------------------
# Predictions and metadata
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [1, 7, 100])
def test_xgboost_runtime_predictions_equal_predict_proba(xgb: tuple[Any, ModelRuntime, np.ndarray], rows: int) -> None:
    model, runtime, holdout = xgb
    x = holdout[:rows]

    out = runtime.run({"features": x})

    probabilities = out[runtime.output_names[1]]
    assert np.max(np.abs(probabilities - model.predict_proba(x))) <= 1e-5
    np.testing.assert_array_equal(out[runtime.output_names[0]], model.predict(x))


def test_outputs_are_returned_by_name(tiny: ModelRuntime) -> None:
    feeds = _tiny_feeds()

    out = tiny.run(feeds)

    assert list(out) == TINY_OUTPUTS
    np.testing.assert_array_equal(out["doubled"], feeds["features"] * 2)
    np.testing.assert_array_equal(out["ids_out"], feeds["ids"])


def test_metadata_gives_feature_order_framework_and_parity(xgb: tuple[Any, ModelRuntime, np.ndarray]) -> None:
    runtime = xgb[1]

    assert runtime.feature_order == tuple(FEATURE_NAMES)
    assert runtime.metadata.framework == "xgboost"
    assert runtime.metadata.exporter == onnx_contract.EXPORTER_ONNXMLTOOLS
    assert runtime.metadata.parity_max_abs_diff is not None and runtime.metadata.parity_max_abs_diff <= 1e-4
    assert runtime.input_names == ("features",) == runtime.metadata.input_names


def test_an_exported_file_carries_every_key_of_the_onnx_contract(xgb: tuple[Any, ModelRuntime, np.ndarray]) -> None:
    _, runtime, _ = xgb
    written = set(export.read_metadata(Path(runtime.path)))

    assert {*onnx_contract.REQUIRED_METADATA, onnx_contract.META_PARITY, onnx_contract.META_EXPORTER} <= written


def test_describe_reports_provider_names_shapes_and_parity(tiny: ModelRuntime, tiny_path: Path) -> None:
    info = tiny.describe()

    assert json.loads(json.dumps(info)) == info  # JSON-ready for /readyz
    assert info["path"] == str(tiny_path)
    assert info["provider"] == CPU and info["providers"] == [CPU]
    assert info["input_names"] == TINY_INPUTS and info["output_names"] == TINY_OUTPUTS
    assert info["inputs"][0] == {"name": "features", "type": "tensor(float)", "shape": ["batch", 4]}
    assert info["inputs"][1]["shape"] == ["batch", "steps"]
    assert info["framework"] == "pytorch" and info["exporter"] == "onnx.helper"
    assert info["parity_max_abs_diff"] == 0.0 and info["n_features"] == 4
    assert info["intra_op_threads"] == 1


# ---------------------------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------------------------


def _without(feeds: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in feeds.items() if k != name}


BAD_FEEDS: dict[str, tuple[dict[str, Any], str]] = {
    "missing input": (_without(_tiny_feeds(), "ids"), "ids"),
    "unexpected input": ({**_tiny_feeds(), "bogus": np.zeros(3)}, "bogus"),
    "strings for floats": ({**_tiny_feeds(), "features": np.full((3, 4), "x")}, "features"),
    "floats for ids": ({**_tiny_feeds(), "ids": np.zeros((3, 5))}, "ids"),
    "wrong rank": ({**_tiny_feeds(), "features": np.zeros((3, 4, 1), np.float32)}, "features"),
    "wrong fixed dim": ({**_tiny_feeds(), "features": np.zeros((3, 5), np.float32)}, "features"),
    "mismatched batch": ({**_tiny_feeds(), "codes": np.zeros(2, np.int32)}, "codes"),
    "empty batch": (_tiny_feeds(0), "features"),
    "ragged list": ({**_tiny_feeds(), "ids": [[1, 2], [3]]}, "ids"),
    "int64 beyond int32": ({**_tiny_feeds(), "codes": np.array([0, 1, 2**40])}, "codes"),
    "float64 beyond float32": ({**_tiny_feeds(), "features": np.full((3, 4), 1e300)}, "features"),
}


@pytest.mark.parametrize("case", BAD_FEEDS)
def test_bad_input_raises_input_error_naming_the_field(tiny: ModelRuntime, case: str) -> None:
    feeds, field = BAD_FEEDS[case]

    with pytest.raises(InputError) as info:
        tiny.run(feeds)

    assert info.value.field == field
    assert field in str(info.value)


def test_input_error_is_a_value_error_mapped_to_422() -> None:
    error = InputError("bad", field="features", value=1)

    assert isinstance(error, ValueError) and error.http_status == 422 and error.value == 1


def test_float64_and_int32_inputs_are_cast_to_the_graph_dtypes(tiny: ModelRuntime) -> None:
    feeds = _tiny_feeds()
    wide = {
        "features": feeds["features"].astype(np.float64),
        "ids": feeds["ids"].astype(np.int32),
        "codes": feeds["codes"].astype(np.int64),  # narrowed: the values fit int32
    }

    out = tiny.run(wide)

    assert out["doubled"].dtype == np.float32 and out["ids_out"].dtype == np.int64
    np.testing.assert_array_equal(out["doubled"], feeds["features"] * 2)
    np.testing.assert_array_equal(out["codes_out"], feeds["codes"])


def test_plain_lists_and_nan_are_accepted(tiny: ModelRuntime) -> None:
    out = tiny.run({"features": [[1.0, float("nan"), 3.0, 4.0]], "ids": [[7]], "codes": [1]})

    assert out["doubled"][0, 0] == 2.0 and np.isnan(out["doubled"][0, 1])


def test_concurrent_runs_from_threads_give_the_same_results(xgb: tuple[Any, ModelRuntime, np.ndarray]) -> None:
    _, runtime, holdout = xgb
    batches = [holdout[i : i + 1 + i % 13] for i in range(64)]
    expected = [runtime.run({"features": b}) for b in batches]

    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda b: runtime.run({"features": b}), batches * 4))

    for i, out in enumerate(got):
        for name in runtime.output_names:
            np.testing.assert_array_equal(out[name], expected[i % len(batches)][name])


# ---------------------------------------------------------------------------------------------------------------
# Load errors
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({onnx_contract.META_INPUT_NAMES: json.dumps(["features", "ids"])}, "input names"),
        ({onnx_contract.META_OUTPUT_NAMES: json.dumps(["doubled", "ids_out", "other"])}, "output names"),
        ({onnx_contract.META_FEATURE_ORDER: None}, onnx_contract.META_FEATURE_ORDER),
        ({onnx_contract.META_INPUT_NAMES: "features"}, "not JSON"),
        ({onnx_contract.META_OUTPUT_NAMES: json.dumps({"a": 1})}, "list of strings"),
        ({onnx_contract.META_PARITY: "small"}, "not a number"),
    ],
    ids=["input names differ", "output names differ", "missing key", "not json", "not a list", "bad parity"],
)
def test_metadata_that_contradicts_the_graph_or_is_malformed_refuses_the_load(
    tmp_path: Path, overrides: dict[str, str | None], message: str
) -> None:
    path = _tiny_model(tmp_path / "m.onnx", _tiny_metadata(**overrides))

    with pytest.raises(ModelLoadError, match=message):
        ModelRuntime.load(path, providers=[CPU])


def test_model_without_journey_metadata_loads_only_when_not_required(tmp_path: Path) -> None:
    path = _tiny_model(tmp_path / "bare.onnx", {})

    with pytest.raises(ModelLoadError, match=r"only models written by training\.export"):
        ModelRuntime.load(path, providers=[CPU])
    runtime = ModelRuntime.load(path, providers=[CPU], require_metadata=False)

    assert runtime.feature_order == () and runtime.input_names == tuple(TINY_INPUTS)
    assert runtime.run(_tiny_feeds())["doubled"].shape == (3, 4)


def test_missing_or_corrupt_file_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no model file"):
        ModelRuntime.load(tmp_path / "nope.onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not a protobuf")
    with pytest.raises(ModelLoadError, match="cannot load"):
        ModelRuntime.load(corrupt, providers=[CPU])


# ---------------------------------------------------------------------------------------------------------------
# A bare GPU host: nothing but numpy and onnxruntime
# ---------------------------------------------------------------------------------------------------------------

ISOLATED = """
import importlib.abc, json, sys

BLOCKED = set(sys.argv[2].split(","))
ALLOWED = {"journey", "journey.onnx_contract"}  # the standard-library-only contract module the runtime reads


class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED and name not in ALLOWED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None


sys.meta_path.insert(0, Absent())
import numpy as np
from serving.runtime import ModelRuntime

runtime = ModelRuntime.load(sys.argv[1], providers=["CPUExecutionProvider"])
feeds = {"features": np.ones((2, 4), np.float32), "ids": np.ones((2, 3), np.int64), "codes": np.ones(2, np.int32)}
out = runtime.run(feeds)
modules = {m.split(".")[0] for m in sys.modules if m not in ALLOWED}
print(json.dumps({"doubled": out["doubled"].tolist(), "modules": sorted(modules)}))
"""
HEAVY = ["journey", "training", "pydantic", "feast", "bentoml", "pandas", "torch", "onnx", "xgboost", "pyarrow"]
HEAVY += ["prometheus_client", "sklearn", "onnxmltools"]


def test_runtime_imports_and_runs_with_only_numpy_and_onnxruntime(tiny_path: Path) -> None:
    """In a fresh interpreter where Journey (but its ONNX contract module), Feast, BentoML, pydantic, torch... cannot
    be imported at all."""
    done = subprocess.run(
        [sys.executable, "-c", ISOLATED, str(tiny_path), ",".join(HEAVY)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["doubled"] == [[2.0] * 4] * 2
    assert not set(result["modules"]) & set(HEAVY)


# ---------------------------------------------------------------------------------------------------------------
# The next-action GRU (journey.model_inputs + training.models.next_action)
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def next_action(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, np.ndarray], ModelRuntime]:
    """A tiny next-action net fed by the real transform, exported via training.export; skipped if not importable."""
    try:
        import torch

        from journey.events import EVENT_TYPES
        from journey.model_inputs import CATEGORIES, ITEMS, TIMES, TYPES, next_action_inputs
        from journey.onnx_contract import NEXT_ACTION_INPUT_NAMES, NEXT_ACTION_OUTPUT_NAME
        from training.export import export_torch
        from training.models.next_action import NextActionConfig, NextActionNet
    except ImportError as exc:
        pytest.skip(f"next-action model not importable: {exc}")

    torch.manual_seed(0)
    rng = np.random.default_rng(2)
    config = NextActionConfig(
        seq_len=6, item_buckets=64, category_buckets=16, type_dim=4, item_dim=4, category_dim=4, hidden=8
    )
    spec = config.input_spec()
    rows = 48
    sizes = rng.integers(0, 9, rows)
    columns: dict[str, Any] = {
        ITEMS: [None if n == 0 else rng.integers(0, 500, n).tolist() for n in sizes],
        TYPES: [None if n == 0 else rng.choice(EVENT_TYPES, n).tolist() for n in sizes],
        TIMES: [None if n == 0 else np.cumsum(rng.integers(1, 600, n)).tolist() for n in sizes],
        CATEGORIES: [None if n == 0 else rng.integers(0, 40, n).tolist() for n in sizes],
    }
    for name in spec.dense_features:
        values = rng.normal(size=rows)
        values[rng.random(rows) < 0.2] = np.nan
        columns[name] = values.tolist()
    inputs = next_action_inputs(columns, spec)
    width = len(spec.dense_features)
    module = NextActionNet(spec, config, np.zeros(width), np.ones(width)).eval()
    example = {name: torch.from_numpy(inputs[name][:8]) for name in NEXT_ACTION_INPUT_NAMES}
    path = tmp_path_factory.mktemp("next_action") / "next_action.onnx"
    report = export_torch(module, example, inputs, path, output_names=[NEXT_ACTION_OUTPUT_NAME])
    return module, inputs, ModelRuntime.load(report.path, providers=[CPU], intra_op_threads=1)


def test_next_action_runtime_equals_the_torch_module(
    next_action: tuple[Any, dict[str, np.ndarray], ModelRuntime],
) -> None:
    import torch

    module, inputs, runtime = next_action
    with torch.no_grad():
        want = module(*(torch.from_numpy(inputs[name]) for name in runtime.input_names)).numpy()

    got = runtime.run(inputs)[runtime.output_names[0]]

    assert got.shape == want.shape and np.max(np.abs(got - want)) <= 1e-5
    assert runtime.metadata.framework == "torch"
    assert runtime.feature_order == runtime.input_names  # torch exports record their input names as the order
    assert 0 in inputs["lengths"]  # unknown sessions are in the batch (and zeros warmed the model up)


def test_a_runtime_loaded_with_a_placement_reports_it_in_readyz_and_the_gpu_expectation(tiny_path: Path) -> None:
    placement = place("cuda", framework="pytorch", gpu_present=False, batch=1, crossover=None)

    runtime = ModelRuntime.load(tiny_path, placement=placement, require_metadata=False)

    assert runtime.provider == CPU  # clean CPU fallback: CUDA was never asked for on a host without a GPU
    assert runtime.describe()["placement"] == placement.describe()
    assert runtime.placement is placement  # serving.loaded.gpu_expected reads its decision
    assert runtime.run(_tiny_feeds(2))
