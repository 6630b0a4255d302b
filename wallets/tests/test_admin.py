"""The wallet page: a person's balances and their ledger, readable by staff, editable by nobody."""

import pytest
from django.urls import reverse

from wallets.services import coins_grant
from wallets.tests.factories import ProfileFactory

pytestmark = pytest.mark.django_db


def test_wallet_page_shows_the_persons_ledger_newest_first(staff_client):
    viewer = ProfileFactory(user_id="alice", coins=10_000)
    coins_grant(profile=viewer, amount=250, staff_user=None, memo="stream outage compensation")
    someone_else = ProfileFactory(user_id="bob", coins=777)

    page = staff_client.get(reverse("admin:wallets_profile_change", args=[viewer.pk])).content.decode()

    assert page.index("stream outage compensation") < page.index("top-up factory-alice")
    assert "+250" in page and "10250" in page
    assert "factory-bob" not in page
    assert someone_else.user_id not in page


def test_all_ledger_lines_link_lists_only_that_persons_entries(staff_client):
    viewer = ProfileFactory(user_id="alice", coins=10_000)
    ProfileFactory(user_id="bob", coins=777)
    page = staff_client.get(reverse("admin:wallets_profile_change", args=[viewer.pk])).content.decode()
    link = page.split("href='")[-1].split("'")[0].replace("&amp;", "&")
    assert link.startswith(reverse("admin:wallets_entry_changelist"))

    listing = staff_client.get(link)

    assert listing.status_code == 200
    lines = listing.context["cl"].result_list
    assert [entry.account.profile.user_id for entry in lines] == ["alice"]
