"""The Kubernetes manifests (``deploy/kubernetes/``), checked offline.

There is no cluster here, so:

* The kustomization is built with the real ``kubectl kustomize`` when ``kubectl`` is on the PATH
  (kustomize v5 is built into it; it needs no network for a local directory), else by
  :func:`python_build` (concatenation, the kustomization's namespace and image). Both are
  built when both exist and must agree, so the fallback stays faithful.
* Every built object of the core API (Deployment, ConfigMap) is validated against the
  Kubernetes OpenAPI schemas with ``kubernetes-validate`` in strict mode (unknown fields fail),
  for the oldest version the manifests support (1.29: native sidecars) and the newest it knows.
* The Prometheus Operator's objects (PodMonitor, PrometheusRule) are custom resources, which
  ``kubernetes-validate`` has no schema for: their structure is checked here against the fields
  the operator's API reference documents (monitoring.coreos.com/v1), a subset written by hand,
  not the operator's CRD schema.
* The PrometheusRule's groups are extracted and run through the real ``promtool check rules``
  and ``promtool test rules`` with ``dashboards/alerts_test.yml`` (``prometheus_bin``).
* The generated files are regenerated and compared; the dashboards' ConfigMaps must hold
  ``dashboards/*.json`` byte for byte.

Nothing here proves that a cluster schedules the pod, that the operator accepts the custom
resources or that Grafana's sidecar loads the dashboards: that needs a cluster.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import re
import shutil
import subprocess
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml

from dashboards import alerts
from dashboards import kubernetes as k8s
from dashboards.config import DEFAULTS

from prometheus_bin import promtool

ROOT = Path(__file__).resolve().parent.parent
DIR = ROOT / "deploy" / "kubernetes"
KUSTOMIZATION = DIR / "kustomization.yaml"
TIMEOUT_S = 120

#: the oldest Kubernetes the manifests support (native sidecars: beta, on by default) and the
#: newest kubernetes-validate knows
VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
CRD_GROUP = "monitoring.coreos.com/v1"
#: the token Secret the user creates (README), and its key
TOKEN_SECRET = "otel-agents-sidecar-token"
TOKEN_KEY = "token"
#: client-side `kubectl apply` stores the object in an annotation: 256 KiB for all of them
ANNOTATIONS_LIMIT = 262144


# --- building ------------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def kustomization() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(KUSTOMIZATION)
    return data


def python_build() -> list[dict[str, Any]]:
    """The kustomization built by concatenation: every resource, its namespace and images set.

    Handles exactly the fields ``kustomization.yaml`` uses (``test_kustomization_uses_...``)."""
    spec = kustomization()
    images = {i["name"]: f"{i.get('newName', i['name'])}:{i['newTag']}" for i in spec["images"]}
    objects = []
    for resource in spec["resources"]:
        for doc in yaml.safe_load_all((DIR / resource).read_text(encoding="utf-8")):
            doc = copy.deepcopy(doc)
            doc["metadata"]["namespace"] = spec["namespace"]
            if doc["kind"] == "Deployment":
                pod = doc["spec"]["template"]["spec"]
                for c in [*pod.get("initContainers", []), *pod["containers"]]:
                    c["image"] = images.get(c["image"], c["image"])
            objects.append(doc)
    return objects


def kubectl_build() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl is not None
    out = subprocess.run(
        [kubectl, "kustomize", str(DIR)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def built() -> list[dict[str, Any]]:
    return kubectl_build() if shutil.which("kubectl") else python_build()


def key(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def the(kind: str) -> dict[str, Any]:
    [obj] = [o for o in built() if o["kind"] == kind]
    return obj


def pod() -> dict[str, Any]:
    spec: dict[str, Any] = the("Deployment")["spec"]["template"]["spec"]
    return spec


def container(name: str) -> dict[str, Any]:
    spec = pod()
    [found] = [
        c for c in [*spec.get("initContainers", []), *spec["containers"]] if c["name"] == name
    ]
    return found


def sidecar() -> dict[str, Any]:
    return container("otel-agents-sidecar")


def worker() -> dict[str, Any]:
    return container("worker")


def volume(name: str) -> dict[str, Any]:
    [found] = [v for v in pod()["volumes"] if v["name"] == name]
    return found


def mount_of(c: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The volume mount ``path`` lies under in container ``c``."""
    for mount in c.get("volumeMounts", []):
        if PurePosixPath(path).is_relative_to(mount["mountPath"]):
            return dict(mount)
    return None


def sidecar_options() -> argparse.Namespace:
    """The sidecar's command through the sidecar's own argument parser."""
    from otel_agents._sidecar import cli

    command = sidecar()["command"]
    assert command[:2] == ["otel-agents", "sidecar"], command
    parser = argparse.ArgumentParser(exit_on_error=False, allow_abbrev=False)
    cli.add_arguments(parser)
    return parser.parse_args(command[2:])


# --- the kustomization ---------------------------------------------------------------------------


def test_kustomization_lists_every_manifest_and_nothing_else() -> None:
    resources = kustomization()["resources"]
    assert len(resources) == len(set(resources))
    for resource in resources:
        assert (DIR / resource).is_file(), f"kustomization.yaml lists {resource}: missing"
    manifests = {p.name for p in DIR.iterdir() if p.suffix in (".yaml", ".yml")}
    assert set(resources) == manifests - {KUSTOMIZATION.name}
    assert {p.name for p in DIR.iterdir()} == manifests, "only manifests in deploy/kubernetes"


def test_kustomization_uses_only_what_the_python_build_handles() -> None:
    spec = kustomization()
    assert set(spec) == {"apiVersion", "kind", "namespace", "resources", "images"}
    assert spec["kind"] == "Kustomization"
    for image in spec["images"]:
        assert set(image) <= {"name", "newName", "newTag"}, image
        assert "newTag" in image, image


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on the PATH")
def test_kubectl_kustomize_builds_what_the_python_build_builds() -> None:
    by_kubectl = sorted(kubectl_build(), key=key)
    by_python = sorted(python_build(), key=key)
    assert by_kubectl == by_python


def test_every_object_is_in_the_kustomization_namespace_with_a_unique_name() -> None:
    objects = built()
    assert len({key(o) for o in objects}) == len(objects)
    assert {o["metadata"]["namespace"] for o in objects} == {kustomization()["namespace"]}
    assert sorted(o["kind"] for o in objects) == sorted(
        ["Deployment", "PodMonitor", "PrometheusRule", "ConfigMap", "ConfigMap"]
    )


# --- the Kubernetes schemas ----------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_core_objects_validate_against_the_kubernetes_schemas(version: str) -> None:
    core = [o for o in built() if o["apiVersion"] != CRD_GROUP]
    assert {o["kind"] for o in core} == {"Deployment", "ConfigMap"}
    for obj in core:
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_validator_rejects_an_unknown_field() -> None:
    """Strict mode is on: a typo in a container fails, it is not ignored."""
    deployment = the("Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)


# --- the custom resources, by their documented fields ---------------------------------------------

#: the fields of monitoring.coreos.com/v1 this checks (the operator's API reference); a typo
#: or a field of another kind fails
_METADATA = {"name", "labels", "annotations", "namespace"}
_RELABEL = {"sourceLabels", "separator", "targetLabel", "regex", "modulus", "replacement", "action"}
_RELABEL_ACTIONS = {
    "replace", "keep", "drop", "hashmod", "labelmap", "labeldrop", "labelkeep",
    "lowercase", "uppercase", "keepequal", "dropequal",
}  # fmt: skip
_ENDPOINT = {
    "port", "portNumber", "targetPort", "path", "scheme", "params", "interval", "scrapeTimeout",
    "honorLabels", "honorTimestamps", "trackTimestampsStaleness", "metricRelabelings",
    "relabelings", "authorization", "basicAuth", "oauth2", "tlsConfig", "proxyUrl",
    "followRedirects", "enableHttp2", "filterRunning",
}  # fmt: skip
_PODMONITOR_SPEC = {
    "selector", "namespaceSelector", "podMetricsEndpoints", "jobLabel", "podTargetLabels",
    "sampleLimit", "targetLimit", "labelLimit", "labelNameLengthLimit", "labelValueLengthLimit",
    "attachMetadata", "scrapeProtocols", "scrapeClass",
}  # fmt: skip
_RULE_GROUP = {"name", "interval", "rules", "limit", "query_offset", "labels",
               "partial_response_strategy"}  # fmt: skip
_RULE = {"record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


def _fields(obj: dict[str, Any], allowed: set[str], where: str) -> None:
    assert isinstance(obj, dict), where
    unknown = set(obj) - allowed
    assert not unknown, f"{where}: not a documented field: {sorted(unknown)}"


def _strings(mapping: object, where: str) -> None:
    assert isinstance(mapping, dict), where
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()), where


def test_podmonitor_has_the_documented_structure() -> None:
    monitor = the("PodMonitor")
    assert monitor["apiVersion"] == CRD_GROUP
    _fields(monitor, {"apiVersion", "kind", "metadata", "spec"}, "PodMonitor")
    _fields(monitor["metadata"], _METADATA, "metadata")
    _strings(monitor["metadata"].get("labels", {}), "metadata.labels")
    spec = monitor["spec"]
    _fields(spec, _PODMONITOR_SPEC, "spec")
    _fields(spec["selector"], {"matchLabels", "matchExpressions"}, "spec.selector")
    _strings(spec["selector"]["matchLabels"], "spec.selector.matchLabels")
    assert isinstance(spec["podMetricsEndpoints"], list)
    assert spec["podMetricsEndpoints"]
    for i, endpoint in enumerate(spec["podMetricsEndpoints"]):
        where = f"podMetricsEndpoints[{i}]"
        _fields(endpoint, _ENDPOINT, where)
        assert isinstance(endpoint["port"], str), where  # a container port's name
        assert endpoint.get("scheme", "http") in {"http", "https"}, where
        for duration in ("interval", "scrapeTimeout"):
            assert _DURATION.match(endpoint.get(duration, "30s")), (where, duration)
        auth = endpoint["authorization"]
        _fields(auth, {"type", "credentials"}, f"{where}.authorization")
        assert auth["type"] == "Bearer"
        _fields(auth["credentials"], {"name", "key", "optional"}, f"{where}.credentials")
        for j, relabel in enumerate(endpoint.get("relabelings", [])):
            _fields(relabel, _RELABEL, f"{where}.relabelings[{j}]")
            assert relabel.get("action", "replace") in _RELABEL_ACTIONS, relabel


def test_prometheusrule_has_the_documented_structure() -> None:
    rule = the("PrometheusRule")
    assert rule["apiVersion"] == CRD_GROUP
    _fields(rule, {"apiVersion", "kind", "metadata", "spec"}, "PrometheusRule")
    _fields(rule["metadata"], _METADATA, "metadata")
    _fields(rule["spec"], {"groups"}, "spec")
    for group in rule["spec"]["groups"]:
        _fields(group, _RULE_GROUP, f"group {group['name']}")
        for r in group["rules"]:
            where = r.get("alert") or r.get("record")
            _fields(r, _RULE, str(where))
            assert ("alert" in r) != ("record" in r), where
            assert isinstance(r["expr"], str), where
            if "for" in r:
                assert _DURATION.match(r["for"]), where
            for mapping in ("labels", "annotations"):
                _strings(r.get(mapping, {}), f"{where}.{mapping}")


# --- the PrometheusRule: the same rules, through promtool -----------------------------------------


def run_promtool(*args: str | Path, cwd: Path) -> None:
    proc = subprocess.run(
        [str(promtool()), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=cwd,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "SUCCESS" in output, output
    assert not re.search(r"warn", output, re.IGNORECASE), output


def test_prometheusrule_holds_the_rules_of_alerts_yml() -> None:
    spec = the("PrometheusRule")["spec"]
    assert spec == alerts.build_rules(DEFAULTS)
    assert spec == load_yaml(ROOT / "dashboards" / "alerts.yml")


def test_prometheusrule_groups_pass_promtool_check_and_unit_tests(tmp_path: Path) -> None:
    """The groups as the operator would load them, with the unit tests of alerts.yml."""
    groups = {"groups": load_yaml(DIR / k8s.RULE_FILE)["spec"]["groups"]}
    rule_tests = load_yaml(ROOT / "dashboards" / "alerts_test.yml")
    assert rule_tests["rule_files"] == ["alerts.yml"]
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(groups, sort_keys=False), "utf-8")
    shutil.copyfile(ROOT / "dashboards" / "alerts_test.yml", tmp_path / "alerts_test.yml")
    run_promtool("check", "rules", "alerts.yml", cwd=tmp_path)
    run_promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)


# --- the generated files -------------------------------------------------------------------------


def test_generated_manifests_are_current() -> None:
    generated = k8s.generated()
    assert set(generated) == {DIR / k8s.RULE_FILE, *(DIR / m for m in k8s.DASHBOARD_FILES.values())}
    for path, text in generated.items():
        assert path.is_file(), f"{path.name} missing: run `make dashboards`"
        assert path.read_text(encoding="utf-8") == text, (
            f"deploy/kubernetes/{path.name} is stale: run `make dashboards` and commit the result"
        )
        assert text.startswith(k8s.HEADER)


@pytest.mark.parametrize(("json_name", "manifest"), sorted(k8s.DASHBOARD_FILES.items()))
def test_dashboard_configmaps_hold_the_dashboards_byte_for_byte(
    json_name: str, manifest: str
) -> None:
    configmap = load_yaml(DIR / manifest)
    assert configmap["kind"] == "ConfigMap"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"  # a string, not 1
    assert list(configmap["data"]) == [json_name]
    original = (ROOT / "dashboards" / json_name).read_bytes()
    assert configmap["data"][json_name].encode("utf-8") == original
    # client-side `kubectl apply` keeps the whole object in an annotation
    assert len((DIR / manifest).read_bytes()) < ANNOTATIONS_LIMIT


# --- the pod -------------------------------------------------------------------------------------


def test_the_sidecar_is_a_native_sidecar_that_outlives_the_worker() -> None:
    spec = pod()
    assert [c["name"] for c in spec["initContainers"]] == ["otel-agents-sidecar"]
    assert sidecar()["restartPolicy"] == "Always"
    assert [c["name"] for c in spec["containers"]] == ["worker"]
    # started and healthy before the worker starts
    assert sidecar()["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_worker_and_sidecar_share_the_multiproc_dir() -> None:
    env = {e["name"]: e.get("value") for e in worker()["env"]}
    directory = env["PROMETHEUS_MULTIPROC_DIR"]
    assert sidecar_options().multiproc_dir == directory
    worker_mount, sidecar_mount = mount_of(worker(), directory), mount_of(sidecar(), directory)
    assert worker_mount is not None
    assert sidecar_mount is not None
    assert worker_mount["mountPath"] == sidecar_mount["mountPath"] == directory
    assert worker_mount["name"] == sidecar_mount["name"]
    assert not worker_mount.get("readOnly")
    assert not sidecar_mount.get("readOnly")
    assert "emptyDir" in volume(worker_mount["name"])
    assert worker()["command"] == ["python", "agent.py", "start"]


def test_the_sidecar_reads_its_token_from_the_secret_the_podmonitor_sends() -> None:
    options = sidecar_options()
    assert options.host == "0.0.0.0"
    token_file = PurePosixPath(options.bearer_token_file)
    mount = mount_of(sidecar(), str(token_file))
    assert mount is not None
    assert mount["readOnly"] is True
    secret = volume(mount["name"])["secret"]
    assert secret["secretName"] == TOKEN_SECRET
    [item] = secret["items"]
    assert token_file == PurePosixPath(mount["mountPath"]) / item["path"]
    assert item["key"] == TOKEN_KEY
    assert secret["defaultMode"] & 0o007 == 0, "not readable by others"
    assert secret["defaultMode"] & 0o040, "readable by the fsGroup"
    assert pod()["securityContext"]["fsGroup"] == pod()["securityContext"]["runAsGroup"]
    # no secret on the command line or in the environment
    assert "OTEL_AGENTS_SIDECAR_BEARER_TOKEN" not in {e["name"] for e in sidecar().get("env", [])}

    [endpoint] = the("PodMonitor")["spec"]["podMetricsEndpoints"]
    credentials = endpoint["authorization"]["credentials"]
    assert (credentials["name"], credentials["key"]) == (TOKEN_SECRET, TOKEN_KEY)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"create secret generic {TOKEN_SECRET}" in readme
    assert f"--from-literal={TOKEN_KEY}=" in readme


def test_the_podmonitor_scrapes_the_sidecar_as_the_job_the_rules_select() -> None:
    monitor = the("PodMonitor")
    labels = the("Deployment")["spec"]["template"]["metadata"]["labels"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert selector == the("Deployment")["spec"]["selector"]["matchLabels"]
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    [port] = [p for p in sidecar()["ports"] if p["name"] == endpoint["port"]]
    assert port["containerPort"] == int(sidecar_options().port)
    assert endpoint["path"] == "/metrics"
    # the sidecar's preStop waits out two scrapes after the worker exited
    assert seconds(endpoint["interval"]) * 2 <= prestop_seconds()
    [job] = [r for r in endpoint["relabelings"] if r["targetLabel"] == "job"]
    assert job.get("action", "replace") == "replace"
    assert "sourceLabels" not in job
    assert DEFAULTS.selector == f'job="{job["replacement"]}"'


def test_probes_use_the_health_endpoints() -> None:
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = sidecar()[probe]["httpGet"]
        assert (get["path"], get["port"]) == ("/healthz", "metrics"), probe
    ports = {p["name"]: p["containerPort"] for p in worker()["ports"]}
    from livekit.agents.worker import ServerOptions

    # livekit's health check: `/` on AgentServer's port, 8081 in production (`start`)
    assert ServerOptions.port.prod_default == ports["health"]  # type: ignore[attr-defined]
    for probe in ("readinessProbe", "livenessProbe"):
        get = worker()[probe]["httpGet"]
        assert (get["path"], get["port"]) == ("/", "health"), probe


def seconds(duration: str) -> int:
    from dashboards.config import seconds as parse

    return parse(duration)


def prestop_seconds() -> int:
    command = sidecar()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:2] == ["python", "-c"], command
    [slept] = re.findall(r"^import time; time\.sleep\((\d+)\)$", command[2])
    return int(slept)


def test_the_grace_period_covers_livekits_drain_and_the_final_scrape() -> None:
    from livekit.agents import AgentServer

    from otel_agents._config import DEFAULT_EXIT_FLUSH_TIMEOUT

    defaults = inspect.signature(AgentServer.__init__).parameters
    drain = defaults["drain_timeout"].default
    close = defaults["shutdown_process_timeout"].default
    needed = drain + close + DEFAULT_EXIT_FLUSH_TIMEOUT + prestop_seconds()
    grace = pod()["terminationGracePeriodSeconds"]
    assert needed <= grace <= needed + 60, (needed, grace)
    # livekit drains on SIGTERM itself: the worker needs no preStop
    assert "lifecycle" not in worker()


def test_every_container_is_locked_down_and_sized() -> None:
    security = pod()["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert f"--uid {security['runAsUser']} " in dockerfile
    assert pod()["automountServiceAccountToken"] is False
    for c in (sidecar(), worker()):
        assert c["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }, c["name"]
        assert {"cpu", "memory"} <= set(c["resources"]["requests"]), c["name"]
        assert "memory" in c["resources"]["limits"], c["name"]
        for mount in c.get("volumeMounts", []):
            assert "emptyDir" in volume(mount["name"]) or mount.get("readOnly"), mount
    # the worker's writable /tmp (multiprocessing's forkserver socket)
    assert mount_of(worker(), "/tmp") is not None


def test_both_containers_run_the_image_the_kustomization_sets() -> None:
    raw = load_yaml(DIR / "deployment.yaml")["spec"]["template"]["spec"]
    names = {c["image"] for c in [*raw["initContainers"], *raw["containers"]]}
    [image] = kustomization()["images"]
    assert names == {image["name"]}
    assert {sidecar()["image"], worker()["image"]} == {f"{image['newName']}:{image['newTag']}"}


def test_kubernetes_validate_is_a_dev_dependency() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    dev = pyproject["project"]["optional-dependencies"]["dev"]
    assert any(d.startswith("kubernetes-validate") for d in dev)


def test_readme_documents_the_kubernetes_deploy() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "### Kubernetes" in readme
    assert "kubectl apply -k deploy/kubernetes" in readme
    assert f"kubectl create namespace {kustomization()['namespace']}" in readme
