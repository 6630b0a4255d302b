"""Many gifts at once on PostgreSQL, with real threads and real row locks."""

import logging
import threading
from collections import Counter

import pytest
from django.db import connection, connections

from gifts.models import FailedDelivery, GiftEvent, HostGiftCount
from gifts.results import Result
from gifts.services import ResendRefused, failed_delivery_resend, gift_send, gifts_send
from gifts.tests.factories import GiftFactory, RoomFactory, gift_request
from rankings.selectors import leaderboard_top
from wallets.models import Account
from wallets.selectors import account_balance, profile_balances
from wallets.services import coins_grant, platform_account
from wallets.tests.factories import ProfileFactory
from wallets.tests.ledger import assert_ledger_sound

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs PostgreSQL: SQLite runs one writer at a time, so there is no concurrency to test",
    ),
]


def run_in_threads(jobs):
    """Run each job in its own thread, all released at the same moment; return their results in order."""
    barrier = threading.Barrier(len(jobs))
    results: list = [None] * len(jobs)
    errors: list[BaseException] = []

    def work(index, job):
        try:
            barrier.wait()
            results[index] = job()
        except BaseException as error:  # noqa: BLE001 - reported to the test below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(index, job)) for index, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


def test_twenty_senders_fifty_gifts_each_into_one_room():
    gift = GiftFactory(gift_id="rose", price=10)
    room = RoomFactory()
    # senders 0-9 can pay for all 50 gifts; senders 10-19 only for 30 of them
    senders = [ProfileFactory(coins=500 if index < 10 else 300) for index in range(20)]

    def sender_job(sender, coins):
        def job():
            balance = coins
            outcomes = []
            for index in range(50):
                outcome = gift_send(gift_request(sender, room, f"{sender.user_id}-{index}"))
                # coins_balance is the sender's balance right after this gift, read under its lock
                after = outcome.coins_balance if outcome.ok else balance
                outcomes.append((outcome.result, balance, after))
                balance = after
            return outcomes

        return job

    results = run_in_threads([sender_job(sender, 500 if index < 10 else 300) for index, sender in enumerate(senders)])

    accepted = 0
    for index, (sender, outcomes) in enumerate(zip(senders, results, strict=True)):
        codes = Counter(result for result, _, _ in outcomes)
        paid_for = 50 if index < 10 else 30
        assert codes == (
            {Result.SUCCESS: 50} if paid_for == 50 else {Result.SUCCESS: 30, Result.INSUFFICIENT_BALANCE: 20}
        )
        for result, before, after in outcomes:
            # a sender's balance only moves through their own thread: each gift moved exactly its cost
            assert before - after == (gift.price if result is Result.SUCCESS else 0)
        assert profile_balances(sender)["coins"] == (500 if index < 10 else 300) - paid_for * gift.price
        accepted += paid_for

    seqs = sorted(GiftEvent.objects.filter(room=room).values_list("seq", flat=True))
    assert seqs == list(range(1, accepted + 1))
    room.refresh_from_db()
    assert room.last_seq == accepted
    shares = sum(event.coins * 50 // 100 for event in GiftEvent.objects.filter(room=room))
    assert profile_balances(room.host)["earnings"] == shares == accepted * 5
    assert account_balance(platform_account(Account.Kind.REVENUE)) == accepted * 10 - shares
    assert HostGiftCount.objects.get(host=room.host).count == accepted
    assert sum(row["coins"] for row in leaderboard_top(room=room, period="all", limit=100)) == accepted * 10
    assert_ledger_sound()


def test_the_same_msg_id_ten_times_at_once_charges_once():
    GiftFactory(gift_id="rose", price=10)
    room = RoomFactory()
    sender = ProfileFactory(coins=1_000)

    outcomes = run_in_threads([lambda: gift_send(gift_request(sender, room, "dup", num=3)) for _ in range(10)])

    fresh = [o for o in outcomes if o.result is Result.SUCCESS and not o.replayed]
    assert len(fresh) == 1
    assert all(o.result in (Result.SUCCESS, Result.IN_FLIGHT) for o in outcomes)
    for outcome in outcomes:
        if outcome.result is Result.SUCCESS:
            assert outcome.event.seq == fresh[0].event.seq
    assert profile_balances(sender)["coins"] == 1_000 - 30
    assert GiftEvent.objects.count() == 1
    # and once it has settled, the MsgId answers with the stored result
    later = gift_send(gift_request(sender, room, "dup", num=3))
    assert (later.result, later.replayed) == (Result.SUCCESS, True)
    assert_ledger_sound()


def test_two_senders_gifting_each_others_rooms_cannot_deadlock():
    GiftFactory(gift_id="rose", price=10)
    alice, bob = ProfileFactory(coins=10_000), ProfileFactory(coins=10_000)
    alice_room, bob_room = RoomFactory(host=alice), RoomFactory(host=bob)
    rounds = 40

    def gifts(sender, room, lane):
        return lambda: [gift_send(gift_request(sender, room, f"{lane}-{index}")).result for index in range(rounds)]

    # each direction from two threads at once, so the same accounts are contended from both sides
    results = run_in_threads(
        [
            gifts(alice, bob_room, "a1"),
            gifts(bob, alice_room, "b1"),
            gifts(alice, bob_room, "a2"),
            gifts(bob, alice_room, "b2"),
        ]
    )

    assert all(result is Result.SUCCESS for results_of in results for result in results_of)
    rounds *= 2
    assert profile_balances(alice) == {"coins": 10_000 - rounds * 10, "earnings": rounds * 5}
    assert profile_balances(bob) == {"coins": 10_000 - rounds * 10, "earnings": rounds * 5}
    assert GiftEvent.objects.filter(room=alice_room).count() == rounds
    assert GiftEvent.objects.filter(room=bob_room).count() == rounds
    assert_ledger_sound()


def test_many_senders_in_many_rooms_with_shared_hosts_keep_the_ledger_sound():
    GiftFactory(gift_id="rose", price=3)
    people = [ProfileFactory(coins=200) for _ in range(6)]
    rooms = [RoomFactory(host=person) for person in people]

    def job(sender_index):
        sender = people[sender_index]
        return lambda: [
            gift_send(
                gift_request(sender, rooms[(sender_index + step) % 6], f"{sender.user_id}-{step}", num=step % 4 + 1)
            ).result
            for step in range(1, 40)
        ]

    results = run_in_threads([job(index) for index in range(6)])
    assert all(
        result in (Result.SUCCESS, Result.INSUFFICIENT_BALANCE, Result.DELIVERY_FAILED) for r in results for result in r
    )
    for room in rooms:
        seqs = sorted(GiftEvent.objects.filter(room=room).values_list("seq", flat=True))
        assert seqs == list(range(1, len(seqs) + 1))
    assert_ledger_sound()


def test_batches_crossing_the_same_rooms_and_people_in_opposite_orders_cannot_deadlock(caplog):
    GiftFactory(gift_id="rose", price=10)
    people = [ProfileFactory(coins=5_000) for _ in range(4)]
    rooms = [RoomFactory(host=person) for person in people]
    rounds = 15

    def batches(lane, order):
        # every batch sends from all four people into all four rooms (never their own), in this lane's order
        def job():
            results = []
            for index in range(rounds):
                requests = [
                    gift_request(people[sender], rooms[(sender + 1 + step) % 4], f"{lane}-{index}-{sender}-{step}")
                    for sender in order
                    for step in range(3)
                ]
                results += [outcome.result for outcome in gifts_send(requests)]
            return results

        return job

    results = run_in_threads([batches("up", [0, 1, 2, 3]), batches("down", [3, 2, 1, 0]), batches("mid", [1, 3, 0, 2])])

    assert all(result is Result.SUCCESS for lane in results for result in lane)
    # a deadlock would be retried gift by gift and still succeed: no batch may have needed that
    fallbacks = [
        record.getMessage()
        for record in caplog.records
        if record.name == "gifts.services" and record.levelno >= logging.WARNING
    ]
    assert not fallbacks
    sent_per_person = 3 * rounds * 3
    for person in people:
        # each person sent 3 gifts per batch and received 3 (one from each of the others)
        assert profile_balances(person) == {"coins": 5_000 - sent_per_person * 10, "earnings": sent_per_person * 5}
    for room in rooms:
        seqs = sorted(GiftEvent.objects.filter(room=room).values_list("seq", flat=True))
        assert seqs == list(range(1, sent_per_person + 1))
    assert_ledger_sound()


def test_staff_resending_one_failed_gift_at_once_pay_for_it_once(django_user_model):
    """Two staff (or a double click) re-send the same failed delivery at the same moment."""
    GiftFactory(gift_id="rose", price=10)
    room = RoomFactory()
    fan = ProfileFactory(coins=5)
    [refused] = gifts_send([gift_request(fan, room, "m-poor")])
    assert refused.result == Result.INSUFFICIENT_BALANCE
    failed = FailedDelivery.objects.get(msg_id="m-poor")
    staff = django_user_model.objects.create_superuser("staff", "staff@example.com", "pw")
    coins_grant(profile=fan, amount=100, staff_user=staff)

    def resend():
        try:
            return failed_delivery_resend(failed=FailedDelivery.objects.get(pk=failed.pk), staff_user=staff).result
        except ResendRefused:
            return "refused"

    results = run_in_threads([resend] * 6)

    assert Result.SUCCESS in results
    assert GiftEvent.objects.filter(sender=fan).count() == 1
    assert profile_balances(fan)["coins"] == 105 - 10
    failed.refresh_from_db()
    assert failed.resend_result == Result.SUCCESS and failed.resolved_by == staff
    assert_ledger_sound()
