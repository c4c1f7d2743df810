"""grader.mode reaches every grader a stage builds: the reward of train, the filter's
pass rates, init's band check and evaluate's scores all grade the same way, so a preset that
asks for the reference grader gets it everywhere."""

import ast
from pathlib import Path

STAGES = Path(__file__).resolve().parents[1] / "rftctl" / "stages"


def test_every_stage_grader_is_built_with_the_configured_mode():
    calls = []
    for path in sorted(STAGES.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "Grader":
                kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
                calls.append((path.name, kw.get("mode")))
    assert {name for name, _ in calls} >= {"init.py", "filter.py", "train.py", "evaluate.py"}
    assert all(mode == "cfg.grader.mode" for _, mode in calls), calls
