"""Each package's `__init__.py` says what it owns and, on a `May import:` line, what else of edgeport
it may import; every import (inside functions too) keeps to it and the graph has no cycle. At the top
level, the root's `Core modules:` keep to the root's line and the commands are free. Parsed, not imported.
"""

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1]
STANDALONE = ["edgeport.tflite.runner", "edgeport.runners.remote_eval", "edgeport.runners.remote_bench"]


def modules(src: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package) for every module under src/edgeport."""
    found = {}
    for path in sorted((src / "edgeport").rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def import_graph(src: Path) -> dict[str, set[str]]:
    """Module -> the edgeport modules it imports, at the top or inside functions."""
    mods = modules(src)
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in mods.items():
        here = name.split(".") if is_package else name.split(".")[:-1]
        graph[name] = edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name.split(".")[0] == "edgeport"}
            elif isinstance(node, ast.ImportFrom):
                base = node.module
                if node.level:  # relative: `from . import y`, `from ..x import y`
                    base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
                if base.split(".")[0] == "edgeport":  # `from edgeport.x import y`: y if it is a module
                    edges |= {f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names}
    return graph


def docstring_field(doc: str, label: str) -> list[str] | None:
    """The comma-separated items after `label` at a line start; a line ending in a comma continues."""
    found = re.search(rf"^{label}((?:.*,\n)*.*)", doc, re.MULTILINE)
    text = " ".join(found.group(1).split()) if found else None
    return None if text is None else [] if text == "nothing of edgeport" else [s.strip() for s in text.split(",")]


def package_rules(src: Path) -> tuple[dict[str, list[str]], list[str]]:
    """Package -> its `May import:` prefixes (the root: `core`, then them), and what is missing or wrong."""
    mods, rules, problems = modules(src), {}, []
    for name, (path, is_package) in mods.items():
        if not is_package:
            continue
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        allowed = docstring_field(doc, "May import:")
        if not any(line.startswith("Owns:") for line in doc.splitlines()):
            problems.append(f"{name}: no 'Owns:' line saying what the package owns")
        if allowed is None:
            problems.append(f"{name}: no 'May import:' line")
            continue
        problems += [f"{name}: 'May import: {p}' names no module or package" for p in allowed if p not in mods]
        rules[name] = allowed
        if name == "edgeport":
            core = docstring_field(doc, "Core modules:") or []
            if not core:
                problems.append("edgeport: no 'Core modules:' line")
            rules["core"] = [f"edgeport.{m}" for m in core]
    return rules, problems


def violations(src: Path) -> list[tuple[str, str, list[str]]]:
    """(module, imported name, the rule it breaks) for every import its innermost package forbids."""
    mods, (rules, _), found = modules(src), package_rules(src), []
    for name, targets in import_graph(src).items():
        package = name if mods[name][1] else name.rpartition(".")[0]
        if package == "edgeport" and name not in rules.get("core", []):
            continue  # the commands and wiring (and edgeport/__init__.py) may import anything
        own = [] if package == "edgeport" else [package]
        allowed = own + rules.get(package, [])
        found += [(name, t, rules.get(package, [])) for t in sorted(targets)
                  if not any(t == p or t.startswith(p + ".") for p in allowed)]
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per back edge found by a depth-first walk (none when the graph is acyclic)."""
    found, done = [], set()

    def visit(path: list[str]) -> None:
        for nxt in sorted(graph.get(path[-1], ())):
            if nxt in path:
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in done:
                visit(path + [nxt])
        done.add(path[-1])

    for node in sorted(graph):
        if node not in done:
            visit([node])
    return found


def test_every_package_says_what_it_owns_and_may_import():
    _, problems = package_rules(SRC)
    assert not problems, "\n".join(problems)


def test_imports_keep_to_each_package_rule():
    broken = [f"{m} imports {t} (May import: {', '.join(r) or 'nothing of edgeport'})" for m, t, r in violations(SRC)]
    assert not broken, "\n".join(broken)


def test_import_graph_has_no_cycle():
    found = cycles(import_graph(SRC))
    assert not found, "\n".join(" -> ".join(c) for c in found)


def test_files_copied_alone_to_devices_import_nothing_of_edgeport():
    graph = import_graph(SRC)
    assert {m: graph[m] for m in STANDALONE if graph[m]} == {}


def test_the_checker_catches_a_forbidden_lazy_import_and_a_cycle(tmp_path):
    files = {
        "__init__.py": '"""Root.\n\nOwns: x.\nCore modules: errors\nMay import: nothing of edgeport\n"""\n',
        "errors.py": "",
        "export/__init__.py": '"""Export.\n\nOwns: x.\nMay import: edgeport.errors\n"""\n',
        "pkg/__init__.py": '"""Pkg.\n\nOwns: x.\nMay import: edgeport.errors\n"""\n',
        "pkg/lazy.py": "import edgeport.errors\n\n\ndef f():\n    from edgeport import export\n",
        "pkg/a.py": "from . import b\n",
        "pkg/b.py": "from edgeport.pkg.a import something\n",
    }
    for rel, text in files.items():
        (tmp_path / "edgeport" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "edgeport" / rel).write_text(text)
    assert package_rules(tmp_path)[1] == []
    assert violations(tmp_path) == [("edgeport.pkg.lazy", "edgeport.export", ["edgeport.errors"])]
    assert cycles(import_graph(tmp_path)) == [["edgeport.pkg.a", "edgeport.pkg.b", "edgeport.pkg.a"]]
