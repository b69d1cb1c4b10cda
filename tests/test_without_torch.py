"""Everything but the PyTorch-artifact features works without torch: the whole suite is run
again in a subprocess where `import torch` fails (torch-only tests skip themselves)."""

from __future__ import annotations

import subprocess
import sys

from .budget import budget
from .conftest import ROOT

BLOCK_TORCH = (
    "import sys; sys.modules['torch'] = None\n"
    "import pytest\n"
    "sys.exit(pytest.main(['-x', '-p', 'no:cacheprovider', 'tests',\n"
    "                      '--ignore=tests/test_without_torch.py']))\n"
)


def test_suite_passes_without_torch():
    result = subprocess.run([sys.executable, "-c", BLOCK_TORCH], cwd=ROOT, capture_output=True,
                            text=True, timeout=budget(900))
    tail = result.stdout[-2000:]
    assert result.returncode == 0, tail
    assert " passed" in tail


def test_torch_features_say_how_to_enable_them(tmp_path):
    code = ("import sys; sys.modules['torch'] = None\n"
            "from forensics.__main__ import main\n"
            f"sys.argv = ['forensics', 'checkpoint', {str(tmp_path / 'model.bin')!r}]\n"
            "main()\n")
    (tmp_path / "model.bin").write_bytes(b"PK\x03\x04not really")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 3
    assert "pip install 'forensics[torch]'" in result.stderr
