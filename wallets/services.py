"""Every movement of money goes through `transfer_create`; everything else here is built on it."""

import uuid
from collections.abc import Sequence

from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import F

from wallets.models import Account, Entry, Profile, Transfer

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
            # Another request created the same person a moment ago.
            profile = Profile.objects.select_related("login").get(user_id=user_id)
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


@transaction.atomic(durable=True)
def topup_create(*, profile: Profile, amount: int, reference: str) -> tuple[Transfer, bool]:
    """Credit coins bought by a viewer, once per payment reference. Returns (transfer, created)."""
    if amount <= 0:
        raise ValueError("a top-up amount must be positive")
    full_reference = f"topup:{reference}"
    existing = Transfer.objects.filter(reference=full_reference).first()
    if existing is not None:
        leg = existing.entries.select_related("account").get(amount__gt=0)
        if leg.account.profile_id != profile.pk or leg.amount != amount:
            raise TransferConflict(f"reference {reference} was used for a different top-up")
        return existing, False
    transfer = transfer_create(
        kind=Transfer.Kind.TOP_UP,
        reference=full_reference,
        legs=[(platform_account(Account.Kind.ISSUED), -amount), (coins_account(profile), amount)],
        memo=f"top-up {reference}",
    )
    return transfer, True


@transaction.atomic(durable=True)
def coins_grant(*, profile: Profile, amount: int, staff_user: object, memo: str = "") -> Transfer:
    """Staff gives a viewer coins (compensation, promotion): a real transfer from `platform:issued`."""
    if amount <= 0:
        raise ValueError("a grant must be positive")
    return transfer_create(
        kind=Transfer.Kind.GRANT,
        reference=f"grant:{uuid.uuid4()}",
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
