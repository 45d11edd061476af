"""Write the KServe schemas the tests check deploy/k8s/kserve/ against, from KServe's CRDs.

    python tests/deploy/schemas/extract_kserve.py KSERVE_CHECKOUT COMMIT

KServe's CRDs (config/crd/full/) are megabytes, mostly the pod spec repeated for every
component. This keeps each kind's ``openAPIV3Schema`` as KServe publishes it, pruned to the
fields deploy/k8s/kserve/ uses (their subschemas whole), and closes every object that lists
its properties (``additionalProperties: false``, as kubernetes-validate's strict mode does), so
a misspelt or misplaced field fails. A field the manifests start using must be added to
``KEEP`` and the schemas regenerated. Run by hand, never by the tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent

#: Per kind: its CRD, and the fields kept at each pruned level (dotted path -> names).
KEEP: dict[str, tuple[str, dict[str, list[str]]]] = {
    "InferenceService": (
        "config/crd/full/serving.kserve.io_inferenceservices.yaml",
        {
            "spec": ["predictor"],
            "spec.predictor": [
                "minReplicas",
                "maxReplicas",
                "terminationGracePeriodSeconds",
                "model",
                "containers",
            ],
        },
    ),
    "ServingRuntime": (
        "config/crd/full/serving.kserve.io_servingruntimes.yaml",
        {
            "spec": ["supportedModelFormats", "protocolVersions", "containers"],
        },
    ),
}


def _prune(schema: dict[str, Any], keep: dict[str, list[str]], path: str = "") -> None:
    props = schema.get("properties")
    if props is None:
        return
    if path in keep:
        for name in list(props):
            if name not in keep[path]:
                del props[name]
        schema["required"] = [r for r in schema.get("required", []) if r in props]
        if not schema["required"]:
            del schema["required"]
    for name, sub in props.items():
        _prune(sub, keep, f"{path}.{name}" if path else name)


def _close(schema: Any) -> None:
    if isinstance(schema, dict):
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        for value in schema.values():
            _close(value)
    elif isinstance(schema, list):
        for value in schema:
            _close(value)


def main(checkout: str, commit: str) -> None:
    for kind, (crd_path, keep) in KEEP.items():
        text = subprocess.run(
            ["git", "-C", checkout, "show", f"{commit}:{crd_path}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        crd = yaml.safe_load(text)
        (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
        schema = version["schema"]["openAPIV3Schema"]
        schema["properties"].pop("status", None)
        _prune(schema, keep)
        _close(schema)
        schema["$comment"] = (
            f"kserve/kserve@{commit} {crd_path} ({crd['spec']['group']}/{version['name']}), "
            "pruned and closed by extract_kserve.py"
        )
        out = HERE / f"kserve-{kind.lower()}.json"
        out.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main(*sys.argv[1:3])
