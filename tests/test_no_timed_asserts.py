"""No test asserts on a timing: on a loaded 2-core machine a bound on elapsed time is flaky by
construction. Costs are measured by ``make bench`` (ratios to a baseline measured in the same
run); tests assert structure (characters scanned, calls made, memory held, queues bounded).

The check reads every module of ``tests/`` with :mod:`ast`: a value is a time measurement when
it comes from a clock (``time.perf_counter()``, ``time.monotonic()``, ``time.time()``,
``time.process_time()``, their ``_ns`` forms, an event loop's ``.time()``), from a helper that
returns one, from arithmetic on one, from a list one was appended to, or from an attribute
that was assigned one (``self.worst = ...``, ``scrape.seconds = ...``, ``Run(exit_seconds)``).
An ``assert`` comparing such a value fails the test. Two comparisons are not timings: against a
wait loop's own give-up point (a name holding ``deadline``), which bounds the test's patience
with something that never came, not how long the product took; and two instants in order
(``span.end_time <= closed_at``, ``closed_at`` read after the close): happens-before, which
load cannot flip, with no bound and no duration.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

TESTS = Path(__file__).resolve().parent
CLOCKS = frozenset(
    {
        "perf_counter",
        "perf_counter_ns",
        "monotonic",
        "monotonic_ns",
        "time",
        "time_ns",
        "process_time",
        "process_time_ns",
        "thread_time",
        "thread_time_ns",
    }
)
_APPENDERS = frozenset({"append", "extend", "add", "insert", "appendleft"})
#: calls whose result is a measurement when an argument is one
_PASS_THROUGH = frozenset(
    {"max", "min", "sum", "abs", "round", "float", "int", "sorted", "median", "mean", "fsum"}
)


def _clock_call(node: ast.AST, clock_names: set[str]) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Attribute) and func.attr in CLOCKS:
        base = func.value
        # time.monotonic(), loop.time(), asyncio.get_running_loop().time()
        if isinstance(base, ast.Name) and (base.id == "time" or "loop" in base.id):
            return True
        if isinstance(base, ast.Call) and "loop" in ast.unparse(base.func):
            return True
    return isinstance(func, ast.Name) and func.id in clock_names


class _Taint:
    """Names, attributes and functions that hold or return a time measurement, in one module."""

    def __init__(self, tree: ast.Module) -> None:
        self.clock_names = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "time"
            for alias in node.names
            if alias.name in CLOCKS
        }
        self.names: set[str] = set()
        self.attrs: set[str] = set()
        self.functions: set[str] = set()
        #: names that hold a clock's reading as it was read (an instant, not a duration)
        self.readings: set[str] = set()
        # to a fixed point: a helper's result taints its callers, a field its readers
        while True:
            before = (len(self.names), len(self.attrs), len(self.functions))
            self._pass(tree)
            if (len(self.names), len(self.attrs), len(self.functions)) == before:
                break

    def tainted(self, expr: ast.AST | None) -> bool:
        """Whether ``expr``'s value is a time measurement (not merely built with one: an
        event made with ``timestamp=time.time()`` is no measurement)."""
        match expr:
            case None:
                return False
            case ast.Call() if _clock_call(expr, self.clock_names):
                return True
            case ast.Name(id=name):
                return name in self.names
            case ast.Attribute(attr=attr):
                return attr in self.attrs
            case ast.Call(func=func, args=args, keywords=keywords):
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                if name in self.functions:
                    return True
                if name in _PASS_THROUGH:
                    return any(self.tainted(a) for a in [*args, *(k.value for k in keywords)])
                return False
            case ast.BinOp(left=left, right=right):
                return self.tainted(left) or self.tainted(right)
            case ast.UnaryOp(operand=operand) | ast.Subscript(value=operand):
                return self.tainted(operand)
            case ast.IfExp(body=body, orelse=orelse):
                return self.tainted(body) or self.tainted(orelse)
            case ast.List(elts=elts) | ast.Tuple(elts=elts) | ast.Set(elts=elts):
                return any(self.tainted(e) for e in elts)
            case (
                ast.ListComp(elt=elt, generators=gens)
                | ast.GeneratorExp(elt=elt, generators=gens)
                | ast.SetComp(elt=elt, generators=gens)
            ):
                return self.tainted(elt) or any(self.tainted(g.iter) for g in gens)
            case ast.Await(value=value) | ast.NamedExpr(value=value):
                return self.tainted(value)
        return False

    def _mark(self, target: ast.AST) -> None:
        if isinstance(target, ast.Name):
            self.names.add(target.id)
        elif isinstance(target, ast.Attribute):
            self.attrs.add(target.attr)
        elif isinstance(target, ast.Tuple | ast.List):
            for element in target.elts:
                self._mark(element)

    def _pass(self, tree: ast.Module) -> None:
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    pairs = [(target, node.value)]
                    if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                        pairs = list(zip(target.elts, node.value.elts, strict=False))
                    for name, value in pairs:
                        if self.tainted(value):
                            self._mark(name)
                            if isinstance(name, ast.Name) and _clock_call(value, self.clock_names):
                                self.readings.add(name.id)
            elif (isinstance(node, ast.AugAssign | ast.AnnAssign) and self.tainted(node.value)) or (
                isinstance(node, ast.For | ast.comprehension) and self.tainted(node.iter)
            ):
                self._mark(node.target)
            elif isinstance(node, ast.Call):
                func = node.func
                args = [*node.args, *(k.value for k in node.keywords)]
                if (
                    isinstance(func, ast.Attribute)
                    and func.attr in _APPENDERS
                    and any(self.tainted(a) for a in args)
                ):
                    self._mark(func.value)
                # a measured value handed to a constructor: its field holds it, by keyword
                # or under the name it had (Run(..., exit_seconds, ...))
                for keyword in node.keywords:
                    value = keyword.value
                    if keyword.arg and isinstance(value, ast.Name) and value.id in self.names:
                        self.attrs.add(keyword.arg)
                for arg in node.args:
                    if isinstance(arg, ast.Name) and arg.id in self.names:
                        self.attrs.add(arg.id)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Return) and self.tainted(inner.value):
                        self.functions.add(node.name)
                    if isinstance(inner, ast.Lambda) and self.tainted(inner.body):
                        self.functions.add(node.name)


def _deadline(node: ast.AST) -> bool:
    return "deadline" in ast.unparse(node).lower()


def _instant(node: ast.AST, taint: _Taint) -> bool:
    """An instant as read, or a value no clock of the test made (a span's ``end_time``)."""
    if _clock_call(node, taint.clock_names):
        return True
    if isinstance(node, ast.Name) and node.id in taint.readings:
        return True
    return isinstance(node, ast.Name | ast.Attribute) and not taint.tainted(node)


def _ordering(compare: ast.Compare, taint: _Taint) -> bool:
    """Two instants in order (happens-before), which a loaded machine cannot flip: a span's
    end against an instant read after the close. No bound, no duration, no constant."""
    operands = [compare.left, *compare.comparators]
    return len(operands) == 2 and all(_instant(o, taint) for o in operands)


def timed_asserts(source: str, filename: str = "<sample>") -> list[str]:
    """``file:line: the assert`` for every assert comparing a time measurement."""
    tree = ast.parse(source, filename)
    taint = _Taint(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assert):
            continue
        for compare in (c for c in ast.walk(node.test) if isinstance(c, ast.Compare)):
            operands = [compare.left, *compare.comparators]
            if any(_deadline(o) for o in operands) or _ordering(compare, taint):
                continue
            if any(taint.tainted(o) for o in operands):
                found.append(f"{filename}:{node.lineno}: {ast.unparse(node.test)[:120]}")
                break
    return found


def test_no_test_asserts_on_a_timing() -> None:
    offenders = [
        hit
        for path in sorted(TESTS.rglob("*.py"))
        for hit in timed_asserts(path.read_text(), str(path.relative_to(TESTS.parent)))
    ]
    assert offenders == [], "move the bound to bench/ or assert structure:\n" + "\n".join(offenders)


# --- the check can fail ------------------------------------------------------------------------

TIMED = textwrap.dedent(
    """
    import time
    from time import perf_counter as clock

    def timed(fn):
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    class Heartbeat:
        def beat(self):
            late = time.monotonic() - self.due
            self.worst = max(self.worst, late)

    def run_worker():
        started = time.monotonic()
        exit_seconds = time.monotonic() - started
        return Run(exit_seconds)

    def test_direct():
        started = time.monotonic()
        shutdown()
        elapsed = time.monotonic() - started
        assert elapsed < 1.5

    def test_helper():
        assert timed(lambda: classify(x)) < 0.05

    def test_inline():
        started = clock()
        work()
        assert clock() - started < 3.0

    def test_list():
        spent = []
        for _ in range(3):
            s = time.perf_counter()
            spent.append(time.perf_counter() - s)
        assert max(spent) < 0.05

    def test_attribute(heartbeat):
        assert heartbeat.worst < 0.5

    def test_field(run):
        assert run.exit_seconds < 15

    def test_lower_bound_too():
        started = time.monotonic()
        assert time.monotonic() - started >= 0.1

    def test_inside_all(xs):
        took = [timed(x) for x in xs]
        assert all(t < 1 for t in took)

    async def test_loop_time(loop):
        t0 = loop.time()
        assert loop.time() - t0 < 1

    def test_two_durations(a, b):
        with_it = timed(a)
        without = timed(b)
        assert with_it < without * 1.1
    """
)

CLEAN = textwrap.dedent(
    """
    import time

    def test_structure():
        event = make(timestamp=time.time())
        assert event.count == 3
        assert len(queue) <= 2048

    def test_waits_for_something_with_a_deadline():
        deadline = time.monotonic() + 30
        while not ready():
            assert time.monotonic() < deadline, "never became ready"

    def test_durations_of_audio():
        assert sum(f.duration for f in frames) >= 0.1

    def test_happens_before(span):
        closed_at = time.time_ns()
        assert span.end_time <= closed_at
    """
)


def test_the_check_finds_every_shape_of_timed_assert() -> None:
    found = timed_asserts(TIMED)
    lines = {int(hit.split(":")[1]) for hit in found}
    expected = {
        i for i, line in enumerate(TIMED.splitlines(), 1) if line.strip().startswith("assert ")
    }
    assert lines == expected, "\n".join(found)
    assert len(expected) == 10


def test_the_check_passes_structural_asserts() -> None:
    assert timed_asserts(CLEAN) == []
