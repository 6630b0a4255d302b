"""Staff views of people and money. Money rows can be read, never edited or deleted."""

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.db.models import Q, Sum
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from wallets.models import Account, Entry, Profile, Transfer
from wallets.selectors import account_balance, profile_entries
from wallets.services import coins_grant

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


class GrantCoinsForm(forms.Form):
    amount = forms.IntegerField(min_value=1, max_value=100_000_000)
    memo = forms.CharField(max_length=200, help_text="why: shown in the ledger and the viewer's statement")


@admin.register(Profile)
class WalletAdmin(admin.ModelAdmin):
    """A person's wallet: both balances, their statement, and the grant action."""

    list_display = ["user_id", "nickname", "coins", "earnings", "created_at"]
    search_fields = ["user_id", "nickname"]
    readonly_fields = ["login", "user_id", "coins", "earnings", "created_at", "statement"]
    fields = ["login", "user_id", "nickname", "avatar", "sex", "coins", "earnings", "created_at", "statement"]
    actions = ["grant_coins"]
    # An avatar typed without a scheme is taken as https (Django 6's default, chosen now).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                coins_balance=Sum("accounts__balance", filter=Q(accounts__kind=Account.Kind.COINS)),
                earnings_balance=Sum("accounts__balance", filter=Q(accounts__kind=Account.Kind.EARNINGS)),
            )
        )

    @admin.display(ordering="coins_balance")
    def coins(self, profile):
        return profile.coins_balance

    @admin.display(ordering="earnings_balance")
    def earnings(self, profile):
        return profile.earnings_balance

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

    @admin.action(description="Grant coins to the selected viewers", permissions=["change"])
    def grant_coins(self, request, queryset):
        form = GrantCoinsForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            for profile in queryset:
                coins_grant(
                    profile=profile,
                    amount=form.cleaned_data["amount"],
                    staff_user=request.user,
                    memo=form.cleaned_data["memo"],
                )
            self.message_user(
                request,
                f"Granted {form.cleaned_data['amount']} coins to {queryset.count()} viewer(s).",
                messages.SUCCESS,
            )
            return None
        return TemplateResponse(
            request,
            "admin/wallets/grant_coins.html",
            {
                **self.admin_site.each_context(request),
                "title": "Grant coins",
                "form": form,
                "profiles": queryset,
                "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
                "opts": self.model._meta,
            },
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
