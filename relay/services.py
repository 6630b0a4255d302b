"""The relay: deliver each room's paid gifts to the game vendor, merged, in order, never lost.

One pass (`Relay.deliver_due`) looks at every room with pending deliveries. For a room
whose next call is due and that no other relay holds, it claims the room (relay.models.
RelayRoom), sends its oldest pending deliveries in one SendDanmakuGifts call (at most
GAME_VENDOR_BATCH, in seq order, all of one game), and records what the vendor answered.
The claim also moves the room's next call at least one merge window on, so a busy room
gets one call per window: the gifts of that window travel together, and the vendor's 20
calls per second per room hold however many relays run.

Nothing is marked delivered before the vendor said so. A relay that dies mid-call leaves
its deliveries pending and its claim to lapse; the next relay sends the same MsgIds, which
the vendor answers with the first result instead of gifting twice.
"""

import datetime
import itertools
import logging
import os
import random
import socket
import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import requests
from django import db
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.db.models.functions import Now
from django.utils import timezone

from gifting_site import metrics
from gifting_site.errors import RoomUnavailable
from gifting_site.logs import fields
from gifts import broadcast
from gifts.models import FailedDelivery, GameSession, GiftEvent, MiniGame, Room
from gifts.selectors import room_game_session
from gifts.services import game_session_end, game_session_open, game_session_start
from relay import vendor, wakeup
from relay.models import GameDelivery, GameReport, RelayHealth, RelayRoom
from relay.outbox import item_problem, vendor_avatar, vendor_msg_id_new
from relay.vendor import AnswerKind, CallAnswer

logger = logging.getLogger(__name__)

# The vendor takes at most 20 SendDanmakuGifts calls per second for one room; the margin
# absorbs calls that travel at different speeds.
VENDOR_MIN_INTERVAL = datetime.timedelta(milliseconds=55)
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 60.0
# How long a relay with nothing due waits before looking again, unless woken (relay.wakeup).
IDLE_POLL_S = 1.0
# How long a relay waits after a pass failed (the database went away) before the next.
ERROR_PAUSE_S = 1.0


def call_interval() -> datetime.timedelta:
    """The least time between two calls for one room: the merge window, never under the vendor's limit."""
    return max(datetime.timedelta(milliseconds=settings.GAME_VENDOR_MERGE_MS), VENDOR_MIN_INTERVAL)


def claim_lease() -> datetime.timedelta:
    """How long a claimed room stays with its relay: longer than any call can take.

    A call gives up reading the answer 2 timeouts after it started, and one read blocks for
    at most one more (relay.vendor).
    """
    return datetime.timedelta(seconds=3 * settings.GAME_VENDOR_TIMEOUT_S + 2)


def retry_backoff(failures: int) -> datetime.timedelta:
    """0.5 s after the first failed call, doubling to 60 s, with jitter so relays do not retry in step."""
    base = min(BACKOFF_FIRST_S * 2 ** max(failures - 1, 0), BACKOFF_MAX_S)
    return datetime.timedelta(seconds=base * random.uniform(0.75, 1.25))  # noqa: S311 - not a secret


def relay_health() -> RelayHealth:
    health, _ = RelayHealth.objects.get_or_create(pk=RelayHealth.ID)
    return health


def _health_update(**changes: Any) -> None:
    """Change the one health row, making it the first time: one statement on every later call."""
    if not RelayHealth.objects.filter(pk=RelayHealth.ID).update(**changes):
        relay_health()
        RelayHealth.objects.filter(pk=RelayHealth.ID).update(**changes)


@dataclass(frozen=True)
class PassReport:
    calls: int
    # When the next room falls due, if one is waiting; None when nothing is pending or all is paused.
    next_due_at: datetime.datetime | None


class Relay:
    """One relay process's worker: its HTTP session (connections reused) and its name in claims."""

    def __init__(self, session: requests.Session | None = None):
        self.session = session or requests.Session()
        self.owner = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._warned_unconfigured = False

    # --- the loop -------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Deliver until `stop` is set; the call in flight always finishes and is recorded.

        Between passes with nothing to send it waits to be woken by a commit that queued
        deliveries, for at most IDLE_POLL_S, or until the next room falls due.
        """
        listener = wakeup.Listener()
        try:
            self._run(stop, listener)
        finally:
            listener.close()

    def _run(self, stop: threading.Event, listener: wakeup.Listener) -> None:
        while not stop.is_set():
            try:
                report = self.deliver_due()
            except Exception:
                # The database or a bug: what was claimed stays pending and its claim lapses, so
                # nothing is lost. Keep serving the other rooms once the database is back.
                logger.exception("game relay pass failed; trying again in %s s", ERROR_PAUSE_S)
                db.close_old_connections()
                stop.wait(ERROR_PAUSE_S)
                continue
            if report.calls:
                continue
            wait = IDLE_POLL_S
            if report.next_due_at is not None:
                wait = min(max((report.next_due_at - timezone.now()).total_seconds(), 0.005), IDLE_POLL_S)
            listener.wait(wait, stop)

    def deliver_once(self) -> int:
        """Deliver the backlog: every room until it has nothing pending or waits out a backoff. The calls made."""
        calls = 0
        while True:
            report = self.deliver_due()
            calls += report.calls
            if report.calls:
                continue
            # A room waiting out its merge window is still draining; one backing off after a failure is not.
            if report.next_due_at is None or report.next_due_at > timezone.now() + call_interval():
                return calls
            threading.Event().wait(max((report.next_due_at - timezone.now()).total_seconds(), 0))

    def deliver_due(self) -> PassReport:
        """One pass over the rooms with pending deliveries: one call for each room that is due."""
        if not vendor.credentials_configured():
            if not self._warned_unconfigured:
                logger.warning("game relay: GAME_VENDOR_APP_ID / GAME_VENDOR_SERVER_SECRET unset; deliveries wait")
                self._warned_unconfigured = True
            return PassReport(0, None)
        room_ids = list(
            GameDelivery.objects.filter(status=GameDelivery.Status.PENDING).values_list("room_id", flat=True).distinct()
        )
        if not room_ids:
            return PassReport(0, None)
        now = timezone.now()
        if (paused_until := _paused_until()) is not None and paused_until > now:
            return PassReport(0, paused_until)

        states = {state.room_id: state for state in RelayRoom.objects.filter(room_id__in=room_ids)}
        if missing := [room_id for room_id in room_ids if room_id not in states]:
            RelayRoom.objects.bulk_create([RelayRoom(room_id=room_id) for room_id in missing], ignore_conflicts=True)
        calls, next_due_at = 0, None
        for room_id in sorted(room_ids, key=lambda room_id: _due_at(states.get(room_id)) or now):
            due_at = _due_at(states.get(room_id))
            if due_at is not None and due_at > timezone.now():
                next_due_at = min(next_due_at or due_at, due_at)
                continue
            try:
                if not self._room_claim(room_id):
                    continue  # another relay has it, or it was served a moment ago
                calls += 1
                if self._room_serve(room_id) is AnswerKind.PAUSE:
                    return PassReport(calls, None)
            except Exception:
                # One room's trouble is not the other rooms': its claim lapses and it is tried again.
                logger.exception("game relay: serving room pk=%s failed", room_id)
        return PassReport(calls, next_due_at)

    # --- one room -------------------------------------------------------------------------------

    def _room_claim(self, room_id: int) -> bool:
        """Take the room for one call if it is due and nobody holds it: an UPDATE that checks both.

        Times are the database's, so relays on machines whose clocks disagree still space a
        room's calls and respect each other's claims.
        """
        return bool(
            RelayRoom.objects.filter(room_id=room_id)
            .filter(Q(next_call_at__isnull=True) | Q(next_call_at__lte=Now()))
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=Now()))
            .update(lease_until=Now() + claim_lease(), lease_owner=self.owner, next_call_at=Now() + call_interval())
        )

    def _room_serve(self, room_id: int) -> AnswerKind | None:
        """Send the room's oldest pending deliveries in one call and record the answer."""
        # The public ids come as annotations: a call of 50 gifts builds 50 objects, not 150.
        pending = list(
            GameDelivery.objects.filter(room_id=room_id, status=GameDelivery.Status.PENDING)
            .only("id", "event_id", "room_id", "mini_game_id", "seq", "vendor_msg_id", "item", "attempts")
            .annotate(room_code=F("room__room_id"), game_code=F("mini_game__mini_game_id"))
            .order_by("seq")[: settings.GAME_VENDOR_BATCH]
        )
        # One call names one game: a room that changed games sends the older game's gifts first.
        game = pending[0].mini_game_id if pending else None
        batch = list(itertools.takewhile(lambda delivery: delivery.mini_game_id == game, pending))
        problems = {delivery.pk: item_problem(delivery.item) for delivery in batch}
        if unsendable := [(delivery, problems[delivery.pk]) for delivery in batch if problems[delivery.pk]]:
            _unsendable_fail(unsendable)
            batch = [delivery for delivery in batch if not problems[delivery.pk]]
        if not batch:
            self._room_release(room_id, failures=None, delay=None)
            return None
        answer = vendor.danmaku_gifts_send(
            self.session,
            room_id=batch[0].room_code,
            mini_game_id=batch[0].game_code,
            gift_list=[{**delivery.item, "MsgId": delivery.vendor_msg_id} for delivery in batch],
        )
        logger.log(
            logging.ERROR if answer.kind is AnswerKind.PAUSE else logging.INFO,
            "game relay call: %s %s",
            answer.kind.value,
            answer.message,
            extra=fields(
                event="relay_call",
                room=batch[0].room_code,
                game=batch[0].game_code,
                items=len(batch),
                attempt=max(delivery.attempts for delivery in batch) + 1,
                answer=answer.kind.value,
                code=answer.code,
                vendor_request_id=answer.request_id,
                ms=answer.elapsed_ms,
            ),
        )
        self._answer_record(room_id, batch, answer)
        return answer.kind

    @transaction.atomic
    def _answer_record(self, room_id: int, batch: list[GameDelivery], answer: CallAnswer) -> None:
        now = timezone.now()
        if answer.kind is AnswerKind.PAUSE:
            # Our credentials or clock: nothing the gifts did. They wait, and count no attempt.
            _health_update(
                paused_until=now + datetime.timedelta(seconds=settings.GAME_VENDOR_PAUSE_S),
                pause_code=answer.code,
                pause_message=answer.message,
                last_error_at=now,
                last_error=f"{answer.code}: {answer.message}"[:300],
            )
            self._room_release(room_id, failures=None, delay=None)
            return

        # Only deliveries still pending under the MsgId this call sent: a relay whose claim
        # lapsed mid-call may answer late, after another relay settled them or staff queued
        # them again under a new MsgId.
        still_pending = _lock_still_pending(batch)
        GameDelivery.objects.filter(pk__in=still_pending).update(
            attempts=F("attempts") + 1, last_attempt_at=now, request_id=answer.request_id
        )
        delivered: list[int] = []
        retried: dict[tuple[int | None, str], list[int]] = defaultdict(list)
        failed: list[tuple[GameDelivery, int, str]] = []
        for delivery in (delivery for delivery in batch if delivery.pk in still_pending):  # seq order
            delivery.attempts += 1
            delivery.request_id = answer.request_id
            code, message = _delivery_answer(delivery, answer)
            if code == 0:
                delivered.append(delivery.pk)
            elif code is not None and _is_final(answer, code):
                failed.append((delivery, code, message))
            elif code != vendor.RESULT_IN_PROGRESS and delivery.attempts >= settings.GAME_VENDOR_MAX_ATTEMPTS:
                # Never for 10006: the vendor has the gift, and a new MsgId could gift it twice.
                failed.append((delivery, code if code is not None else TRANSPORT_FAILURE_CODE, message))
            else:
                retried[(code, message[:300])].append(delivery.pk)

        GameDelivery.objects.filter(pk__in=delivered).update(
            status=GameDelivery.Status.DELIVERED, code=0, message="", delivered_at=now
        )
        for delivery in batch:
            if delivery.pk in delivered:
                metrics.RELAY_DELAY_SECONDS.observe(max(now.timestamp() - delivery.item["Timestamp"] / 1000, 0))
        for (code, message), delivery_ids in retried.items():
            GameDelivery.objects.filter(pk__in=delivery_ids).update(code=code, message=message)
        _deliveries_fail(failed)

        health_changes: dict[str, Any]
        if answer.kind is AnswerKind.RETRY:
            health_changes = {"last_error_at": now, "last_error": f"{answer.code}: {answer.message}"[:300]}
        else:
            health_changes = {"last_success_at": now}
        _health_update(**health_changes)

        if answer.kind is AnswerKind.RETRY and retried:
            failures = RelayRoom.objects.get(room_id=room_id).failures + 1
            self._room_release(room_id, failures=failures, delay=retry_backoff(failures))
        elif retried:
            # The vendor answered; only some gifts are to be asked again. A short pause, not a
            # backoff: the room's other gifts keep flowing.
            self._room_release(room_id, failures=0, delay=datetime.timedelta(seconds=BACKOFF_FIRST_S))
        else:
            self._room_release(room_id, failures=0, delay=None)

    def _room_release(self, room_id: int, *, failures: int | None, delay: datetime.timedelta | None) -> None:
        """Let the room go; a failed call also pushes its next call back (the backoff)."""
        changes: dict[str, Any] = {"lease_until": None, "lease_owner": ""}
        if failures is not None:
            changes["failures"] = failures
        if delay is not None:
            changes["next_call_at"] = Now() + delay
        # Only our own claim: one that lapsed may belong to another relay by now.
        RelayRoom.objects.filter(room_id=room_id, lease_owner=self.owner).update(**changes)


# The code of a gift that failed every attempt without the vendor answering with a code of
# its own (timeouts, refused connections, HTML): our "delivery exception".
TRANSPORT_FAILURE_CODE = 10005
# The code of a gift failed before any call because the vendor could not take it: "delivery failed".
UNSENDABLE_CODE = 10003


def _due_at(state: RelayRoom | None) -> datetime.datetime | None:
    """When this room may be claimed next (None: now)."""
    if state is None:
        return None
    times = [moment for moment in (state.next_call_at, state.lease_until) if moment is not None]
    return max(times) if times else None


def _paused_until() -> datetime.datetime | None:
    return RelayHealth.objects.filter(pk=RelayHealth.ID).values_list("paused_until", flat=True).first()


def _delivery_answer(delivery: GameDelivery, answer: CallAnswer) -> tuple[int | None, str]:
    """This gift's code in the answer (0 delivered), and its message. None: no code of its own."""
    if answer.kind is AnswerKind.RESULTS:
        result = answer.results.get(delivery.vendor_msg_id)
        if result is None:
            return None, "the vendor's answer did not name this MsgId"
        return result
    return answer.code, answer.message or answer.kind.value


def _is_final(answer: CallAnswer, code: int) -> bool:
    """Whether this code settles the gift now: refusals and per-gift Results other than 10006 do."""
    if answer.kind is AnswerKind.REFUSED:
        return True
    return answer.kind is AnswerKind.RESULTS and code != vendor.RESULT_IN_PROGRESS


def _lock_still_pending(batch: list[GameDelivery]) -> set[int]:
    """Lock the deliveries of `batch` still pending under the MsgId it read; their pks.

    Another relay may have settled one meanwhile, or staff queued it again under a new MsgId.
    """
    return set(
        GameDelivery.objects.select_for_update()
        .filter(
            pk__in=[delivery.pk for delivery in batch],
            vendor_msg_id__in=[delivery.vendor_msg_id for delivery in batch],
            status=GameDelivery.Status.PENDING,
        )
        .values_list("pk", flat=True)
    )


@transaction.atomic
def _unsendable_fail(unsendable: list[tuple[GameDelivery, str]]) -> None:
    """Fail, without a call, gifts the vendor could never take (see relay.outbox.item_problem)."""
    still_pending = _lock_still_pending([delivery for delivery, _ in unsendable])
    _deliveries_fail(
        [(delivery, UNSENDABLE_CODE, problem) for delivery, problem in unsendable if delivery.pk in still_pending]
    )


def _deliveries_fail(failed: list[tuple[GameDelivery, int, str]]) -> None:
    """Mark deliveries failed, put each in the failed-delivery queue for staff, and tell the room."""
    events = GiftEvent.objects.select_related("sender", "gift", "receiver").in_bulk(
        [delivery.event_id for delivery, _, _ in failed]
    )
    by_room: dict[str, list[dict[str, Any]]] = defaultdict(list)
    metrics.FAILED_DELIVERIES.labels(source=FailedDelivery.Source.VENDOR).inc(len(failed))
    for delivery, code, message in failed:
        by_room[delivery.room_code].append({"seq": delivery.seq, "code": code, "message": message[:300]})
        event = events[delivery.event_id]
        failure = FailedDelivery.objects.create(
            source=FailedDelivery.Source.VENDOR,
            request_id=delivery.request_id,
            sender=event.sender,
            user_code=event.sender.user_id,
            room_id=delivery.room_id,
            mini_game_code=delivery.game_code,
            msg_id=event.msg_id,
            gift_code=event.gift.gift_id,
            receiver_code=event.receiver.user_id,
            value=event.value,
            num=event.num,
            code=code,
            message=(message or f"vendor code {code}")[:300],
            raw_item={**delivery.item, "MsgId": delivery.vendor_msg_id},
        )
        GameDelivery.objects.filter(pk=delivery.pk).update(
            status=GameDelivery.Status.FAILED, code=code, message=message[:300], failure=failure
        )
        logger.warning(
            "game delivery failed room=%s vendor_msg_id=%s code=%s: %s",
            delivery.room_code,
            delivery.vendor_msg_id,
            code,
            message,
        )
    for room_id, room_failed in by_room.items():
        # robust: the failure is recorded either way; a viewer who missed the message sees no effect, as before.
        transaction.on_commit(
            lambda room_id=room_id, room_failed=room_failed: broadcast.game_deliveries_failed(room_id, room_failed),
            robust=True,
        )


# --- staff ----------------------------------------------------------------------------------------


class RedeliverRefused(Exception):
    """Only a failed delivery can be delivered again."""


@transaction.atomic
def delivery_redeliver(*, delivery: GameDelivery, staff_user: Any) -> GameDelivery:
    """Queue a failed gift for the game again under a new vendor MsgId; nothing is charged again.

    ZEGO keeps a MsgId's first result for 24 hours, so the old one would only be refused again.
    The failed-delivery row it made is resolved by this.
    """
    delivery = GameDelivery.objects.select_for_update().get(pk=delivery.pk)
    if delivery.status != GameDelivery.Status.FAILED:
        raise RedeliverRefused(f"delivery {delivery.vendor_msg_id} is {delivery.status}, not failed")
    delivery.vendor_msg_id = vendor_msg_id_new(delivery.event_id)
    # A new MsgId may carry new content: an avatar the vendor refused gives way to today's default.
    user = delivery.item["UserInfo"]
    user["Avatar"] = vendor_avatar(user["Avatar"])
    delivery.status, delivery.attempts, delivery.code, delivery.message = GameDelivery.Status.PENDING, 0, None, ""
    delivery.save(update_fields=["vendor_msg_id", "item", "status", "attempts", "code", "message"])
    wakeup.relays_wake()
    if delivery.failure_id is not None:
        FailedDelivery.objects.filter(pk=delivery.failure_id, resolved_at__isnull=True).update(
            resolved_at=timezone.now(), resolved_by=staff_user
        )
    return delivery


def failed_delivery_redeliver(*, failed: FailedDelivery, staff_user: Any) -> GameDelivery:
    """ "Deliver again" from the failed-delivery queue: the game delivery that made this row."""
    delivery = GameDelivery.objects.filter(failure=failed).first()
    if delivery is None:
        raise RedeliverRefused("this failed delivery is not a game delivery")
    return delivery_redeliver(delivery=delivery, staff_user=staff_user)


def delivery_cancel(*, event_id: int, staff_user: Any = None) -> GameDelivery | None:
    """The gift was refunded: the game must not get it. Its delivery, if still owed, is cancelled.

    Runs inside the refund's transaction. A pending delivery is never sent after this
    commits; one whose call is in flight stays cancelled whatever the vendor answers (see
    `_lock_still_pending`), though the game may already show it. A failed one can no longer
    be delivered again, and its failed-delivery row is resolved by the refund.
    """
    delivery = GameDelivery.objects.select_for_update().filter(event_id=event_id).first()
    if delivery is None or delivery.status not in (GameDelivery.Status.PENDING, GameDelivery.Status.FAILED):
        return delivery
    delivery.status, delivery.message = GameDelivery.Status.CANCELLED, "the gift was refunded"
    delivery.save(update_fields=["status", "message"])
    if delivery.failure_id is not None:
        FailedDelivery.objects.filter(pk=delivery.failure_id, resolved_at__isnull=True).update(
            resolved_at=timezone.now(), resolved_by=staff_user
        )
    return delivery


def relay_resume() -> None:
    """Lift a pause now (staff fixed the credentials or the clock): the relays call again at once."""
    with transaction.atomic():
        _health_update(paused_until=None)
        wakeup.relays_wake()


# --- the vendor's game reports (callbacks) -------------------------------------------------------


def game_report_receive(
    *, report_id: str, report_type: int, room_id: str, mini_game_id: str, round_id: str, data: Any
) -> tuple[GameReport, bool]:
    """Apply a game report once: 1 starts the room's session of the game, 2 ends it.

    Returns the report and whether this call applied it; the same ReportId again changes
    nothing. Viewers get the `game` message of each change (gifts.services). An unknown
    room or game raises RoomUnavailable (7200004).
    """
    room = Room.objects.filter(room_id=room_id).first()
    mini_game = MiniGame.objects.filter(mini_game_id=mini_game_id).first()
    if room is None or mini_game is None:
        raise RoomUnavailable(f"room {room_id} or game {mini_game_id} not found")
    if (known := GameReport.objects.filter(report_id=report_id).first()) is not None:
        return known, False
    try:
        with transaction.atomic():
            # The report row first: a copy arriving at the same moment waits on its unique
            # ReportId and then fails, instead of applying the report a second time.
            report = GameReport.objects.create(
                report_id=report_id,
                report_type=report_type,
                room=room,
                mini_game=mini_game,
                round_id=round_id,
                data=data,
            )
            # One report of a room at a time: they open and close its one open session.
            Room.objects.select_for_update().filter(pk=room.pk).first()
            if report_type == GameReport.ReportType.STARTED:
                report.session = _game_started(room, mini_game)
            else:
                report.session = _game_settled(room, mini_game)
            report.save(update_fields=["session"])
    except IntegrityError:
        return GameReport.objects.get(report_id=report_id), False
    return report, True


def _game_started(room: Room, mini_game: MiniGame) -> GameSession:
    session = room_game_session(room)
    if session is not None and session.mini_game_id != mini_game.pk:
        game_session_end(session=session)  # the vendor says another game runs now
        session = None
    if session is None:
        session = game_session_open(room=room, mini_game=mini_game)
    if session.state == GameSession.State.WAITING:
        session = game_session_start(session=session)
    return session


def _game_settled(room: Room, mini_game: MiniGame) -> GameSession | None:
    session = room_game_session(room)
    if session is None or session.mini_game_id != mini_game.pk:
        return None  # already over: the report is kept, nothing changes
    return game_session_end(session=session)
