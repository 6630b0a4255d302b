"""Every movement of money goes through `transfer_create`; everything else here is built on it."""

import dataclasses
import datetime
import uuid
from collections.abc import Sequence

from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from gifting_site.errors import MalformedRequest
from wallets.models import Account, Entry, Profile, SpendingLimit, Transfer
from wallets.selectors import own_daily_limit

User = get_user_model()


class InsufficientBalance(Exception):
    def __init__(self, account: Account, needed: int):
        self.account = account
        self.needed = needed
        super().__init__(f"insufficient balance: {account.balance} coins, {needed} needed")


class TransferConflict(Exception):
    """A reference already names a different movement."""


def platform_account(kind: str) -> Account:
    account, _ = Account.objects.get_or_create(kind=kind, profile=None)
    return account


def profile_create(
    *, user_id: str, nickname: str = "", avatar: str = "", sex: int = 0, password: str | None = None
) -> Profile:
    """A new person with an empty coins and earnings account."""
    with transaction.atomic():
        user = User(username=user_id)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save()
        profile = Profile.objects.create(login=user, user_id=user_id, nickname=nickname, avatar=avatar, sex=sex)
        Account.objects.bulk_create(
            [Account(profile=profile, kind=Account.Kind.COINS), Account(profile=profile, kind=Account.Kind.EARNINGS)]
        )
    return profile


def profile_get_or_create(
    *, user_id: str, nickname: str | None = None, avatar: str | None = None, sex: int | None = None
) -> Profile:
    """Find a person by public id, creating them with zero coins; refresh what the caller knows of them."""
    profile = Profile.objects.filter(user_id=user_id).select_related("login").first()
    if profile is None:
        try:
            return profile_create(user_id=user_id, nickname=nickname or "", avatar=avatar or "", sex=sex or 0)
        except IntegrityError:
            # Another request created the same person a moment ago, or a login that is nobody's
            # profile (staff) already has this name.
            profile = Profile.objects.select_related("login").filter(user_id=user_id).first()
            if profile is None:
                raise MalformedRequest(f"UserId {user_id} is the name of a staff login, not of a viewer") from None
    profile_refresh(profile, nickname=nickname, avatar=avatar, sex=sex)
    return profile


def profile_refresh(
    profile: Profile, *, nickname: str | None = None, avatar: str | None = None, sex: int | None = None
) -> None:
    """Store what a caller knows of a person now; None leaves a field as it is. Writes only a change."""
    changes = {
        field: value
        for field, value in (("nickname", nickname), ("avatar", avatar), ("sex", sex))
        if value is not None and getattr(profile, field) != value
    }
    if changes:
        Profile.objects.filter(pk=profile.pk).update(**changes)
        for field, value in changes.items():
            setattr(profile, field, value)


def transfer_create(
    *,
    kind: str,
    reference: str,
    legs: Sequence[tuple[Account, int]],
    memo: str = "",
    created_by: object | None = None,
) -> Transfer:
    """Write one balanced transfer. Must run inside the caller's transaction.

    User accounts are locked in primary-key order, so two transfers touching the same
    accounts always queue in the same order and can never deadlock each other. Platform
    accounts are never locked (see `Account`). Raises InsufficientBalance before writing
    anything if a user account would go below zero. Gifts, the hot path, are written in
    batches by `gifts.writer` under the same rules.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("transfer_create must run inside transaction.atomic")
    if sum(amount for _, amount in legs) != 0:
        raise ValueError(f"unbalanced transfer {reference}: {legs}")
    if any(amount == 0 for _, amount in legs):
        raise ValueError(f"zero leg in transfer {reference}")

    user_legs = [(account, amount) for account, amount in legs if not account.is_platform]
    locked = dict(
        Account.objects.select_for_update()
        .filter(pk__in={account.pk for account, _ in user_legs})
        .order_by("pk")
        .values_list("pk", "balance")
    )
    balance_after: dict[int, int] = {}
    for account, amount in user_legs:
        new_balance = balance_after.get(account.pk, locked[account.pk]) + amount
        if new_balance < 0:
            account.balance = locked[account.pk]
            raise InsufficientBalance(account, -amount)
        balance_after[account.pk] = new_balance
    for account_pk, balance in balance_after.items():
        Account.objects.filter(pk=account_pk).update(balance=F("balance") + (balance - locked[account_pk]))
    for account, _ in user_legs:
        account.balance = balance_after[account.pk]

    transfer = Transfer.objects.create(kind=kind, reference=reference, memo=memo, created_by=created_by)
    Entry.objects.bulk_create(
        Entry(
            transfer=transfer,
            account=account,
            amount=amount,
            balance_after=None if account.is_platform else balance_after[account.pk],
        )
        for account, amount in legs
    )
    return transfer


def coins_account(profile: Profile) -> Account:
    return Account.objects.get(profile=profile, kind=Account.Kind.COINS)


def earnings_account(profile: Profile) -> Account:
    return Account.objects.get(profile=profile, kind=Account.Kind.EARNINGS)


@transaction.atomic(durable=True)
def topup_create(*, profile: Profile, amount: int, reference: str) -> tuple[Transfer, bool]:
    """Credit coins bought by a viewer, once per payment reference. Returns (transfer, created).

    What the person owes from a reversed top-up is paid back first, in a second transfer of
    the same transaction (`_owed_repay`).
    """
    if amount <= 0:
        raise ValueError("a top-up amount must be positive")
    full_reference = f"topup:{reference}"
    existing = Transfer.objects.filter(reference=full_reference).first()
    if existing is not None:
        leg = existing.entries.select_related("account").get(amount__gt=0)
        if leg.account.profile_id != profile.pk or leg.amount != amount:
            raise TransferConflict(f"reference {reference} was used for a different top-up")
        return existing, False
    coins = coins_account(profile)
    transfer = transfer_create(
        kind=Transfer.Kind.TOP_UP,
        reference=full_reference,
        legs=[(platform_account(Account.Kind.ISSUED), -amount), (coins, amount)],
        memo=f"top-up {reference}",
    )
    _owed_repay(profile=profile, coins=coins, up_to=amount, reference=full_reference)
    return transfer, True


def _owed_repay(*, profile: Profile, coins: Account, up_to: int, reference: str) -> None:
    """Pay back, from coins just topped up, what a reversed top-up left the person owing.

    The coins go back to `platform:issued`, and so does the loan the reversal recorded
    (see `topup_reverse`): `platform:issued` takes twice what the receivable gives up.
    """
    receivable = Account.objects.filter(profile=profile, kind=Account.Kind.RECEIVABLE).first()
    if receivable is None:
        return
    owed = Account.objects.select_for_update().values_list("balance", flat=True).get(pk=receivable.pk)
    repaid = min(owed, up_to)
    if repaid:
        transfer_create(
            kind=Transfer.Kind.REPAYMENT,
            reference=f"repay:{reference}",
            legs=[(coins, -repaid), (receivable, -repaid), (platform_account(Account.Kind.ISSUED), 2 * repaid)],
            memo=f"owed coins repaid from top-up {reference.removeprefix('topup:')}",
        )


@dataclasses.dataclass(frozen=True)
class TopUpReversal:
    """What reversing a top-up did: the coins taken from the person, and what it left them owing."""

    transfer: Transfer
    profile: Profile
    amount: int
    taken: int
    owed: int  # what this reversal left owing
    # False when the top-up had been reversed before: this is that reversal, and nothing moved now.
    created: bool


class TopUpNotFound(Exception):
    """No top-up has this reference."""


@transaction.atomic(durable=True)
def topup_reverse(*, reference: str, reason: str = "", staff_user: object | None = None) -> TopUpReversal:
    """Take back a top-up whose payment was reversed (a chargeback), once per top-up.

    The person's coins go down by the amount, or by all they hold; the rest is owed, on
    their own `receivable` account. In ledger terms the top-up is undone (coins back to
    `platform:issued`) and the coins already spent are lent to the person, which is what
    the receivable records: `platform:issued` gets what was taken minus what is owed.
    """
    topup = Transfer.objects.filter(reference=f"topup:{reference}", kind=Transfer.Kind.TOP_UP).first()
    if topup is None:
        raise TopUpNotFound(f"no top-up has the reference {reference}")
    credit = topup.entries.select_related("account__profile").get(amount__gt=0)
    profile, amount = credit.account.profile, credit.amount
    coins = coins_account(profile)
    receivable, _ = Account.objects.get_or_create(profile=profile, kind=Account.Kind.RECEIVABLE)
    # Both of the person's accounts, in pk order, before reading what the coins hold or whether
    # the top-up was reversed already: a second reversal of it waits here, then finds the first.
    held = dict(
        Account.objects.select_for_update()
        .filter(pk__in=[coins.pk, receivable.pk])
        .order_by("pk")
        .values_list("pk", "balance")
    )
    chargeback_reference = f"chargeback:{topup.pk}"
    if (done := Transfer.objects.filter(reference=chargeback_reference).first()) is not None:
        return _reversal_done(done, profile, amount)
    taken = min(amount, held[coins.pk])
    owed = amount - taken
    legs = []
    if taken:
        legs.append((coins, -taken))
    if owed:
        legs.append((receivable, owed))
    if taken != owed:
        legs.append((platform_account(Account.Kind.ISSUED), taken - owed))
    memo = f"top-up {reference} reversed" + (f": {reason}" if reason else "")
    transfer = transfer_create(
        kind=Transfer.Kind.CHARGEBACK, reference=chargeback_reference, legs=legs, memo=memo[:200], created_by=staff_user
    )
    return TopUpReversal(transfer, profile, amount, taken, owed, created=True)


def _reversal_done(transfer: Transfer, profile: Profile, amount: int) -> TopUpReversal:
    """A reversal made before, read back from its legs."""
    legs = {entry.account.kind: entry.amount for entry in transfer.entries.select_related("account")}
    return TopUpReversal(
        transfer,
        profile,
        amount,
        taken=-legs.get(Account.Kind.COINS, 0),
        owed=legs.get(Account.Kind.RECEIVABLE, 0),
        created=False,
    )


@transaction.atomic(durable=True)
def payout_create(
    *, profile: Profile, amount: int, reference: str, staff_user: object | None = None
) -> tuple[Transfer, bool]:
    """Pay a host out of their earnings, once per reference: earnings -> `platform:payouts`.

    The money itself leaves out of band (a bank transfer); this records it. More than the
    earnings raises InsufficientBalance. Returns (transfer, created).
    """
    if amount <= 0:
        raise ValueError("a payout amount must be positive")
    full_reference = f"payout:{reference}"
    earnings = earnings_account(profile)
    # Locked before the reference is looked up: a second payout with it waits, then finds the first.
    Account.objects.select_for_update().only("pk").get(pk=earnings.pk)
    existing = Transfer.objects.filter(reference=full_reference).first()
    if existing is not None:
        leg = existing.entries.select_related("account").get(amount__lt=0)
        if leg.account.profile_id != profile.pk or leg.amount != -amount:
            raise TransferConflict(f"reference {reference} was used for a different payout")
        return existing, False
    transfer = transfer_create(
        kind=Transfer.Kind.PAYOUT,
        reference=full_reference,
        legs=[(earnings, -amount), (platform_account(Account.Kind.PAYOUTS), amount)],
        memo=f"payout {reference}",
        created_by=staff_user,
    )
    return transfer, True


def coins_grant(
    *, profile: Profile, amount: int, staff_user: object, memo: str = "", key: uuid.UUID | None = None
) -> Transfer:
    """Staff gives a viewer coins (compensation, promotion): a real transfer from `platform:issued`.

    `key` names the staff's one decision (the admin's form carries one): the same key grants a
    viewer once, however often the form is sent.
    """
    if amount <= 0:
        raise ValueError("a grant must be positive")
    reference = f"grant:{key}:{profile.pk}" if key else f"grant:{uuid.uuid4()}"
    try:
        return _coins_grant(profile=profile, amount=amount, staff_user=staff_user, memo=memo, reference=reference)
    except IntegrityError:
        # The same form sent twice at once: the other submission wrote the grant.
        return Transfer.objects.get(reference=reference)


@transaction.atomic(durable=True)
def _coins_grant(*, profile: Profile, amount: int, staff_user: object, memo: str, reference: str) -> Transfer:
    if (granted := Transfer.objects.filter(reference=reference).first()) is not None:
        return granted
    return transfer_create(
        kind=Transfer.Kind.GRANT,
        reference=reference,
        legs=[(platform_account(Account.Kind.ISSUED), -amount), (coins_account(profile), amount)],
        memo=memo or "staff grant",
        created_by=staff_user,
    )


def profile_for_user(user) -> Profile:
    """The profile of a signed-in Django user; staff created by `createsuperuser` get one on first use."""
    try:
        return user.profile
    except Profile.DoesNotExist:
        pass
    with transaction.atomic():
        profile = Profile.objects.create(login=user, user_id=user.username[:64], nickname=user.username[:64])
        Account.objects.bulk_create(
            [Account(profile=profile, kind=Account.Kind.COINS), Account(profile=profile, kind=Account.Kind.EARNINGS)]
        )
    return profile


# --- spending limits -------------------------------------------------------------------------------

# A person's own raise waits this long, so a limit set in a calm moment holds through a heated one.
LIMIT_RAISE_DELAY = datetime.timedelta(hours=24)


@transaction.atomic
def spending_limit_set(*, profile: Profile, daily_coins: int | None) -> SpendingLimit:
    """Set the person's own daily limit (None: none). A cut, or a first limit, applies at once;
    a raise or a removal from `LIMIT_RAISE_DELAY` on, the current limit holding until then."""
    limit, _ = SpendingLimit.objects.select_for_update().get_or_create(profile=profile)
    now = timezone.now()
    current = own_daily_limit(limit, now)
    is_cut = daily_coins is not None and (current is None or daily_coins < current)
    limit.daily_coins = daily_coins if is_cut else current
    if is_cut or daily_coins == current:
        limit.raised_daily_coins, limit.raised_from = None, None
    elif limit.raised_from is not None and limit.raised_daily_coins == daily_coins:
        pass  # the same raise asked again (a retried request): its 24 hours keep running
    else:
        limit.raised_daily_coins, limit.raised_from = daily_coins, now + LIMIT_RAISE_DELAY
    limit.save()
    return limit
