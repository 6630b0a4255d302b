"""Reads of money with business meaning."""

import datetime
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import F, QuerySet, Sum
from django.db.models.functions import Coalesce

from wallets.models import Account, Entry, Profile, SpendingLimit, Transfer

# How many offending rows an audit names per check; the count is always complete.
AUDIT_NAMED_ROWS = 20


def account_balance(account: Account) -> int:
    """A user account's running balance; a platform account's sum of entries (see `Account`)."""
    if account.is_platform:
        return account.entries.aggregate(total=Sum("amount"))["total"] or 0
    return account.balance


def profile_balances(profile: Profile) -> dict[str, int]:
    balances = dict(Account.objects.filter(profile=profile).values_list("kind", "balance"))
    return {"coins": balances.get(Account.Kind.COINS, 0), "earnings": balances.get(Account.Kind.EARNINGS, 0)}


def profile_owed(profile: Profile) -> int:
    """What the person owes for a reversed top-up (0 when nothing)."""
    owed = Account.objects.filter(profile=profile, kind=Account.Kind.RECEIVABLE).values_list("balance", flat=True)
    return owed.first() or 0


def profile_entries(profile: Profile) -> QuerySet[Entry]:
    """The person's own ledger lines, newest first."""
    return Entry.objects.filter(account__profile=profile).select_related("account", "transfer").order_by("-id")


def ledger_totals() -> dict[str, int]:
    """The figures behind the ledger invariant: everything sums to zero, no user is negative."""
    user_total = Account.objects.filter(profile__isnull=False).aggregate(total=Sum("balance"))["total"] or 0
    platform_total = Entry.objects.filter(account__profile__isnull=True).aggregate(total=Sum("amount"))["total"] or 0
    entries_total = Entry.objects.aggregate(total=Sum("amount"))["total"] or 0
    negative_users = Account.objects.filter(profile__isnull=False, balance__lt=0).count()
    return {
        "user_balances": user_total,
        "platform_balances": platform_total,
        "sum_of_balances": user_total + platform_total,
        "sum_of_entries": entries_total,
        "negative_user_accounts": negative_users,
    }


def user_accounts_off_their_entries() -> QuerySet[Account]:
    """User accounts whose running balance is not the sum of their entries (0 for none)."""
    return (
        Account.objects.filter(profile__isnull=False)
        .annotate(entry_total=Coalesce(Sum("entries__amount"), 0))
        .exclude(balance=F("entry_total"))
    )


def user_balances_match_entries() -> bool:
    """Every user account's running balance equals the sum of its entries."""
    return not user_accounts_off_their_entries().exists()


@dataclass
class AuditCheck:
    """One invariant checked on the live database: what was looked at, and the rows that break it."""

    name: str
    checked: str
    offenders: list[str] = field(default_factory=list)
    offender_count: int = 0

    @property
    def ok(self) -> bool:
        return self.offender_count == 0


def audit_check(name: str, checked: str, offenders: QuerySet, label: str) -> AuditCheck:
    """An AuditCheck naming the first rows of `offenders` (a values_list of ids) as `label` #id."""
    count = offenders.count()
    named = [f"{label} #{row_id}" for row_id in offenders[:AUDIT_NAMED_ROWS]] if count else []
    return AuditCheck(name, checked, named, count)


def ledger_audit() -> list[AuditCheck]:
    """The ledger's invariants (SPEC section 8), each with the rows that break it."""
    totals = ledger_totals()
    balances = AuditCheck(
        "all balances sum to 0",
        f"users {totals['user_balances']:+d}, platform {totals['platform_balances']:+d}",
        [] if totals["sum_of_balances"] == 0 else [f"sum of all balances is {totals['sum_of_balances']:+d}"],
        0 if totals["sum_of_balances"] == 0 else 1,
    )
    unbalanced = (
        Entry.objects.values("transfer_id")
        .annotate(total=Sum("amount"))
        .exclude(total=0)
        .order_by("transfer_id")
        .values_list("transfer_id", flat=True)
    )
    empty = Transfer.objects.filter(entries__isnull=True).order_by("pk").values_list("pk", flat=True)
    off_their_entries = user_accounts_off_their_entries().order_by("pk").values_list("pk", flat=True)
    platform_with_balance = (
        Account.objects.filter(profile__isnull=True).exclude(balance=0).order_by("pk").values_list("pk", flat=True)
    )
    negative = Account.objects.filter(profile__isnull=False, balance__lt=0).order_by("pk").values_list("pk", flat=True)
    transfers, accounts = Transfer.objects.count(), Account.objects.count()
    return [
        balances,
        audit_check("every transfer's entries sum to 0", f"{transfers} transfers", unbalanced, "transfer"),
        audit_check("every transfer has entries", f"{transfers} transfers", empty, "transfer"),
        audit_check(
            "every user account's balance is the sum of its entries",
            f"{accounts} accounts",
            off_their_entries,
            "account",
        ),
        # Their balance is the sum of their entries; a running balance there would be a second truth.
        audit_check(
            "platform accounts keep no running balance", f"{accounts} accounts", platform_with_balance, "account"
        ),
        audit_check("no user account is negative", f"{accounts} accounts", negative, "account"),
    ]


def own_daily_limit(limit: SpendingLimit | None, at: datetime.datetime) -> int | None:
    """The person's own limit in force at `at`: their raise once it is due, else the one they have."""
    if limit is None:
        return None
    if limit.raised_from is not None and at >= limit.raised_from:
        return limit.raised_daily_coins
    return limit.daily_coins


def daily_limit(limit: SpendingLimit | None, at: datetime.datetime) -> int | None:
    """Coins the person may spend a day, or None: the lowest of `GIFT_DAILY_LIMIT`, the limit
    staff set and the person's own in force at `at` (see SpendingLimit)."""
    candidates = [settings.GIFT_DAILY_LIMIT]
    if limit is not None:
        candidates += [limit.staff_daily_coins, own_daily_limit(limit, at)]
    return min((candidate for candidate in candidates if candidate is not None), default=None)
