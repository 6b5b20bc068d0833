"""Security rules, checked on the source and on behaviour.

The repository's Python files are parsed (``ast``, so comments and strings never count) for:
``torch.load`` without ``weights_only=True``, ``np.load`` with ``allow_pickle=True``, a shell
(``shell=True``, ``os.system``, ``os.popen``), and, in ``core/`` and ``app/``, unpickling and
``eval``/``exec``. Tests may load a hostile file unsafely on purpose (to prove it really runs
code), so the load rules cover the shipped code; the shell rule covers everything. Paths taken
from imports and bundles are validated: see ``badinputs.py`` for the refused cases and below
for what is still accepted.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from embridge.core.errors import ImportDataError
from embridge.core.importers import import_items
from embridge.core.store import Workspace

REPO = Path(__file__).resolve().parent.parent
SHIPPED = ("core", "app", "bench", "packaging")
UNPICKLERS = {("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"), ("marshal", "load"),
              ("marshal", "loads"), ("shelve", "open"), ("dill", "load"), ("dill", "loads")}


def _python_files(*folders: str) -> list[Path]:
    files = [p for folder in folders for p in sorted((REPO / folder).rglob("*.py"))]
    assert files, f"no Python files under {folders}"
    return files


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def violations(source: str, strict: bool) -> list[str]:
    """Rule breaches in one file's source; ``strict`` adds the rules for core/ and app/."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and strict and (node.module or "").split(".")[0] in {"pickle", "dill"}:
            found.append(f"line {node.lineno}: from {node.module} import ...")
        if isinstance(node, ast.ClassDef) and strict and any(_dotted(b).endswith("Unpickler") for b in node.bases) \
                and not any(isinstance(f, ast.FunctionDef) and f.name == "find_class" for f in node.body):
            found.append(f"line {node.lineno}: an Unpickler that does not restrict find_class")
        if isinstance(node, ast.ImportFrom) and node.module == "torch" and any(a.name == "load" for a in node.names):
            found.append(f"line {node.lineno}: from torch import load (hides the weights_only check)")
        if not isinstance(node, ast.Call):
            continue
        name, line = _dotted(node.func), f"line {node.lineno}"
        shell = _keyword(node, "shell")
        if shell is not None and not (isinstance(shell, ast.Constant) and shell.value is False):
            found.append(f"{line}: shell=...")
        if name in ("os.system", "os.popen"):
            found.append(f"{line}: {name}")
        if name == "torch.load" and not _is_true(_keyword(node, "weights_only")):
            found.append(f"{line}: torch.load without weights_only=True")
        if name in ("np.load", "numpy.load") and not _keyword_is_false_or_absent(node, "allow_pickle"):
            found.append(f"{line}: np.load with allow_pickle")
        if strict and (tuple(name.split(".")[-2:]) in UNPICKLERS or name in ("eval", "exec")):
            found.append(f"{line}: {name}")
    return found


def _keyword_is_false_or_absent(call: ast.Call, name: str) -> bool:
    value = _keyword(call, name)
    return value is None or (isinstance(value, ast.Constant) and value.value is False)


@pytest.mark.parametrize(("source", "strict", "expected"), [
    ("import torch\ntorch.load(p)\n", False, 1),
    ("import torch\ntorch.load(p, weights_only=False)\n", False, 1),
    ("import torch\ntorch.load(p, map_location='cpu', weights_only=True)\n", False, 0),
    ("from torch import load\nload(p)\n", False, 1),
    ("import subprocess\nsubprocess.run('ls', shell=True)\n", False, 1),
    ("import subprocess\nsubprocess.run(['ls'], shell=flag)\n", False, 1),
    ("import subprocess\nsubprocess.run(['ls'], shell=False)\n", False, 0),
    ("import os\nos.system('ls')\n", False, 1),
    ("import numpy as np\nnp.load(p, allow_pickle=True)\n", False, 1),
    ("import pickle\npickle.loads(b)\n", True, 1),
    ("import pickle\npickle.loads(b)\n", False, 0),
    ("from pickle import loads\n", True, 1),
    ("eval('1+1')\nexec('x=1')\n", True, 2),
    ("import pickle\nclass U(pickle.Unpickler):\n    pass\n", True, 1),  # resolves any global: runs code
    ("import pickle\nclass U(pickle.Unpickler):\n    def find_class(self, m, n):\n        raise E\n", True, 0),
    ("app.exec()\nmodel.eval()\n", True, 0),  # Qt's exec and torch's eval are methods, not the builtins
])
def test_the_scanner_finds_what_it_should(source: str, strict: bool, expected: int) -> None:
    assert len(violations(source, strict)) == expected


def test_shipped_code_loads_nothing_unsafely_and_runs_no_shell() -> None:
    found = {}
    for path in _python_files(*SHIPPED):
        strict = path.relative_to(REPO).parts[0] in ("core", "app")
        if hits := violations(path.read_text(encoding="utf-8"), strict):
            found[path.relative_to(REPO).as_posix()] = hits
    assert not found


def test_no_test_or_tool_uses_a_shell() -> None:
    found = {}
    for path in _python_files("tests", "bench", "packaging"):
        hits = [h for h in violations(path.read_text(encoding="utf-8"), False) if "shell" in h or "os." in h]
        if hits:
            found[path.relative_to(REPO).as_posix()] = hits
    assert not found


def test_documents_warn_that_torchscript_runs_model_code() -> None:
    for name in ("README.md", "docs/reliability.md"):
        text = " ".join((REPO / name).read_text(encoding="utf-8").split())
        assert "TorchScript" in text and "runs that model's code" in text, name
        assert "weights_only=True" in text, name


# -- paths from imports -------------------------------------------------------------------------
def _png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8), mode="L").save(path)
    return path


def test_links_inside_the_imported_folder_are_followed_links_out_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    real = _png(folder / "cat" / "a.png")
    _png(folder / "dog" / "b.png")
    (folder / "dog" / "same-as-a.png").symlink_to(real)  # stays inside the folder: fine
    with Workspace.create(tmp_path / "ws") as ws:
        assert import_items(ws, folder)["count"] == 3
        paths = {it["key"]: it["path"] for it in ws.items()}
        assert paths["dog/same-as-a.png"] == str(real.resolve())  # stored as the real file it names
        outside = _png(tmp_path / "private" / "secret.png")
        other = tmp_path / "imgs2"
        _png(other / "cat" / "ok.png")
        (other / "cat" / "innocent.png").symlink_to(outside)
        with pytest.raises(ImportDataError, match=r"innocent\.png: symbolic link to .*secret\.png, outside"):
            import_items(ws, other)
        assert len(ws.items()) == 3  # nothing of the refused folder, not even its good file
        assert str(outside.resolve()) not in {it["path"] for it in ws.items()}


def test_reliability_table_names_real_tests() -> None:
    """Every ``tests/FILE.py::test_name`` the reliability page cites exists, so the table cannot go stale."""
    text = (REPO / "docs" / "reliability.md").read_text(encoding="utf-8")
    cited = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", text)
    assert len(cited) >= 30
    missing = [f"{file}::{name}" for file, name in cited
               if not (REPO / file).is_file()
               or not re.search(rf"^def {name}\(", (REPO / file).read_text(encoding="utf-8"), re.M)]
    assert not missing
