"""grader.mode reaches every grader the package builds: the reward of both train engines, the
filter's pass rates, init's band check and evaluate's scores all grade the same way, so a preset
that asks for the reference grader gets it everywhere. There is one way to build a grader from
the config (``Grader.from_config``) and no other construction outside the grading module."""

import ast
from pathlib import Path

from rftctl.config_sections import Grader as GraderSection
from rftctl.data.grading import Grader

PACKAGE = Path(__file__).resolve().parents[1] / "rftctl"
# every module that grades model output with the configured grader
GRADING = {
    "stages/init.py",
    "stages/filter.py",
    "stages/evaluate.py",
    "rl/engine.py",
    "rl/trl_engine_run.py",
}


def _calls(tree: ast.AST) -> list[str]:
    return [ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)]


def test_every_grader_comes_from_the_config():
    built, direct = set(), []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        calls = _calls(ast.parse(path.read_text()))
        if "Grader.from_config" in calls:
            built.add(rel)
        if "Grader" in calls and rel != "data/grading.py":
            direct.append(rel)
    assert built >= GRADING, sorted(GRADING - built)
    assert not direct, f"Grader(...) built by hand in {direct}; use Grader.from_config"


def test_from_config_carries_every_setting():
    section = GraderSection(mode="reference", workers=3, timeout_s=7.5)
    g = Grader.from_config(section)
    assert (g.mode, g.workers, g.timeout_s) == ("reference", 3, 7.5)
