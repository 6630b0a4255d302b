"""The README's scripts on a fresh clone: several started at once set up one virtualenv, once."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Stands in for `python3`: the lock is taken with the real interpreter, and "making the
# virtualenv" installs a .venv/bin/python whose pip only logs when it starts and ends.
FAKE_PYTHON = """#!/usr/bin/env bash
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
  mkdir -p .venv/bin
  cat > .venv/bin/python <<'PIP'
#!/usr/bin/env bash
echo "start $$" >> pip.log; sleep 0.3; echo "end $$" >> pip.log
PIP
  chmod +x .venv/bin/python
  exit 0
fi
exec {real} "$@"
"""


def test_scripts_started_together_set_up_the_virtualenv_once_and_never_at_the_same_time(tmp_path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "venv.sh").write_text((ROOT / "scripts" / "venv.sh").read_text())
    (tmp_path / "requirements.txt").write_text("Django==5.2\n")
    (tmp_path / "requirements-dev.txt").write_text("-r requirements.txt\n")
    fake = tmp_path / "fake-python"
    fake.write_text(FAKE_PYTHON.format(real=sys.executable))
    fake.chmod(0o755)

    starts = [
        subprocess.Popen(
            ["bash", "-c", "source scripts/venv.sh"], cwd=tmp_path, env={**os.environ, "PYTHON": str(fake)}
        )
        for _ in range(3)
    ]
    assert [process.wait(timeout=60) for process in starts] == [0, 0, 0]

    lines = [line.split() for line in (tmp_path / "pip.log").read_text().splitlines()]
    # One set-up (pip upgraded, then the requirements installed), each step over before the next began.
    assert [kind for kind, _ in lines] == ["start", "end", "start", "end"]
    assert lines[0][1] == lines[1][1] and lines[2][1] == lines[3][1]
