"""The package's layering and size rules, checked on its source (README "Layout")."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src/softeq"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80
LONG_FUNCTIONS_ALLOWED: set[str] = set()  # declarative tables that may be longer (none today)
# a lower layer never imports a higher one
_ABOVE_MATH = ("projectors", "layers", "rpp", "soften", "soften_reps", "models", "engine", "stages")
FORBIDDEN_IMPORTS = {
    "softeq.matrix_groups": ("groups", "reps", "spectral", "rep_spectral", *_ABOVE_MATH),
    "softeq.reps": ("groups", "spectral", "rep_spectral", "filters", *_ABOVE_MATH),
    "softeq.rep_spectral": ("filters", *_ABOVE_MATH),
    "softeq.figures": ("models", "soften", "layers", "projectors", "engine", "pipeline", "stages"),
    "softeq.transforms": ("data", "metrics", "models", "engine", "stages", "pipeline"),
    "softeq.io": ("data", "metrics", "models", "engine", "stages", "pipeline", "figures"),
    "softeq.spec": ("projectors", "layers", "soften", "models", "engine", "stages", "pipeline"),
    "softeq.data": ("engine", "stages", "pipeline", "figures", "results"),
    "softeq.metrics": ("engine", "stages", "pipeline", "figures", "results"),
    "softeq.models": ("engine", "stages", "pipeline", "figures", "results"),
    "softeq.engine": ("stages", "pipeline", "figures", "results"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(tree: ast.AST) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every import statement, at any depth."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_module_size_and_function_length(path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{path} is over {MAX_MODULE_LINES} lines"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            name = f"{module_name(path)}.{node.name}"
            length = node.end_lineno - node.lineno + 1
            if name not in LONG_FUNCTIONS_ALLOWED:
                assert length <= MAX_FUNCTION_LINES, f"{name} has {length} lines"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_no_private_names_across_modules_and_no_upward_imports(path):
    name = module_name(path)
    for module, names in imports(ast.parse(path.read_text())):
        if module.startswith("softeq"):
            private = [n for n in names if n.startswith("_") and n != "__version__"]
            assert not private, f"{name} imports private {private} from {module}"
        for layer, banned in FORBIDDEN_IMPORTS.items():
            if name == layer or name.startswith(layer + "."):
                hits = [b for b in banned if re.match(rf"softeq\.{b}(\.|$)", module)]
                assert not hits, f"{name} imports {module}, a layer it must not import"


def test_sources_cite_the_projects_own_docs():
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("src", "workflow", "config")
        for path in (ROOT / folder).rglob("*")
        if path.is_file()
        and path.suffix in (".py", ".smk", ".yaml", ".rst", "")
        and re.search(r"DESIGN|\.\./shared|PAPER\.md", path.read_text(errors="ignore"))
    ]
    assert offenders == []
