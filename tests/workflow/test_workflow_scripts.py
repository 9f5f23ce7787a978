"""Every workflow script imports the package from the tree it belongs to."""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[2] / "workflow" / "scripts").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_puts_its_own_trees_src_first(script: Path, tmp_path: Path) -> None:
    # Snakemake hands a script the rule file's relative path to it.
    (tmp_path / "workflow" / "rules").mkdir(parents=True)
    (tmp_path / "workflow" / "scripts").mkdir()
    scriptdir = tmp_path / "workflow" / "rules" / ".." / "scripts"
    inserts = [node for node in ast.walk(ast.parse(script.read_text()))
               if isinstance(node, ast.Call) and ast.unparse(node.func) == "sys.path.insert"]
    assert len(inserts) == 1, "one sys.path.insert expected"
    path_expr = ast.unparse(inserts[0].args[1])
    inserted = eval(path_expr, {"Path": Path, "str": str, "sys": sys,
                                "snakemake": SimpleNamespace(scriptdir=str(scriptdir))})
    assert Path(inserted) == tmp_path / "src"
