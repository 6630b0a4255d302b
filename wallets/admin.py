"""Staff views of people and money. Money rows can be read, never edited or deleted."""

import uuid

from django import forms
from django.contrib import admin, messages
from django.db import IntegrityError, models
from django.db.models import Q, Sum
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from gifting_site.csv_export import csv_response, export_csv
from wallets.models import Account, Entry, Profile, SpendingLimit, Transfer
from wallets.selectors import account_balance, profile_entries
from wallets.services import (
    InsufficientBalance,
    TransferConflict,
    coins_grant,
    payout_create,
    topup_reverse,
)

# How many of a person's newest ledger lines the wallet page shows; the rest are one click away.
STATEMENT_LINES = 50
WALLET_ENTRIES_LOOKUP = "account__profile__id__exact"


def truncated(text: str, limit: int = 60) -> str:
    """Text for a list column: whole up to `limit` characters, cut with "..." beyond."""
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


class ReadOnlyAdmin(admin.ModelAdmin):
    """For ledger rows: visible to staff, changeable by nobody, superusers included."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class PayoutForm(forms.Form):
    amount = forms.IntegerField(min_value=1, max_value=100_000_000, help_text="coins out of the host's earnings")
    reference = forms.CharField(
        max_length=120, help_text="the bank transfer's id: paying out with it again pays nothing more"
    )


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=200, help_text="why: kept in the ledger")


class GrantCoinsForm(forms.Form):
    amount = forms.IntegerField(min_value=1, max_value=100_000_000)
    memo = forms.CharField(max_length=200, help_text="why: shown in the ledger and the viewer's statement")
    # One per form shown: the same form sent twice (a double click, a reload) grants once.
    key = forms.UUIDField(widget=forms.HiddenInput, initial=uuid.uuid4)


def action_form_page(model_admin, request, *, action: str, form, title: str, button: str, objects, intro: str = ""):
    """The page between choosing an action and running it: what it acts on, and the fields it asks for.

    It posts the selection back as it came, "select all N" included, so the action runs on
    the very rows staff chose.
    """
    return TemplateResponse(
        request,
        "admin/action_form.html",
        {
            **model_admin.admin_site.each_context(request),
            "title": title,
            "intro": intro,
            "form": form,
            "objects": objects,
            "action": action,
            "button": button,
            "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "opts": model_admin.model._meta,
        },
    )


@admin.register(Profile)
class WalletAdmin(admin.ModelAdmin):
    """A person's wallet: both balances, their statement, and the grant action."""

    list_display = ["user_id", "nickname", "coins", "earnings", "owed", "created_at"]
    search_fields = ["user_id", "nickname"]
    readonly_fields = ["login", "user_id", "coins", "earnings", "owed", "created_at", "statement"]
    fields = ["login", "user_id", "nickname", "avatar", "sex", "coins", "earnings", "owed", "created_at", "statement"]
    actions = ["grant_coins", "pay_out", "export_host_statements"]
    # An avatar typed without a scheme is taken as https (Django 6's default, chosen now).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                coins_balance=Sum("accounts__balance", filter=Q(accounts__kind=Account.Kind.COINS)),
                earnings_balance=Sum("accounts__balance", filter=Q(accounts__kind=Account.Kind.EARNINGS)),
                owed_balance=Sum("accounts__balance", filter=Q(accounts__kind=Account.Kind.RECEIVABLE)),
            )
        )

    @admin.display(ordering="coins_balance")
    def coins(self, profile):
        return profile.coins_balance

    @admin.display(ordering="earnings_balance")
    def earnings(self, profile):
        return profile.earnings_balance

    @admin.display(ordering="owed_balance", description="owed (reversed top-ups)")
    def owed(self, profile):
        return profile.owed_balance or 0

    @admin.display(description="ledger (newest first)")
    def statement(self, profile):
        """The person's own ledger lines, read-only: staff answer "where did my coins go?" from here."""
        entries = profile_entries(profile)[:STATEMENT_LINES]
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td style='text-align:right'>{}</td>"
            "<td style='text-align:right'>{}</td><td>{}</td></tr>",
            (
                (
                    entry.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                    entry.account.kind,
                    entry.transfer.get_kind_display(),
                    f"{entry.amount:+d}",  # format_html escapes its arguments to text first
                    entry.balance_after,
                    entry.transfer.memo or entry.transfer.reference,
                )
                for entry in entries
            ),
        )
        everything = reverse("admin:wallets_entry_changelist") + f"?{WALLET_ENTRIES_LOOKUP}={profile.pk}"
        return format_html(
            "<table><thead><tr><th>at</th><th>account</th><th>kind</th><th>amount</th><th>balance</th>"
            "<th>memo</th></tr></thead><tbody>{}</tbody></table><p><a href='{}'>All ledger lines</a></p>",
            rows or format_html("<tr><td colspan='6'>no ledger lines yet</td></tr>"),
            everything,
        )

    def has_add_permission(self, request):
        return False  # people come from sign-up, seed_demo or the server API, each with their accounts

    def has_delete_permission(self, request, obj=None):
        return False

    def has_money_permission(self, request):
        # Moving coins is the ledger's permission, not that of fixing someone's nickname.
        return request.user.has_perm("wallets.add_transfer")

    @admin.action(description="Grant coins to the selected viewers", permissions=["money"])
    def grant_coins(self, request, queryset):
        form = GrantCoinsForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            for profile in queryset:
                coins_grant(
                    profile=profile,
                    amount=form.cleaned_data["amount"],
                    staff_user=request.user,
                    memo=form.cleaned_data["memo"],
                    key=form.cleaned_data["key"],
                )
            self.message_user(
                request,
                f"Granted {form.cleaned_data['amount']} coins to {queryset.count()} viewer(s).",
                messages.SUCCESS,
            )
            return None
        return action_form_page(
            self,
            request,
            action="grant_coins",
            form=form,
            title="Grant coins",
            button="Grant coins",
            objects=[
                f"{profile.user_id} ({profile.nickname})" if profile.nickname else profile.user_id
                for profile in queryset
            ],
            intro="Each selected viewer receives the amount as a ledger transfer from platform:issued, "
            "recorded under your name.",
        )

    @admin.action(description="Export host statements (CSV: per host and day)")
    def export_host_statements(self, request, queryset):
        # gifts reads the events and the ledger together; wallets knows nothing of gifts but this door.
        from gifts.selectors import HOST_STATEMENT_COLUMNS, host_statements

        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        hosts = list(queryset.order_by("user_id"))
        return csv_response(f"host-statements-{stamp}.csv", HOST_STATEMENT_COLUMNS, host_statements(hosts))

    @admin.action(description="Pay out earnings to the selected host", permissions=["money"])
    def pay_out(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select one host to pay out.", messages.ERROR)
            return None
        host = queryset.get()
        form = PayoutForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            amount, reference = form.cleaned_data["amount"], form.cleaned_data["reference"]
            try:
                _, created = payout_create(
                    profile=host, amount=amount, reference=f"staff:{reference}", staff_user=request.user
                )
            except InsufficientBalance as short:
                self.message_user(
                    request, f"Not paid: {host} has {short.account.balance} coins of earnings.", messages.ERROR
                )
            except (TransferConflict, IntegrityError):
                self.message_user(request, f"Not paid: {reference} was used for another payout.", messages.ERROR)
            else:
                done = f"Paid out {amount} coins to {host} ({reference})." if created else "Already paid out."
                self.message_user(request, done, messages.SUCCESS if created else messages.WARNING)
            return None
        return action_form_page(
            self, request, action="pay_out", form=form, title=f"Pay out {host}", button="Pay out", objects=[host]
        )


class EntryInline(ReadOnlyInline):
    model = Entry
    fields = ["account", "amount", "balance_after", "created_at"]
    readonly_fields = fields


@admin.register(Transfer)
class TransferAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "reference", "memo", "created_by", "created_at"]
    list_filter = ["kind", "created_at"]
    search_fields = ["reference", "memo"]
    inlines = [EntryInline]
    actions = ["reverse_top_up", export_csv]
    csv_related = ["created_by"]
    csv_prefetch = ["entries__account__profile"]
    csv_columns = [
        ("id", lambda transfer: transfer.pk),
        ("created_at", lambda transfer: transfer.created_at),
        ("kind", lambda transfer: transfer.kind),
        ("reference", lambda transfer: transfer.reference),
        ("memo", lambda transfer: transfer.memo),
        ("created_by", lambda transfer: transfer.created_by.get_username() if transfer.created_by else ""),
        (
            "entries",
            lambda transfer: "; ".join(f"{entry.account} {entry.amount:+d}" for entry in transfer.entries.all()),
        ),
    ]

    def has_reverse_permission(self, request):
        return request.user.has_perm("wallets.add_transfer")

    @admin.action(description="Reverse the selected top-ups (chargebacks)", permissions=["reverse"])
    def reverse_top_up(self, request, queryset):
        top_ups = list(queryset.filter(kind=Transfer.Kind.TOP_UP).order_by("pk"))
        if not top_ups:
            self.message_user(request, "Only top-ups can be reversed.", messages.ERROR)
            return None
        form = ReasonForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            return action_form_page(
                self,
                request,
                action="reverse_top_up",
                form=form,
                title="Reverse top-ups",
                button="Reverse",
                objects=top_ups,
            )
        for top_up in top_ups:
            reversal = topup_reverse(
                reference=top_up.reference.removeprefix("topup:"),
                reason=form.cleaned_data["reason"],
                staff_user=request.user,
            )
            if not reversal.created:
                self.message_user(request, f"{top_up.reference}: already reversed.", messages.WARNING)
                continue
            owed = f"; {reversal.owed} owed" if reversal.owed else ""
            self.message_user(
                request,
                f"{top_up.reference}: {reversal.taken} coins taken from {reversal.profile}{owed}.",
                messages.SUCCESS,
            )
        return None


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "profile", "shown_balance"]
    list_filter = ["kind"]
    search_fields = ["profile__user_id"]
    fields = ["kind", "profile", "shown_balance", "created_at"]
    readonly_fields = fields
    list_select_related = ["profile"]

    @admin.display(description="balance")
    def shown_balance(self, account):
        """A user account's running balance; a platform account's, computed from its entries.

        Platform accounts keep no running balance (see `Account`): their stored column is
        always 0, and showing it would tell staff the platform holds nothing.
        """
        if account.is_platform:
            return f"{account_balance(account)} (computed: sum of entries)"
        return account.balance


@admin.register(Entry)
class EntryAdmin(ReadOnlyAdmin):
    list_display = ["id", "transfer", "account", "amount", "balance_after", "created_at"]
    list_filter = ["account__kind", "transfer__kind"]
    search_fields = ["account__profile__user_id", "transfer__reference"]
    list_select_related = ["transfer", "account__profile"]

    def lookup_allowed(self, lookup, value, request):
        # The wallet page links here for one person's whole statement; a list filter with
        # every person in the system would not be usable.
        return lookup == WALLET_ENTRIES_LOOKUP or super().lookup_allowed(lookup, value, request)


@admin.register(SpendingLimit)
class SpendingLimitAdmin(admin.ModelAdmin):
    """Daily spending limits: staff set theirs here; a person's own are shown as they set them."""

    list_display = ["profile", "staff_daily_coins", "daily_coins", "raised_daily_coins", "raised_from", "updated_at"]
    search_fields = ["profile__user_id"]
    raw_id_fields = ["profile"]
    fields = ["profile", "staff_daily_coins", "daily_coins", "raised_daily_coins", "raised_from", "updated_at"]
    # The person's own limit is theirs to set (/api/me/limits/), with its 24-hour wait on raises.
    readonly_fields = ["daily_coins", "raised_daily_coins", "raised_from", "updated_at"]

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "profile"] if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if change:
            # Only the staff limit: the person may have changed their own since the page loaded.
            obj.save(update_fields=["staff_daily_coins", "updated_at"])
        else:
            super().save_model(request, obj, form, change)

    def has_delete_permission(self, request, obj=None):
        return False  # deleting would lift the person's own limit without its 24-hour wait
