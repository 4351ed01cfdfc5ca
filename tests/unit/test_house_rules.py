"""House rules checked over the source tree with `ast` (issue 16, "one room per concern").

- No module reaches into another object's `_private` attribute: `x._name` is allowed only on `self`/`cls`
  (and `super()`/`type(self)`), or inside the class that defines `_name` (another instance of the same class);
  dunders are public. `from m import _name` across modules counts too. A module's own module-level privates
  (plain names) are its own business.
- Optional broker/adapter features are `typing.Protocol`s (pipeline/core/ports.py), not probes: no `hasattr`
  in pipeline/ or daemon/, and no `getattr(<broker>, "name", default)` there either.
- No module in daemon/ is over 400 lines.
- The Core (the modules that were daemon/app.py, and reconciliation) holds no journal SQL and does not reach
  through other objects' collections (`ledger.holdings`, `router.health`, `orchestrator.reservations`...):
  the owners offer small public methods.

The few accesses to third-party SDK internals that have no public API are listed in SDK_INTERNALS, each with
its reason; an entry no longer used fails the test too, so the list only ever shrinks.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "adapters", "daemon", "config")
PROBE_PACKAGES = ("pipeline", "daemon")
BROKERISH = re.compile(r"broker|primary|venue|chain_provider|feed|adapter")
DAEMON_MAX_LINES = 400
CORE_MODULES = ("broker_events", "control_handlers", "core", "feed_loop", "limbo", "os_signals", "process",
                "reconciliation", "recovery", "services", "wiring")
REACHED_INTO = {  # (owner, attribute): the owner has a public method for what these were used for
    ("orchestrator", "reservations"), ("orchestrator", "validator"), ("orchestrator", "sectors"),
    ("orchestrator", "feedback"), ("lifecycle", "feedback"), ("lifecycle", "stops"), ("ledger", "holdings"),
    ("ledger", "last_prices"), ("router", "health"), ("router", "unstarted"), ("router", "smart"),
    ("router", "on_split"), ("router", "on_result"), ("engine", "pruners"), ("reconciler", "notional_threshold"),
    ("reconciliation", "confirmer"),
}
SQL = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|PRAGMA)\b", re.IGNORECASE)

# (module, accessed expression) -> why it is allowed: internals of alpaca-py 0.44 with no public equivalent
SDK_INTERNALS: dict[tuple[str, str], str] = {
    ("adapters/alpaca.py", "client._retry"):
        "alpaca-py RESTClient: its own 3 x 3 s retry loop has no public switch; our router retries",
    ("adapters/alpaca_data.py", "client._retry"):
        "alpaca-py RESTClient (historical data): as above",
    ("adapters/alpaca.py", "client._session"):
        "alpaca-py RESTClient sets no timeout and has no public close: its requests.Session is the only handle",
    ("adapters/alpaca.py", "stream._run_forever"):
        "alpaca-py streams: run() calls asyncio.run; _run_forever() is the coroutine to run on our loop",
    ("adapters/alpaca.py", "stream._reconnect_min_backoff"):
        "alpaca-py TradingStream: its reconnect backoff has no constructor argument",
    ("adapters/alpaca.py", "stream._reconnect_max_backoff"):
        "alpaca-py TradingStream: as above",
    ("adapters/alpaca_data.py", "stream._reconnect_min_backoff"):
        "alpaca-py StockDataStream: as above",
    ("adapters/alpaca_data.py", "stream._reconnect_max_backoff"):
        "alpaca-py StockDataStream: as above",
}


def modules(packages: tuple[str, ...]) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def _own_names(cls: ast.ClassDef) -> set[str]:
    """Every name a class defines for its instances: methods, class attributes, `self.x = ...` assignments."""
    names: set[str] = set()
    for node in ast.walk(cls):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) \
                and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            names.add(node.attr)
    return names


class _PrivateAccess(ast.NodeVisitor):
    def __init__(self) -> None:
        self.hits: list[tuple[int, str]] = []
        self._classes: list[set[str]] = []

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._classes.append(_own_names(node))
        self.generic_visit(node)
        self._classes.pop()

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name.startswith("_") and not _is_dunder(alias.name) and node.module != "__future__":
                self.hits.append((node.lineno, f"from {node.module} import {alias.name}"))

    def visit_Attribute(self, node: ast.Attribute) -> None:
        name = node.attr
        if name.startswith("_") and not _is_dunder(name) and not self._allowed(node.value, name):
            self.hits.append((node.lineno, ast.unparse(node)))
        self.generic_visit(node)

    def _allowed(self, owner: ast.expr, name: str) -> bool:
        if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
            return True
        if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id in ("super", "type"):
            return True
        return bool(self._classes) and name in self._classes[-1]  # another instance of the defining class


def private_accesses(source: str) -> list[tuple[int, str]]:
    visitor = _PrivateAccess()
    visitor.visit(ast.parse(source))
    return visitor.hits


def feature_probes(source: str) -> list[tuple[int, str]]:
    """`hasattr(...)` anywhere, and `getattr(<broker-ish>, "literal", default)`."""
    hits = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        if node.func.id == "hasattr":
            hits.append((node.lineno, ast.unparse(node)))
        elif node.func.id == "getattr" and len(node.args) == 3 and isinstance(node.args[1], ast.Constant) \
                and BROKERISH.search(ast.unparse(node.args[0])):
            hits.append((node.lineno, ast.unparse(node)))
    return hits


def _tree_private_accesses() -> list[tuple[str, int, str]]:
    found = []
    for path in modules(PACKAGES):
        rel = str(path.relative_to(ROOT))
        found += [(rel, line, text) for line, text in private_accesses(path.read_text())]
    return found


# -- the checkers themselves catch what they are meant to ------------------------------------------------
def test_the_private_access_check_sees_a_reach_through() -> None:
    source = (
        "class Box:\n"
        "    def __init__(self):\n"
        "        self._items = []\n"
        "    def merge(self, other: 'Box'):\n"
        "        self._items += other._items\n"          # same class: fine
        "        return other.__class__\n"               # dunder: fine
        "def peek(box):\n"
        "    return box._items\n"                         # reach-through
        "class Other:\n"
        "    def steal(self, box):\n"
        "        return box._items, super()._x, _MODULE_PRIVATE\n"
        "from pipeline.x import _helper\n"
    )
    assert private_accesses(source) == [(8, "box._items"), (11, "box._items"), (12, "from pipeline.x import _helper")]


def test_the_probe_check_sees_hasattr_and_getattr_probes() -> None:
    source = (
        "a = hasattr(thing, 'resync')\n"
        "b = getattr(broker, 'drain', None)\n"
        "c = getattr(self.brokers[name], 'last_price', None)\n"
        "d = getattr(event, 'client_order_id', None)\n"   # not a feature probe of a broker
        "e = getattr(args, 'json', False)\n"
    )
    assert [line for line, _ in feature_probes(source)] == [1, 2, 3]


# -- the tree --------------------------------------------------------------------------------------------
def test_no_private_access_across_objects() -> None:
    hits = [f"{rel}:{line}: {text}" for rel, line, text in _tree_private_accesses()
            if (rel, text) not in SDK_INTERNALS]
    assert hits == [], "reaches into another object's _private attribute (add a public method on the owner):\n" \
        + "\n".join(hits)


def test_every_sdk_internal_listed_is_still_used() -> None:
    used = {(rel, text) for rel, _line, text in _tree_private_accesses()}
    assert sorted(set(SDK_INTERNALS) - used) == []


def test_no_feature_probes_in_pipeline_or_daemon() -> None:
    hits = []
    for path in modules(PROBE_PACKAGES):
        rel = path.relative_to(ROOT)
        hits += [f"{rel}:{line}: {text}" for line, text in feature_probes(path.read_text())]
    assert hits == [], "probes an optional feature (make it a Protocol in pipeline/core/ports.py):\n" + "\n".join(hits)


@pytest.mark.parametrize("path", modules(("daemon",)), ids=lambda p: p.name)
def test_daemon_modules_are_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= DAEMON_MAX_LINES, f"{path.name}: {lines} lines (at most {DAEMON_MAX_LINES})"


def _last_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else None


def core_reaches(source: str) -> list[tuple[int, str]]:
    """SQL text, and attribute access to another object's collections (see REACHED_INTO), in a Core module."""
    hits = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.match(node.value):
            hits.append((node.lineno, node.value[:40]))
        elif isinstance(node, ast.Attribute) and (_last_name(node.value), node.attr) in REACHED_INTO:
            hits.append((node.lineno, ast.unparse(node)))
    return hits


def test_the_core_check_sees_sql_and_reach_throughs() -> None:
    source = 'rows = q("SELECT * FROM orders")\nn = len(core.ledger.holdings)\nself.sectors = core.sectors\n'
    assert core_reaches(source) == [(1, "SELECT * FROM orders"), (2, "core.ledger.holdings")]


@pytest.mark.parametrize("name", CORE_MODULES)
def test_the_core_holds_no_sql_and_reaches_through_nothing(name: str) -> None:
    path = ROOT / "daemon" / f"{name}.py"
    assert core_reaches(path.read_text()) == []
