"""Fault-injection runs: `python bench/faults/run.py [--clients N] [--seconds S] [scenario ...]`.

Scenarios (all by default, in this order):
  server-kill   SIGKILL the whole uvicorn server during gift sends, restart it, go on
  redis-outage  stop the run's own Redis during gift sends, start it again
  pg-terminate  terminate the server's PostgreSQL backends again and again during gift sends

Each scenario makes its own database (gs_fault_*), Redis and server, prints one PASS/FAIL line
per check with its figures, and removes everything it made. The exit status is 1 if any check
failed. Needs PostgreSQL on 127.0.0.1:5432 (BENCH_PG_HOST / BENCH_PG_USER) and redis-server on
the PATH. With the defaults the three take about 45 s on two cores.
"""

import argparse
import os
import signal
import sys
import time
import traceback
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
VENV_PYTHON = BENCH.parent / ".venv" / "bin" / "python"
# The runs need the project's packages (psycopg, websockets): use its virtualenv whatever `python` was.
if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != VENV_PYTHON.parent.parent.resolve():
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])
sys.path.insert(0, str(BENCH))

from faults import pg_terminate, redis_outage, server_kill  # noqa: E402
from faults.harness import Report  # noqa: E402

SCENARIOS = {module.NAME: module for module in (server_kill, redis_outage, pg_terminate)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", metavar="scenario", help=f"any of {', '.join(SCENARIOS)}")
    parser.add_argument("--clients", type=int, default=4, help="concurrent gift senders (default 4)")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each load phase (default 2)")
    options = parser.parse_args()
    unknown = [name for name in options.scenarios if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    # A CI timeout sends SIGTERM: unwind normally, so every run stops its processes and drops its database.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    passed = failed = 0
    started = time.monotonic()
    for name in options.scenarios or list(SCENARIOS):
        report = Report(name)
        scenario_started = time.monotonic()
        try:
            SCENARIOS[name].run(report, clients=options.clients, seconds=options.seconds)
        except Exception:
            traceback.print_exc()
            report.check("scenario ran to the end", False, "it crashed; see the traceback above")
        passed += len(report.passed)
        failed += len(report.failed)
        verdict = "FAILED" if report.failed else "passed"
        print(f"== {name} {verdict} in {time.monotonic() - scenario_started:.0f} s", flush=True)
    print(f"== all scenarios in {time.monotonic() - started:.0f} s")
    print(f"faults: {passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
