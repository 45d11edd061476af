"""deploy/k8s/: schema-valid offline (kubernetes-validate, strict; KServe's own CRD schema),
consistent with itself and the image, and its probes answered by a real server."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
import yaml
from kubernetes_validate import ValidationError as KubernetesValidationError
from kubernetes_validate import validate as kubernetes_validate

from modelserve.keys import create_key
from modelserve.settings import load_settings
from modelserve.workers import DRAIN_SECONDS

from ..conftest import LiveServer
from ..conftest import running_server
from .conftest import DEPLOY
from .conftest import ROOT
from .dockerfile import parse

K8S = DEPLOY / "k8s"
#: A version kubernetes-validate bundles schemas for (strict: unknown fields are errors).
KUBERNETES_VERSION = "1.33.0"
SCHEMAS = Path(__file__).parent / "schemas"


def _documents(folder: Path) -> list[dict[str, Any]]:
    docs = []
    for path in sorted(folder.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return docs


MANIFESTS = _documents(K8S)
BY_KIND = {doc["kind"]: doc for doc in MANIFESTS}
KSERVE = {doc["kind"]: doc for doc in _documents(K8S / "kserve")}


def _container() -> dict[str, Any]:
    (container,) = BY_KIND["Deployment"]["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = container
    return result


def test_the_kinds() -> None:
    assert sorted(BY_KIND) == sorted(
        [
            "ConfigMap",
            "Deployment",
            "HorizontalPodAutoscaler",
            "PersistentVolumeClaim",
            "PodDisruptionBudget",
            "Secret",
            "Service",
        ]
    )
    assert len(MANIFESTS) == len(BY_KIND)
    assert BY_KIND["HorizontalPodAutoscaler"]["apiVersion"] == "autoscaling/v2"
    assert sorted(KSERVE) == ["InferenceService", "ServingRuntime"]


@pytest.mark.parametrize("doc", MANIFESTS, ids=lambda d: d["kind"])
def test_manifest_is_valid_kubernetes(doc: dict[str, Any]) -> None:
    kubernetes_validate(doc, KUBERNETES_VERSION, strict=True)


def test_validation_is_strict() -> None:
    broken = copy.deepcopy(BY_KIND["Deployment"])
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(KubernetesValidationError):
        kubernetes_validate(broken, KUBERNETES_VERSION, strict=True)


def _kserve_schema(kind: str) -> dict[str, Any]:
    """KServe's CRD schema for ``kind``, pruned to the fields used (schemas/extract_kserve.py)."""
    schema: dict[str, Any] = json.loads((SCHEMAS / f"kserve-{kind.lower()}.json").read_text())
    return schema


@pytest.mark.parametrize("kind", ["InferenceService", "ServingRuntime"])
def test_kserve_manifest_matches_kserves_crd(kind: str) -> None:
    jsonschema.validate(KSERVE[kind], _kserve_schema(kind))
    broken = copy.deepcopy(KSERVE[kind])
    broken["spec"]["protocolVersoin"] = "v2"  # misspelt: the closed schema refuses it
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, _kserve_schema(kind))


def test_kserve_predictor_is_modelserve_speaking_v2() -> None:
    isvc, runtime = KSERVE["InferenceService"], KSERVE["ServingRuntime"]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    model = isvc["spec"]["predictor"]["model"]
    assert model["protocolVersion"] == "v2" and "v2" in runtime["spec"]["protocolVersions"]
    assert model["runtime"] == runtime["metadata"]["name"]
    formats = {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert model["modelFormat"]["name"] in formats
    (container,) = runtime["spec"]["containers"]
    for args, ports in ((model["args"], model["ports"]), (container["args"], container["ports"])):
        assert args[:2] == ["serve", "/mnt/models"]  # KServe's storage initializer's folder
        assert args[args.index("--port") + 1] == "8080" and ports[0]["containerPort"] == 8080
    grace = isvc["spec"]["predictor"]["terminationGracePeriodSeconds"]
    assert grace > _graceful_timeout() + DRAIN_SECONDS


def _graceful_timeout() -> int:
    return int(BY_KIND["ConfigMap"]["data"]["MODELSERVE_GRACEFUL_TIMEOUT"])


def test_termination_grace_covers_prestop_drain_and_graceful_timeout() -> None:
    pod = BY_KIND["Deployment"]["spec"]["template"]["spec"]
    pre_stop = _container()["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > (
        int(pre_stop[1]) + DRAIN_SECONDS + _graceful_timeout()
    )


def test_the_pieces_fit_together(monkeypatch: pytest.MonkeyPatch) -> None:
    deployment, container = BY_KIND["Deployment"], _container()
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert BY_KIND["Service"]["spec"]["selector"].items() <= labels.items()
    assert (
        BY_KIND["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    )
    target = BY_KIND["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    # Ports: the image's port, named once and used by the Service and the probes.
    (port,) = container["ports"]
    assert str(port["containerPort"]) == parse(ROOT / "Dockerfile")[-1].env()["MODELSERVE_PORT"]
    assert BY_KIND["Service"]["spec"]["ports"][0]["targetPort"] == port["name"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == port["name"]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    # Settings from the ConfigMap, secrets from the Secret, files mounted where settings say.
    config = BY_KIND["ConfigMap"]
    assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
    secret = BY_KIND["Secret"]
    (password,) = container["env"]
    assert password["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]
    assert password["valueFrom"]["secretKeyRef"]["key"] in secret["stringData"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    keys_file = Path(config["data"]["MODELSERVE_KEYS_FILE"])
    keys_volume = volumes[mounts[str(keys_file.parent)]]["secret"]
    assert keys_volume["secretName"] == secret["metadata"]["name"]
    assert keys_volume["items"] == [{"key": keys_file.name, "path": keys_file.name}]
    models = volumes[mounts[container["args"][1]]]["persistentVolumeClaim"]
    assert models["claimName"] == BY_KIND["PersistentVolumeClaim"]["metadata"]["name"]
    # Every value of the ConfigMap is a valid setting.
    for key, value in config["data"].items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.proxy_hops == 1 and settings.workers == 2


@dataclass
class Pod:
    server: LiveServer
    key: str


@pytest.fixture(scope="module")
def pod(demo_repo: Path, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    """The KServe predictor's command line with the ConfigMap's settings, on loopback: Redis
    and PostgreSQL are this machine's (the test Redis; db test), the keys file a real one."""
    root = tmp_path_factory.mktemp("k8s")
    models = root / "models"
    shutil.copytree(demo_repo / "iris", models / "iris")
    keys_file = root / "keys.toml"
    key = create_key(keys_file, "client", ("predict",), None)
    redis_host = redis_url.split("//", 1)[1].rsplit("/", 1)[0]
    env = {}
    for name, value in BY_KIND["ConfigMap"]["data"].items():
        value = value.replace("redis:6379", redis_host)
        value = value.replace("modelserve@postgres:5432/modelserve", "postgres@127.0.0.1:5432/test")
        env[name] = value
    env["MODELSERVE_KEYS_FILE"] = str(keys_file)
    env["MODELSERVE_WORKERS"] = "1"  # the probes, not the capacity
    args = KSERVE["InferenceService"]["spec"]["predictor"]["model"]["args"][1:]
    args = [str(models) if a == "/mnt/models" else a for a in args]
    args = ["127.0.0.1" if a == "0.0.0.0" else a for a in args]
    with running_server(args, env) as server:
        yield Pod(server, key)


def _probe_paths() -> set[str]:
    container = _container()
    paths = {container[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe")}
    paths.add(container["livenessProbe"]["httpGet"]["path"])
    (runtime,) = KSERVE["ServingRuntime"]["spec"]["containers"]
    paths |= {runtime[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")}
    return paths


def test_probes_are_routes_the_server_answers(pod: Pod) -> None:
    paths = _probe_paths()
    assert paths == {"/health", "/v2/health/ready", "/v2/health/live"}
    for path in sorted(paths):
        # kubelet sends no credentials: the probes must be public with authentication on.
        assert requests.get(pod.server.url + path, timeout=5).status_code == 200, path
    assert requests.get(pod.server.url + "/v2/health/nope", timeout=5).status_code == 404


def test_kserve_v2_route_is_the_inference_service_name(pod: Pod) -> None:
    name = KSERVE["InferenceService"]["metadata"]["name"]
    headers = {"X-API-Key": pod.key}
    meta = requests.get(f"{pod.server.url}/v2/models/{name}", headers=headers, timeout=10)
    assert meta.status_code == 200, meta.text
    (tensor,) = meta.json()["inputs"]
    body = {
        "inputs": [
            {
                "name": tensor["name"],
                "shape": [1, 4],
                "datatype": "FP64",
                "data": [5.1, 3.5, 1.4, 0.2],
            }
        ]
    }
    url = f"{pod.server.url}/v2/models/{name}/infer"
    assert requests.post(url, json=body, timeout=10).status_code == 401  # keys are on
    answer = requests.post(url, json=body, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_name"] == name
