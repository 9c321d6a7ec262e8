"""The Helm chart renders, validates and lints for the defaults, every ``charts/streamd/ci`` values file
and the values file the README's "Deploy on Kubernetes" section shows.

Rules checked: every rendered manifest is valid Kubernetes (kubernetes-validate, strict) and the chart
lints clean; the rendered streamd config passes ``streamd check-config``; the pod is hardened
(non-root, read-only root FS, no capabilities, seccomp RuntimeDefault) with probes on /livez and
/readyz; ``terminationGracePeriodSeconds`` exceeds ``shutdown_grace``; one replica, Recreate; every
``${env:}`` / ``${file:}`` in the config is wired to a Secret; values.schema.json rejects typos, and
its config part is the one generated from the config models.
Rendering uses helm-python-sdk (Helm v4 as a shared library; no helm binary, no cluster).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any, get_args

import helm_python as helm  # helm-python-sdk (dev extra)
import kubernetes_validate
import pytest
import yaml

from streamd.config import Config, SourceConfig
from streamd.config_core import HttpConfig, KafkaConfig, SecurityConfig, SpoolConfig, TopicsConfig
from streamd.config_types import parse_duration
from streamd.schemas import chart_values_schema
from streamd.schemas import render as render_schema

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "streamd"
K8S_VERSIONS = ("1.27.0", "1.34.0")  # the chart's kubeVersion floor and a current release
SPOOL_DIR = "/var/lib/streamd"
SECRETS_DIR = "/etc/streamd/secrets"
VALUES_FILES = sorted((CHART / "ci").glob("*-values.yaml"))
DEPLOY_DOCS = [
    p
    for p in (ROOT / "README.md",)
    if p.exists() and "## Deploy on Kubernetes" in p.read_text(encoding="utf-8")
]
CASES: list[tuple[str, Path | None]] = [
    ("default", None),
    *((p.stem, p) for p in VALUES_FILES),
    *((f"{p.name}-example", p) for p in DEPLOY_DOCS[:1]),
]
CASE_IDS = [name for name, _ in CASES]
CRD_KINDS = {  # no upstream schema: checked by hand
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
WORKLOAD_KINDS = ("Deployment", "StatefulSet")


def load_values(path: Path | None) -> dict[str, Any]:
    """The values of one case: {} = the chart's defaults; for a Markdown file, the values file the
    "Deploy on Kubernetes" section shows (its first yaml block), so the documented example works."""
    if path is None:
        return {}
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".md":
        section = text[text.index("## Deploy on Kubernetes") :]
        text = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    values = yaml.safe_load(text)
    assert isinstance(values, dict), f"{path.name} must be a mapping"
    return values


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Render the chart offline (``helm template``) into its Kubernetes objects."""
    with helm.Chart.load(CHART) as chart:
        out = chart.render(values or {}, name="streamd", namespace="contact-centre", is_install=True)
    docs: list[dict[str, Any]] = []
    for template, text in sorted(out.items()):
        if template.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def kinds(docs: list[dict[str, Any]]) -> set[str]:
    return {d["kind"] for d in docs}


def workload(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The one Deployment or StatefulSet (values ``workload``)."""
    found = [d for d in docs if d["kind"] in WORKLOAD_KINDS]
    assert len(found) == 1, f"expected one Deployment or StatefulSet, got {len(found)}"
    return found[0]


def rendered_config(docs: list[dict[str, Any]]) -> str:
    [config_map] = [d for d in docs if d["kind"] == "ConfigMap" and "config.yaml" in d["data"]]
    text = config_map["data"]["config.yaml"]
    assert isinstance(text, str)
    return text


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    [c] = workload(docs)["spec"]["template"]["spec"]["containers"]
    return c


@pytest.fixture(params=CASES, ids=CASE_IDS)
def case(request: pytest.FixtureRequest) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(values, rendered objects) of one values file."""
    values = load_values(request.param[1])
    return values, render(values)


def test_ci_values_files_exist() -> None:
    assert len(VALUES_FILES) >= 2, "charts/streamd/ci/ must hold example values files"


def test_manifests_validate_against_kubernetes(case: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    _, docs = case
    assert {"ConfigMap", "Service", "ServiceAccount"} <= kinds(docs)
    workload(docs)
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            CRD_CHECKS[doc["kind"]](doc)
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                name = f"{doc['kind']}/{doc['metadata']['name']}"
                pytest.fail(f"Kubernetes {version}: {name}: {exc.message} at {list(exc.path)}")


def check_service_monitor(doc: dict[str, Any]) -> None:
    spec = doc["spec"]
    assert set(spec) <= {"selector", "endpoints", "namespaceSelector"}
    assert spec["selector"]["matchLabels"]
    [endpoint] = spec["endpoints"]
    assert endpoint["port"] == "http"
    assert endpoint["path"] == "/metrics"


def check_prometheus_rule(doc: dict[str, Any]) -> None:
    """The PrometheusRule CRD's shape (monitoring.coreos.com/v1): groups of named rules, each alert
    with an expression, a severity, a summary and a description; durations in Prometheus's form."""
    assert set(doc["spec"]) == {"groups"}
    for group in doc["spec"]["groups"]:
        assert set(group) <= {"name", "interval", "rules"}
        assert group["name"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert isinstance(rule["expr"], str)
            assert rule["expr"].strip()
            assert re.fullmatch(r"[0-9]+(ms|s|m|h|d)", rule.get("for", "0s")), rule
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}
            assert set(rule["annotations"]) == {"summary", "description"}


CRD_CHECKS = {"ServiceMonitor": check_service_monitor, "PrometheusRule": check_prometheus_rule}


@pytest.mark.parametrize(("name", "path"), CASES, ids=CASE_IDS)
def test_chart_lints_clean(name: str, path: Path | None) -> None:
    report = helm.lint(CHART, load_values(path), strict=True, kube_version=f"v{K8S_VERSIONS[-1]}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"], report["errors"]
    assert not problems, problems


def test_rendered_config_passes_check_config(
    case: tuple[dict[str, Any], list[dict[str, Any]]], tmp_path: Path
) -> None:
    """``python -m streamd check-config`` on the ConfigMap's file, with the Secrets faked.

    ``${env:X}`` gets a dummy value; ``${file:/etc/streamd/secrets/...}`` is pointed at a dummy file
    under tmp_path (the real paths are the chart's Secret mounts).
    """
    _, docs = case
    text = rendered_config(docs)
    secrets = tmp_path / "secrets"
    for ref in re.findall(r"\$\{file:([^}]+)\}", text):
        assert ref.startswith(SECRETS_DIR + "/"), f"${{file:{ref}}} is outside the Secret mounts"
        fake = secrets / ref.removeprefix(SECRETS_DIR + "/")
        fake.parent.mkdir(parents=True, exist_ok=True)
        fake.write_text("dummy-file-secret\n")
    path = tmp_path / "config.yaml"
    path.write_text(text.replace(SECRETS_DIR + "/", f"{secrets}/"))
    env = dict(os.environ)
    env.update({n: f"dummy-{n.lower()}" for n in re.findall(r"\$\{env:([^}]+)\}", text)})
    proc = subprocess.run(
        [sys.executable, "-m", "streamd", "check-config", "-c", str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert ": ok" in proc.stdout


def test_pod_is_hardened_with_probes(case: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    values, docs = case
    pod = workload(docs)["spec"]["template"]["spec"]
    c = container(docs)

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["resources"]["requests"]
    assert not pod.get("hostNetwork")
    assert not pod.get("hostPID")
    for volume in pod["volumes"]:  # only the volume types Pod Security "restricted" allows
        assert set(volume) - {"name"} <= {"configMap", "emptyDir", "secret", "persistentVolumeClaim"}
    assert c["resources"]["limits"]["memory"]

    [port] = c["ports"]
    assert port["name"] == "http"
    for probe, path in (
        ("startupProbe", "/livez"),
        ("livenessProbe", "/livez"),
        ("readinessProbe", "/readyz"),
    ):
        assert c[probe]["httpGet"] == {"path": path, "port": "http"}, probe
    config = Config.model_validate(yaml.safe_load(_without_secrets(rendered_config(docs))))
    assert config.http.port == port["containerPort"]
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] > config.kafka.startup_timeout

    assert c["command"][0] == "streamd"
    assert c["command"][-1] == "run"
    assert c["args"] == ["-c", "/etc/streamd/config.yaml"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/etc/streamd/config.yaml"]["readOnly"] is True
    assert SPOOL_DIR in mounts
    assert "/tmp" in mounts
    assert PurePosixPath(config.spool.path).parent == PurePosixPath(SPOOL_DIR)
    assert values.get("config", {}).get("spool", {}).get("path") is None


def test_grace_period_exceeds_shutdown_grace(case: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    values, docs = case
    grace_config = yaml.safe_load(rendered_config(docs))["shutdown_grace"]
    shutdown_grace = parse_duration(grace_config)
    assert shutdown_grace == values.get("shutdownGraceSeconds", 10)
    termination = workload(docs)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert termination >= shutdown_grace + 5


def test_one_replica_recreated(case: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    values, docs = case
    if (values.get("config") or {}).get("cluster", {}).get("enabled"):
        return  # several replicas: test_three_replicas_with_the_cluster
    spec = workload(docs)["spec"]
    assert spec["replicas"] in (0, 1)
    if values.get("workload") == "statefulset":  # the old pod is gone before the new one starts
        assert spec["updateStrategy"] == {"type": "RollingUpdate"}
        return
    assert spec["strategy"] == {"type": "Recreate"}


def test_every_secret_reference_is_wired(case: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    """Each ${env:X} comes from a Secret (env entry or envFrom); each ${file:P} from a mounted Secret."""
    _, docs = case
    text = rendered_config(docs)
    c = container(docs)
    env_names = {e["name"] for e in c.get("env", [])}
    for name in re.findall(r"\$\{env:([^}]+)\}", text):
        assert name in env_names or c.get("envFrom"), f"${{env:{name}}} is not provided"
    volumes = {v["name"]: v for v in workload(docs)["spec"]["template"]["spec"]["volumes"]}
    secret_mounts = {
        m["mountPath"]: volumes[m["name"]]["secret"]
        for m in c["volumeMounts"]
        if "secret" in volumes.get(m["name"], {})  # a StatefulSet's spool is a claim template
    }
    for ref in re.findall(r"\$\{file:([^}]+)\}", text):
        path = PurePosixPath(ref)
        owners = [(PurePosixPath(p), s) for p, s in secret_mounts.items() if path.is_relative_to(p)]
        assert owners, f"${{file:{ref}}} is not under a mounted Secret"
        mount, secret = owners[0]
        if secret.get("items"):
            assert str(path.relative_to(mount)) in {i["path"] for i in secret["items"]}


def test_secret_file_mounts_and_env_refs() -> None:
    docs = render(load_values(CHART / "ci" / "all-vendors-values.yaml"))
    c = container(docs)
    env = {e["name"]: e for e in c["env"]}
    assert env["KAFKA_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "kafka-user-streamd",
        "key": "password",
    }
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == f"{SECRETS_DIR}/o2g")
    assert mount["readOnly"] is True
    volume = next(
        v for v in workload(docs)["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]
    )
    assert volume["secret"]["secretName"] == "streamd-o2g"
    assert volume["secret"]["defaultMode"] == 0o440
    assert "envFrom" not in c

    sasl = container(render(load_values(CHART / "ci" / "o2g-sasl-values.yaml")))
    assert sasl["envFrom"] == [{"secretRef": {"name": "streamd-env"}}]


def test_optional_objects() -> None:
    default = render()
    assert "ServiceMonitor" not in kinds(default)
    assert "PersistentVolumeClaim" not in kinds(default)
    assert "PodDisruptionBudget" in kinds(default)
    spool = next(
        v for v in only(default, "Deployment")["spec"]["template"]["spec"]["volumes"] if v["name"] == "spool"
    )
    assert "emptyDir" in spool

    sasl = render(load_values(CHART / "ci" / "o2g-sasl-values.yaml"))
    assert {"ServiceMonitor", "PersistentVolumeClaim"} <= kinds(sasl)
    pvc = only(sasl, "PersistentVolumeClaim")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    spool = next(
        v for v in only(sasl, "Deployment")["spec"]["template"]["spec"]["volumes"] if v["name"] == "spool"
    )
    assert spool["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]

    existing = render(load_values(CHART / "ci" / "all-vendors-values.yaml"))
    assert "PersistentVolumeClaim" not in kinds(existing)
    assert "PodDisruptionBudget" not in kinds(existing)
    spool = next(
        v for v in only(existing, "Deployment")["spec"]["template"]["spec"]["volumes"] if v["name"] == "spool"
    )
    assert spool["persistentVolumeClaim"]["claimName"] == "streamd-spool"


def test_config_checksum_follows_the_config() -> None:
    def checksum(values: dict[str, Any]) -> str:
        docs = render(values)
        annotation = workload(docs)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        assert isinstance(annotation, str)
        assert len(annotation) == 64
        return annotation

    base = checksum({})
    assert checksum({}) == base
    assert checksum({"config": {"kafka": {"topic_prefix": "other."}}}) != base
    assert checksum({"shutdownGraceSeconds": 20}) != base
    assert base != hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize(
    "values",
    [
        {"replicas": 2},
        {"replica": 1},
        {"shutdownGraceSeconds": "10s"},
        {"config": {"shutdown_grace": "5s"}},
        {"config": {"spool": {"path": "/data/spool.db"}}},
        {"config": {"http": {"listen": "0.0.0.0:9000"}}},
        {"config": {"kafka": {"bootstrap": "kafka:9092"}}},
        {"config": {"kafka": {"security": {"protocol": "TLS"}}}},
        {"config": {"sources": [{"kind": "genesys", "name": "g"}]}},
        {"secrets": {"env": [{"name": "X", "secret": "s", "key": "k"}]}},
        {"secrets": {"existingSecrets": "s"}},
        {"image": {"repo": "x"}},
        {"probes": {"liveness": {"periodSeconds": 0, "timeoutSeconds": 1, "failureThreshold": 1}}},
    ],
    ids=repr,
)
def test_schema_rejects_typos_and_unsafe_values(values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError):
        render(values)


def _keys(model: type[Any], *, minus: frozenset[str] | set[str] = frozenset()) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()} - minus


def test_schema_config_part_is_generated_from_the_config_models() -> None:
    """values.schema.json's config part is what ``python -m streamd.schemas --write`` generates, and
    Helm loads exactly that file; the keys the chart sets itself are left out."""
    text = (CHART / "values.schema.json").read_text(encoding="utf-8")
    assert text == render_schema(chart_values_schema(json.loads(text))), (
        "values.schema.json is stale: run python -m streamd.schemas --write"
    )
    with helm.Chart.load(CHART) as chart:
        schema = chart.schema
    assert schema == json.loads(text)
    definitions = schema["definitions"]
    assert set(schema["properties"]["config"]["properties"]) == _keys(Config, minus={"shutdown_grace"})
    assert set(definitions["config.KafkaConfig"]["properties"]) == _keys(KafkaConfig)
    assert set(definitions["config.SecurityConfig"]["properties"]) == _keys(SecurityConfig)
    assert set(definitions["config.TopicsConfig"]["properties"]) == _keys(TopicsConfig)
    assert set(definitions["config.HttpConfig"]["properties"]) == _keys(HttpConfig, minus={"listen"})
    assert set(definitions["config.SpoolConfig"]["properties"]) == _keys(SpoolConfig, minus={"path"})
    sources = schema["properties"]["config"]["properties"]["sources"]["items"]["oneOf"]
    kinds = {definitions[s["$ref"].rsplit("/", 1)[1]]["properties"]["kind"]["const"] for s in sources}
    assert kinds == _kinds(SourceConfig)


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"config": {"kafka": {"linger": "5ms", "startup_timeout": 30}}}, None),
        ({"config": {"kafka": {"linger": "soon"}}}, "linger"),
        ({"config": {"sources": [{"kind": "o2g", "name": "pbx1"}]}}, "url"),
        (
            {
                "config": {
                    "sources": [
                        {"kind": "xima", "name": "cr1", "url": "https://x", "api_key": "k", "intervall": "5s"}
                    ]
                }
            },
            "intervall",
        ),
    ],
    ids=["durations", "bad-duration", "missing-required", "typo-in-a-source"],
)
def test_schema_validates_sources_and_durations_like_the_config_models(
    values: dict[str, Any], where: str | None
) -> None:
    if where is None:
        render(values)
        return
    with pytest.raises(helm.HelmValuesError, match=where):
        render(values)


def _kinds(annotated: Any) -> set[str]:
    union = get_args(annotated)[0]
    models = get_args(union) or (union,)
    return {kind for model in models for kind in get_args(model.model_fields["kind"].annotation)}


def _without_secrets(text: str) -> str:
    return re.sub(r"\$\{(env|file):[^}]+\}", "dummy", text)


CLUSTER3 = {"replicas": 3, "config": {"cluster": {"enabled": True, "group_id": "streamd"}}}


def test_three_replicas_with_the_cluster_render_and_validate() -> None:
    docs = render(CLUSTER3)
    spec = workload(docs)["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
    }
    anti = spec["template"]["spec"]["affinity"]["podAntiAffinity"]
    term = anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]
    assert only(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert "maxUnavailable" not in only(docs, "PodDisruptionBudget")["spec"]
    assert "cluster:" in rendered_config(docs)
    env = {e["name"]: e for e in container(docs)["env"]}
    assert env["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}  # webhook forwarding
    test_manifests_validate_against_kubernetes((CLUSTER3, docs))
    closed = render({**CLUSTER3, "networkPolicy": {"enabled": True, "ingress": {"allowAllWhenEmpty": False}}})
    [replicas_only] = only(closed, "NetworkPolicy")["spec"]["ingress"]
    assert replicas_only["from"] == [{"podSelector": {"matchLabels": spec["selector"]["matchLabels"]}}]
    test_manifests_validate_against_kubernetes((CLUSTER3, closed))


def test_several_replicas_need_the_cluster() -> None:
    with pytest.raises(helm.HelmValuesError):
        render({"replicas": 2})
    with pytest.raises(helm.HelmValuesError):
        render({"replicas": 3, "config": {"cluster": {"enabled": False}}})


ALL_OPTIONS = load_values(CHART / "ci" / "all-options-values.yaml")


def _quantity(value: str | int) -> int:
    """A Kubernetes quantity in bytes (the binary and decimal suffixes the chart uses)."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}
    match = re.fullmatch(r"([0-9]+)([A-Za-z]*)", str(value))
    assert match, f"unsupported quantity {value!r}"
    return int(match[1]) * units.get(match[2], 1) if match[2] else int(match[1])


def test_every_option_on_renders_and_validates() -> None:
    """StatefulSet with 3 replicas, NetworkPolicy, PrometheusRule, dashboard and ServiceMonitor."""
    docs = render(ALL_OPTIONS)
    assert {
        "StatefulSet",
        "NetworkPolicy",
        "PrometheusRule",
        "ServiceMonitor",
        "PodDisruptionBudget",
    } <= kinds(docs)
    assert "Deployment" not in kinds(docs)
    assert "PersistentVolumeClaim" not in kinds(docs)  # claims come from the template
    test_manifests_validate_against_kubernetes((ALL_OPTIONS, docs))


def test_statefulset_gives_each_replica_a_spool_claim() -> None:
    docs = render(ALL_OPTIONS)
    sts = only(docs, "StatefulSet")
    spec = sts["spec"]
    assert spec["replicas"] == 3
    assert spec["updateStrategy"] == {"type": "RollingUpdate"}
    assert "strategy" not in spec
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    [claim] = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "spool"
    assert claim["spec"]["resources"]["requests"]["storage"] == "4Gi"
    assert claim["spec"]["storageClassName"] == "standard-rwo"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    pod = spec["template"]["spec"]
    assert "spool" not in {v["name"] for v in pod["volumes"]}
    mount = next(m for m in container(docs)["volumeMounts"] if m["mountPath"] == SPOOL_DIR)
    assert mount["name"] == "spool"
    headless = next(
        d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == spec["serviceName"]
    )
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"] == spec["selector"]["matchLabels"]

    single = render({"workload": "statefulset", "spool": {"persistence": {"enabled": True}}})
    assert "PersistentVolumeClaim" not in kinds(single)
    assert only(single, "StatefulSet")["spec"]["replicas"] == 1
    test_manifests_validate_against_kubernetes(({}, single))
    assert "Service" in kinds(render())
    assert not [d for d in render() if d["metadata"]["name"].endswith("-headless")]


def test_network_policy() -> None:
    """Off by default; on: ingress only to the HTTP port from the configured peers, egress only to
    DNS, Kafka, the vendors and the extra rules."""
    assert "NetworkPolicy" not in kinds(render())
    docs = render(ALL_OPTIONS)
    policy = only(docs, "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"] == workload(docs)["spec"]["selector"]["matchLabels"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    [ingress, replicas_in] = policy["ingress"]  # all-options runs the cluster
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    selector = workload(docs)["spec"]["selector"]["matchLabels"]
    assert replicas_in == {
        "ports": [{"port": "http", "protocol": "TCP"}],
        "from": [{"podSelector": {"matchLabels": selector}}],
    }  # webhook POSTs forwarded between replicas
    [namespaces, pods, block] = ingress["from"]
    assert namespaces["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["monitoring", "ingress-nginx"]}
    ]
    assert pods == {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "wallboard-proxy"}}}
    assert block == {"ipBlock": {"cidr": "203.0.113.0/24"}}
    dns, kafka, vendors, replicas_out, extra = policy["egress"]
    assert replicas_out["to"] == [{"podSelector": {"matchLabels": selector}}]
    assert [p["protocol"] for p in replicas_out["ports"]] == ["TCP"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert {p["protocol"] for p in dns["ports"]} == {
        "UDP",
        "TCP",
    }
    assert dns["to"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kube-system"}
    assert kafka == {
        "ports": [{"port": 9092, "protocol": "TCP"}],
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kafka"}}}],
    }
    assert vendors["to"] == [{"ipBlock": {"cidr": "198.51.100.0/24"}}, {"ipBlock": {"cidr": "2001:db8::/32"}}]
    assert extra["ports"] == [{"port": 4317, "protocol": "TCP"}]

    defaults = render({"networkPolicy": {"enabled": True}})
    policy = only(defaults, "NetworkPolicy")["spec"]
    assert policy["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    _, kafka, vendors = policy["egress"]
    assert "to" not in kafka  # no brokers given: the Kafka ports to any address
    assert vendors["to"][0]["ipBlock"]["cidr"] == "0.0.0.0/0"  # public addresses only
    assert "10.0.0.0/8" in vendors["to"][0]["ipBlock"]["except"]
    closed = render({"networkPolicy": {"enabled": True, "ingress": {"allowAllWhenEmpty": False}}})
    assert only(closed, "NetworkPolicy")["spec"]["ingress"] == []
    test_manifests_validate_against_kubernetes(({}, defaults))


def test_ephemeral_storage_covers_the_spool_empty_dir(
    case: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    """Requests and limits of ephemeral-storage are set; with the spool in an emptyDir, the limit
    leaves room for the full spool and /tmp (else the kubelet evicts the pod as the spool fills)."""
    _, docs = case
    resources = container(docs)["resources"]
    assert _quantity(resources["requests"]["ephemeral-storage"]) > 0
    limit = _quantity(resources["limits"]["ephemeral-storage"])
    volumes = {v["name"]: v for v in workload(docs)["spec"]["template"]["spec"]["volumes"]}
    empty_dirs = sum(_quantity(v["emptyDir"]["sizeLimit"]) for v in volumes.values() if "emptyDir" in v)
    assert limit > empty_dirs


@pytest.mark.parametrize(
    "values",
    [
        {"workload": "daemonset"},
        {"prometheusRule": {"enabled": True, "spoolWarningPercent": 150}},
        {"prometheusRule": {"enabled": True, "componentFailedFor": "5 minutes"}},
        {"networkPolicy": {"enabled": True, "egress": {"kafka": {"ports": []}}}},
        {
            "networkPolicy": {
                "enabled": True,
                "egress": {"vendors": {"ports": [443], "cidrs": ["example.com"]}},
            }
        },
        {"networkPolicy": {"enabled": True, "ingress": {"namespace": ["monitoring"]}}},
        {"grafanaDashboard": {"enabled": True, "label": {"grafana_dashboard": "1"}}},
        {"workload": "statefulset", "replicas": 2},
    ],
    ids=repr,
)
def test_schema_rejects_bad_optional_objects(values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError):
        render(values)


def _xima(api_key: str, **values: Any) -> dict[str, Any]:
    source = {"kind": "xima", "name": "cr1", "url": "https://x.example", "api_key": api_key}
    return {"config": {"kafka": {"bootstrap_servers": "kafka:9092"}, "sources": [source]}, **values}


ENV = {"secrets": {"env": [{"name": "XIMA_KEY", "secretName": "xima", "key": "api-key"}]}}
FILES = {"secrets": {"files": [{"name": "xima", "secretName": "xima"}]}}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (_xima("${env:XIMA_KEY}"), "config: ${env:XIMA_KEY} is not wired: add XIMA_KEY to secrets.env"),
        (
            _xima("${file:/etc/streamd/secrets/xima/api-key}"),
            "config: ${file:/etc/streamd/secrets/xima/api-key} is not in a mounted Secret",
        ),
        (
            _xima(
                "${file:/etc/streamd/secrets/xima/api-key}",
                secrets={
                    "files": [{"name": "xima", "secretName": "xima", "items": [{"key": "k", "path": "k"}]}]
                },
            ),
            "is not in a mounted Secret",  # mounted, but that file is not one of its items
        ),
        (_xima("${env:}"), "config: unrecognised substitution ${env:}: use ${env:NAME} or ${file:/path}"),
        (_xima("${XIMA_KEY}"), "config: unrecognised substitution ${XIMA_KEY}"),
        (
            {
                "config": {
                    "sources": [
                        {"kind": "xima", "name": "cr1", "url": "https://x", "api_key": "k"},
                        {"kind": "xima", "name": "cr1", "url": "https://y", "api_key": "k"},
                    ]
                }
            },
            'config.sources[1].name: duplicate name "cr1"',
        ),
        (
            {"config": {"kafka": {"idempotence": True, "acks": "1"}}},
            "config.kafka: idempotence: true requires acks: all (got acks: 1)",
        ),
    ],
    ids=[
        "unwired-env",
        "unmounted-file",
        "file-not-an-item",
        "empty-env",
        "bare-substitution",
        "dup",
        "acks",
    ],
)
def test_install_fails_with_the_reason_for_a_config_the_pod_would_refuse(
    values: dict[str, Any], message: str
) -> None:
    """What values.schema.json cannot express is checked when the chart renders (templates/_validate.tpl):
    `helm install` fails with the reason instead of the pod exiting 2 at start."""
    with pytest.raises(helm.HelmRenderError) as info:
        render(values)
    assert "invalid streamd config:" in str(info.value)
    assert message in str(info.value)


def test_install_reports_every_config_problem_at_once_and_wired_secrets_render() -> None:
    values = _xima("${env:XIMA_KEY}")
    values["config"]["sources"].append(
        {"kind": "xima", "name": "cr1", "url": "https://y", "api_key": "${env:B}"}
    )
    with pytest.raises(helm.HelmRenderError) as info:
        render(values)
    lines = str(info.value).split("invalid streamd config:\n", 1)[1].splitlines()
    assert [line.split(" is not wired")[0] for line in lines[:2]] == [
        "config: ${env:XIMA_KEY}",
        "config: ${env:B}",
    ]
    assert lines[2] == 'config.sources[1].name: duplicate name "cr1"'

    for ok in (
        _xima("${env:XIMA_KEY}", **ENV),
        _xima("${env:XIMA_KEY}", secrets={"existingSecret": "streamd-env"}),  # its keys are unknown here
        _xima("${env:XIMA_KEY}", extraEnv=[{"name": "XIMA_KEY", "value": "from-extra-env"}]),
        _xima("${file:/etc/streamd/secrets/xima/api-key}", **FILES),
    ):
        assert render(ok), ok


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"config": {"kafka": {"linger": "5 minutes"}}}, "/config/kafka/linger"),
        ({"config": {"kafka": {"topic_prefx": "x."}}}, "topic_prefx"),
        ({"config": {"shutdown_grace": "5 minutes"}}, "shutdown_grace"),
    ],
    ids=["5-minutes", "typo", "chart-owned-key"],
)
def test_install_fails_on_what_the_generated_schema_refuses(values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=where):
        render(values)
