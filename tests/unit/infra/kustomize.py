"""A small kustomize for the features infra/k8s uses, so tests render the overlays offline (no kubectl here).

    resources(Path("infra/k8s/overlays/gpu"))   # == `kubectl kustomize infra/k8s/overlays/gpu`, as a list of dicts

Supported: `resources` (files, and folders holding a kustomization.yaml) and `patches` with a `path` to a
strategic-merge patch (matched on kind and metadata.name). Maps merge key by key; the lists Kubernetes merges by a
key (containers by name, env by name, ...) merge by that key, other lists are replaced, as in kubectl. Anything else
in a kustomization (images, namePrefix, generators, JSON patches, `$patch` directives) raises, so a manifest change
that this renderer would get wrong fails the tests instead of validating something kubectl would not produce.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SUPPORTED_KEYS = {"apiVersion", "kind", "resources", "patches"}
# patchMergeKey of the list fields that appear in our manifests (k8s.io/api types); other lists are replaced
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "envFrom": None,  # no merge key upstream: replaced
    "ports": "containerPort",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
}

Resource = dict[str, Any]


class KustomizeError(ValueError):
    """The kustomization uses something this renderer does not implement."""


def resources(directory: Path) -> list[Resource]:
    """Render the kustomization in `directory`: its resources, then its patches applied in order."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    unsupported = set(kustomization) - SUPPORTED_KEYS
    if unsupported:
        raise KustomizeError(f"{directory}/kustomization.yaml: unsupported fields {sorted(unsupported)}")
    rendered: list[Resource] = []
    for entry in kustomization.get("resources", ()):
        path = (directory / entry).resolve()
        if path.is_dir():
            rendered += resources(path)
        else:
            rendered += [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    for patch_entry in kustomization.get("patches", ()):
        if set(patch_entry) != {"path"}:
            raise KustomizeError(f"{directory}: only `patches: - path: ...` is supported, got {patch_entry}")
        patch = yaml.safe_load((directory / patch_entry["path"]).read_text(encoding="utf-8"))
        target = _find(rendered, patch["kind"], patch["metadata"]["name"], directory / patch_entry["path"])
        rendered[rendered.index(target)] = strategic_merge(target, patch)
    return rendered


def _find(rendered: list[Resource], kind: str, name: str, source: Path) -> Resource:
    matches = [r for r in rendered if r["kind"] == kind and r["metadata"]["name"] == name]
    if len(matches) != 1:
        raise KustomizeError(f"{source}: patch target {kind}/{name} matches {len(matches)} resources")
    return matches[0]


def strategic_merge(base: Any, patch: Any, field: str | None = None) -> Any:
    """`patch` merged into a copy of `base` (Kubernetes strategic merge for the supported list fields)."""
    if isinstance(patch, dict):
        if any(key.startswith("$") for key in patch):
            raise KustomizeError(f"strategic-merge directives are not supported: {sorted(patch)}")
        merged = copy.deepcopy(base) if isinstance(base, dict) else {}
        for key, value in patch.items():
            merged[key] = strategic_merge(merged.get(key), value, key) if value is not None else None
        return {k: v for k, v in merged.items() if v is not None}
    key = MERGE_KEYS.get(field or "") if isinstance(patch, list) and isinstance(base, list) else None
    if key is not None:
        merged_list = copy.deepcopy(base)
        for item in patch:
            index = next((i for i, old in enumerate(merged_list) if old.get(key) == item.get(key)), None)
            if index is None:
                merged_list.append(copy.deepcopy(item))
            else:
                merged_list[index] = strategic_merge(merged_list[index], item, None)
        return merged_list
    return copy.deepcopy(patch)
