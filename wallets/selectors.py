"""Reads of money with business meaning."""

from django.db.models import F, QuerySet, Sum

from wallets.models import Account, Entry, Profile


def account_balance(account: Account) -> int:
    """A user account's running balance; a platform account's sum of entries (see `Account`)."""
    if account.is_platform:
        return account.entries.aggregate(total=Sum("amount"))["total"] or 0
    return account.balance


def profile_balances(profile: Profile) -> dict[str, int]:
    balances = dict(Account.objects.filter(profile=profile).values_list("kind", "balance"))
    return {"coins": balances.get(Account.Kind.COINS, 0), "earnings": balances.get(Account.Kind.EARNINGS, 0)}


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


def user_balances_match_entries() -> bool:
    """Every user account's running balance equals the sum of its entries."""
    mismatched = (
        Account.objects.filter(profile__isnull=False)
        .annotate(entry_total=Sum("entries__amount"))
        .exclude(balance=0, entry_total__isnull=True)
        .exclude(balance=F("entry_total"))
    )
    return not mismatched.exists()
