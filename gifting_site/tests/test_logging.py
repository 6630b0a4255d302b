"""Log lines as an operator reads them on the console."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("debug", ["true", "false"])
def test_a_django_log_line_is_printed_once(debug):
    env = {**os.environ, "DEBUG": debug, "DATABASE_URL": "sqlite:///:memory:"}
    probe = "import logging; logging.getLogger('django.request').warning('probe-line')"
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert (result.stdout + result.stderr).count("probe-line") == 1
