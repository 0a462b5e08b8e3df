"""deploy/kubernetes/, offline: every manifest against the Kubernetes schemas (kubernetes-validate,
strict: unknown fields are errors) and the ScaledObject against KEDA's CRD schema kept in
tests/deploy/schemas/; the manifests agree with each other and with the ConfigMap's config; and
the StatefulSet rendered for 3 pods, the way each pod's env is filled in and read by the
worker's own config loading, gives 3 distinct instance ids and transactional ids that a
restarted pod gets back. Deliberately broken copies must fail each check."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from worker.config import load_settings, settings_from_dict

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
KEDA_CRD = Path(__file__).parent / "schemas" / "keda.sh_scaledobjects-v2.20.2.yaml"
# 1.32: the first release with the apps.kubernetes.io/pod-index label on by default (GA);
# and the newest schemas the package ships.
VERSIONS = ("1.32.0", kubernetes_validate.latest_version())
KINDS = {
    "ConfigMap",
    "StatefulSet",
    "Service",
    "PodDisruptionBudget",
    "PersistentVolumeClaim",
    "ScaledObject",
}

Manifests = dict[str, dict[str, Any]]


def load_manifests(folder: Path = KUBERNETES) -> Manifests:
    """Every document of every ``*.yaml`` in ``folder``, by kind (one of each)."""
    found: Manifests = {}
    for path in sorted(folder.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is None:
                continue
            assert doc["kind"] not in found, f"two {doc['kind']} manifests"
            found[doc["kind"]] = doc
    return found


@pytest.fixture(scope="module")
def manifests() -> Manifests:
    return load_manifests()


# -- schemas ------------------------------------------------------------------------------------


def _strict(schema: Any) -> Any:
    """KEDA's schema with unknown fields refused, as ``kubectl apply --validate=strict`` does
    (a structural CRD schema otherwise lets the API server prune them silently)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def keda_validator() -> jsonschema.protocols.Validator:
    crd = next(d for d in yaml.safe_load_all(KEDA_CRD.read_text(encoding="utf-8")) if d)
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    schema = _strict(version["schema"]["openAPIV3Schema"])
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return cls(schema)


def schema_errors(doc: dict[str, Any], version: str) -> list[str]:
    """Why ``doc`` is not a valid object of its kind (empty: valid)."""
    if doc.get("kind") == "ScaledObject":
        if doc.get("apiVersion") != "keda.sh/v1alpha1":
            return [f"apiVersion {doc.get('apiVersion')!r} is not keda.sh/v1alpha1"]
        errors = [
            f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in keda_validator().iter_errors(doc)
        ]
        spec = doc.get("spec", {})
        low, high = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
        # the CRD's one CEL rule (x-kubernetes-validations), which jsonschema does not run
        if not errors and low > high:
            errors.append("minReplicaCount must be less than or equal to maxReplicaCount")
        return errors
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'.'.join(map(str, exc.path))}: {exc.message}"]
    return []


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_for_its_schema(manifests: Manifests, version: str) -> None:
    assert set(manifests) == KINDS
    problems = {kind: schema_errors(doc, version) for kind, doc in manifests.items()}
    assert problems == {kind: [] for kind in manifests}


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``doc`` with ``value`` at the dotted ``path`` (a number indexes a list)."""
    doc = copy.deepcopy(doc)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = doc
    for part in parents:
        node = node[part]
    node[last] = value
    return doc


BROKEN = [
    ("StatefulSet", "spec.replica", 3),  # a misspelt field
    ("StatefulSet", "spec.template.spec.containers.0.ports.0.containerPort", "9464"),
    ("StatefulSet", "spec.template.spec.containers.0.livenessProbe.httpGet.path", 404),
    ("PodDisruptionBudget", "spec.maxUnavailable", ["one"]),
    ("Service", "spec.ports.0.port", "metrics"),
    ("ScaledObject", "spec.maxReplicaCount", "eight"),
    ("ScaledObject", "spec.maxReplicas", 8),  # not a ScaledObject field
    ("ScaledObject", "spec.minReplicaCount", 9),  # above maxReplicaCount
    ("ScaledObject", "spec.triggers.0.metadata.lagThreshold", 5000),  # metadata is strings
    ("ScaledObject", "apiVersion", "keda.sh/v1"),
]


@pytest.mark.parametrize(("kind", "path", "value"), BROKEN, ids=[f"{k}:{p}" for k, p, _ in BROKEN])
def test_a_broken_copy_fails_validation(
    manifests: Manifests, kind: str, path: str, value: Any
) -> None:
    broken = _set(manifests[kind], path, value)
    assert schema_errors(broken, VERSIONS[-1]), f"{kind} with {path}={value!r} passed"


def test_a_scaled_object_without_triggers_fails(manifests: Manifests) -> None:
    broken = copy.deepcopy(manifests["ScaledObject"])
    del broken["spec"]["triggers"]
    assert any("triggers" in e for e in schema_errors(broken, VERSIONS[-1]))


# -- the manifests agree with each other and with the config ------------------------------------


def container(manifests: Manifests) -> dict[str, Any]:
    (worker,) = manifests["StatefulSet"]["spec"]["template"]["spec"]["containers"]
    return worker


def config_text(manifests: Manifests) -> str:
    return manifests["ConfigMap"]["data"]["streamfuse.yaml"]


def consistency_problems(manifests: Manifests) -> list[str]:
    """What a manifest says that another one, or the worker's config, contradicts."""
    problems: list[str] = []
    sts, svc = manifests["StatefulSet"], manifests["Service"]
    pdb, so = manifests["PodDisruptionBudget"], manifests["ScaledObject"]
    pod = sts["spec"]["template"]
    labels = pod["metadata"]["labels"]
    settings = settings_from_dict(yaml.safe_load(config_text(manifests)), environ={})
    worker = container(manifests)
    ports = {p["name"]: p["containerPort"] for p in worker["ports"]}

    def check(ok: bool, problem: str) -> None:
        if not ok:
            problems.append(problem)

    def selects(selector: dict[str, str]) -> bool:
        return bool(selector) and selector.items() <= labels.items()

    check(selects(sts["spec"]["selector"]["matchLabels"]), "StatefulSet selector misses its pods")
    check(selects(svc["spec"]["selector"]), "Service selector misses the pods")
    check(selects(pdb["spec"]["selector"]["matchLabels"]), "PDB selector misses the pods")
    check(sts["spec"]["serviceName"] == svc["metadata"]["name"], "serviceName is not the Service")
    check(ports.get("metrics") == settings.metrics.port, "containerPort is not metrics.port")
    check(settings.metrics.host in ("0.0.0.0", "::"), "metrics.host does not listen on the pod IP")
    annotations = pod["metadata"].get("annotations", {})
    check(annotations.get("prometheus.io/scrape") == "true", "no Prometheus scrape annotation")
    check(annotations.get("prometheus.io/port") == str(settings.metrics.port), "scrape port")
    check(annotations.get("prometheus.io/path") == "/metrics", "scrape path")
    probes = {
        name: (worker.get(name) or {}).get("httpGet", {})
        for name in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    for name, path in (
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        check(probes[name].get("path") == path, f"{name} does not ask {path}")
        check(probes[name].get("port") in ("metrics", settings.metrics.port), f"{name} port")
    requests = worker.get("resources", {}).get("requests", {})
    check({"cpu", "memory"} <= set(requests), "no cpu and memory requests")
    # the config file the container reads is the ConfigMap's key, mounted
    config_path = Path(worker["args"][worker["args"].index("--config") + 1])
    mounts = {m["name"]: m for m in worker["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    config_volume = next(
        (n for n, v in volumes.items() if v.get("configMap", {}).get("name")), None
    )
    check(
        config_volume is not None
        and volumes[config_volume]["configMap"]["name"]
        == manifests["ConfigMap"]["metadata"]["name"]
        and Path(mounts[config_volume]["mountPath"]) == config_path.parent
        and config_path.name in manifests["ConfigMap"]["data"],
        "--config is not the mounted ConfigMap key",
    )
    store_mounts = [
        m
        for n, m in mounts.items()
        if "persistentVolumeClaim" in volumes.get(n, {})
        and Path(m["mountPath"]) in settings.store.path.parents
    ]
    check(len(store_mounts) == 1, "store.path is not on the model-store volume")
    check(all(m.get("readOnly") for m in store_mounts), "the workers mount the store read-write")
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in volumes.values()
        if "persistentVolumeClaim" in v
    }
    check(claims == {manifests["PersistentVolumeClaim"]["metadata"]["name"]}, "claimName")
    env = {e["name"]: e for e in worker.get("env", [])}
    check("STREAMFUSE_KAFKA__INSTANCE_ID" in env, "no per-pod kafka.instance_id")
    # KEDA: this StatefulSet, this group and topic, never above the input's partitions
    spec = so["spec"]
    target = spec["scaleTargetRef"]
    check(
        (target.get("kind"), target["name"]) == ("StatefulSet", sts["metadata"]["name"]),
        "the ScaledObject does not scale the StatefulSet",
    )
    check(spec["maxReplicaCount"] <= settings.topics.partitions, "maxReplicaCount > partitions")
    check(sts["spec"]["replicas"] <= spec["maxReplicaCount"], "replicas > maxReplicaCount")
    (trigger,) = spec["triggers"]
    meta = trigger["metadata"]
    check(trigger["type"] == "kafka", "the trigger is not KEDA's Kafka scaler")
    check(meta.get("consumerGroup") == settings.kafka.group_id, "consumerGroup is not group_id")
    check(meta.get("topic") == settings.topics.input, "topic is not topics.input")
    check(
        meta.get("bootstrapServers") == settings.kafka.bootstrap_servers,
        "bootstrapServers differ from the config",
    )
    check(meta.get("allowIdleConsumers", "false") == "false", "KEDA may scale past partitions")
    return problems


def test_the_manifests_agree_with_each_other_and_the_config(manifests: Manifests) -> None:
    assert consistency_problems(manifests) == []


INCONSISTENT = [
    ("ScaledObject", "spec.maxReplicaCount", 16),  # the input topic has 8 partitions
    ("ScaledObject", "spec.triggers.0.metadata.consumerGroup", "other"),
    ("ScaledObject", "spec.triggers.0.metadata.allowIdleConsumers", "true"),
    ("StatefulSet", "spec.template.spec.containers.0.readinessProbe.httpGet.path", "/healthz"),
    ("StatefulSet", "spec.template.spec.containers.0.ports.0.containerPort", 9465),
    ("StatefulSet", "spec.template.spec.containers.0.volumeMounts.1.readOnly", False),
    ("StatefulSet", "spec.serviceName", "workers"),
    ("PodDisruptionBudget", "spec.selector.matchLabels", {"app": "other"}),
]


@pytest.mark.parametrize(
    ("kind", "path", "value"), INCONSISTENT, ids=[f"{k}:{p}" for k, p, _ in INCONSISTENT]
)
def test_an_inconsistent_copy_is_caught(
    manifests: Manifests, kind: str, path: str, value: Any
) -> None:
    broken = {**manifests, kind: _set(manifests[kind], path, value)}
    assert consistency_problems(broken), f"{kind} with {path}={value!r} passed"


# -- instance ids, rendered the way each pod gets them ------------------------------------------


def pod_env(sts: dict[str, Any], ordinal: int) -> dict[str, str]:
    """The container env of pod ``ordinal``, resolved as the kubelet does for the fields used:
    plain values, and ``fieldRef`` to the pod's name, namespace and labels (a StatefulSet pod
    carries ``statefulset.kubernetes.io/pod-name`` and ``apps.kubernetes.io/pod-index``)."""
    name = f"{sts['metadata']['name']}-{ordinal}"
    labels = {
        **sts["spec"]["template"]["metadata"]["labels"],
        "statefulset.kubernetes.io/pod-name": name,
        "apps.kubernetes.io/pod-index": str(ordinal),
    }
    fields = {"metadata.name": name, "metadata.namespace": "default"}
    fields |= {f"metadata.labels['{k}']": v for k, v in labels.items()}
    env = {}
    (worker,) = sts["spec"]["template"]["spec"]["containers"]
    for var in worker.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        field_path = var["valueFrom"]["fieldRef"]["fieldPath"]
        if field_path not in fields:
            raise AssertionError(f"{var['name']}: cannot render fieldPath {field_path}")
        env[var["name"]] = fields[field_path]
    return env


def pod_ids(manifests: Manifests, ordinal: int, folder: Path) -> tuple[str, str]:
    """(instance id, transactional id) that pod ``ordinal``'s worker computes at start-up."""
    worker = container(manifests)
    config = folder / Path(worker["args"][worker["args"].index("--config") + 1]).name
    config.write_text(config_text(manifests), encoding="utf-8")
    settings = load_settings(config, environ=pod_env(manifests["StatefulSet"], ordinal))
    assert settings.kafka.processing_guarantee == "exactly_once"
    return settings.kafka.instance_id, settings.kafka.effective_transactional_id


def test_three_pods_have_distinct_ids_that_a_restarted_pod_gets_back(
    manifests: Manifests, tmp_path: Path
) -> None:
    first = [pod_ids(manifests, i, tmp_path) for i in range(3)]
    again = [pod_ids(manifests, i, tmp_path) for i in range(3)]  # the same pods, restarted
    assert [instance for instance, _ in first] == ["0", "1", "2"]
    assert len({txn for _, txn in first}) == 3
    assert first == again  # a replacement pod has its predecessor's id, so it fences it
    assert first[2][1] == "streamfuse-streamfuse-2"


def test_pods_without_the_ordinal_would_share_one_transactional_id(
    manifests: Manifests, tmp_path: Path
) -> None:
    """The check above is not vacuous: drop the env and every pod is instance 0."""
    broken = copy.deepcopy(manifests)
    container(broken)["env"] = [
        e for e in container(broken)["env"] if e["name"] != "STREAMFUSE_KAFKA__INSTANCE_ID"
    ]
    assert len({pod_ids(broken, i, tmp_path) for i in range(3)}) == 1
    assert "no per-pod kafka.instance_id" in consistency_problems(broken)
