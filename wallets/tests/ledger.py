"""The money invariants every test that moves coins checks afterwards."""

from wallets.selectors import ledger_totals, user_balances_match_entries


def assert_ledger_sound():
    totals = ledger_totals()
    assert totals["sum_of_balances"] == 0
    assert totals["sum_of_entries"] == 0
    assert totals["negative_user_accounts"] == 0
    assert user_balances_match_entries()
