"""ONNX Runtime CUDA vs CPU on the exported Journey models, runnable as it is on a bare GPU host.

    python benchmarks/gpu.py --model purchase_propensity=path/to/model.onnx --model next_action=path/to.onnx \
        [--batches 1,8,64,256,1024,4096,8192] [--seconds 1.0] [--out reports/gpu]

Imports only numpy, onnxruntime, the standard library and serving.runtime (which imports no more): the GPU
hosts run Python 3.12 with torch and numpy but no package index, Feast, BentoML or pydantic (benchmarks/README.md:
`../shared/tools/gpu-ort-chunks` carries the onnxruntime-gpu wheel there). On a host without CUDA (or with the
CPU-only onnxruntime wheel) the CUDA rows are reported as unavailable with the reason, and the CPU rows are still
measured: the script never fails for lack of a GPU.

Per model, provider and batch size: latency percentiles and rows/s of `session.run` (inputs copied from host memory
every call, as a server does), and on CUDA also with IO binding (inputs already on the device, outputs left there:
the kernel time the GPU can give when the server keeps tensors resident) and with CUDA graphs (`enable_cuda_graph`;
ONNX Runtime refuses graphs for some operators, e.g. a GRU's dynamic control flow: then it says why). Parity: CUDA
outputs vs CPU outputs, max abs diff <= 1e-4, on the same inputs.

Inputs: float inputs are standard normal; integer inputs (event-type and hashed item/category ids) are drawn in
[0, 4), inside any embedding table, since the timings do not depend on which rows are looked up. Dynamic axes other
than the batch take the model's `journey.*` sequence length when fixed, else 12.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

if __package__ in (None, ""):  # run as a file (`python benchmarks/gpu.py` on the GPU host): the repo root's packages
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from serving.runtime import cuda_options, nvidia_device_present, preload_cuda_libraries

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
DEFAULT_BATCHES = (1, 8, 64, 256, 1024, 4096, 8192)
PARITY_TOLERANCE = 1e-4
CROSSOVER_MARGIN = 1.2  # CUDA must beat the CPU by this factor to count (see crossover())
OTHER_DYNAMIC_AXIS = 12  # a dynamic non-batch axis (sequence length) when the graph does not fix it
_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}


@dataclass
class Row:
    model: str
    provider: str
    mode: str  # "run" | "io_binding" | "cuda_graph"
    batch: int
    p50_ms: float | None = None
    p99_ms: float | None = None
    rows_per_s: float | None = None
    repeats: int = 0
    note: str = ""


@dataclass
class Report:
    device: str
    onnxruntime: str
    python: str
    available_providers: list[str]
    cuda_libraries: str = ""
    tf32: bool = False  # CUDA matmuls/convolutions in TF32 (ORT's default; serving turns it off)
    cpu_threads: int = 0
    rows: list[Row] = field(default_factory=list)
    parity: dict[str, float | str] = field(default_factory=dict)
    crossover: dict[str, int | None] = field(default_factory=dict)  # see crossover()


def describe_device() -> str:
    """The GPU's name from the driver (nvidia-smi is not assumed), else the CPU's."""
    proc = Path("/proc/driver/nvidia/gpus")
    if proc.is_dir():
        for info in sorted(proc.glob("*/information")):
            for line in info.read_text().splitlines():
                if line.startswith("Model:"):
                    return line.split(":", 1)[1].strip()
    return f"CPU only ({platform.processor() or platform.machine()})"


def make_inputs(session: ort.InferenceSession, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    feeds: dict[str, np.ndarray] = {}
    for node in session.get_inputs():
        dtype = _DTYPES.get(node.type)
        if dtype is None:
            raise ValueError(f"input {node.name!r} has type {node.type}: not supported by this benchmark")
        shape = [
            batch if axis == 0 else (d if isinstance(d, int) else OTHER_DYNAMIC_AXIS)
            for axis, d in enumerate(node.shape)
        ]
        if np.issubdtype(dtype, np.integer):
            feeds[node.name] = rng.integers(0, 4, size=shape).astype(dtype)
        else:
            feeds[node.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def open_session(
    path: Path, provider: str, threads: int, cuda_graph: bool = False, tf32: bool = False
) -> ort.InferenceSession:
    """`tf32`: ONNX Runtime's CUDA default; off here as in serving (serving.runtime.cuda_options says why)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    providers: list[Any] = [CPU]
    if provider == CUDA:
        cuda = cuda_options(tf32=tf32) | ({"enable_cuda_graph": "1"} if cuda_graph else {})
        providers = [(CUDA, cuda), CPU]
    session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    if session.get_providers()[0] != provider:
        raise RuntimeError(f"ONNX Runtime gave {session.get_providers()} instead of {provider}")
    return session


def _time(call: Any, seconds: float, min_repeats: int = 5) -> list[float]:
    call()  # warm: allocations, cuDNN autotuning
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < min_repeats or time.perf_counter() < deadline:
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return times


def _row(model: str, provider: str, mode: str, batch: int, times: list[float]) -> Row:
    p50 = statistics.median(times)
    return Row(model, provider, mode, batch, p50 * 1e3, float(np.percentile(times, 99)) * 1e3, batch / p50, len(times))


def bench_plain(
    model: str, session: ort.InferenceSession, provider: str, feeds: dict[str, np.ndarray], seconds: float
) -> Row:
    batch = next(iter(feeds.values())).shape[0]
    return _row(model, provider, "run", batch, _time(lambda: session.run(None, feeds), seconds))


def bench_io_binding(model: str, session: ort.InferenceSession, feeds: dict[str, np.ndarray], seconds: float) -> Row:
    """Inputs copied to the GPU once, outputs left there: what the kernels cost without host transfers."""
    batch = next(iter(feeds.values())).shape[0]
    binding = session.io_binding()
    for name, value in feeds.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, "cuda", 0))
    for out in session.get_outputs():
        binding.bind_output(out.name, "cuda", 0)

    def call() -> None:
        session.run_with_iobinding(binding)

    return _row(model, CUDA, "io_binding", batch, _time(call, seconds))


def bench_cuda_graph(
    model: str, path: Path, feeds: dict[str, np.ndarray], threads: int, seconds: float, tf32: bool
) -> Row:
    """CUDA graphs need fixed-address inputs and outputs: bound once, replayed every call."""
    batch = next(iter(feeds.values())).shape[0]
    try:
        session = open_session(path, CUDA, threads, cuda_graph=True, tf32=tf32)
        binding = session.io_binding()
        for name, value in feeds.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, "cuda", 0))
        for out in session.get_outputs():
            binding.bind_output(out.name, "cuda", 0)
        session.run_with_iobinding(binding)  # captures the graph
        return _row(model, CUDA, "cuda_graph", batch, _time(lambda: session.run_with_iobinding(binding), seconds))
    except Exception as exc:  # noqa: BLE001  (ORT raises its own Fail/RuntimeException types: report, never abort)
        return Row(model, CUDA, "cuda_graph", batch, note=f"not supported: {str(exc).splitlines()[0][:160]}")


def max_abs_diff(expected: Sequence[Any], got: Sequence[Any]) -> float:
    """The largest absolute difference over the float outputs (labels and ids are skipped), output by output."""
    diffs = [
        float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))
        for a, b in zip(expected, got, strict=True)
        if np.issubdtype(np.asarray(a).dtype, np.floating)
    ]
    return max(diffs) if diffs else 0.0


def parity(cpu: ort.InferenceSession, cuda: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> float:
    return max_abs_diff(cpu.run(None, feeds), cuda.run(None, feeds))


def bench_model(report: Report, model: str, path: Path, batches: list[int], seconds: float, threads: int) -> None:
    rng = np.random.default_rng(0)
    cpu = open_session(path, CPU, threads)
    cuda: ort.InferenceSession | None = None
    cuda_problem = ""
    if CUDA not in report.available_providers:
        cuda_problem = "CUDAExecutionProvider is not in this onnxruntime build (install onnxruntime-gpu)"
    elif not nvidia_device_present():
        cuda_problem = "no NVIDIA GPU on this host (onnxruntime-gpu lists CUDA on every host)"
    else:
        try:
            cuda = open_session(path, CUDA, threads, tf32=report.tf32)
        except Exception as exc:  # noqa: BLE001  (no driver/libraries: report the reason, keep the CPU rows)
            cuda_problem = f"CUDA session failed: {str(exc).splitlines()[0][:200]}"
    for batch in batches:
        feeds = make_inputs(cpu, batch, rng)
        report.rows.append(bench_plain(model, cpu, CPU, feeds, seconds))
        if cuda is None:
            report.rows.append(Row(model, CUDA, "run", batch, note=cuda_problem))
            continue
        report.rows.append(bench_plain(model, cuda, CUDA, feeds, seconds))
        report.rows.append(bench_io_binding(model, cuda, feeds, seconds))
        report.rows.append(bench_cuda_graph(model, path, feeds, threads, seconds, report.tf32))
        worst = parity(cpu, cuda, feeds)
        previous = report.parity.get(model, 0.0)
        report.parity[model] = max(worst, previous) if isinstance(previous, float) else worst
    if cuda is None:
        report.parity[model] = cuda_problem
    report.crossover[model] = crossover(report.rows, model)


def crossover(rows: list[Row], model: str) -> int | None:
    """The smallest batch from which CUDA (`run`, host inputs) serves at least CROSSOVER_MARGIN times the CPU's rows/s
    at every larger batch measured too; None if never.

    The margin and the "every larger batch" keep noise out: a tree model runs on the CPU under both providers, and
    equal speeds then read as a crossover at whichever batch the CUDA session happened to be 1% faster."""
    speed = {(r.provider, r.batch): r.rows_per_s for r in rows if r.model == model and r.mode == "run"}
    batches = sorted({b for _, b in speed})
    wins = []
    for batch in batches:
        gpu, cpu = speed.get((CUDA, batch)), speed.get((CPU, batch))
        wins.append(gpu is not None and cpu is not None and gpu >= CROSSOVER_MARGIN * cpu)
    for i, batch in enumerate(batches):
        if all(wins[i:]):
            return batch
    return None


def speedups(rows: list[Row], model: str) -> list[tuple[int, float, dict[str, float]]]:
    """Per batch: CPU rows/s and each CUDA mode's rows/s as a multiple of it."""
    cpu = {r.batch: r.rows_per_s for r in rows if r.model == model and r.provider == CPU and r.rows_per_s}
    table = []
    for batch, base in sorted(cpu.items()):
        modes = {
            r.mode: r.rows_per_s / base
            for r in rows
            if r.model == model and r.provider == CUDA and r.batch == batch and r.rows_per_s
        }
        table.append((batch, base, modes))
    return table


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.3f}"


def _speedup_table(report: Report) -> list[str]:
    lines = [
        "CUDA rows/s as a multiple of the CPU's, same inputs (`run`: inputs from host memory every call, as a server;",
        "`io_binding`: inputs resident on the GPU; `cuda_graph`: the captured graph replayed):",
        "",
        "| model | batch | CPU rows/s | run | io_binding | cuda_graph |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for model in report.crossover:
        for batch, base, modes in speedups(report.rows, model):
            shown = [f"{modes[m]:.2f}x" if m in modes else "—" for m in ("run", "io_binding", "cuda_graph")]
            lines.append(f"| {model} | {batch} | {base:,.0f} | {' | '.join(shown)} |")
    return [*lines, ""] if any(r.provider == CUDA and r.rows_per_s for r in report.rows) else []


def to_markdown(report: Report) -> str:
    lines = [
        f"# ONNX Runtime CUDA vs CPU — {report.device}",
        "",
        f"onnxruntime {report.onnxruntime}, Python {report.python}; "
        f"providers: {', '.join(report.available_providers)}; CUDA libraries: {report.cuda_libraries}; "
        f"TF32 {'on' if report.tf32 else 'off'}; CPU intra-op threads {report.cpu_threads or 'ORT default'}.",
        "",
        *_speedup_table(report),
        "| model | provider | mode | batch | p50 ms | p99 ms | rows/s | note |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in report.rows:
        speed = "—" if r.rows_per_s is None else f"{r.rows_per_s:,.0f}"
        lines.append(
            f"| {r.model} | {r.provider} | {r.mode} | {r.batch} | {_ms(r.p50_ms)} | {_ms(r.p99_ms)} | "
            f"{speed} | {r.note} |"
        )
    lines += [
        "",
        f"Parity CUDA vs CPU (max abs diff, tolerance 1e-4) and crossover batch (CUDA `run` >= {CROSSOVER_MARGIN}x "
        "the CPU's rows/s from that batch on):",
        "",
    ]
    for model in report.crossover:
        value = report.parity.get(model)
        shown = (
            f"{value:.2e} ({'ok' if value <= PARITY_TOLERANCE else 'OVER TOLERANCE'})"
            if isinstance(value, float)
            else f"not measured: {value}"
        )
        lines.append(f"- `{model}`: parity {shown}; crossover batch {report.crossover[model] or 'none measured'}")
    if not any(r.provider == CUDA and r.rows_per_s for r in report.rows):
        lines += ["", "**No GPU figures**: no CUDA session could be opened on this host (see the notes above)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, metavar="NAME=PATH", help="an exported .onnx model")
    parser.add_argument("--batches", default=",".join(map(str, DEFAULT_BATCHES)))
    parser.add_argument("--seconds", type=float, default=1.0, help="timed seconds per (model, provider, mode, batch)")
    parser.add_argument("--threads", type=int, default=0, help="CPU intra-op threads (0: one per physical core)")
    parser.add_argument(
        "--tf32", action="store_true", help="CUDA in TF32 (ORT's default; serving's is off): writes gpu-tf32.*"
    )
    parser.add_argument("--out", type=Path, default=Path("reports/gpu"))
    args = parser.parse_args(argv)
    models: dict[str, Path] = {}
    for spec in args.model:
        name, sep, path = spec.partition("=")
        if not sep or not name or not Path(path).is_file():
            parser.error(f"--model wants NAME=PATH of an existing file, got {spec!r}")  # exits 2
        models[name] = Path(path)
    try:
        batches = sorted({int(b) for b in args.batches.split(",")})
    except ValueError:
        parser.error(f"--batches wants comma-separated integers, got {args.batches!r}")
    if not batches or batches[0] < 1:
        parser.error(f"--batches must be >= 1, got {args.batches!r}")
    libraries = preload_cuda_libraries()
    report = Report(
        describe_device(),
        ort.__version__,
        sys.version.split()[0],
        list(ort.get_available_providers()),
        libraries,
        tf32=args.tf32,
        cpu_threads=args.threads,
    )
    for name, path in models.items():
        print(f"benchmarking {name} ({path})", flush=True)
        bench_model(report, name, path, batches, args.seconds, args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "gpu" if any(r.provider == CUDA and r.rows_per_s for r in report.rows) else "cpu-only"
    stem += "-tf32" if args.tf32 else ""
    (args.out / f"{stem}.json").write_text(json.dumps(asdict(report), indent=1))
    (args.out / f"{stem}.md").write_text(to_markdown(report))
    print(f"report written to {args.out / f'{stem}.md'} and {args.out / f'{stem}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
