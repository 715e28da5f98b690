"""The layering, checked rather than hoped for: the faces (cli.py, api.py) import only the engine,
config, errors and result types; no face imports torch or FAISS; the lower layers know nothing of
the faces or the engine; and no two parts of the package import each other."""

import ast
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from code_map import PACKAGE, imports_of, module_name, part_of  # noqa: E402

FACE_MAY_IMPORT = {"viewfinder.engine", "viewfinder.config", "viewfinder.errors", "viewfinder.query.results"}
HEAVY = {"torch", "torchvision", "faiss", "open_clip", "transformers", "numpy", "onnxruntime"}


def third_party_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("face", ["cli.py", "api.py"])
def test_faces_import_only_the_engine_config_errors_and_results(face):
    path = PACKAGE / face
    allowed = FACE_MAY_IMPORT | (
        {"viewfinder.api"} if face == "cli.py" else set()
    )  # `serve` starts the API face
    assert imports_of(path) <= allowed, f"{face} imports {sorted(imports_of(path) - allowed)}"
    assert not third_party_imports(path) & HEAVY, (
        f"{face} imports {sorted(third_party_imports(path) & HEAVY)}"
    )


def test_the_check_sees_a_forbidden_import(tmp_path, monkeypatch):
    """The face check can fail: a face that reaches into the store is caught."""
    probe = tmp_path / "viewfinder" / "cli.py"
    probe.parent.mkdir()
    probe.write_text(
        (PACKAGE / "cli.py").read_text(encoding="utf-8") + "\nfrom .store import Store\n", encoding="utf-8"
    )
    monkeypatch.setattr("code_map.PACKAGE", probe.parent)
    assert not imports_of(probe) <= FACE_MAY_IMPORT | {"viewfinder.api"}


LOWER = ("models", "store", "images", "errors", "config", "data", "query", "ingest", "eval", "train")


@pytest.mark.parametrize("part", LOWER)
def test_lower_layers_never_import_the_engine_or_a_face(part):
    paths = (
        [PACKAGE / f"{part}.py"]
        if (PACKAGE / f"{part}.py").exists()
        else list((PACKAGE / part).rglob("*.py"))
    )
    for path in paths:
        reached = {part_of(t) for t in imports_of(path)}
        assert not reached & {"engine", "cli", "api"}, (
            f"{module_name(path)} imports {reached & {'engine', 'cli', 'api'}}"
        )


def test_models_and_store_know_nothing_of_each_other_or_above():
    for part, may in (("models", {"models", "errors", "config"}), ("store", {"store", "errors"})):
        for path in (PACKAGE / part).rglob("*.py"):
            reached = {part_of(t) for t in imports_of(path)}
            assert reached <= may, f"{module_name(path)} imports {sorted(reached - may)}"


def test_no_import_loops():
    modules = {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}
    parts: dict[str, set[str]] = {}
    for name, targets in modules.items():
        parts.setdefault(part_of(name), set()).update(part_of(t) for t in targets)
    module_loops = [(a, b) for a in modules for b in modules[a] if a != b and a in modules.get(b, ())]
    part_loops = [(a, b) for a in parts for b in parts[a] if a != b and a in parts.get(b, ())]
    assert not module_loops and not part_loops, (module_loops, part_loops)
