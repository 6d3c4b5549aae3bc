"""nn.Module -> ONNX with a dynamic batch axis: torch's dynamo exporter, the legacy TorchScript one as fallback.

torch is imported inside the functions: importing `training.export` (to read a file's metadata, to export a
booster) does not load torch.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx

from journey.errors import InvalidInputError, JourneyError
from journey.onnx_contract import EXPORTER_TORCH_DYNAMO, EXPORTER_TORCH_LEGACY
from journey.registry import sha256_of  # the hash the registry checks at registration, computed the same way
from training.export.onnx_files import ExportReport, remove_side_files, staged, write_metadata
from training.export.parity import check_parity

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def export_torch(
    module: torch.nn.Module,
    example_inputs: dict[str, torch.Tensor],
    holdout: dict[str, np.ndarray],
    path: Path,
    *,
    output_names: list[str],
    tolerance: float = 1e-4,
) -> ExportReport:
    """Export `module` with a dynamic batch axis (dim 0 of every input) and check it against its own forward.

    `example_inputs` are passed positionally in dict order, so the keys must follow `forward`'s parameters; they
    become the ONNX input names. Use an example batch of at least 2 rows: torch.export specialises a size-1 axis.
    The dynamo exporter is tried first; only if it raises does the legacy TorchScript exporter run (`exporter` in
    the report and metadata says which one wrote the file).
    """
    input_names = list(example_inputs)
    if not input_names:
        raise InvalidInputError("example_inputs is empty", field="example_inputs")
    if set(holdout) != set(input_names):
        raise InvalidInputError(
            f"holdout inputs {sorted(holdout)} differ from example inputs {sorted(input_names)}",
            field="holdout",
            value=sorted(holdout),
        )
    feeds = {name: _as_dtype(name, holdout[name], example_inputs[name]) for name in input_names}

    module.eval()
    args = tuple(example_inputs[name] for name in input_names)

    def native(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return _torch_reference(module, [inputs[name] for name in input_names])

    with staged(path) as staging:
        exporter = torch_onnx_export(module, args, staging, input_names, output_names)
        onnx_model = onnx.load(str(staging))  # pulls in external data, if an exporter wrote any
        remove_side_files(staging)
        onnx.save_model(onnx_model, str(staging), save_as_external_data=False)
        graph_outputs = [o.name for o in onnx_model.graph.output]
        if graph_outputs != list(output_names):
            raise JourneyError(f"exported graph has outputs {graph_outputs}, expected {output_names}")
        diffs = check_parity(staging, native, feeds, tolerance=tolerance)
        report = ExportReport(
            path=path,
            sha256="",  # known once the staged file is in place
            framework="torch",
            exporter=exporter,
            input_names=tuple(input_names),
            output_names=tuple(output_names),
            max_abs_diff=diffs,
        )
        write_metadata(staging, report, feature_order=input_names)
    return replace(report, sha256=sha256_of(path))


def _torch_reference(module: torch.nn.Module, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    import torch  # loaded on use (see the module docstring)

    with torch.no_grad():
        out = module(*(torch.from_numpy(np.ascontiguousarray(a)) for a in inputs))
    outputs = out if isinstance(out, (tuple, list)) else (out,)
    return [o.detach().cpu().numpy() for o in outputs]


def torch_onnx_export(
    module: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
) -> str:
    """Write `path` with the dynamo exporter, or the legacy one if dynamo raises; return which one wrote it."""
    import torch  # loaded on use (see the module docstring)
    from torch.jit._trace import TracerWarning

    batch = torch.export.Dim("batch")
    try:
        with warnings.catch_warnings():
            # Emitted from inside torch's own tracing of stock modules (nn.GRU's _flat_weights, torch._check_is_size
            # in its RNN decomposition, pytree internals, dynamo probing `.grad` of non-leaf tensors, one Dim shared
            # by several inputs): nothing the caller's
            # model can change, and the parity check below is what tells whether the graph is right.
            warnings.filterwarnings("ignore", message=r".*_check_is_size will be removed", category=FutureWarning)
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
            warnings.filterwarnings("ignore", message=r"The tensor attributes .* were assigned during export")
            warnings.filterwarnings("ignore", message=r".*The axis name: .* will not be used")
            warnings.filterwarnings("ignore", message=r"The \.grad attribute of a Tensor that is not a leaf")
            torch.onnx.export(
                module,
                args,
                str(path),
                input_names=input_names,
                output_names=output_names,
                dynamo=True,
                external_data=False,
                dynamic_shapes=tuple({0: batch} for _ in args),
                verbose=False,
            )
        return EXPORTER_TORCH_DYNAMO
    except Exception as exc:  # noqa: BLE001  any dynamo failure (many error types): the legacy exporter is the fallback
        log.warning("dynamo ONNX export failed, trying the legacy exporter", extra={"error": repr(exc)[:500]})
        remove_side_files(path)
        path.unlink(missing_ok=True)
    with warnings.catch_warnings():
        # The legacy exporter is deprecated and says so on every call (we only get here when dynamo failed); its
        # TracerWarnings flag Python-level branches frozen at the example's values, which the parity check at other
        # batch sizes is there to catch; likewise its warning that an RNN exported at batch > 1 may fail at other
        # batch sizes (parity runs at 1, 7 and 1024).
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=TracerWarning)
        warnings.filterwarnings("ignore", message=r"Exporting a model to ONNX with a batch_size other than 1")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=input_names,
            output_names=output_names,
            dynamo=False,
            dynamic_axes={name: {0: "batch"} for name in [*input_names, *output_names]},
        )
    return EXPORTER_TORCH_LEGACY


def _as_dtype(name: str, values: np.ndarray, example: torch.Tensor) -> np.ndarray:
    dtype = example.detach().cpu().numpy().dtype
    array = np.asarray(values)
    if not np.can_cast(array.dtype, dtype, casting="same_kind"):
        raise InvalidInputError(
            f"holdout input {name!r} has dtype {array.dtype}, the model takes {dtype}", field="holdout", value=name
        )
    return array.astype(dtype)
