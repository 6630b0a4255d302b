"""The ledger writer: the statements a batch of gifts runs, each written once for the whole batch.

A batch (one SendDanmakuGifts GiftList, or the REST sends waiting in a process) is decided
in Python by `gifts.services.gifts_send` and written here with a fixed number of
statements however many gifts it holds. They are plain SQL, not the ORM, because the ORM
has no multi-row upsert that adds to a column, no UPDATE that says what it wrote, and
building one ORM query costs more CPU (about 0.3 ms) than the database takes to run it.
Every statement is SQL that both PostgreSQL and SQLite (3.35+: RETURNING, row values) run,
so the demo and the test suite exercise the same path as production. Two differences: an
INSERT carries its rows as arrays through `unnest` on PostgreSQL (see `_insert`), and the
ledger's three writes are one statement there (`ledger_write`), three on SQLite.

Lock order, the same for every writer of money, so that two batches can wait for each
other but never deadlock:

1. MsgId advisory locks (PostgreSQL), taken with `pg_try_`: they never wait;
2. user accounts, in primary-key order (`accounts_lock`);
3. room rows, in primary-key order (`rooms_advance`);
4. upserted rows (leaderboards, gift walls), written in key order;
5. the rooms' goals, then their PK sides.

All are held until commit. Holding the room row until commit is what makes a room's seqs
contiguous in commit order: the next batch for the room cannot number its events before
this one is visible.

The statements, in the order a batch runs them:

Before the batch, a REST send's token names its person and their profile in one join
(`token_owner`, for the API's authentication); each request reads its room, host and open
game in one join (`room_with_open_game`), and a SendDanmakuGifts call its senders in one
read (`profiles_by_user_id`).

- `msg_ids_claim`: one SELECT of `pg_try_advisory_xact_lock` per MsgId over an array, so a
  duplicate in flight in another transaction is known at once (10006) instead of waited for.
- `receipts_find`: which MsgIds of the batch were already settled (row-value IN list).
- `gifts_active`, `platform_account_id`: the batch's gifts and the revenue account, read
  through a cursor because the ORM's query building costs several times the query.
- `accounts_lock`: SELECT ... ORDER BY id FOR UPDATE of every sender's coins (and what
  they owe, if a top-up of theirs was reversed) and of the earnings of every receiver the
  batch may credit (a share of 0 locks nothing), with their balances; the batch is decided
  against these. Holding a sender's coins is also what makes their daily spending limit
  exact: their next batch waits here, then reads what this one spent.
- `ledger_write`: every ledger row of the batch and each locked account's net change: on
  PostgreSQL one INSERT of the transfers with the entries' INSERT and the balances' UPDATE
  as data-modifying CTEs (SQLite: two INSERTs and an UPDATE).
- `rooms_advance`: one UPDATE ... RETURNING that adds each room's number of new events to
  `last_seq` and returns the new value, the live session, its goal and its side in a
  running PK battle (rooms locked in pk order first when there are several). It comes
  after the ledger, so a busy room's row is held for the shortest time.
- `combos_latest`: each (room, sender)'s newest event, through the index that serves
  `ORDER BY seq DESC LIMIT 1` per pair; read once the room is locked.
- `events_insert`: the room events, one INSERT ... RETURNING their ids. Each names the
  live session it counted towards, so that a refund (refunds.services) can take its coins
  back from the same boards.
- `rankings_add`, `gift_wall_add`: the leaderboards and the hosts' gift walls, one upsert
  each that adds in the database (`coins = coins + excluded.coins`).
- `goals_add`: where a room has a goal, one UPDATE ... FROM (VALUES ...) adds the batch's
  coins, or its count of the goal's gift, and RETURNs the new state for the viewers.
- `pk_scores_add`, `pk_battle_rooms`: where a room fights a PK battle, one UPDATE adds the
  batch's coins to its side's score (its supporters ride on `rankings_add` as the room's
  `pk` board), and one SELECT names the battles' rooms, whose viewers are told.
- `deliveries_insert`: the game deliveries of gifts to a relayed game (the relay's outbox,
  see relay.models), one INSERT, so that what the game is told is exactly what committed.
- `receipts_insert`: the settled MsgIds' receipts, last, since they name their events.
- `relays_notify`: where the batch queued game deliveries, a NOTIFY on PostgreSQL that
  PostgreSQL delivers to the listening relays when (and only if) the batch commits
  (relay.wakeup).

Outside any batch:

- `relays_listen`: the LISTEN each relay's own connection runs, so that it hears those
  NOTIFYs (relay.wakeup.Listener).
- `database_ping`: `SELECT 1`, the readiness probe's question to the database
  (gifting_site.health).
"""

import datetime
import functools
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import psycopg
from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from psycopg import sql
from rest_framework.authtoken.models import Token

from engagement.models import Goal, PkSide
from gifts.models import GameSession, Gift, GiftEvent, GiftReceipt, HostGiftCount, MiniGame, Room
from rankings.models import RankingEntry
from relay.models import GameDelivery
from wallets.models import Account, Entry, Profile, SpendingLimit, Transfer

# --- before the batch: the room a request names ------------------------------------------------

# Each model's columns a send reads, in its field order (which Model.from_db expects).
USER_COLUMNS = ("id", "username", "is_active")
ROOM_COLUMNS = ("id", "room_id", "host_id", "title", "is_live", "current_session_id", "last_seq")
PROFILE_COLUMNS = ("id", "login_id", "user_id", "nickname", "avatar", "sex")
GAME_SESSION_COLUMNS = ("id", "room_id", "mini_game_id", "state")
MINI_GAME_COLUMNS = ("id", "mini_game_id", "name", "relay")


def token_owner(key: str) -> tuple[Any, Profile | None] | None:
    """The user an API token belongs to, and their profile if they have one; None for an unknown token.

    Every REST send authenticates so and needs the profile next. The ORM's three-table join
    cost more CPU to build than the rest of the request's reads together, so this reads
    only the columns the API uses; any other field loads on first access.
    """
    user_model = get_user_model()
    selected = [*(f"u.{column}" for column in USER_COLUMNS), *(f"p.{column}" for column in PROFILE_COLUMNS)]
    cursor = _cursor()
    cursor.execute(
        f"SELECT {', '.join(selected)} FROM {Token._meta.db_table} t "
        f"JOIN {user_model._meta.db_table} u ON u.id = t.user_id "
        f"LEFT JOIN {Profile._meta.db_table} p ON p.login_id = u.id WHERE t.key = %s",
        [key],
    )
    row = cursor.fetchone()
    if row is None:
        return None
    user = user_model.from_db(connection.alias, USER_COLUMNS, row[: len(USER_COLUMNS)])
    profile_row = row[len(USER_COLUMNS) :]
    profile = Profile.from_db(connection.alias, PROFILE_COLUMNS, profile_row) if profile_row[0] is not None else None
    return user, profile


def room_with_open_game(room_id: str) -> tuple[Room, GameSession | None] | None:
    """The room with this public id, its host, and its game session that has not ended, if any.

    Every send reads these before its batch; one join through a cursor costs a tenth of the
    two ORM queries it replaces. Columns not read load on access, as with QuerySet.only().
    """
    selected = [
        *(f"r.{column}" for column in ROOM_COLUMNS),
        *(f"h.{column}" for column in PROFILE_COLUMNS),
        *(f"s.{column}" for column in GAME_SESSION_COLUMNS),
        *(f"m.{column}" for column in MINI_GAME_COLUMNS),
    ]
    cursor = _cursor()
    cursor.execute(
        f"SELECT {', '.join(selected)} FROM {Room._meta.db_table} r "
        f"JOIN {Profile._meta.db_table} h ON h.id = r.host_id "
        f"LEFT JOIN {GameSession._meta.db_table} s ON s.room_id = r.id AND s.state <> %s "
        f"LEFT JOIN {MiniGame._meta.db_table} m ON m.id = s.mini_game_id "
        "WHERE r.room_id = %s",
        [GameSession.State.ENDED, room_id],
    )
    row = cursor.fetchone()
    if row is None:
        return None
    values = iter(row)
    room, host, session, mini_game = [
        model.from_db(connection.alias, columns, [next(values) for _ in columns])
        for model, columns in (
            (Room, ROOM_COLUMNS),
            (Profile, PROFILE_COLUMNS),
            (GameSession, GAME_SESSION_COLUMNS),
            (MiniGame, MINI_GAME_COLUMNS),
        )
    ]
    room.is_live = bool(room.is_live)  # SQLite answers 0 or 1
    mini_game.relay = bool(mini_game.relay)
    room.host = host
    if session.pk is None:  # no open game: the LEFT JOIN's columns are all NULL
        return room, None
    session.room, session.mini_game = room, mini_game
    return room, session


def profiles_by_user_id(user_ids: Iterable[str]) -> dict[str, Profile]:
    """{UserId: person} of those of these UserIds who exist: a SendDanmakuGifts GiftList's senders.

    One cursor read, like the room's: the ORM's took a tenth of a 50-gift call's CPU.
    """
    return _loaded_by(Profile, PROFILE_COLUMNS, "user_id", user_ids)


# --- the batch ------------------------------------------------------------------------------------


def msg_ids_claim(keys: Sequence[str]) -> list[bool]:
    """Take each MsgId for this transaction; False where another transaction holds it now.

    SQLite runs one writer at a time, so there is nothing to claim there. A key repeated in
    the batch is claimed twice by the same transaction, which PostgreSQL allows.
    """
    if connection.vendor != "postgresql":
        return [True] * len(keys)
    cursor = _cursor()
    cursor.execute(
        "SELECT pg_try_advisory_xact_lock(hashtextextended(key, 0)) "
        "FROM unnest(%s::text[]) WITH ORDINALITY AS claims(key, position) ORDER BY position",
        [_array_literal(keys)],
    )
    return [row[0] for row in cursor.fetchall()]


def receipts_find(pairs: Iterable[tuple[str, str]]) -> list[int]:
    """The ids of the receipts of these (scope, msg_id) pairs that exist."""
    pairs = list(set(pairs))
    if not pairs:
        return []
    cursor = _cursor()
    cursor.execute(
        f"SELECT id FROM {GiftReceipt._meta.db_table} WHERE (scope, msg_id) IN (VALUES {_placeholders(2, len(pairs))})",
        _flat(pairs),
    )
    return [row[0] for row in cursor.fetchall()]


# In the model's field order, which Model.from_db expects.
GIFT_COLUMNS = ("id", "gift_id", "name", "price", "icon", "animation_format", "animation_url")


def gifts_active(gift_codes: Iterable[str]) -> dict[str, Gift]:
    """The active gifts among these codes, by code (the columns a send and its event need)."""
    return _loaded_by(Gift, GIFT_COLUMNS, "gift_id", gift_codes, condition="is_active")


def platform_account_id(kind: str) -> int | None:
    """The id of a platform account, read without a lock: platform accounts are never locked."""
    cursor = _cursor()
    cursor.execute(f"SELECT id FROM {Account._meta.db_table} WHERE profile_id IS NULL AND kind = %s", [kind])
    row = cursor.fetchone()
    return row[0] if row else None


# A SpendingLimit's columns, in its field order (which Model.from_db expects).
LIMIT_COLUMNS = ("id", "profile_id", "staff_daily_coins", "daily_coins", "raised_daily_coins", "raised_from")


def accounts_lock(
    *, coins_of: Iterable[int], earnings_of: Iterable[int]
) -> tuple[dict[tuple[int, str], tuple[int, int]], dict[int, SpendingLimit]]:
    """Lock these people's coins (and receivable, where they have one) and earnings accounts in
    pk order: ({(profile_id, kind): (id, balance)}, {profile_id: the senders' spending limits}).

    The limits ride on the same statement (a LEFT JOIN on the coins rows), so a batch
    learns who has one without a round trip of its own.
    """
    coins_of, earnings_of = sorted(set(coins_of)), sorted(set(earnings_of))
    lock = " FOR UPDATE OF a" if connection.features.has_select_for_update else ""
    conditions, params = [], []
    for kind, profile_ids in (
        (Account.Kind.COINS, coins_of),
        (Account.Kind.RECEIVABLE, coins_of),
        (Account.Kind.EARNINGS, earnings_of),
    ):
        if profile_ids:
            conditions.append(f"(a.kind = %s AND a.profile_id IN ({_in_list(len(profile_ids))}))")
            params += [str(kind), *profile_ids]
    cursor = _cursor()
    cursor.execute(
        f"SELECT a.id, a.profile_id, a.kind, a.balance, {', '.join(f'l.{column}' for column in LIMIT_COLUMNS)} "
        f"FROM {Account._meta.db_table} a LEFT JOIN {SpendingLimit._meta.db_table} l "
        "ON l.profile_id = a.profile_id AND a.kind = %s "
        f"WHERE {' OR '.join(conditions)} ORDER BY a.id{lock}",
        [str(Account.Kind.COINS), *params],
    )
    balances, limits = {}, {}
    for account_id, profile_id, kind, balance, *limit in cursor:
        balances[(profile_id, kind)] = (account_id, balance)
        if limit[0] is not None:
            limit[-1] = _datetime_from_db(limit[-1])  # raised_from
            limits[profile_id] = SpendingLimit.from_db(connection.alias, LIMIT_COLUMNS, limit)
    return balances, limits


class RoomAdvance(NamedTuple):
    first_seq: int  # the first of the room's new seqs
    live_session_id: int | None
    goal_id: int | None  # the live session's goal, which counts these gifts (goals_add)
    pk_side_id: int | None  # the room's side in a running PK battle (pk_scores_add)


def rooms_advance(new_events: dict[int, int]) -> dict[int, RoomAdvance]:
    """Give each room `n` more seqs: {room pk: its first new seq, live session, goal and PK side}."""
    table = Room._meta.db_table
    room_ids = sorted(new_events)
    cursor = _cursor()
    if len(room_ids) > 1 and connection.features.has_select_for_update:
        # One UPDATE may lock its rows in any order; lock them in pk order first. NO KEY, as
        # the UPDATE itself locks: a plain FOR UPDATE would also wait for, and deadlock with,
        # the key-share locks other transactions' foreign keys take on the room at commit.
        cursor.execute(
            f"SELECT id FROM {table} WHERE id IN ({_in_list(len(room_ids))}) ORDER BY id FOR NO KEY UPDATE",
            room_ids,
        )
    cursor.execute(
        f"UPDATE {table} SET last_seq = last_seq + CASE id {' '.join(['WHEN %s THEN %s'] * len(room_ids))} END "
        f"WHERE id IN ({_in_list(len(room_ids))}) RETURNING id, last_seq, current_session_id, goal_id, pk_side_id",
        [*_flat((room_id, new_events[room_id]) for room_id in room_ids), *room_ids],
    )
    return {
        room_id: RoomAdvance(last_seq - new_events[room_id] + 1, *room)
        for room_id, last_seq, *room in cursor.fetchall()
    }


def combos_latest(
    pairs: Iterable[tuple[int, int]], *, since: datetime.datetime
) -> dict[tuple[int, int], tuple[int, int]]:
    """{(room pk, sender pk): (gift pk, combo)} of each pair's newest event, where it is newer than `since`.

    Each column is a scalar subquery per pair through the index that serves `ORDER BY seq
    DESC LIMIT 1` (`event_sender_latest`): a few index probes per pair whatever the table's
    size. Joining the newest events' ids back to the table instead let PostgreSQL hash every
    event newer than `since`, a scan that grew with the table (4.7 ms for a 50-gift batch
    over 16,000 events).
    """
    pairs = sorted(set(pairs))
    table = GiftEvent._meta.db_table
    newest = ", ".join(
        f"(SELECT latest.{column} FROM {table} latest WHERE latest.room_id = pair.column1 "
        "AND latest.sender_id = pair.column2 ORDER BY latest.seq DESC LIMIT 1)"
        for column in ("gift_id", "combo", "created_at")
    )
    cursor = _cursor()
    cursor.execute(
        f"SELECT pair.column1, pair.column2, {newest} FROM (VALUES {_placeholders(2, len(pairs))}) AS pair",
        _flat(pairs),
    )
    return {
        (room_id, sender_id): (gift_id, combo)
        for room_id, sender_id, gift_id, combo, created_at in cursor.fetchall()
        if gift_id is not None and _datetime_from_db(created_at) >= since
    }


class LedgerEntry(NamedTuple):
    transfer_reference: str  # the entry's transfer, written in the same call
    account_id: int
    amount: int
    balance_after: int | None  # None for platform accounts, which keep no running balance


def ledger_write(
    transfers: Sequence[tuple[str, str, str]],
    entries: Sequence[LedgerEntry],
    balance_changes: dict[int, int],
    *,
    at: datetime.datetime,
) -> dict[str, int]:
    """Write (kind, reference, memo) transfers, their entries, and each locked account's net change.

    Returns {reference: transfer id}; references are unique, so they key the ids. On
    PostgreSQL this is one statement: the INSERT of the entries and the UPDATE of the
    balances are data-modifying CTEs beside the transfers' INSERT, joined to its RETURNING
    by reference. The accounts are locked already (`accounts_lock`), so the UPDATE's order
    cannot deadlock. SQLite has no data-modifying CTEs and runs the three statements.
    """
    changes = {account_id: change for account_id, change in balance_changes.items() if change}
    if connection.vendor != "postgresql":
        transfer_ids = _transfers_insert(transfers, at=at)
        _entries_insert(
            [
                (transfer_ids[entry.transfer_reference], entry.account_id, entry.amount, entry.balance_after)
                for entry in entries
            ],
            at=at,
        )
        _balances_add(changes)
        return transfer_ids
    created_at = _datetime(at)
    cursor = _cursor()
    cursor.execute(
        f"WITH transfer AS (INSERT INTO {Transfer._meta.db_table} (kind, reference, memo, created_at) "
        f"{_unnest_source(Transfer, ('kind', 'reference', 'memo', 'created_at'))} RETURNING id, reference), "
        f"entry AS (INSERT INTO {Entry._meta.db_table} (transfer_id, account_id, amount, balance_after, created_at) "
        "SELECT transfer.id, e.account_id, e.amount, e.balance_after, %s FROM unnest("
        f"{_unnest_casts(Entry, ('account_id', 'amount', 'balance_after'))}, %s::text[]) WITH ORDINALITY "
        "AS e(account_id, amount, balance_after, reference, position) "
        "JOIN transfer ON transfer.reference = e.reference ORDER BY e.position), "
        f"balance AS (UPDATE {Account._meta.db_table} account SET balance = account.balance + change.amount "
        f"FROM unnest({_unnest_casts(Account, ('id', 'balance'))}) AS change(id, amount) "
        "WHERE account.id = change.id) "
        "SELECT id, reference FROM transfer",
        [
            *(_array_literal(column) for column in _columns([(*transfer, created_at) for transfer in transfers], 4)),
            created_at,
            *(_array_literal(column) for column in _columns([(*entry[1:], entry[0]) for entry in entries], 4)),
            *(_array_literal(column) for column in _columns(sorted(changes.items()), 2)),
        ],
    )
    return {reference: transfer_id for transfer_id, reference in cursor.fetchall()}


EVENT_COLUMNS = (
    "room_id",
    "seq",
    "kind",
    "msg_id",
    "sender_id",
    "receiver_id",
    "gift_id",
    "game_session_id",
    "live_session_id",
    "value",
    "num",
    "count",
    "coins",
    "effect",
    "combo",
    "transfer_id",
    "created_at",
)


def events_insert(events: Sequence[GiftEvent]) -> None:
    """Insert the batch's room events and give each instance its id."""
    # created_at comes last in EVENT_COLUMNS; it is the one value the database needs adapted.
    rows = [
        [*(getattr(event, column) for column in EVENT_COLUMNS[:-1]), _datetime(event.created_at)] for event in events
    ]
    returned = _insert(GiftEvent, EVENT_COLUMNS, rows, returning="id, room_id, seq")
    ids = {(room_id, seq): event_id for event_id, room_id, seq in returned}
    for event in events:
        event.pk = ids[(event.room_id, event.seq)]
        event._state.adding, event._state.db = False, connection.alias


DELIVERY_COLUMNS = ("event_id", "room_id", "mini_game_id", "seq", "vendor_msg_id", "item", "status", "attempts")


def deliveries_insert(rows: Sequence[tuple[Any, ...]], *, at: datetime.datetime) -> None:
    """Insert pending game deliveries, given in DELIVERY_COLUMNS order without the columns that start empty.

    `item` is JSON text: on PostgreSQL it travels in a text array cast to jsonb.
    """
    created_at = _datetime(at)
    _insert(
        GameDelivery,
        (*DELIVERY_COLUMNS, "message", "request_id", "created_at"),
        [(*row, GameDelivery.Status.PENDING.value, 0, "", "", created_at) for row in rows],
    )


def relays_notify(channel: str) -> None:
    """NOTIFY `channel` when the transaction under way commits (PostgreSQL only)."""
    _cursor().execute("SELECT pg_notify(%s, '')", [channel])


def relays_listen(listener: psycopg.Connection, channel: str) -> None:
    """LISTEN on `channel` with `listener`, an autocommit connection of the relay's own."""
    listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))


def database_ping() -> bool:
    """Whether the database answers a query: the readiness probe."""
    cursor = _cursor()
    cursor.execute("SELECT 1")
    return cursor.fetchone() == (1,)


RECEIPT_COLUMNS = (
    "scope",
    "msg_id",
    "sender_id",
    "room_id",
    "gift_code",
    "receiver_code",
    "value",
    "num",
    "result",
    "message",
    "event_id",
    "coins_balance",
    "created_at",
)


def receipts_insert(rows: Sequence[tuple[Any, ...]], *, at: datetime.datetime) -> None:
    """Insert settled MsgIds' receipts, given in RECEIPT_COLUMNS order without created_at."""
    created_at = _datetime(at)
    _insert(GiftReceipt, RECEIPT_COLUMNS, [(*row, created_at) for row in rows])


def rankings_add(totals: dict[tuple[int, str, str, int], int], *, at: datetime.datetime) -> None:
    """Add coins to senders' leaderboard rows: {(room pk, period, period_key, profile pk): coins}."""
    table = RankingEntry._meta.db_table
    reached_at = _datetime(at)
    _insert(
        RankingEntry,
        ("room_id", "period", "period_key", "profile_id", "coins", "reached_at"),
        [(*key, totals[key], reached_at) for key in sorted(totals)],
        on_conflict=(
            "(room_id, period, period_key, profile_id) "
            f"DO UPDATE SET coins = {table}.coins + excluded.coins, reached_at = excluded.reached_at"
        ),
    )


def gift_wall_add(counts: dict[tuple[int, int], int]) -> None:
    """Add to hosts' received counts: {(host pk, gift pk): count}."""
    table = HostGiftCount._meta.db_table
    _insert(
        HostGiftCount,
        ("host_id", "gift_id", "count"),
        [(*key, counts[key]) for key in sorted(counts)],
        on_conflict=f"(host_id, gift_id) DO UPDATE SET count = {table}.count + excluded.count",
    )


# In the model's field order (which Model.from_db expects): what viewers are told of a goal.
GOAL_COLUMNS = ("id", "room_id", "title", "target", "gift_id", "progress", "reached_at", "version")


def goals_add(rows: Sequence[tuple[int, int, int, int]], *, at: datetime.datetime) -> list[Goal]:
    """Count gifts towards goals: (goal pk, gift pk, coins, count) each, negative to take one back.

    A goal adds the coins of its rows, or the count of its rows of its own gift; it notes
    when it first reached its target and takes a new version. The goal's gift is read in
    the statement itself, which runs after the rooms are locked, so it is the gift of the
    goal as it stands (engagement.services changes goals under the same room lock). Returns
    the goals that changed, with GOAL_COLUMNS loaded.
    """
    table = Goal._meta.db_table
    cursor = _cursor()
    cursor.execute(
        f"UPDATE {table} SET progress = {table}.progress + counted.amount, reached_at = CASE "
        f"WHEN {table}.reached_at IS NULL AND {table}.progress + counted.amount >= {table}.target THEN %s "
        f"ELSE {table}.reached_at END, version = {table}.version + 1, updated_at = %s "
        "FROM (SELECT goal.id AS goal_id, SUM(CASE WHEN goal.gift_id IS NULL THEN sent.column3 "
        "WHEN goal.gift_id = sent.column2 THEN sent.column4 ELSE 0 END) AS amount "
        f"FROM (VALUES {_placeholders(4, len(rows))}) AS sent JOIN {table} goal ON goal.id = sent.column1 "
        "GROUP BY goal.id) AS counted "
        f"WHERE {table}.id = counted.goal_id AND counted.amount <> 0 "
        f"RETURNING {', '.join(f'{table}.{column}' for column in GOAL_COLUMNS)}",
        [_datetime(at), _datetime(at), *_flat(rows)],
    )
    goals = []
    for row in cursor.fetchall():
        row = list(row)
        row[6] = _datetime_from_db(row[6])  # reached_at
        goals.append(Goal.from_db(connection.alias, GOAL_COLUMNS, row))
    return goals


def pk_scores_add(changes: dict[int, int], *, at: datetime.datetime) -> set[int]:
    """Add coins to PK sides' scores, {side pk: coins} (negative to take back); the battles they belong to.

    The sides are those the rooms' rows named under their locks: a battle's end clears them
    under the same locks, so no gift is added after its room's `pk_end`.
    """
    changes = {side_id: coins for side_id, coins in changes.items() if coins}
    if not changes:
        return set()
    cursor = _cursor()
    cursor.execute(
        f"UPDATE {PkSide._meta.db_table} SET score = score + CASE id "
        f"{' '.join(['WHEN %s THEN %s'] * len(changes))} END, updated_at = %s "
        f"WHERE id IN ({_in_list(len(changes))}) RETURNING battle_id",
        [*_flat(sorted(changes.items())), _datetime(at), *sorted(changes)],
    )
    return {row[0] for row in cursor.fetchall()}


def pk_battle_rooms(battle_ids: Iterable[int]) -> dict[int, list[str]]:
    """{battle pk: the public ids of its rooms}: whom to tell that a batch moved its scores."""
    battle_ids = sorted(set(battle_ids))
    rooms: dict[int, list[str]] = {battle_id: [] for battle_id in battle_ids}
    cursor = _cursor()
    cursor.execute(
        f"SELECT s.battle_id, r.room_id FROM {PkSide._meta.db_table} s "
        f"JOIN {Room._meta.db_table} r ON r.id = s.room_id "
        f"WHERE s.battle_id IN ({_in_list(len(battle_ids))}) ORDER BY s.id",
        battle_ids,
    )
    for battle_id, room_id in cursor.fetchall():
        rooms[battle_id].append(room_id)
    return rooms


# --- the ledger's three statements where a single one cannot run (SQLite) -------------------------


def _transfers_insert(rows: Sequence[tuple[str, str, str]], *, at: datetime.datetime) -> dict[str, int]:
    """Insert (kind, reference, memo) transfers; {reference: id}. References are unique, so they key the ids."""
    returned = _insert(
        Transfer,
        ("kind", "reference", "memo", "created_at"),
        [(kind, reference, memo, _datetime(at)) for kind, reference, memo in rows],
        returning="id, reference",
    )
    return {reference: transfer_id for transfer_id, reference in returned}


def _entries_insert(rows: Sequence[tuple[int, int, int, int | None]], *, at: datetime.datetime) -> None:
    """Insert (transfer_id, account_id, amount, balance_after) ledger entries."""
    created_at = _datetime(at)
    _insert(
        Entry,
        ("transfer_id", "account_id", "amount", "balance_after", "created_at"),
        [(*row, created_at) for row in rows],
    )


def _balances_add(changes: dict[int, int]) -> None:
    """Add each locked account's net change: one UPDATE, whose order cannot deadlock as the rows are locked."""
    changes = {account_id: change for account_id, change in changes.items() if change}
    if not changes:
        return
    cursor = _cursor()
    cursor.execute(
        f"UPDATE {Account._meta.db_table} SET balance = balance + CASE id "
        f"{' '.join(['WHEN %s THEN %s'] * len(changes))} END "
        f"WHERE id IN ({_in_list(len(changes))})",
        [*_flat(changes.items()), *changes],
    )


# --- helpers --------------------------------------------------------------------------------------


def _insert(
    model: Any, columns: Sequence[str], rows: Sequence[Sequence[Any]], returning: str = "", on_conflict: str = ""
) -> list[tuple]:
    """One INSERT of all `rows`, in the order given (upserts rely on it for their lock order).

    On PostgreSQL the rows travel as one array per column through `unnest`: the statement
    then has one placeholder per column whatever the batch size, so psycopg composes it from
    its cache instead of splitting a string with hundreds of placeholders (the biggest CPU
    cost of a large batch before). Each array goes as its text literal (`_array_literal`).
    SQLite has no arrays and takes a multi-row VALUES.
    """
    if connection.vendor == "postgresql":
        source = _unnest_source(model, tuple(columns))
        params = [_array_literal(column) for column in zip(*rows, strict=True)]
    else:
        source, params = f"VALUES {_placeholders(len(columns), len(rows))}", _flat(rows)
    cursor = _cursor()
    cursor.execute(
        f"INSERT INTO {model._meta.db_table} ({', '.join(columns)}) {source}"
        + (f" ON CONFLICT {on_conflict}" if on_conflict else "")
        + (f" RETURNING {returning}" if returning else ""),
        params,
    )
    return cursor.fetchall() if returning else []


@functools.cache
def _unnest_source(model: Any, columns: tuple[str, ...]) -> str:
    """`SELECT * FROM unnest(%s::bigint[], ...)` for these columns: the same for every batch."""
    return f"SELECT * FROM unnest({_unnest_casts(model, columns)})"


@functools.cache
def _unnest_casts(model: Any, columns: tuple[str, ...]) -> str:
    """`%s::bigint[], %s::varchar(10)[]`: one array placeholder for each of these columns, of its type."""
    fields = {field.column: field for field in model._meta.concrete_fields}
    return ", ".join(f"%s::{fields[column].db_type(connection)}[]" for column in columns)


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[tuple[Any, ...]]:
    """The rows' columns, `width` of them even when there are no rows."""
    return list(zip(*rows, strict=True)) if rows else [()] * width


def _cursor() -> CursorWrapper:
    """The cursor every statement here runs on: one per database connection, kept between statements.

    Django makes a new cursor for each `connection.cursor()`, which costs more CPU (about
    50 µs) than a simple statement's round trip; a batch runs 14 or more statements. The
    cursor is made again when the connection is a new one (reconnected, or another from
    the pool) or when Django starts or stops logging queries (a debug cursor records them).
    Every function here reads its rows before returning, so statements never share results.
    """
    db = connections[DEFAULT_DB_ALIAS]  # the thread's own wrapper: `connection` looks it up on every attribute
    cursor = getattr(db, "_writer_cursor", None)
    if (
        cursor is None
        or db.connection is None  # closed: db.cursor() connects again
        or cursor.cursor.connection is not db.connection
        or isinstance(cursor, CursorDebugWrapper) != db.queries_logged
    ):
        cursor = db._writer_cursor = db.cursor()
    return cursor


def _array_literal(values: Iterable[Any]) -> str:
    """PostgreSQL's text form of an array of these values, `{"1","a \\"b\\"",NULL}`, cast by the statement.

    psycopg adapts a Python list element by element in Python, finding the elements' type
    first, about 15 µs per list even of one value: 0.8 ms of the 4.8 ms a one-gift batch
    cost. An integer goes as its digits; every other element is double-quoted with its
    backslashes and double quotes escaped, which PostgreSQL's array input reads back
    exactly for every element type the writer sends (text, JSON text, timestamps,
    booleans); psycopg then quotes the whole string as one SQL literal.
    """
    return "{" + ",".join(map(_array_element, values)) + "}"


def _array_element(value: Any) -> str:
    if value is None:
        return "NULL"
    if type(value) is int:  # digits and a sign need no quotes (bool, an int subclass, is quoted)
        return str(value)
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _placeholders(width: int, count: int) -> str:
    """`(%s, %s), (%s, %s)` for count rows of width values."""
    row = f"({', '.join(['%s'] * width)})"
    return ", ".join([row] * count)


def _loaded_by(model: Any, columns: Sequence[str], key: str, values: Iterable[Any], condition: str = "") -> dict:
    """{key: instance} of the rows whose `key` is among `values` (and that meet `condition`).

    Only `columns` are read, in the model's field order (which Model.from_db expects); the
    others load on access, as with QuerySet.only().
    """
    values = sorted(set(values))
    cursor = _cursor()
    cursor.execute(
        f"SELECT {', '.join(columns)} FROM {model._meta.db_table} WHERE {key} IN ({_in_list(len(values))})"
        + (f" AND {condition}" if condition else ""),
        values,
    )
    instances = (model.from_db(connection.alias, columns, row) for row in cursor.fetchall())
    return {getattr(instance, key): instance for instance in instances}


def _in_list(count: int) -> str:
    return ", ".join(["%s"] * count)


def _flat(rows: Iterable[Iterable[Any]]) -> list[Any]:
    return [value for row in rows for value in row]


def _datetime(value: datetime.datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


def _datetime_from_db(value: Any) -> datetime.datetime | None:
    """A datetime column read through a cursor: SQLite answers it naive (in UTC), PostgreSQL aware."""
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return value
