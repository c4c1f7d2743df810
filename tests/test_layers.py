"""The package in layers: every rftctl module imports only modules of its own layer or below,
counting the imports inside functions, so no import cycle can hide in a function body; and no
module imports another module's private name. docs/layout.md describes the layers."""

import ast
import re
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "rftctl"

# bottom-up; a module belongs to the first layer one of whose prefixes it starts with
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "runtime",
        (
            "rftctl",
            "errors",
            "registry",
            "util",
            "ui",
            "logs",
            "omp",
            "compiled",
            "budgets",
            "device",
            "lock",
            "metric_names",
            "launch",
        ),
    ),
    (
        "core",
        (
            "entropy",
            "rl.surrogate",
            "rl.advantages",
            "rl.correction",
            "rl.seeds",
            "evaluation.metrics",
            "models.head",
        ),
    ),
    ("config", ("config", "config_sections", "config_docs", "overrides", "paths", "plan")),
    ("data, generation, models", ("data", "generation", "models")),
    ("train, evaluation, report", ("rl", "integrations", "evaluation", "report", "tracking")),
    ("stages", ("stages", "preflight")),
    ("cli", ("cli", "__main__")),
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts) or "rftctl"] = path
    return out


MODULES = _modules()


def layer(module: str) -> int:
    for rank, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if module == p or module.startswith(p + "."):
                return rank
    raise AssertionError(f"rftctl.{module} is in no layer: add it to LAYERS and docs/layout.md")


def _resolve(name: str) -> str | None:
    """The rftctl module an absolute import names (its longest module prefix), or None."""
    if name != "rftctl" and not name.startswith("rftctl."):
        return None
    parts = name.split(".")[1:]
    while parts and ".".join(parts) not in MODULES:
        parts.pop()
    return ".".join(parts) or "rftctl"


def imports() -> list[tuple[str, str, str | None, int]]:
    """(importer, imported module, imported name or None, line) for every rftctl import, at
    module level and inside functions alike."""
    out = []
    for mod, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if (target := _resolve(a.name)) is not None:
                        out.append((mod, target, None, node.lineno))
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    target = _resolve(full if full.split(".", 1)[-1] in MODULES else node.module)
                    if target is not None:
                        out.append((mod, target, a.name, node.lineno))
    return out


def test_every_module_has_a_layer():
    for mod in MODULES:
        layer(mod)


def test_imports_go_down_the_layers():
    up = [
        f"rftctl.{a} ({LAYERS[layer(a)][0]}) imports rftctl.{b} ({LAYERS[layer(b)][0]}), line {n}"
        for a, b, _, n in imports()
        if layer(b) > layer(a)
    ]
    assert not up, "\n".join(up)


def test_no_import_cycle():
    graph = defaultdict(set)
    for a, b, _, _ in imports():
        if a != b and not (a == "rftctl" or b == "rftctl"):  # the package root holds the version
            graph[a].add(b)
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [node, nxt]))
            elif nxt not in state:
                visit(nxt, stack + [node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, "\n".join(cycles)


def test_no_private_name_crosses_a_module():
    private = [
        f"rftctl.{a} imports {name} from rftctl.{b}, line {n}"
        for a, b, name, n in imports()
        if name and name.startswith("_") and not name.startswith("__") and a != b
    ]
    assert not private, "\n".join(private)


def test_the_checks_see_imports_inside_functions():
    # evaluate's stage module imports the generation backends inside a function
    lazy = [(a, b) for a, b, _, _ in imports() if a == "stages.evaluate"]
    assert ("stages.evaluate", "generation.parallel") in lazy


def test_docs_layout_lists_every_module_in_its_layer():
    """docs/layout.md's rftctl/ tree: every module once, under the heading of its layer."""
    text = (PACKAGE.parent / "docs" / "layout.md").read_text()
    tree = text[text.index("\nrftctl/ ") : text.index("\ntests/ ")]
    listed, rank = {}, None
    for line in tree.splitlines():
        if (m := re.match(r"  # (\d+)\. ", line)) is not None:
            rank = int(m.group(1))
        elif (m := re.match(r"  (\S+\.py) ", line)) is not None:
            assert m.group(1) not in listed, f"docs/layout.md lists {m.group(1)} twice"
            listed[m.group(1)] = rank
    wanted = {}
    for mod, path in MODULES.items():
        rel = path.relative_to(PACKAGE).as_posix()
        if path.name != "__init__.py" or rel == "stages/__init__.py":
            wanted[rel] = layer(mod)
    assert listed == wanted, (
        f"docs/layout.md is stale: missing {sorted(set(wanted) - set(listed))}, "
        f"gone {sorted(set(listed) - set(wanted))}, "
        f"wrong layer {sorted(k for k in wanted if k in listed and listed[k] != wanted[k])}"
    )


def test_no_test_file_imports_another():
    """Shared test code lives in tests/helpers.py (or conftest.py), not in a test module."""
    tests = PACKAGE.parent / "tests"
    found = []
    for path in sorted(tests.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            mods = []
            if isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module]
            elif isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            found += [f"{path.name}: {m}" for m in mods if m.split(".")[0].startswith("test_")]
    assert not found, found


# Imports inside functions: only the CLI imports rftctl modules lazily (torch must load after the
# process's OpenMP policy is set: rftctl/omp.py, rftctl/cli/app.py), besides modules that pull an
# optional package (OPTIONAL) at import; and only these third-party packages load lazily
# anywhere, each for the reason given
LAZY_OK = {
    # optional extras and engines: absent in a plain install, or seconds to import
    "vllm": "optional engine (extra `cpu` / a GPU install)",
    "trl": "optional extra `trl`",
    "wandb": "optional logger",
    "dvclive": "a logger only the train stage needs",
    "datasets": "optional extra `hub`",
    "huggingface_hub": "optional extra `hub`",
    "math_verify": "loaded in the grader's worker processes only",
    # heavy: kept out of the torch-free modules (config, method catalog, CLI, plan)
    "torch": "heavy; config, catalog, CLI and plan stay torch-free",
    "transformers": "heavy (imports torch)",
    "accelerate": "heavy (imports torch)",
    "safetensors": "reads checkpoints; imports torch",
    "tokenizers": "heavy native extension",
    "pandas": "report only; seconds to import",
    "numpy": "report and data only",
    "matplotlib": "figures only; seconds to import",
    "pyarrow": "parquet files only",
}


# optional packages: an rftctl module that imports one at module level may itself load lazily
OPTIONAL = {"vllm", "trl", "wandb", "dvclive", "datasets", "huggingface_hub", "math_verify"}


def _module_level(tree: ast.AST):
    """The statements that run on import: all but function and class bodies."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        yield node
        yield from _module_level(node)


def _pulls_optional() -> set[str]:
    """rftctl modules whose module-level imports reach an optional package."""
    top_level: dict[str, set[str]] = {}
    for mod, path in MODULES.items():
        deps = set()
        for node in _module_level(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                deps |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        top_level[mod] = deps
    pulls = {m for m, d in top_level.items() if any(x.split(".")[0] in OPTIONAL for x in d)}
    grew = True
    while grew:
        grew = False
        for m, d in top_level.items():
            if m not in pulls and any(_resolve(x) in pulls for x in d if x.startswith("rftctl")):
                pulls.add(m)
                grew = True
    return pulls


def test_imports_inside_functions_are_only_the_listed_lazy_ones():
    optional_modules = _pulls_optional()
    # both subclass TRL's trainer
    assert {"rl.trl_engine", "integrations.trl"} <= optional_modules
    bad = []
    for mod, path in MODULES.items():
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    ok = (
                        top in LAZY_OK
                        or (top == "rftctl" and layer(mod) == len(LAYERS) - 1)
                        or (top == "rftctl" and _resolve(name) in optional_modules)
                    )
                    if not ok:
                        bad.append(f"rftctl.{mod}, line {node.lineno}: import {name}")
    assert not bad, "move these to module level (or list a reason in LAZY_OK):\n" + "\n".join(
        sorted(set(bad))
    )
