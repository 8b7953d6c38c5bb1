"""The README's promises: its first two commands, the CI test command, and its Python examples."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CI_SCRIPT = ROOT / ".ci" / "run"


def _code_blocks(language: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def test_readme_starts_with_the_demo_and_the_test_commands() -> None:
    blocks = _code_blocks(r"\w*")
    assert len(blocks) >= 2
    install_and_demo, install_and_test = (block.strip() for block in blocks[:2])
    assert install_and_demo == "python -m pip install . && pimo demo"
    assert install_and_test.endswith("&& python -m pytest")


def test_ci_runs_the_readme_test_command() -> None:
    if not CI_SCRIPT.is_file():
        pytest.skip(".ci/run is not part of this installation")
    install_and_test = _code_blocks(r"\w*")[1].strip()
    test_command = install_and_test.split("&&")[-1].strip()
    lines = [line.strip() for line in CI_SCRIPT.read_text(encoding="utf-8").splitlines()]
    commands = [line for line in lines if line and not line.startswith("#")]
    assert commands[-1] == test_command


def test_readme_python_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = _code_blocks("python")
    assert blocks, "the README has no Python example"
    monkeypatch.chdir(tmp_path)  # the examples write score files relative to the working directory
    has_torch = importlib.util.find_spec("torch") is not None
    namespace: dict[str, object] = {}
    for block in blocks:
        if "import torch" in block and not has_torch:
            continue  # the torchmetrics example needs the optional torch extra
        exec(compile(block, str(README), "exec"), namespace)
    assert (tmp_path / "aupimo" / "aupimos.json").is_file()
