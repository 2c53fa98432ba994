"""The README is true: every code block in it is exercised, every option table matches the
parser or the signature it documents, and no measured figure is copied into its prose.

Every fenced block is checked by its language, and none is passed over: a block this test
cannot check fails it, until a handler or a directive says how. A directive is an HTML comment
on the line before the fence, ``<!-- readme-test: KIND [ARGUMENT] -->``, one per line:

* ``module``: a python block that is an agent module fragment: it runs as the module ``agent``
  and its ``entrypoint(ctx)``, if any, is called with a fake job context
  (``tests/readme_harness.py``);
* ``stderr-contains TEXT`` / ``stdout-contains TEXT``: what a python block's run must print;
* ``demo-output``: a sample of ``otel-agents demo``'s output: every line of it (``...`` elides)
  is a line the real demo prints, checked by ``tests/test_demo.py`` against a real run;
* ``span-records``: lines of ``SPAN key=value ...``: a known span and known attributes.

Python blocks run in a fresh interpreter (``init()`` and logging are process-wide), followed by
a real offline ``AgentSession`` whose first LLM attempt fails. Shell blocks are parsed command
by command: ``otel-agents`` commands through the real parsers, ``make`` targets against the
Makefile, variables against the documented ones; other programs must be known (``kubectl``,
``docker``...). YAML blocks must parse, and a compose service running ``otel-agents`` must pass
its parser.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from conftest import clean_env

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
HARNESS = Path(__file__).resolve().parent / "readme_harness.py"
DIRECTIVE = re.compile(r"^<!--\s*readme-test:\s*(\S+)\s*(.*?)\s*-->$")
DIRECTIVES = {"module", "stderr-contains", "stdout-contains", "demo-output", "span-records"}
#: programs a shell block may run besides otel-agents, make and python agent.py
KNOWN_PROGRAMS = {
    "pip",
    "kubectl",
    "docker",
    "opentelemetry-instrument",
    "amtool",
    "promtool",
    "export",
    "mkdir",
    "chown",
    "curl",
}


@dataclass
class Block:
    lang: str
    code: str
    line: int  # of the opening fence
    directives: list[tuple[str, str]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"README.md:{self.line}:{self.lang or 'text'}"


def readme_blocks(text: str | None = None) -> list[Block]:
    """Every fenced block of the README, with the directives just above it."""
    lines = (README.read_text() if text is None else text).splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        fence = re.match(r"^(\s*)(```+|~~~+)\s*([\w+-]*)", lines[i])
        if not fence:
            i += 1
            continue
        indent, marker, lang = fence.groups()
        directives = []
        j = i - 1
        while j >= 0 and (m := DIRECTIVE.match(lines[j].strip())):
            directives.insert(0, (m.group(1), m.group(2).strip()))
            j -= 1
        body = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(marker):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        blocks.append(Block(lang.lower(), "\n".join(body) + "\n", i - len(body), directives))
        i += 1
    return blocks


def _blocks(*langs: str) -> list[Block]:
    return [b for b in readme_blocks() if b.lang in langs]


def test_the_readme_has_its_blocks_and_every_directive_is_known() -> None:
    blocks = readme_blocks()
    assert len(_blocks("python")) >= 3
    assert _blocks("sh")
    for block in blocks:
        for kind, _arg in block.directives:
            assert kind in DIRECTIVES, f"{block.id}: unknown directive {kind!r}"
        handled = block.lang in HANDLED or any(k in CHECKED_ELSEWHERE for k, _ in block.directives)
        assert handled, f"{block.id}: no check for a {block.lang or 'plain'} block: add one"


def test_the_parser_finds_fences_and_directives() -> None:
    sample = "x\n<!-- readme-test: module -->\n```python\nimport a\n```\n\n```\nout\n```\n"
    (py, text) = readme_blocks(sample)
    assert (py.lang, py.code, py.directives) == ("python", "import a\n", [("module", "")])
    assert (text.lang, text.code, text.directives) == ("", "out\n", [])


# --- python ------------------------------------------------------------------------------------


@pytest.mark.parametrize("block", _blocks("python"), ids=lambda b: b.id)
def test_every_python_block_runs_and_records(block: Block, tmp_path: Path) -> None:
    kinds = dict(block.directives)
    source = tmp_path / "block.py"
    source.write_text(block.code)
    done = subprocess.run(
        [sys.executable, str(HARNESS), str(source), "module" if "module" in kinds else "script"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, f"{block.id}\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr, f"{block.id}\n{done.stderr[-3000:]}"
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    if "otel_agents.init(" in block.code:
        # it works: the offline session's failed attempt and its close were recorded
        assert summary == {"initialised": True, "attempt_failures": 1.0, "sessions_closed": 1.0}
    for kind, text in block.directives:
        if kind == "stderr-contains":
            assert text in done.stderr, f"{block.id}: {text!r} not in\n{done.stderr[-3000:]}"
        elif kind == "stdout-contains":
            assert text in done.stdout, f"{block.id}: {text!r} not in\n{done.stdout[-3000:]}"


# --- shell -------------------------------------------------------------------------------------


def _commands(code: str) -> list[list[str]]:
    """Each command of a shell block, continuation lines joined, comments and leading
    ``NAME=value`` assignments dropped."""
    joined = re.sub(r"\\\n", " ", code)
    commands = []
    for line in joined.splitlines():
        words: list[str] = []
        for word in [*shlex.split(line, comments=True), ";"]:
            if word not in ("&", "&&", ";", "||", "|"):
                words.append(word)
                continue
            while words and (words[0] == "exec" or re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0])):
                words = words[1:]
            if words:
                commands.append(words)
            words = []
    return commands


def _parser(command: str) -> argparse.ArgumentParser:
    from otel_agents._argparse import OneLineParser

    parser = OneLineParser(prog=f"otel-agents {command}")
    if command == "demo":
        from otel_agents.demo.options import add_arguments
    else:
        from otel_agents._sidecar.cli import add_arguments
    add_arguments(parser)
    return parser


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][\w-]*):", text, re.M))


def _check_command(words: list[str], where: str) -> None:
    program = words[0]
    if program == "otel-agents":
        assert words[1:2] in (["demo"], ["sidecar"]), f"{where}: {words}"
        try:
            _parser(words[1]).parse_args(words[2:])
        except SystemExit:
            pytest.fail(f"{where}: `{shlex.join(words)}` does not parse")
    elif program == "make":
        assert set(w for w in words[1:] if "=" not in w) <= _make_targets(), f"{where}: {words}"
    elif program in ("python", "python3"):
        assert words[1:3] == ["agent.py", "start"] or words[1:3] == ["-m", "bench"], words
    else:
        assert program in KNOWN_PROGRAMS, f"{where}: unknown program {program!r}: add it"
        if program == "export":
            for assignment in words[1:]:
                name = assignment.partition("=")[0]
                assert name in _documented_variables(), f"{where}: ${name} is not documented"


@pytest.mark.parametrize("block", _blocks("sh", "bash", "console"), ids=lambda b: b.id)
def test_every_shell_command_is_real(block: Block) -> None:
    commands = _commands(block.code)
    assert commands, block.id
    for words in commands:
        _check_command(words, block.id)


def test_the_command_check_can_fail() -> None:
    with pytest.raises(pytest.fail.Exception):
        _check_command(["otel-agents", "sidecar", "--no-such-option"], "sample")
    with pytest.raises(AssertionError):
        _check_command(["make", "no-such-target"], "sample")
    with pytest.raises(AssertionError):
        _check_command(["rm", "-rf", "/"], "sample")


# --- yaml --------------------------------------------------------------------------------------


@pytest.mark.parametrize("block", _blocks("yaml", "yml"), ids=lambda b: b.id)
def test_every_yaml_block_parses_and_its_commands_are_real(block: Block) -> None:
    data = yaml.safe_load(block.code)
    assert isinstance(data, dict), block.id
    for name, service in (data.get("services") or {}).items():
        command = service.get("command")
        entrypoint = service.get("entrypoint")
        if isinstance(command, str):
            command = shlex.split(command)
        if command and entrypoint in (None, ["otel-agents"]) and command[0] in ("demo", "sidecar"):
            command = ["otel-agents", *command]  # the image's entrypoint is otel-agents
        if command:
            _check_command(command, f"{block.id}: {name}")


# --- text blocks checked by their directive ----------------------------------------------------


@pytest.mark.parametrize(
    "block",
    [b for b in readme_blocks() if ("span-records", "") in b.directives],
    ids=lambda b: b.id,
)
def test_span_record_samples_name_real_spans_and_attributes(block: Block) -> None:
    from otel_agents import names as n

    spans = {s.name for s in n.SPANS}
    for line in block.code.splitlines():
        if not line.strip():
            continue
        name, *pairs = line.split()
        assert name in spans, f"{block.id}: {name}"
        for pair in pairs:
            key = pair.partition("=")[0]
            assert f"otel_agents.{key}" in n.ATTRIBUTE_HELP or key in n.ATTRIBUTE_HELP, (
                f"{block.id}: {key}"
            )


HANDLED = {"python", "sh", "bash", "console", "yaml", "yml"}
#: directives whose blocks another test checks
CHECKED_ELSEWHERE = {"demo-output", "span-records"}


def demo_output_sample() -> list[str]:
    """The README's sample of the demo's output (for ``tests/test_demo.py``)."""
    (block,) = [b for b in readme_blocks() if ("demo-output", "") in b.directives]
    return block.code.splitlines()


# --- option tables -----------------------------------------------------------------------------


def _tables() -> list[tuple[int, list[str], list[list[str]]]]:
    """Every markdown table outside code blocks: (line, header, rows)."""
    lines = README.read_text().splitlines()
    tables = []
    in_code = False
    i = 0
    while i < len(lines):
        if lines[i].lstrip().startswith("```"):
            in_code = not in_code
        if (
            not in_code
            and lines[i].startswith("|")
            and i + 1 < len(lines)
            and re.match(r"^\|\s*-", lines[i + 1])
        ):
            start = i
            header = [c.strip() for c in lines[i].strip("|").split("|")]
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([c.strip() for c in re.split(r"(?<!\\)\|", lines[i].strip("|"))])
                i += 1
            tables.append((start + 1, header, rows))
            continue
        i += 1
    return tables


def _option_tables() -> list[tuple[int, list[list[str]]]]:
    return [(line, rows) for line, header, rows in _tables() if header[:1] == ["option"]]


def _options_of(cell: str) -> set[str]:
    return set(re.findall(r"`(-{1,2}[a-z][\w-]*)", cell))


def _parser_options(parser: argparse.ArgumentParser) -> set[str]:
    return {
        max(action.option_strings, key=len)
        for action in parser._actions
        if action.option_strings and action.dest != "help"
    }


def _variables_of(cell: str) -> set[str]:
    return set(re.findall(r"`([A-Z][A-Z0-9_]{3,})", cell))


def _documented_variables() -> set[str]:
    return {
        v for _line, _h, rows in _tables() for row in rows for v in _variables_of(" ".join(row))
    }


def test_every_command_has_an_option_table_that_matches_its_parser() -> None:
    tables = {}
    for line, rows in _option_tables():
        documented = {o for row in rows for o in re.findall(r"^`(-{1,2}[a-z][\w-]*)", row[0])}
        # a row may show the short form only (-s, -v): the long one is the parser's key
        tables[line] = (documented, rows)
    for command in ("demo", "sidecar"):
        parser = _parser(command)
        real = _parser_options(parser)
        short = {
            min(a.option_strings, key=len): max(a.option_strings, key=len)
            for a in parser._actions
            if len(a.option_strings) > 1
        }
        matches = [
            (line, rows)
            for line, (documented, rows) in tables.items()
            if {short.get(o, o) for o in documented} == real
        ]
        assert len(matches) == 1, (command, real, [sorted(d) for d, _ in tables.values()])
        ((_line, rows),) = matches
        for row in rows:
            named = re.findall(r"`(-{1,2}[a-z][\w-]*)", row[0])
            if not named:
                continue
            option = short.get(named[0], named[0])  # the row's own: the first it names
            action = next(a for a in parser._actions if option in a.option_strings)
            if action.default not in (None, False):
                assert _same_default(str(action.default), row[-1]), (
                    command,
                    option,
                    action.default,
                    row[-1],
                )
            for variable in _variables_of(row[1]):
                assert variable in (parser.format_help() + _VARIABLES_READ[command]), (
                    command,
                    option,
                    variable,
                )


def _same_default(real: str, cell: str) -> bool:
    """The parser's default, as the table's last cell shows it (``5`` for ``"5.0"``)."""
    shown = cell.strip().strip("`").removeprefix("./")
    real = real.removeprefix("./")
    try:
        return float(shown) == float(real)
    except ValueError:
        return shown == real


_VARIABLES_READ = {
    "demo": "OTEL_AGENTS_METRICS_PORT OTEL_EXPORTER_OTLP_ENDPOINT",
    "sidecar": "PROMETHEUS_MULTIPROC_DIR OTEL_AGENTS_SIDECAR_BEARER_TOKEN "
    "OTEL_AGENTS_SIDECAR_BASIC_AUTH OTEL_EXPORTER_OTLP_ENDPOINT OTEL_AGENTS_OTLP_METRICS",
}


def test_the_init_table_matches_its_signature_and_the_variables_it_reads() -> None:
    import otel_agents
    from otel_agents import _config

    (rows,) = [rows for _line, header, rows in _tables() if header[:1] == ["argument"]]
    signature = inspect.signature(otel_agents.init)
    documented = {a for row in rows for a in re.findall(r"`([a-z_]+)`", row[0])}
    assert documented == set(signature.parameters), documented ^ set(signature.parameters)
    variables = {v for row in rows for v in _variables_of(row[1])}
    read = {
        getattr(_config, name)
        for name in dir(_config)
        if name.startswith("ENV_") and isinstance(getattr(_config, name), str)
    }
    assert variables == read, variables ^ read
    defaults = {
        "service_name": _config.DEFAULT_SERVICE_NAME,
        "silence_timeout": str(_config.DEFAULT_SILENCE_TIMEOUT),
        "exit_flush_timeout": str(_config.DEFAULT_EXIT_FLUSH_TIMEOUT),
        "metrics_host": signature.parameters["metrics_host"].default,
    }
    for row in rows:
        for argument in re.findall(r"`([a-z_]+)`", row[0]):
            if argument in defaults:
                assert f"`{defaults[argument]}`" in row[-1], (argument, row[-1])


# --- figures -----------------------------------------------------------------------------------

#: a measured figure: a time in ms or µs, or a ratio like 1.02x
MEASURED = re.compile(r"\b\d[\d.,]*(?:-\d[\d.,]*)?\s?(?:ms|µs|us)\b|\b\d+\.\d+(?:-\d+\.\d+)?x\b")


def _prose() -> list[tuple[int, str]]:
    """The README's lines outside code blocks and the generated bench table."""
    out = []
    in_code = in_bench = False
    for number, line in enumerate(README.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        if "<!-- bench:begin -->" in line:
            in_bench = True
        if "<!-- bench:end -->" in line:
            in_bench = False
            continue
        if not in_code and not in_bench:
            out.append((number, line))
    return out


def test_no_measured_figure_is_copied_into_the_prose() -> None:
    """Figures come from ``make bench``, which writes its table into the README: prose that
    quotes one goes stale with the next run."""
    copied = [f"README.md:{n}: {line.strip()}" for n, line in _prose() if MEASURED.search(line)]
    assert copied == [], "refer to the bench table instead:\n" + "\n".join(copied)


def test_the_figure_check_can_fail() -> None:
    assert MEASURED.search("takes 11-13 ms per render")
    assert MEASURED.search("1.02-1.04x of the same response")
    assert MEASURED.search("3-5 µs for six headers")
    assert not MEASURED.search("2 s by default, 500 series, 64 KiB")


def test_the_bench_table_is_generated() -> None:
    text = README.read_text()
    begin, end = text.index("<!-- bench:begin -->"), text.index("<!-- bench:end -->")
    assert text[begin:end].splitlines()[1].startswith("Measured by `make bench`")


def test_livekits_own_words_are_quoted_as_livekit_1_8_9_says_them() -> None:
    """The README quotes livekit's retry loop; the templates are in livekit's source."""
    import livekit.agents.llm.llm as livekit_llm

    source = inspect.getsource(livekit_llm)
    text = " ".join(README.read_text().split())
    quoted = {
        "`failed to generate LLM completion: <provider error>, retrying in": (
            "failed to generate LLM completion: {e}, retrying in"
        ),
        "failed to generate LLM completion after 3 attempts": (
            "failed to generate LLM completion after {self._conn_options.max_retry + 1} attempts"
        ),
    }
    for readme, template in quoted.items():
        assert readme in text, readme
        assert template in source, template


def test_livekits_names_in_the_docs_are_what_livekit_1_8_9_exports() -> None:
    """``AgentServer(prometheus_port=...)``, ``WorkerOptions``...: every livekit class the docs
    name is exported by ``livekit.agents`` (``ServerOptions`` is not, in 1.8.9), and every
    keyword they give it is a parameter of it."""
    import livekit.agents

    texts = [README.read_text(), *(p.read_text() for p in (ROOT / "docs").glob("*.md"))]
    calls = {
        (cls, kwarg)
        for text in texts
        for cls, kwarg in re.findall(r"\b(\w+(?:Server|Options))\((\w+)=", text)
    }
    assert calls, "no livekit call quoted: the pattern is stale"
    for cls, kwarg in calls:
        assert hasattr(livekit.agents, cls), f"livekit.agents exports no {cls}"
        parameters = inspect.signature(getattr(livekit.agents, cls)).parameters
        assert kwarg in parameters, f"{cls} takes no {kwarg}"
    for text in texts:
        for name in re.findall(r"from livekit\.agents import ([\w, ]+)", text):
            for imported in name.split(","):
                assert hasattr(livekit.agents, imported.strip()), imported


def test_the_otlp_stream_figures_the_prose_points_to_are_in_the_table() -> None:
    """The prose about OTLP streams quotes no count (counts change with the code): it points to
    the row ``make bench`` writes into the results table, which must be there."""
    text = README.read_text()
    table = text[text.index("<!-- bench:begin -->") : text.index("<!-- bench:end -->")]
    assert '"OTLP metric streams" row' in text
    assert "| OTLP metric streams per worker after 1000 short jobs, sidecar pushing |" in table
    prose = " ".join(text.replace(table, "").split())
    assert re.findall(r"\b\d[\d,]* streams\b", prose) == []
