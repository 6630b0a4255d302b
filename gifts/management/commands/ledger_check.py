"""Check the money invariants on the live database; exit 1, naming the rows, on any discrepancy."""

import sys

from django.core.management.base import BaseCommand

from engagement.selectors import goals_audit
from gifts.selectors import gifts_audit
from wallets.selectors import ledger_audit


class Command(BaseCommand):
    help = (
        "Verify the ledger: all balances sum to 0, every transfer balances, every user balance equals its "
        "entries, no user account is negative, every gift event has its transfer and every refund its gift, "
        "every goal's progress is its gifts. "
        "Exit 1 on any discrepancy."
    )

    def handle(self, *args, **options):
        checks = [*ledger_audit(), *gifts_audit(), *goals_audit()]
        for check in checks:
            verdict = "ok  " if check.ok else "FAIL"
            self.stdout.write(f"{verdict} {check.name} ({check.checked})")
            for offender in check.offenders:
                self.stdout.write(f"       {offender}")
            if check.offender_count > len(check.offenders):
                self.stdout.write(f"       ... {check.offender_count - len(check.offenders)} more")
        failed = [check for check in checks if not check.ok]
        if failed:
            self.stderr.write(f"ledger_check: {len(failed)} of {len(checks)} checks failed")
            sys.exit(1)
        self.stdout.write(f"ledger_check: all {len(checks)} checks passed")
