"""The gift catalog, rooms and their games, and the record of every gift sent."""

from django.conf import settings
from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import Q

from wallets.models import Profile, Transfer

MAX_PRICE = 10_000_000


class Gift(models.Model):
    class AnimationFormat(models.TextChoices):
        LOTTIE = "lottie", "Lottie"
        SVGA = "svga", "SVGA"
        VAP = "vap", "VAP"
        WEBP = "webp", "WebP"
        PNG = "png", "PNG"

    gift_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=64)
    # Capped so that price x Value x Num of the largest allowed send still fits a 64-bit integer.
    price = models.PositiveBigIntegerField(help_text="coins per gift", validators=[MaxValueValidator(MAX_PRICE)])
    # Absolute URLs or paths on this site (the demo gifts ship under /static/gifts/).
    icon = models.CharField(max_length=500, blank=True)
    animation_format = models.CharField(max_length=10, choices=AnimationFormat.choices, default=AnimationFormat.PNG)
    animation_url = models.CharField(max_length=500, blank=True)
    is_active = models.BooleanField(default=True)
    sort_order = models.IntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "price", "gift_id"]
        constraints = [
            models.CheckConstraint(condition=Q(price__gt=0, price__lte=MAX_PRICE), name="gift_price_in_range")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.gift_id})"


class MiniGame(models.Model):
    mini_game_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=64)
    relay = models.BooleanField(
        default=False, help_text="deliver this game's paid gifts to the game vendor (relay_game_gifts)"
    )

    def __str__(self) -> str:
        return self.mini_game_id


class ValueTier(models.Model):
    """A Value a gift may be sent with in a game, and the effect it summons (g1 x10 -> soldier)."""

    mini_game = models.ForeignKey(MiniGame, on_delete=models.CASCADE, related_name="tiers")
    gift = models.ForeignKey(Gift, on_delete=models.CASCADE, related_name="tiers")
    value = models.PositiveIntegerField()
    effect = models.CharField(max_length=64)

    class Meta:
        ordering = ["mini_game", "gift", "value"]
        constraints = [
            models.UniqueConstraint(fields=["mini_game", "gift", "value"], name="tier_unique_value"),
            models.CheckConstraint(condition=Q(value__gt=0), name="tier_value_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.mini_game} {self.gift.gift_id} x{self.value} -> {self.effect}"


class Room(models.Model):
    room_id = models.CharField(max_length=64, unique=True)
    host = models.ForeignKey(Profile, on_delete=models.PROTECT, related_name="hosted_rooms")
    title = models.CharField(max_length=120, blank=True)
    is_live = models.BooleanField(default=False)
    current_session = models.ForeignKey(
        "LiveSession", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The seq of the room's newest gift event. Bumped with UPDATE ... RETURNING inside the
    # gift transaction, whose row lock makes the sequence contiguous in commit order.
    last_seq = models.BigIntegerField(default=0)
    # The current live session's goal, if its host set one (engagement.models.Goal). It lives
    # on the room row so that the UPDATE numbering a batch's gifts returns it: that UPDATE
    # sees the row's newest version even after waiting for its lock, where a read of the
    # goal table in the same statement could miss a goal set meanwhile.
    goal = models.ForeignKey("engagement.Goal", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The room's side in the PK battle it is fighting now (engagement.models.PkSide), on the
    # room row for the same reason: the gift writer adds to its score.
    pk_side = models.ForeignKey("engagement.PkSide", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.room_id


class RoomCohost(models.Model):
    """Someone who hosts a room with its host: gifts may name them as receiver, and earn them the share."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="cohosts", db_index=False)
    profile = models.ForeignKey(Profile, on_delete=models.PROTECT, related_name="cohosted_rooms")
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # Also the index of a room's co-hosts, which leads with the room.
        constraints = [models.UniqueConstraint(fields=["room", "profile"], name="cohost_once_per_room")]

    def __str__(self) -> str:
        return f"{self.profile} co-hosts {self.room}"


class LiveSession(models.Model):
    """One broadcast: it starts each time the room goes live and scopes the `live` leaderboard."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="live_sessions")
    started_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.room} live #{self.pk}"


class GameSession(models.Model):
    class State(models.TextChoices):
        WAITING = "waiting", "waiting"
        STARTED = "started", "started"
        ENDED = "ended", "ended"

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="game_sessions")
    mini_game = models.ForeignKey(MiniGame, on_delete=models.PROTECT, related_name="sessions")
    state = models.CharField(max_length=10, choices=State.choices, default=State.WAITING)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    players = models.ManyToManyField(Profile, through="GamePlayer", related_name="game_sessions")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["room"], condition=~Q(state="ended"), name="game_one_open_session_per_room")
        ]

    def __str__(self) -> str:
        return f"{self.mini_game} in {self.room} ({self.state})"


class GamePlayer(models.Model):
    session = models.ForeignKey(GameSession, on_delete=models.CASCADE)
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE)
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["session", "profile"], name="game_player_once")]

    def __str__(self) -> str:
        return f"{self.profile} in {self.session}"


class GiftEvent(models.Model):
    """A room event, numbered within its room: a paid gift, the reversal of a refunded one, or
    the end of a PK battle the room fought.

    Written once, never changed. A reversal copies its gift's sender, receiver, gift and
    coins, is paid by the refund's transfer and takes the room's next seq, so a client that
    applies events in seq order keeps its totals right. A `pk_end` names its battle and
    nothing else: the gifts before it counted, the ones after it did not.
    """

    class Kind(models.TextChoices):
        GIFT = "gift", "gift"
        REVERSAL = "reversal", "reversal"
        PK_END = "pk_end", "end of a PK battle"

    # Indexed by the (room, seq) constraint and the (room, sender, -seq) index, which lead with it.
    room = models.ForeignKey(Room, on_delete=models.PROTECT, related_name="events", db_index=False)
    seq = models.BigIntegerField()
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.GIFT)
    # A reversal's gift; at most one reversal per gift, which the unique constraint guarantees.
    reverses = models.OneToOneField("self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversal")
    msg_id = models.CharField(max_length=128)
    # Indexed by `event_sender_day`, which leads with it.
    sender = models.ForeignKey(
        Profile, null=True, blank=True, on_delete=models.PROTECT, related_name="sent_gift_events", db_index=False
    )
    receiver = models.ForeignKey(
        Profile, null=True, blank=True, on_delete=models.PROTECT, related_name="received_gift_events"
    )
    gift = models.ForeignKey(Gift, null=True, blank=True, on_delete=models.PROTECT, related_name="events")
    game_session = models.ForeignKey(GameSession, null=True, blank=True, on_delete=models.PROTECT)
    # The live session whose leaderboard the gift counted towards (none for reversals), so a
    # refund takes the coins back from the very boards that counted them.
    live_session = models.ForeignKey(
        LiveSession, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    value = models.PositiveIntegerField()
    num = models.PositiveIntegerField()
    count = models.PositiveBigIntegerField(help_text="value x num")
    coins = models.PositiveBigIntegerField()
    effect = models.CharField(max_length=64, blank=True)
    # A gift's place in its sender's streak; 0 for a reversal, which ends the streak.
    combo = models.PositiveIntegerField(default=1)
    transfer = models.OneToOneField(
        Transfer, null=True, blank=True, on_delete=models.PROTECT, related_name="gift_event"
    )
    pk_battle = models.ForeignKey(
        "engagement.PkBattle", null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="event_seq_unique_in_room"),
            models.CheckConstraint(
                condition=Q(kind="gift", reverses__isnull=True)
                | Q(kind="reversal", reverses__isnull=False)
                | Q(kind="pk_end", reverses__isnull=True),
                name="event_reversal_names_its_gift",
            ),
            # Gifts and reversals move money between people; a PK's end names its battle.
            models.CheckConstraint(
                condition=Q(
                    kind__in=["gift", "reversal"],
                    sender__isnull=False,
                    receiver__isnull=False,
                    gift__isnull=False,
                    transfer__isnull=False,
                    pk_battle__isnull=True,
                )
                | Q(
                    kind="pk_end",
                    sender__isnull=True,
                    gift__isnull=True,
                    transfer__isnull=True,
                    pk_battle__isnull=False,
                ),
                name="event_kind_has_its_columns",
            ),
        ]
        indexes = [
            models.Index(fields=["room", "sender", "-seq"], name="event_sender_latest"),
            # What a sender spent today, for their daily spending limit.
            models.Index(fields=["sender", "created_at"], name="event_sender_day"),
        ]

    def __str__(self) -> str:
        if self.kind == self.Kind.PK_END:
            return f"{self.room} #{self.seq} end of PK #{self.pk_battle_id}"
        what = "reversal of " if self.kind == self.Kind.REVERSAL else ""
        return f"{self.room} #{self.seq} {what}{self.gift.gift_id} x{self.count}"


class HostGiftCount(models.Model):
    """The host's gift wall: how many of each gift they have received."""

    # Indexed by the (host, gift) constraint, which leads with it.
    host = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="gift_counts", db_index=False)
    gift = models.ForeignKey(Gift, on_delete=models.PROTECT, related_name="+")
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["host", "gift"], name="host_gift_count_unique")]

    def __str__(self) -> str:
        return f"{self.host} received {self.count} x {self.gift}"


class GiftReceipt(models.Model):
    """The final result of one MsgId, so that a retry is answered without moving money again.

    `scope` is who owns the MsgId space: `user:<pk>` for the viewer API, `app:<AppId>` for
    the server API.
    """

    scope = models.CharField(max_length=80)
    msg_id = models.CharField(max_length=128)
    sender = models.ForeignKey(Profile, on_delete=models.PROTECT, related_name="+")
    room = models.ForeignKey(Room, on_delete=models.PROTECT, related_name="+")
    # What the sender asked for, as sent: a retry must repeat it exactly.
    gift_code = models.CharField(max_length=64)
    receiver_code = models.CharField(max_length=64)
    value = models.PositiveBigIntegerField()
    num = models.PositiveBigIntegerField()
    result = models.PositiveIntegerField()
    message = models.CharField(max_length=300)
    event = models.OneToOneField(GiftEvent, null=True, blank=True, on_delete=models.PROTECT, related_name="receipt")
    coins_balance = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scope", "msg_id"], name="receipt_msg_id_once_per_scope")]

    def __str__(self) -> str:
        return f"{self.scope} {self.msg_id} -> {self.result}"


class ServerApp(models.Model):
    """A business server allowed to call the SendDanmakuGifts-compatible API."""

    app_id = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=100, blank=True)
    # Kept as given: the signature is md5(AppId + nonce + secret + timestamp), so it must be readable.
    secret = models.CharField(max_length=128)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.app_id} {self.name}".strip()


class FailedDelivery(models.Model):
    """A gift whose result was not 0, kept for staff to inspect, resolve or re-send."""

    class Source(models.TextChoices):
        VIEWER_API = "viewer", "viewer API"
        SERVER_API = "server", "server API"
        STAFF = "staff", "staff re-send"
        VENDOR = "vendor", "game vendor"

    source = models.CharField(max_length=10, choices=Source.choices)
    request_id = models.CharField(max_length=64)
    app = models.ForeignKey(ServerApp, null=True, blank=True, on_delete=models.PROTECT)
    sender = models.ForeignKey(Profile, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    user_code = models.CharField("UserId", max_length=64)
    room = models.ForeignKey(Room, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    mini_game_code = models.CharField("MiniGameId", max_length=64, blank=True)
    msg_id = models.CharField("MsgId", max_length=128)
    gift_code = models.CharField("GiftId", max_length=64)
    receiver_code = models.CharField("ReceiverId", max_length=64, blank=True)
    value = models.PositiveBigIntegerField()
    num = models.PositiveBigIntegerField()
    code = models.PositiveIntegerField()
    message = models.CharField(max_length=300)
    raw_item = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    resent_msg_id = models.CharField(max_length=128, blank=True)
    resend_result = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "failed deliveries"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["code", "-created_at"], name="failed_by_code")]

    def __str__(self) -> str:
        return f"{self.msg_id} -> {self.code}"
