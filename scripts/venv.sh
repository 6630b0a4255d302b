# Sourced by the other scripts: makes .venv and installs the pinned requirements when they changed.
# Any number of the scripts may start at once (the demo in one terminal, the tests in another):
# the set-up runs under a lock, so the second waits for the first instead of racing its pip.
PYTHON=${PYTHON:-python3}
exec 9>".venv.lock"
# flock(2) through Python, which every machine that runs this has: the lock belongs to the
# open file behind fd 9, so it is held until this shell closes it below.
"$PYTHON" -c 'import fcntl; fcntl.flock(9, fcntl.LOCK_EX)'
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements-installed
if [ ! -f "$stamp" ] || ! cmp -s <(cat requirements.txt requirements-dev.txt) "$stamp"; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements-dev.txt
  cat requirements.txt requirements-dev.txt > "$stamp"
fi
exec 9>&-
