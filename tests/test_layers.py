"""The layers of docs/architecture.md, checked on the source: no import circle, each package imports only the
layers below it, and no private ``_name`` crosses a module boundary. Imports inside functions count too."""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
CORE = {"hardneg.types", "hardneg.errors", "hardneg.io", "hardneg.hashing", "hardneg.markdown", "hardneg.backend_text"}

# package -> the packages it may import besides itself and the core, one rule a line, with the reason
ALLOWED = {
    "hardneg.data": set(),  # loading knows no models, no search, no mining
    "hardneg.encode": set(),  # encoders know no datasets beyond ids and texts
    "hardneg.search": set(),  # search knows no mining or positives: arrays in, (scores, rows) out
    "hardneg.train": {"hardneg.data", "hardneg.encode"},  # training reads mined rows and builds encoders only
    "hardneg.mining": {"hardneg.data", "hardneg.encode", "hardneg.search"},  # pools = encode + search
    "hardneg.evaluate": {"hardneg.data", "hardneg.encode", "hardneg.search"},  # metrics over an encoder's run
    "hardneg.scale": {"hardneg.encode", "hardneg.search", "hardneg.mining"},  # Ray versions of those
    # reports render results files, mined files and diagnostics: they may read every library layer below them
    "hardneg.report": {"hardneg.data", "hardneg.encode", "hardneg.search", "hardneg.mining", "hardneg.evaluate",
                       "hardneg.train", "hardneg.scale"},
}
# who may import the report package: the verbs (cli, cli_show, verbs) and the studies that write reports (experiments)
REPORT_USERS = {"hardneg.cli", "hardneg.cli_show", "hardneg.verbs", "hardneg.experiments", "hardneg.report"}


def modules() -> dict[str, Path]:
    out = {}
    for p in (SRC / "hardneg").rglob("*.py"):
        parts = p.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def imports(mods: dict[str, Path]) -> dict[str, set[tuple[str, str | None]]]:
    """module -> {(imported module, imported name or None)}: `from pkg import submodule` is the submodule."""
    found: dict[str, set[tuple[str, str | None]]] = {m: set() for m in mods}
    for m, p in mods.items():
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("hardneg"):
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    found[m].add((sub, None) if sub in mods else (node.module, a.name))
            elif isinstance(node, ast.Import):
                found[m].update((a.name, None) for a in node.names if a.name.startswith("hardneg"))
    return found


def package(m: str) -> str:
    return ".".join(m.split(".")[:2])


def test_no_import_circle():
    mods = modules()
    graph = {m: {t for t, _ in ts if t in mods and t != m}
             for m, ts in imports(mods).items()}
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph[m]):
            assert state.get(t) != 1, "import circle: " + " -> ".join(path[path.index(t):] + [t]) \
                if t in path else f"import circle through {t}"
            if t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_each_package_imports_only_the_layers_below():
    problems = []
    for m, ts in imports(modules()).items():
        pkg = package(m)
        if m in CORE:
            allowed = CORE
        elif pkg in ALLOWED:
            allowed = CORE | ALLOWED[pkg] | {pkg}
        else:
            continue  # the top: experiments, llm, browse, st_compat, cli may use every layer below them
        problems += [f"{m} imports {t}" for t, _ in ts
                     if package(t) not in allowed and t not in allowed]
    assert not problems, problems


def test_only_the_verbs_and_studies_import_reports():
    users = [f"{m} imports {t}" for m, ts in imports(modules()).items() for t, _ in ts
             if package(t) == "hardneg.report" and package(m) not in REPORT_USERS]
    assert not users, users


def test_nothing_imports_the_cli_and_no_private_name_crosses_modules():
    mods = modules()
    found = imports(mods)
    assert not [m for m, ts in found.items() for t, _ in ts if t == "hardneg.cli" and m != "hardneg.cli"]
    private = [f"{m} imports {t}.{name}" for m, ts in found.items() for t, name in ts
               if name is not None and name.startswith("_") and t != m]
    assert not private, private


def test_help_imports_no_torch():
    """`hardneg --help` and `hardneg VERB --help` answer without importing torch (they took ~7 s when they did)."""
    import subprocess
    import sys

    code = ("import sys\nfrom hardneg import cli\nfor verb in ([], ['mine'], ['train'], ['run'], ['browse']):\n"
            "    sys.argv = ['hardneg', *verb, '--help']\n    try:\n        cli.main()\n    except SystemExit:\n"
            "        pass\nprint('torch' in sys.modules, 'sentence_transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False False"
