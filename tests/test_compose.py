"""The full local stack (``docker-compose.yml``, ``Dockerfile``, ``exporters/``), checked offline.

There is no Docker daemon here, and no collector, Tempo or Grafana binary, so:

* Prometheus' configuration is checked by the real ``promtool`` (Debian's 2.42, through
  ``prometheus_bin``) in a temporary directory laid out exactly as the compose file mounts it:
  the shipped ``exporters/prometheus.yml``, loading the shipped ``dashboards/alerts.yml``.
* Alertmanager's configuration is checked by the real ``amtool`` (Debian's 0.25), as shipped
  and with its commented receiver examples switched on.
* Everything else is structural: the compose file's images, mounts, commands and the service
  names each configuration points at; the Grafana provisioning; the Dockerfile against
  ``pyproject.toml`` and against the demo's own argument parser. The collector and Tempo
  configurations are parsed and their wiring checked, but nothing here can prove that the
  pinned collector or Tempo accepts every key: that needs ``docker compose up``.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import socket
import subprocess
import time
import tomllib
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import yaml

from .prometheus_bin import alert_states, alertmanager, amtool, promtool

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
EXPORTERS = ROOT / "exporters"
TIMEOUT_S = 60

SERVICES = {"agent", "otel-collector", "prometheus", "alertmanager", "tempo", "grafana"}
#: the job every alert rule and dashboard selects (dashboards/config.py)
JOB = "livekit-agents"
#: an exact release: 1.2.3 or v1.2.3, nothing floating (latest, 3, 3.15, main)
PINNED = re.compile(r"^[a-z0-9][a-z0-9./_-]*:v?\d+\.\d+\.\d+$")


# --- helpers -------------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def compose() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(COMPOSE)
    return data


def service(name: str) -> dict[str, Any]:
    svc: dict[str, Any] = compose()["services"][name]
    return svc


@dataclass(frozen=True)
class Mount:
    source: str  # "./x" for a bind mount, a volume name otherwise
    target: PurePosixPath
    read_only: bool

    @property
    def bind(self) -> bool:
        return self.source.startswith(("./", "../", "/"))

    @property
    def host_path(self) -> Path:
        assert self.bind, self
        return (ROOT / self.source).resolve()


def mounts(svc: dict[str, Any]) -> list[Mount]:
    found = []
    for spec in svc.get("volumes", []):
        assert isinstance(spec, str), f"use the short volume syntax: {spec!r}"
        source, target, *mode = spec.split(":")
        found.append(Mount(source, PurePosixPath(target), mode == ["ro"]))
    return found


def mount_for(svc: dict[str, Any], target: PurePosixPath) -> Mount | None:
    return next((m for m in mounts(svc) if m.target == target), None)


def under_mount(svc: dict[str, Any], path: PurePosixPath) -> Mount | None:
    return next((m for m in mounts(svc) if path.is_relative_to(m.target)), None)


def command(svc: dict[str, Any]) -> list[str]:
    cmd = svc.get("command", [])
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def container_ports(svc: dict[str, Any]) -> set[int]:
    return {int(str(spec).split(":")[-1].split("/")[0]) for spec in svc.get("ports", [])}


def host_port(address: str) -> tuple[str, int]:
    """``host:port`` or a URL -> (host, port)."""
    parts = urlsplit(address if "//" in address else f"//{address}")
    assert parts.hostname is not None, address
    assert parts.port is not None, address
    return parts.hostname, parts.port


def demo_options(argv: list[str]) -> Any:
    """``argv`` (after ``otel-agents``) through the demo's own parser and validation."""
    from otel_agents.demo import options

    assert argv[:1] == ["demo"], argv
    parser = argparse.ArgumentParser(prog=options.PROG, exit_on_error=False, allow_abbrev=False)
    options.add_arguments(parser)
    return options.resolve(parser.parse_args(argv[1:]), env={})


def dockerfile() -> list[tuple[str, str]]:
    """``[(INSTRUCTION, arguments)]``, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends in a continuation line"
    return instructions


def exec_form(instructions: list[tuple[str, str]], keyword: str) -> list[str]:
    values = [rest for kw, rest in instructions if kw == keyword]
    assert len(values) == 1, f"expected exactly one {keyword}, found {values}"
    parsed = json.loads(values[0])
    assert isinstance(parsed, list), f"{keyword} must use the exec (JSON) form: {values[0]}"
    return [str(v) for v in parsed]


def run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )


# --- the compose file ----------------------------------------------------------------------------


def test_the_stack_has_its_services_each_pinned_or_built() -> None:
    services = compose()["services"]
    assert set(services) == SERVICES
    for name, svc in services.items():
        if "build" in svc:
            context = ROOT / (
                svc["build"] if isinstance(svc["build"], str) else svc["build"]["context"]
            )
            assert (context / "Dockerfile").is_file(), name
            continue
        image = svc.get("image", "")
        assert PINNED.match(image), f"{name}: pin an exact release, not {image!r}"


def test_every_mount_exists_and_the_repository_is_mounted_read_only() -> None:
    declared = set(compose().get("volumes") or {})
    for name, svc in compose()["services"].items():
        for mount in mounts(svc):
            assert mount.target.is_absolute(), (name, mount)
            if mount.bind:
                assert mount.source.startswith("./"), f"{name}: mount from the repository only"
                assert mount.host_path.exists(), f"{name}: {mount.source} does not exist"
                assert mount.host_path.is_relative_to(ROOT), (name, mount)
                assert mount.read_only, f"{name}: mount {mount.source} read-only (:ro)"
            else:
                assert mount.source in declared, f"{name}: volume {mount.source} not declared"


def test_every_path_a_command_names_is_mounted() -> None:
    for name, svc in compose()["services"].items():
        for token in command(svc):
            flag, _, value = token.partition("=") if token.startswith("-") else ("", "", token)
            if not value.startswith("/"):
                continue
            path = PurePosixPath(value)
            if "config" in flag:
                mount = mount_for(svc, path)
                assert mount is not None, f"{name}: {flag} {path} is not a mount target"
                assert mount.bind, (name, mount)
                assert mount.host_path.is_file(), (name, mount)
            elif not path.is_relative_to("/tmp"):
                assert under_mount(svc, path) is not None, f"{name}: {path} is not mounted"


def test_prometheus_scrapes_the_agent_where_the_demo_binds() -> None:
    agent = service("agent")
    options = demo_options(command(agent))
    assert options.serve
    assert options.metrics_host == "0.0.0.0"  # reachable from the other containers
    assert options.metrics_port in container_ports(agent)
    health = " ".join(agent["healthcheck"]["test"])
    assert f":{options.metrics_port}/healthz" in health

    config = load_yaml(EXPORTERS / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = [t for sc in jobs[JOB]["static_configs"] for t in sc["targets"]]
    assert targets == [f"agent:{options.metrics_port}"]
    assert jobs[JOB].get("scrape_interval", config["global"]["scrape_interval"]) == "5s"
    assert config["global"]["evaluation_interval"] == "5s"
    for job in jobs.values():
        for target in (t for sc in job["static_configs"] for t in sc["targets"]):
            host, _ = host_port(target)
            if host != "localhost":
                assert host in SERVICES, f"{job['job_name']}: {target}"
    am_targets = [
        t
        for am in config["alerting"]["alertmanagers"]
        for sc in am["static_configs"]
        for t in sc["targets"]
    ]
    assert am_targets == ["alertmanager:9093"]


def test_the_agent_exports_otlp_to_the_collector() -> None:
    options = demo_options(command(service("agent")))
    host, port = host_port(options.otlp_endpoint)
    assert host == "otel-collector"
    receiver = load_yaml(EXPORTERS / "otel-collector.yaml")["receivers"]["otlp"]["protocols"]
    assert host_port(receiver["http"]["endpoint"]) == ("0.0.0.0", port)  # OTLP/HTTP


# --- Prometheus and Alertmanager, with the real tools --------------------------------------------


def test_promtool_accepts_the_prometheus_config_and_its_rules(tmp_path: Path) -> None:
    """Laid out as the container sees it, so the rule file it loads is the shipped one."""
    prometheus = service("prometheus")
    for mount in mounts(prometheus):
        if mount.bind:
            assert mount.host_path.is_file(), f"{mount.source} missing (dashboards/alerts.yml?)"
            placed = tmp_path / mount.target.relative_to("/")
            placed.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(mount.host_path, placed)
    config_path = PurePosixPath(
        next(t.split("=", 1)[1] for t in command(prometheus) if t.startswith("--config.file="))
    )
    config_mount = mount_for(prometheus, config_path)
    assert config_mount is not None, f"--config.file={config_path} is not a mount target"
    assert config_mount.host_path == EXPORTERS / "prometheus.yml"

    rules = load_yaml(EXPORTERS / "prometheus.yml")["rule_files"]
    loaded = [mount_for(prometheus, config_path.parent / rule) for rule in rules]
    assert [m.host_path if m else None for m in loaded] == [ROOT / "dashboards" / "alerts.yml"]

    out = run([str(promtool()), "check", "config", str(tmp_path / config_path.relative_to("/"))])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 1 rule files found" in out.stdout + out.stderr


def test_amtool_accepts_the_alertmanager_config() -> None:
    out = run([str(amtool()), "check-config", str(EXPORTERS / "alertmanager.yml")])
    assert out.returncode == 0, out.stdout + out.stderr


def test_amtool_accepts_the_commented_receiver_examples(tmp_path: Path) -> None:
    """What a user gets after uncommenting the PagerDuty, webhook and Slack examples."""
    text = (EXPORTERS / "alertmanager.yml").read_text(encoding="utf-8")
    switched_on, count = re.subn(
        r"^(\s+)# (\s*(?:- )?[a-z_]+:.*)$", r"\1\2", text, flags=re.MULTILINE
    )
    assert count >= 10
    config = yaml.safe_load(switched_on)
    examples = {k: v for r in config["receivers"] for k, v in r.items() if k.endswith("_configs")}
    assert set(examples) == {"pagerduty_configs", "slack_configs", "webhook_configs"}
    for kind, entries in examples.items():
        assert isinstance(entries, list), kind
        assert all(isinstance(e, dict) and len(e) >= 2 for e in entries), kind
    (tmp_path / "alertmanager.yml").write_text(switched_on, encoding="utf-8")
    out = run([str(amtool()), "check-config", str(tmp_path / "alertmanager.yml")])
    assert out.returncode == 0, out.stdout + out.stderr


def test_alertmanager_serves_the_shipped_config(tmp_path: Path) -> None:
    """The real server (Debian's 0.25) loads it; its receivers send nothing anywhere."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            str(alertmanager()),
            f"--config.file={EXPORTERS / 'alertmanager.yml'}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip port
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            assert server.poll() is None, server.communicate()[1]
            try:
                url = f"http://127.0.0.1:{port}/api/v2/status"
                with urllib.request.urlopen(url, timeout=2) as response:
                    status = json.load(response)
                break
            except OSError:
                assert time.monotonic() < deadline, "alertmanager did not start"
                time.sleep(0.1)
        loaded = yaml.safe_load(status["config"]["original"])
        assert {r["name"] for r in loaded["receivers"]} == {"default", "critical", "warning"}
    finally:
        server.terminate()
        server.communicate(timeout=TIMEOUT_S)


def test_alertmanager_routes_by_severity_and_inhibits_warnings() -> None:
    config = load_yaml(EXPORTERS / "alertmanager.yml")
    route = config["route"]
    assert set(route["group_by"]) == {"alertname", "job"}
    receivers = {r["name"] for r in config["receivers"]}
    assert route["receiver"] in receivers
    by_severity = {tuple(r["matchers"]): r["receiver"] for r in route["routes"]}
    assert set(by_severity) == {('severity="critical"',), ('severity="warning"',)}
    assert set(by_severity.values()) <= receivers
    inhibit, *credits = config["inhibit_rules"]
    assert inhibit["source_matchers"] == ['severity="critical"']
    assert inhibit["target_matchers"] == ['severity="warning"']
    assert set(inhibit["equal"]) == {"alertname", "job"}
    # the credit alerts' rules are the runbook's, word for word
    runbook = (ROOT / "dashboards" / "runbook.md").read_text(encoding="utf-8")
    [documented] = re.findall(r"```yaml\n(inhibit_rules:\n.*?)```", runbook, flags=re.DOTALL)
    assert credits == yaml.safe_load(documented)["inhibit_rules"]


#: (labels of an alert posted to the shipped Alertmanager, whether the shipped inhibit rules
#: must mute it): CreditsLow is quiet while CreditsRunningOut fires for the same job, provider
#: and dimension, or CreditsExhausted for the same job
_CREDIT_ALERTS: list[tuple[dict[str, str], bool]] = [
    (dict(alertname="LiveKitAgentsCreditsRunningOut", job="a", provider="livekit"), False),
    (dict(alertname="LiveKitAgentsCreditsLow", job="a", provider="livekit"), True),
    (dict(alertname="LiveKitAgentsCreditsLow", job="a", provider="openai"), False),
    (dict(alertname="LiveKitAgentsCreditsLow", job="b", provider="livekit"), False),
    (dict(alertname="LiveKitAgentsCreditsExhausted", job="c", provider="-"), False),
    (dict(alertname="LiveKitAgentsCreditsLow", job="c", provider="livekit"), True),
]


def test_alertmanager_quiets_credits_low_while_credits_run_out_or_are_exhausted(
    tmp_path: Path,
) -> None:
    """The real server on the shipped config, fed and read back with the real ``amtool``."""
    alerts = []
    for labels, _ in _CREDIT_ALERTS:
        severity = "warning" if labels["alertname"].endswith("Low") else "critical"
        alerts.append({**labels, "dimension": "credits", "severity": severity})
    alert_states(
        EXPORTERS / "alertmanager.yml",
        tmp_path / "data",
        alerts,
        {
            (labels["alertname"], labels["job"], labels["provider"]): (
                "suppressed" if muted else "active"
            )
            for labels, muted in _CREDIT_ALERTS
        },
        key=("alertname", "job", "provider"),
        timeout=TIMEOUT_S,
    )


# --- the collector and Tempo (structure only: no binaries here) ----------------------------------


def test_the_collector_wires_traces_to_tempo_and_metrics_to_prometheus() -> None:
    config = load_yaml(EXPORTERS / "otel-collector.yaml")
    protocols = config["receivers"]["otlp"]["protocols"]
    assert host_port(protocols["grpc"]["endpoint"]) == ("0.0.0.0", 4317)
    assert host_port(protocols["http"]["endpoint"]) == ("0.0.0.0", 4318)

    pipelines = config["service"]["pipelines"]
    assert set(pipelines) == {"traces", "metrics"}
    for name, pipeline in pipelines.items():
        assert pipeline["receivers"] == ["otlp"], name
        assert pipeline["processors"][0] == "memory_limiter", name  # first, as documented
        assert "batch" in pipeline["processors"], name
        for kind in ("processors", "exporters"):
            for component in pipeline[kind]:
                assert component in config[kind], f"{name}: {component} is not defined"
    for exporter in config["exporters"].values():
        host, _ = host_port(exporter["endpoint"])
        assert host == "0.0.0.0" or host in SERVICES, exporter

    [to_tempo] = pipelines["traces"]["exporters"]
    assert to_tempo.split("/")[0] in {"otlp", "otlp_grpc"}  # OTLP/gRPC
    tempo_grpc = load_yaml(EXPORTERS / "tempo.yaml")["distributor"]["receivers"]["otlp"]
    _, tempo_port = host_port(tempo_grpc["protocols"]["grpc"]["endpoint"])
    assert host_port(config["exporters"][to_tempo]["endpoint"]) == ("tempo", tempo_port)
    assert config["exporters"][to_tempo]["tls"]["insecure"] is True

    [to_prometheus] = pipelines["metrics"]["exporters"]
    exporter = config["exporters"][to_prometheus]
    assert to_prometheus.split("/")[0] == "prometheus"
    # the demo serves the same measurements natively: the OTLP copy must not share their names
    assert exporter["namespace"] == "otlp"
    _, port = host_port(exporter["endpoint"])
    scrape = load_yaml(EXPORTERS / "prometheus.yml")["scrape_configs"]
    targets = {
        t
        for job in scrape
        if job["job_name"] != JOB
        for sc in job["static_configs"]
        for t in sc["targets"]
    }
    assert f"otel-collector:{port}" in targets


def test_tempo_is_monolithic_on_the_mounted_volume() -> None:
    config = load_yaml(EXPORTERS / "tempo.yaml")
    assert not {"ingester", "compactor", "ingester_client"} & set(config)  # gone in Tempo 3
    assert config.get("target", "all") == "all"
    tempo = service("tempo")
    storage = config["storage"]["trace"]
    assert storage["backend"] == "local"
    for path in (storage["wal"]["path"], storage["local"]["path"]):
        mount = under_mount(tempo, PurePosixPath(path))
        assert mount is not None, f"{path}: not mounted"
        assert not mount.bind, f"{path}: on a bind mount, not a volume"


# --- Grafana -------------------------------------------------------------------------------------


def test_grafana_provisions_the_datasources_and_the_dashboards() -> None:
    grafana = service("grafana")
    provisioning = PurePosixPath("/etc/grafana/provisioning")

    sources_mount = mount_for(grafana, provisioning / "datasources")
    assert sources_mount is not None
    sources = {
        ds["uid"]: ds
        for file in sorted(sources_mount.host_path.glob("*.y*ml"))
        for ds in load_yaml(file)["datasources"]
    }
    assert {"prometheus", "tempo"} <= set(sources)
    assert sources["prometheus"]["type"] == "prometheus"
    assert sources["prometheus"]["isDefault"] is True
    assert sources["tempo"]["type"] == "tempo"
    assert host_port(sources["prometheus"]["url"]) == ("prometheus", 9090)
    tempo_port = load_yaml(EXPORTERS / "tempo.yaml")["server"]["http_listen_port"]
    assert host_port(sources["tempo"]["url"]) == ("tempo", tempo_port)
    for ds in sources.values():
        assert host_port(ds["url"])[0] in SERVICES, ds

    providers_mount = mount_for(grafana, provisioning / "dashboards")
    assert providers_mount is not None
    providers = [
        p
        for file in sorted(providers_mount.host_path.glob("*.y*ml"))
        for p in load_yaml(file)["providers"]
    ]
    [provider] = providers
    assert provider["type"] == "file"
    dashboards = mount_for(grafana, PurePosixPath(provider["options"]["path"]))
    assert dashboards is not None, "the provider's path is not a mount target"
    assert dashboards.host_path == ROOT / "dashboards"

    home = PurePosixPath(grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert home.parent == dashboards.target
    assert (dashboards.host_path / home.name).is_file(), f"dashboards/{home.name} is missing"


def test_the_shipped_dashboards_are_there_for_the_provider() -> None:
    uids = {}
    for name in ("overview.json", "errors.json"):
        path = ROOT / "dashboards" / name
        assert path.is_file(), f"dashboards/{name} is missing"
        uids[name] = json.loads(path.read_text(encoding="utf-8"))["uid"]
    assert uids == {
        "overview.json": "livekit-agents-overview",
        "errors.json": "livekit-agents-errors",
    }


def test_grafana_lets_a_local_visitor_in_as_a_viewer_only() -> None:
    env = service("grafana")["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    for name, svc in compose()["services"].items():
        for spec in svc.get("ports", []):
            assert str(spec).startswith("127.0.0.1:"), f"{name}: publish {spec} on 127.0.0.1 only"


# --- the agent's image ---------------------------------------------------------------------------


def test_the_dockerfile_installs_the_package_and_runs_its_cli() -> None:
    instructions = dockerfile()
    assert instructions[0][0] == "FROM"
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", instructions[0][1]), instructions[0]

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    copied = {}  # source -> destination
    for kw, rest in instructions:
        if kw == "COPY":
            *sources, dest = rest.split()
            for source in sources:
                copied[source] = PurePosixPath(dest) / (source if dest.endswith("/") else "")
    assert {"pyproject.toml", pyproject["project"]["readme"], "otel_agents"} <= set(copied)
    src = copied["pyproject.toml"].parent
    installs = [rest for kw, rest in instructions if kw == "RUN" and "pip install" in rest]
    assert any(re.search(rf"pip install {re.escape(str(src))}(\s|$)", r) for r in installs)

    users = [rest for kw, rest in instructions if kw == "USER"]
    assert users, "no USER: the agent would run as root"
    assert users[-1] not in {"root", "0"}, "the agent must not run as root"
    assert [kw for kw, _ in instructions].index("USER") > max(
        i for i, (kw, rest) in enumerate(instructions) if kw == "RUN" and "pip install" in rest
    )

    entrypoint = exec_form(instructions, "ENTRYPOINT")
    assert entrypoint == ["otel-agents"]
    assert entrypoint[0] in pyproject["project"]["scripts"]
    image_default = demo_options(exec_form(instructions, "CMD"))
    compose_command = demo_options(command(service("agent")))
    exposed = {int(p) for kw, rest in instructions if kw == "EXPOSE" for p in rest.split()}
    assert {image_default.metrics_port, compose_command.metrics_port} <= exposed
    assert image_default.metrics_host == compose_command.metrics_host == "0.0.0.0"


def test_the_build_context_holds_only_what_the_dockerfile_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert patterns[0] == "*", "start from an empty context and add what the build needs"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied = {
        source.rstrip("/")
        for kw, rest in dockerfile()
        if kw == "COPY"
        for source in rest.split()[:-1]
    }
    assert allowed == copied
    for artefact in (".venv", ".git", "tests", ".hypothesis", "bench"):
        assert artefact not in allowed


def test_grafana_runs_the_release_the_dashboards_are_built_for() -> None:
    """One Grafana version: the dashboards are generated with the grafana-foundation-sdk of
    ``GRAFANA_VERSION`` (11.6), and compose runs that release."""
    from dashboards.config import GRAFANA_VERSION

    image = service("grafana")["image"]
    assert PINNED.match(image), image
    assert image.rpartition(":")[2].startswith(GRAFANA_VERSION + "."), (image, GRAFANA_VERSION)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dependencies = [
        dep
        for group in project.get("optional-dependencies", {}).values()
        for dep in group
        if dep.startswith("grafana-foundation-sdk")
    ]
    (sdk,) = dependencies
    assert sdk.rpartition("!")[2].startswith(GRAFANA_VERSION + "."), (sdk, GRAFANA_VERSION)
