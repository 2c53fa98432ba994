"""``init()`` settings: explicit arguments, else environment variables, else defaults.

Invalid input raises ``ValueError`` naming where the value came from (the argument or the
variable), the value itself and what is expected, so a typo in a deployment fails loudly at
start-up instead of silently disabling telemetry.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from ._export.redact import REDACTED, WINDOW_CHARS, clean_message, redact
from ._multiproc import liveness

ENV_SERVICE_NAME: Final = "OTEL_SERVICE_NAME"
ENV_OTLP_ENDPOINT: Final = "OTEL_EXPORTER_OTLP_ENDPOINT"
ENV_METRICS_PORT: Final = "OTEL_AGENTS_METRICS_PORT"
ENV_SILENCE_TIMEOUT: Final = "OTEL_AGENTS_SILENCE_TIMEOUT"
ENV_CAPTURE_MESSAGES: Final = "OTEL_AGENTS_CAPTURE_MESSAGES"
ENV_SDK_DISABLED: Final = "OTEL_SDK_DISABLED"
ENV_EXIT_FLUSH_TIMEOUT: Final = "OTEL_AGENTS_EXIT_FLUSH_TIMEOUT"
#: who pushes OTLP metrics: ``process`` (every process its own, the default) or ``sidecar``
#: (the ``otel-agents sidecar --otlp-endpoint`` pushes the merged multiprocess directory; the
#: processes push spans only)
ENV_OTLP_METRICS: Final = "OTEL_AGENTS_OTLP_METRICS"
OTLP_METRICS_MODES: Final = ("process", "sidecar")

DEFAULT_SERVICE_NAME: Final = "livekit-agent"
DEFAULT_SILENCE_TIMEOUT: Final = 8.0
DEFAULT_EXIT_FLUSH_TIMEOUT: Final = 2.0

#: ``PROMETHEUS_MULTIPROC_DIR``, else prometheus_client's legacy lower-case spelling
ENV_MULTIPROC_DIR: Final = "PROMETHEUS_MULTIPROC_DIR"
_ENV_MULTIPROC_DIR_LEGACY: Final = "prometheus_multiproc_dir"

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})
#: the signal paths an OTLP/HTTP exporter appends to the base URL
_SIGNAL_PATHS: Final = ("/v1/traces", "/v1/metrics", "/v1/logs")


@dataclass(frozen=True, slots=True)
class Settings:
    service_name: str
    otlp_endpoint: str | None
    metrics_port: int | None
    metrics_host: str
    silence_timeout: float
    capture_messages: bool
    exit_flush_timeout: float = DEFAULT_EXIT_FLUSH_TIMEOUT
    #: ``process``: with an OTLP endpoint, this process pushes its own metrics; ``sidecar``: it
    #: does not (the sidecar pushes the merged directory)
    otlp_metrics: str = "process"
    #: ``PROMETHEUS_MULTIPROC_DIR`` (made if missing, writable), or ``None``
    multiproc_dir: str | None = None


#: ``?name=value``/``&name=value`` and ``#fragment`` of a URL: the value goes
_QUERY_VALUE: Final = re.compile(r"([?&][^=&#'\"]*=|#)[^&#'\"]*")


def _echo(value: object) -> str:
    """``repr(value)`` as an error may show it: redacted and cut, like every text otel-agents
    lets out (an endpoint may carry ``user:password@`` or ``?api_key=``), with the value of
    every query parameter and any fragment of a URL-like value withheld."""
    try:
        text = repr(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"
    if isinstance(value, str) and "://" in value:
        # userinfo first: a password may hold "&", "=" or "#"
        text = _QUERY_VALUE.sub(r"\1" + REDACTED, redact(text[:WINDOW_CHARS]))
    return clean_message(text)


class InvalidSetting(ValueError):
    """A bad value: ``otel_agents: invalid SOURCE=VALUE: expected ...``. A command prints
    :meth:`line` (without the package prefix) and exits with status 2."""

    def __init__(self, source: str, value: object, expected: str) -> None:
        self.source = source
        self.shown = _echo(value)
        self.expected = expected
        super().__init__(f"otel_agents: {self.line()}")

    def line(self) -> str:
        return f"invalid {self.source}={self.shown}: expected {self.expected}"


def shown_url(url: str) -> str:
    """An endpoint as a log line may show it: without its userinfo (``user:password@``),
    redacted and cut."""
    try:
        parts = urlsplit(url)
        url = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    except ValueError:
        pass
    return clean_message(redact(url[:WINDOW_CHARS]))


def _bad(source: str, value: object, expected: str) -> InvalidSetting:
    return InvalidSetting(source, value, expected)


def env_value(env: Mapping[str, str], name: str) -> str | None:
    """``env[name]``, stripped; ``None`` when unset, empty or blank: an empty value means unset,
    for every variable otel-agents reads."""
    value = env.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def parse_bool(source: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _bad(source, raw, "true or false")


def parse_port(source: str, raw: object, *, allow_zero: bool = False) -> int:
    """A TCP port; with ``allow_zero``, ``0`` too (bind any free port)."""
    lowest = 0 if allow_zero else 1
    expected = f"a TCP port number from {lowest} to 65535"
    if isinstance(raw, bool):
        raise _bad(source, raw, expected)
    try:
        port = int(raw.strip()) if isinstance(raw, str) else raw
    except ValueError:
        port = None
    if not isinstance(port, int) or not lowest <= port <= 65535:
        raise _bad(source, raw, expected)
    return port


def parse_seconds(source: str, raw: object, *, allow_zero: bool = False) -> float:
    expected = "a non-negative number of seconds" if allow_zero else "a positive number of seconds"
    if isinstance(raw, bool):
        raise _bad(source, raw, expected)
    try:
        seconds = float(raw.strip()) if isinstance(raw, str) else float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _bad(source, raw, expected + ", e.g. 8.0") from None
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise _bad(source, raw, expected)
    return seconds


def parse_endpoint(source: str, raw: object) -> str:
    expected = "an http:// or https:// URL with a host, e.g. http://127.0.0.1:4318"
    if not isinstance(raw, str):
        raise _bad(source, raw, expected)
    value = raw.strip()
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError when out of range or not a number
    except ValueError:
        raise _bad(source, raw, expected) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise _bad(source, raw, expected)
    if port is not None and port == 0:
        raise _bad(source, raw, expected)
    base = value.rstrip("/")
    signal = next((p for p in _SIGNAL_PATHS if base.lower().endswith(p)), None)
    if signal is not None:
        # the OTel spec: the generic endpoint is a base URL, the signal path is appended to it
        raise _bad(
            source,
            raw,
            f"the base URL without {signal} (it is appended to the base URL, per signal), "
            "e.g. "
            + clean_message(
                redact(
                    f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
                    f"{parts.path.rstrip('/')[: -len(signal)]}"
                )
            ),
        )
    return base


def otlp_metrics_mode(env: Mapping[str, str] = os.environ) -> str:
    """``OTEL_AGENTS_OTLP_METRICS``: ``process`` (unset or empty) or ``sidecar``."""
    raw = env.get(ENV_OTLP_METRICS, "")
    value = raw.strip().lower() or "process"
    if value not in OTLP_METRICS_MODES:
        raise _bad(ENV_OTLP_METRICS, raw, "process or sidecar")
    return value


def sdk_disabled(env: Mapping[str, str] = os.environ) -> bool:
    raw = env_value(env, ENV_SDK_DISABLED)
    return raw is not None and parse_bool(ENV_SDK_DISABLED, raw)


def multiproc_dir(env: Mapping[str, str] = os.environ, *, create: bool = True) -> str | None:
    """``PROMETHEUS_MULTIPROC_DIR`` (else its legacy lower-case spelling), made when missing,
    or ``None`` when unset or empty. A directory this process cannot make, or cannot write to,
    raises :class:`InvalidSetting` saying what to do: prometheus_client would fail later, at
    the first metric, with an error naming neither the variable nor the cause."""
    name, raw = ENV_MULTIPROC_DIR, env_value(env, ENV_MULTIPROC_DIR)
    if raw is None:
        name, raw = _ENV_MULTIPROC_DIR_LEGACY, env_value(env, _ENV_MULTIPROC_DIR_LEGACY)
    if raw is None:
        return None
    whom = _whoami()
    if not os.path.isdir(raw):
        if os.path.lexists(raw):
            raise _bad(name, raw, "a directory (the path is not a directory)")
        if not create:
            raise _bad(name, raw, f"an existing directory: create it, writable by {whom}")
        try:
            os.makedirs(raw, exist_ok=True)
        except OSError as exc:
            raise _bad(
                name,
                raw,
                f"a directory {whom} can create or write to ({exc.strerror or exc}): create it "
                f"and make {whom} its owner (e.g. mkdir -p DIR && chown {os.getuid()} DIR)",
            ) from None
    # a job process's worker checked it already; a job process writes its lock file there next
    if not liveness.multiprocessing_child() and not writable(raw):
        raise _bad(
            name,
            raw,
            f"a directory {whom} can write to (permission denied): make {whom} its owner "
            f"(chown {os.getuid()} DIR) or give it write access",
        )
    return raw


def writable(directory: str) -> bool:
    """Whether this process can create a file in ``directory``: tried, not guessed from the
    mode bits (which say nothing of root, ACLs or a read-only mount)."""
    try:
        with tempfile.TemporaryFile(dir=directory, prefix=".otel_agents_probe_"):
            return True
    except OSError:
        return False


def _whoami() -> str:
    return f"uid {os.getuid()}"


#: the variables :func:`resolve` reads
_READ: Final = (
    ENV_SERVICE_NAME,
    ENV_OTLP_ENDPOINT,
    ENV_METRICS_PORT,
    ENV_SILENCE_TIMEOUT,
    ENV_CAPTURE_MESSAGES,
    ENV_EXIT_FLUSH_TIMEOUT,
    ENV_OTLP_METRICS,
    ENV_MULTIPROC_DIR,
    _ENV_MULTIPROC_DIR_LEGACY,
)
#: (pid, arguments and variables read, settings) of the last :func:`resolve` from
#: ``os.environ``: livekit's forkserver resolves the default settings once (``_preload``), and
#: a job process forked from it whose arguments and variables are the same takes them
_resolved: tuple[int, tuple[object, ...], Settings] | None = None


def resolve(
    *,
    service_name: str | None,
    otlp_endpoint: str | None,
    metrics_port: int | None,
    metrics_host: str,
    silence_timeout: float | None,
    capture_messages: bool | None,
    exit_flush_timeout: float | None = None,
    env: Mapping[str, str] = os.environ,
) -> Settings:
    """Merge arguments, environment and defaults into validated settings."""
    global _resolved
    arguments = (
        service_name,
        otlp_endpoint,
        metrics_port,
        metrics_host,
        silence_timeout,
        capture_messages,
        exit_flush_timeout,
    )
    key: tuple[object, ...] | None = None
    if env is os.environ:
        # typed: True and 1 are equal, and only one of them is a valid capture_messages
        key = (*((type(a), a) for a in arguments), *(env.get(name) for name in _READ))
        try:
            hash(key)
        except Exception:  # an unhashable (or hostile) argument: resolved afresh, and judged
            key = None
    # only in a forked child: this process's own repeated call checks its directory again
    last = _resolved
    if key is not None and last is not None and last[0] != os.getpid():
        try:
            same = bool(last[1] == key)
        except Exception:  # a hostile argument's __eq__
            same = False
        if same:
            return last[2]
    settings = _resolve(*arguments, env=env)
    if key is not None:
        _resolved = (os.getpid(), key, settings)
    return settings


def _resolve(
    service_name: str | None,
    otlp_endpoint: str | None,
    metrics_port: int | None,
    metrics_host: str,
    silence_timeout: float | None,
    capture_messages: bool | None,
    exit_flush_timeout: float | None,
    *,
    env: Mapping[str, str],
) -> Settings:
    if service_name is None:
        service_name = env_value(env, ENV_SERVICE_NAME) or DEFAULT_SERVICE_NAME
    elif not isinstance(service_name, str) or not service_name.strip():
        raise _bad("service_name", service_name, "a non-empty string")

    endpoint: str | None
    if otlp_endpoint is not None:
        endpoint = parse_endpoint("otlp_endpoint", otlp_endpoint)
    elif (raw_endpoint := env_value(env, ENV_OTLP_ENDPOINT)) is not None:
        endpoint = parse_endpoint(ENV_OTLP_ENDPOINT, raw_endpoint)
    else:
        endpoint = None

    port: int | None  # 0: any free port
    if metrics_port is not None:
        port = parse_port("metrics_port", metrics_port, allow_zero=True)
    elif (raw_port := env_value(env, ENV_METRICS_PORT)) is not None:
        port = parse_port(ENV_METRICS_PORT, raw_port, allow_zero=True)
    else:
        port = None

    if not isinstance(metrics_host, str) or not metrics_host.strip():
        raise _bad("metrics_host", metrics_host, "a host name or IP address")

    if silence_timeout is not None:
        timeout = parse_seconds("silence_timeout", silence_timeout)
    elif (raw_timeout := env_value(env, ENV_SILENCE_TIMEOUT)) is not None:
        timeout = parse_seconds(ENV_SILENCE_TIMEOUT, raw_timeout)
    else:
        timeout = DEFAULT_SILENCE_TIMEOUT

    if capture_messages is None:
        raw = env_value(env, ENV_CAPTURE_MESSAGES)
        capture = True if raw is None else parse_bool(ENV_CAPTURE_MESSAGES, raw)
    elif isinstance(capture_messages, bool):
        capture = capture_messages
    else:
        raise _bad("capture_messages", capture_messages, "True or False")

    if exit_flush_timeout is not None:
        flush = parse_seconds("exit_flush_timeout", exit_flush_timeout, allow_zero=True)
    elif (raw_flush := env_value(env, ENV_EXIT_FLUSH_TIMEOUT)) is not None:
        flush = parse_seconds(ENV_EXIT_FLUSH_TIMEOUT, raw_flush, allow_zero=True)
    else:
        flush = DEFAULT_EXIT_FLUSH_TIMEOUT

    return Settings(
        service_name=service_name,
        otlp_endpoint=endpoint,
        metrics_port=port,
        metrics_host=metrics_host.strip(),
        silence_timeout=timeout,
        capture_messages=capture,
        exit_flush_timeout=flush,
        otlp_metrics=otlp_metrics_mode(env),
        multiproc_dir=multiproc_dir(env),
    )
