"""Group commit: what callers queue while a batch is written goes out as the next batch, each caller its own answer."""

import threading
import time

import pytest
from django.db import connection, connections

from gifts import services
from gifts.group_commit import GroupCommit
from gifts.models import GiftEvent, Room
from gifts.results import Result
from gifts.services import gift_send
from gifts.tests.factories import GiftFactory, RoomFactory, gift_request
from wallets.selectors import ledger_totals, profile_balances
from wallets.tests.factories import ProfileFactory


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


class Recorder:
    """A write that doubles numbers, records each batch, and can be held mid-write."""

    def __init__(self):
        self.batches: list[list[int]] = []
        self.release = threading.Event()
        self.writing = threading.Event()

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.writing.set()
        self.release.wait(10)
        if -1 in items:
            raise RuntimeError("the database went away")
        return [item * 2 for item in items]


def submit_in_threads(committer, items):
    results: dict[int, object] = {}

    def work(item):
        try:
            results[item] = committer.submit(item)
        except RuntimeError as error:
            results[item] = error

    threads = [threading.Thread(target=work, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    return threads, results


def test_a_lone_caller_writes_at_once():
    recorder = Recorder()
    recorder.release.set()
    committer = GroupCommit(recorder, max_batch=lambda: 100)
    assert committer.submit(21) == 42
    assert committer.submit(5) == 10
    assert recorder.batches == [[21], [5]]


def test_callers_queued_behind_a_batch_go_out_together_each_with_its_own_answer():
    recorder = Recorder()
    committer = GroupCommit(recorder, max_batch=lambda: 100)
    first, first_results = submit_in_threads(committer, [1])
    recorder.writing.wait(5)
    # given eight callers arriving while the first batch is being written
    rest, rest_results = submit_in_threads(committer, range(2, 10))
    wait_until(lambda: committer.waiting == 8)

    recorder.release.set()
    for thread in first + rest:
        thread.join(10)

    assert recorder.batches[0] == [1]
    assert sorted(recorder.batches[1]) == list(range(2, 10))
    assert len(recorder.batches) == 2
    assert {**first_results, **rest_results} == {item: item * 2 for item in range(1, 10)}


def test_a_batch_never_exceeds_the_bound_and_arrival_order_is_kept():
    recorder = Recorder()
    committer = GroupCommit(recorder, max_batch=lambda: 3)
    first, _ = submit_in_threads(committer, [0])
    recorder.writing.wait(5)
    threads = []
    for item in range(1, 8):  # one at a time, so their queue order is known
        threads += submit_in_threads(committer, [item])[0]
        wait_until(lambda item=item: committer.waiting == item)

    recorder.release.set()
    for thread in first + threads:
        thread.join(10)

    assert recorder.batches == [[0], [1, 2, 3], [4, 5, 6], [7]]


def test_a_failed_write_reaches_every_caller_of_its_batch_and_the_next_batch_still_runs():
    recorder = Recorder()
    committer = GroupCommit(recorder, max_batch=lambda: 2)
    first, results = submit_in_threads(committer, [-1])
    recorder.writing.wait(5)
    more, more_results = submit_in_threads(committer, [3])
    wait_until(lambda: committer.waiting == 1)

    recorder.release.set()
    for thread in first + more:
        thread.join(10)

    assert isinstance(results[-1], RuntimeError)
    assert more_results == {3: 6}


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL: concurrent writers")
def test_concurrent_sends_in_one_process_share_transactions_and_each_gets_its_own_result():
    GiftFactory(gift_id="rose", price=10)
    room = RoomFactory()
    fans = [ProfileFactory(coins=100) for _ in range(12)]
    poor = ProfileFactory(coins=5)

    def send(sender, msg_id):
        outcome = gift_send(gift_request(sender, room, msg_id))
        results[msg_id] = outcome
        connections.close_all()

    results: dict[str, object] = {}
    # given the room's row held by another transaction, so the first batch waits on it
    holder = connections.create_connection("default")
    with holder.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute(f"SELECT id FROM {Room._meta.db_table} WHERE id = %s FOR UPDATE", [room.pk])
        threads = [threading.Thread(target=send, args=(fans[0], "first"))]
        threads[0].start()
        wait_until(lambda: backends_waiting_for_a_lock() == 1)  # the first batch, blocked on the room
        more = [(fan, f"fan-{index}") for index, fan in enumerate(fans[1:])] + [(poor, "poor")]
        threads += [threading.Thread(target=send, args=args) for args in more]
        for thread in threads[1:]:
            thread.start()
        wait_until(lambda: services._grouped_sends.waiting == len(more))
        cursor.execute("COMMIT")
    holder.close()
    for thread in threads:
        thread.join(20)

    # then every send got its own answer, written in two transactions: the first alone, the rest together
    assert {msg_id: outcome.result for msg_id, outcome in results.items()} == {
        "first": Result.SUCCESS,
        **{f"fan-{index}": Result.SUCCESS for index in range(11)},
        "poor": Result.INSUFFICIENT_BALANCE,
    }
    assert results["poor"].message == "insufficient balance: 5 coins, 10 needed"
    events = GiftEvent.objects.filter(room=room).order_by("seq")
    assert [event.seq for event in events] == list(range(1, 13))
    assert events[0].msg_id == "first"
    assert len({event.created_at for event in events}) == 2
    assert all(profile_balances(fan)["coins"] == 90 for fan in fans)
    assert profile_balances(poor)["coins"] == 5
    assert ledger_totals()["sum_of_balances"] == 0


def backends_waiting_for_a_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return cursor.fetchone()[0]
