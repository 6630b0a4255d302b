"""People, their money accounts and the append-only double-entry ledger."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class Profile(models.Model):
    """The public face of a Django user: what other viewers see next to a gift."""

    class Sex(models.IntegerChoices):
        UNKNOWN = 0, "unknown"
        MALE = 1, "male"
        FEMALE = 2, "female"

    # The Django user this person signs in as (named `login` because `user_id` is the public id).
    login = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="profile")
    user_id = models.CharField(max_length=64, unique=True)
    nickname = models.CharField(max_length=64, blank=True)
    avatar = models.URLField(max_length=500, blank=True)
    sex = models.PositiveSmallIntegerField(choices=Sex.choices, default=Sex.UNKNOWN)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.user_id

    @property
    def display_name(self) -> str:
        return self.nickname or self.user_id


class Account(models.Model):
    """One balance. User accounts keep a locked running balance; platform accounts do not.

    `platform:issued` and `platform:revenue` take part in every top-up and every gift in the
    system. A locked balance row there would queue every room behind one lock, so their
    balance is the sum of their entries and their `balance` column stays 0.

    A person's `receivable` is what they owe after a top-up was reversed (a chargeback)
    when they had already spent its coins: created on the first reversal, paid back first
    by their later top-ups, and while it is above 0 they cannot send gifts.
    `platform:payouts` holds the earnings paid out to hosts (the money left out of band).
    """

    class Kind(models.TextChoices):
        COINS = "coins", "coins"
        EARNINGS = "earnings", "earnings"
        ISSUED = "platform:issued", "platform:issued"
        REVENUE = "platform:revenue", "platform:revenue"
        PAYOUTS = "platform:payouts", "platform:payouts"
        RECEIVABLE = "receivable", "receivable (owed)"

    USER_KINDS = (Kind.COINS, Kind.EARNINGS, Kind.RECEIVABLE)
    PLATFORM_KINDS = (Kind.ISSUED, Kind.REVENUE, Kind.PAYOUTS)

    kind = models.CharField(max_length=20, choices=Kind.choices)
    profile = models.ForeignKey(Profile, null=True, blank=True, on_delete=models.PROTECT, related_name="accounts")
    balance = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["profile", "kind"], name="account_one_per_profile_and_kind"),
            models.UniqueConstraint(
                fields=["kind"], condition=Q(profile__isnull=True), name="account_one_per_platform_kind"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["coins", "earnings", "receivable"], profile__isnull=False, balance__gte=0)
                | Q(
                    kind__in=["platform:issued", "platform:revenue", "platform:payouts"],
                    profile__isnull=True,
                    balance=0,
                ),
                name="account_user_balance_never_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.profile}:{self.kind}" if self.profile_id else self.kind

    @property
    def is_platform(self) -> bool:
        return self.kind in self.PLATFORM_KINDS


class Transfer(models.Model):
    """One balanced movement of coins: its entries always sum to zero."""

    class Kind(models.TextChoices):
        TOP_UP = "top_up", "top-up"
        GIFT = "gift", "gift"
        GRANT = "grant", "staff grant"
        REFUND = "refund", "gift refund"
        PAYOUT = "payout", "host payout"
        CHARGEBACK = "chargeback", "top-up reversal"
        REPAYMENT = "repayment", "owed coins repaid"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    # The idempotency key of the movement: a second transfer with the same reference is refused.
    reference = models.CharField(max_length=200, unique=True)
    memo = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.kind} {self.reference}"


class SpendingLimit(models.Model):
    """How many coins a person may spend on gifts per UTC day, beyond `GIFT_DAILY_LIMIT` for everyone.

    Staff may set one; the person may set their own. A person's cut applies at once, a
    raise (or removing their limit) only from `raised_from`, 24 hours after they asked, so
    a limit set in a calm moment holds through a heated one. The lowest limit applies.
    """

    profile = models.OneToOneField(Profile, on_delete=models.CASCADE, related_name="spending_limit")
    staff_daily_coins = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="set by staff; empty: none (the person's own and the global one still apply)"
    )
    daily_coins = models.PositiveBigIntegerField(null=True, blank=True, help_text="the person's own limit now")
    # A raise the person asked for, and when it applies; `raised_daily_coins` None with a
    # `raised_from` means they asked to remove their limit.
    raised_daily_coins = models.PositiveBigIntegerField(null=True, blank=True)
    raised_from = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"spending limit of {self.profile}"


class Entry(models.Model):
    """One leg of a transfer. Rows are written once and never updated or deleted."""

    transfer = models.ForeignKey(Transfer, on_delete=models.PROTECT, related_name="entries")
    # Indexed by `entry_account_newest`, which leads with it.
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="entries", db_index=False)
    amount = models.BigIntegerField()
    # The account's balance right after this entry (user accounts only): a statement line.
    balance_after = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "entries"
        constraints = [models.CheckConstraint(condition=~Q(amount=0), name="entry_amount_not_zero")]
        indexes = [models.Index(fields=["account", "-id"], name="entry_account_newest")]

    def __str__(self) -> str:
        return f"{self.account} {self.amount:+d}"
