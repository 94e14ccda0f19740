"""The layering rules of docs/architecture.md, checked on the import graph of the source.

Every `import` and `from ... import` counts, at module level or inside a function (a lazy import
still ties two modules together); only imports under `if TYPE_CHECKING:` are left out, since they
never run. The rules are checked on the real tree and, so that a broken checker cannot pass
silently, on small trees with one violation each.
"""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

from agentnet_client import wire

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("agentnet_server", "agentnet_client", "agentnet_bench")
WIRE = "agentnet_client.wire"
# The layers above the domain, in agentnet_server.
UPPER = ("live", "rpc", "rest")


def module_name(root: pathlib.Path, path: pathlib.Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    out: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                out.append(child)
            visit(child)

    visit(tree)
    return out


def import_graph(root: pathlib.Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    """Module → every module it imports (project modules and third-party top-level names)."""
    files = {module_name(root, p): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        deps: set[str] = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
                continue
            base = node.module or ""
            if node.level:
                anchor = mod.split(".") if is_pkg else mod.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for a in node.names:
                sub = f"{base}.{a.name}"
                deps.add(sub if sub in files else base)
        deps.discard(mod)
        graph[mod] = deps
    return graph


def _project(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: {d for d in deps if d in graph} for m, deps in graph.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    g = _project(graph)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp: list[str] = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            strong(v)
    return out


def _top(name: str) -> str:
    return name.split(".")[0]


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(graph: dict[str, set[str]]) -> list[str]:
    out = [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    for mod, deps in sorted(graph.items()):
        for dep in sorted(deps):
            top = _top(dep)
            if _under(mod, "agentnet_server") and top == "agentnet_client" and dep != WIRE:
                out.append(f"{mod} imports {dep}: the server may import only {WIRE} from the client")
            if _under(mod, "agentnet_client") and top == "agentnet_server":
                out.append(f"{mod} imports {dep}: the client imports nothing from the server")
            if _under(mod, "agentnet_client") and top == "agentnet_bench" and not _under(mod, "agentnet_client.cli"):
                out.append(f"{mod} imports {dep}: only the `agentnet bench` command loads the benchmark")
            if _under(mod, "agentnet_server.domain") and top in ("grpc", "aiohttp", "peewee", "playhouse"):
                out.append(f"{mod} imports {dep}: the domain knows no transport and no ORM")
            if _under(mod, "agentnet_server.domain") and any(_under(dep, f"agentnet_server.{up}") for up in UPPER):
                out.append(
                    f"{mod} imports {dep}: the domain imports nothing from the layers above it "
                    "(it reaches the live sessions through its own interface, domain/live.py)"
                )
            if _under(mod, "agentnet_server.live") and top in ("grpc", "aiohttp"):
                out.append(f"{mod} imports {dep}: the live core knows no transport (adapters are in rpc/ and rest/)")
            if top in ("peewee", "playhouse") and not _under(mod, "agentnet_server.store"):
                out.append(f"{mod} imports {dep}: only agentnet_server.store uses peewee")
            if (mod == WIRE and top in ("grpc", "agentnet_server")) or (mod == WIRE and _under(dep, "agentnet_client")):
                out.append(f"{mod} imports {dep}: the wire contract imports no gRPC and no other project module")
    return out


def test_the_source_keeps_the_layering_rules() -> None:
    graph = import_graph(ROOT)
    assert "agentnet_server.app" in graph and WIRE in graph and "agentnet_bench.bench" in graph
    assert violations(graph) == []


# One small tree per rule, each with exactly the violation named.
BROKEN = {
    "cycle": {"agentnet_server/a.py": "from . import b\n", "agentnet_server/b.py": "def f():\n    from . import a\n"},
    "server imports client": {"agentnet_server/x.py": "from agentnet_client.session import make_send\n"},
    "client imports server": {"agentnet_client/x.py": "from agentnet_server.records import now_us\n"},
    "library loads bench": {"agentnet_client/x.py": "import agentnet_bench.bench\n"},
    "domain imports grpc": {"agentnet_server/domain/x.py": "import grpc\n"},
    "domain imports aiohttp": {"agentnet_server/domain/x.py": "from aiohttp import web\n"},
    "domain imports live": {"agentnet_server/domain/x.py": "from ..live.hub import Hub\n"},
    "domain imports rpc": {"agentnet_server/domain/x.py": "def f():\n    from ..rpc import convert\n"},
    "domain imports rest": {"agentnet_server/domain/x.py": "import agentnet_server.rest.sse\n"},
    "live imports grpc": {"agentnet_server/live/x.py": "import grpc\n"},
    "live imports aiohttp": {"agentnet_server/live/x.py": "from aiohttp import web\n"},
    "peewee outside store": {"agentnet_server/rpc/x.py": "import peewee\n"},
    "wire imports grpc": {"agentnet_client/wire.py": "import grpc\n"},
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_each_rule_fails_on_a_violation(tmp_path: pathlib.Path, case: str) -> None:
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    for sub in ("agentnet_server/domain", "agentnet_server/live", "agentnet_server/rpc", "agentnet_server/store"):
        (tmp_path / sub).mkdir(exist_ok=True)
        (tmp_path / sub / "__init__.py").write_text("")
    (tmp_path / "agentnet_client/session.py").write_text("")
    (tmp_path / "agentnet_client/wire.py").write_text("import re\nfrom google.protobuf import json_format\n")
    (tmp_path / "agentnet_server/records.py").write_text("")
    (tmp_path / "agentnet_bench/bench.py").write_text("")
    (tmp_path / "agentnet_server/store/db.py").write_text("import peewee\n")
    (tmp_path / "agentnet_server/domain/ok.py").write_text(
        "from agentnet_client import wire\nfrom ..records import now_us\nfrom typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from ..store.db import Database\n"
    )
    assert violations(import_graph(tmp_path)) == [], "the clean tree must pass"
    for rel, text in BROKEN[case].items():
        (tmp_path / rel).write_text(text)
    found = violations(import_graph(tmp_path))
    assert len(found) == 1, found


# -- the catalogue of reason words --------------------------------------------------------------

_WORD = re.compile(r"^[A-Z][A-Z0-9_]{2,}$")
_POSITIONAL = {"close", "close_where", "HttpError", "bad_request"}


def reason_literals(root: pathlib.Path) -> dict[str, str]:
    """Reason words written in the server's source → where (keyword `reason=` or the reason
    argument of close / HttpError / bad_request)."""
    found: dict[str, str] = {}
    for path in sorted((root / "agentnet_server").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            fn = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            values = [kw.value for kw in node.keywords if kw.arg == "reason"]
            if fn in _POSITIONAL:
                values += node.args
            for v in values:
                if isinstance(v, ast.Constant) and isinstance(v.value, str) and _WORD.match(v.value):
                    found.setdefault(v.value, f"{path.relative_to(root)}:{node.lineno}")
    return found


def test_every_reason_the_server_gives_is_in_the_catalogue_and_documented_in_the_protos() -> None:
    used = reason_literals(ROOT)
    assert len(used) > 50
    unknown = {w: where for w, where in used.items() if w not in wire.REASON_WORDS}
    assert unknown == {}, "add these reasons to agentnet_client/wire.py REASONS and to Error.reason in events.proto"
    proto = (ROOT / "protos" / "agentnet" / "v1" / "events.proto").read_text(encoding="utf-8")
    documented = set(re.findall(r"[A-Z][A-Z0-9_]{2,}", proto))
    assert sorted(wire.REASON_WORDS - documented) == []
    all_words = [w for words in wire.REASONS.values() for w in words]
    assert len(all_words) == len(set(all_words)), "a reason is listed under two areas"
