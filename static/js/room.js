/*
 * Giftstream room page: the live socket, the gift feed, gift animations, the leaderboard
 * and the gift panel. Plain JavaScript, no build step.
 *
 * Ordering rule: the server numbers a room's gifts 1, 2, 3 ... (`seq`). The page keeps
 * `lastSeq`, the highest seq up to which it has seen every gift, and only ever advances it
 * by one. A gift that arrives early waits in `pending`; a gap makes the page ask for a
 * replay (`resync`); after a drop the page reconnects with `since=lastSeq`. The feed and
 * the animations skip any seq they have shown already, so replays never duplicate.
 */
(function () {
  "use strict";

  const stateNode = document.getElementById("room-state");
  if (!stateNode) return;
  const state = JSON.parse(stateNode.textContent);

  const FEED_LIMIT = 60;
  const BACKOFF_START_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  const PING_EVERY_MS = 20000;
  const SILENCE_LIMIT_MS = 50000;
  const RESYNC_RETRY_MS = 3000;
  const BANNER_LANES = 2;
  const QUEUE_LIMIT = 24;
  // Gifts worth at least this many coins take the whole stage instead of a banner.
  const BIG_GIFT_COINS = 100;

  const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)");

  const $ = (id) => document.getElementById(id);
  const fmt = (n) => Number(n).toLocaleString("en-US");
  const initial = (name) => (name || "?").trim().charAt(0).toUpperCase() || "?";

  /* Builds an element without innerHTML, so nicknames and gift names are never parsed as HTML. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function newMsgId() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
    // randomUUID exists only on secure origins; plain-http LAN demos still get a v4 UUID.
    const bytes = window.crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  /* ---------------------------------------------------------------- feed ------ */

  const feed = $("feed");
  const shown = new Set(); // seqs in the feed (or already animated): never twice

  function feedItem(event) {
    if (event.kind === "reversal") return reversalItem(event);
    if (event.kind === "pk_end") return pkEndItem(event);
    return el(
      "li",
      { class: "feed-item feed-item-new", "data-seq": event.seq, "data-msg-id": event.msg_id },
      el("span", { class: "avatar", "aria-hidden": "true", text: initial(event.sender.nickname) }),
      el(
        "span",
        { class: "feed-text" },
        el("strong", { class: "feed-sender", text: event.sender.nickname }),
        " sent ",
        el("img", { class: "feed-icon", src: event.gift.icon, alt: "" }),
        " ",
        el("span", { class: "feed-gift", text: event.gift.name }),
        " ",
        el("span", { class: "feed-count", text: `×${fmt(event.count)}` }),
        event.effect ? " " : null,
        event.effect ? el("span", { class: "feed-effect", text: event.effect }) : null
      ),
      event.combo > 1 ? el("span", { class: "combo", text: `x${event.combo}` }) : null
    );
  }

  /* A refund: the gift's coins went back to its sender, and the room's totals go down. */
  function reversalItem(event) {
    return el(
      "li",
      {
        class: "feed-item feed-item-new feed-reversal",
        "data-seq": event.seq,
        "data-msg-id": event.msg_id,
        "data-reverses-seq": event.reverses_seq,
      },
      el("span", { class: "avatar", "aria-hidden": "true", text: "↩" }),
      el(
        "span",
        { class: "feed-text" },
        el("strong", { class: "feed-sender", text: event.sender.nickname }),
        "'s ",
        el("span", { class: "feed-gift", text: event.gift.name }),
        " ",
        el("span", { class: "feed-count", text: `×${fmt(event.count)}` }),
        " was refunded ",
        el("span", { class: "feed-refunded-coins", text: `−${fmt(event.coins)}` })
      )
    );
  }

  /* The end of a PK battle: the gifts above it counted, the ones after it do not. */
  function pkEndItem(event) {
    return el(
      "li",
      { class: "feed-item feed-item-new feed-pk-end", "data-seq": event.seq },
      el("span", { class: "avatar", "aria-hidden": "true", text: "⚔" }),
      el("span", { class: "feed-text" }, "PK battle over")
    );
  }

  /* Strike through the gift a reversal took back, if the feed still shows it. */
  function feedMarkRefunded(seq) {
    const item = feed.querySelector(`.feed-item[data-seq="${seq}"]:not(.feed-reversal):not(.feed-goal)`);
    if (item) item.classList.add("is-refunded");
  }

  /* Newest first; a late event still lands in seq order. */
  function feedInsert(event) {
    if (shown.has(event.seq)) return false;
    shown.add(event.seq);
    const empty = feed.querySelector(".feed-empty");
    if (empty) empty.remove();
    const item = feedItem(event);
    let before = null;
    for (const existing of feed.children) {
      if (Number(existing.dataset.seq) < event.seq) {
        before = existing;
        break;
      }
    }
    feed.insertBefore(item, before);
    while (feed.children.length > FEED_LIMIT) feed.lastElementChild.remove();
    if (event.kind === "reversal") feedMarkRefunded(event.reverses_seq);
    return true;
  }

  function feedReset(events) {
    feed.replaceChildren();
    shown.clear();
    if (!events.length) feed.append(el("li", { class: "feed-empty muted", text: "No gifts yet. Be the first!" }));
    for (const event of events) feedInsert(event);
    for (const item of feed.querySelectorAll(".feed-item-new")) item.classList.remove("feed-item-new");
  }

  /* ---------------------------------------------------------- animations ------ */

  /*
   * Many gifts can arrive in one burst. Each gift becomes an item in a short queue; a gift
   * from the same sender of the same gift merges into the item already waiting (or already
   * on screen, which then counts up), so the page never plays more than a few animations at
   * once and never falls behind the room.
   */
  const stage = $("gift-stage");
  const queue = [];
  const playing = new Map(); // merge key -> {node, item, timer}
  let spotlightBusy = false;

  function animKey(event) {
    return `${event.sender.user_id}|${event.gift.gift_id}`;
  }

  function animEnqueue(event) {
    if (!stage) return;
    const key = animKey(event);
    const onScreen = playing.get(key);
    if (onScreen) {
      onScreen.item.count += event.count;
      onScreen.item.combo = Math.max(onScreen.item.combo, event.combo);
      animRefresh(onScreen);
      return;
    }
    const waiting = queue.find((item) => item.key === key);
    if (waiting) {
      waiting.count += event.count;
      waiting.combo = Math.max(waiting.combo, event.combo);
      waiting.big = waiting.big || event.coins >= BIG_GIFT_COINS;
    } else {
      queue.push({
        key,
        sender: event.sender,
        gift: event.gift,
        count: event.count,
        combo: event.combo,
        effect: event.effect,
        big: event.coins >= BIG_GIFT_COINS,
      });
      // Under a flood, the oldest small gifts give way; the feed still lists every one.
      while (queue.length > QUEUE_LIMIT) {
        const index = queue.findIndex((item) => !item.big);
        queue.splice(index === -1 ? 0 : index, 1);
      }
    }
    animPump();
  }

  function animPump() {
    let bannersOnScreen = 0;
    for (const entry of playing.values()) if (!entry.item.big) bannersOnScreen += 1;
    for (let i = 0; i < queue.length; ) {
      const item = queue[i];
      if (item.big && !spotlightBusy) {
        queue.splice(i, 1);
        animPlay(item);
      } else if (!item.big && bannersOnScreen < BANNER_LANES) {
        queue.splice(i, 1);
        bannersOnScreen += 1;
        animPlay(item);
      } else {
        i += 1;
      }
    }
  }

  function animCaption(item) {
    return el(
      "span",
      { class: "gift-anim-caption" },
      el("strong", { text: item.sender.nickname }),
      el("span", { class: "gift-anim-line", text: `sent ${item.gift.name}${item.effect ? ` · ${item.effect}` : ""}` })
    );
  }

  function animPlay(item) {
    const reduced = reducedMotion.matches;
    const lane = item.big ? "spotlight" : "banner";
    const icon = el("span", { class: "gift-anim-icon" }, el("img", { src: item.gift.icon, alt: "" }));
    const node = el(
      "div",
      {
        class: `gift-anim gift-anim-${lane}${reduced ? " gift-anim-reduced" : ""}`,
        "data-gift-id": item.gift.gift_id,
        "data-sender": item.sender.user_id,
      },
      item.big ? null : el("span", { class: "avatar", "aria-hidden": "true", text: initial(item.sender.nickname) }),
      item.big ? icon : animCaption(item),
      item.big ? animCaption(item) : icon,
      el("span", { class: "gift-anim-count" })
    );
    if (item.big) spotlightBusy = true;
    lottieInto(icon, item.gift);
    stage.append(node);
    const entry = { node, item, timer: null };
    playing.set(item.key, entry);
    animRefresh(entry, true);
  }

  function animRefresh(entry, first) {
    const { node, item } = entry;
    const count = node.querySelector(".gift-anim-count");
    count.textContent = item.combo > 1 ? `×${fmt(item.count)}  x${item.combo}` : `×${fmt(item.count)}`;
    if (!first) {
      count.classList.remove("bump");
      void count.offsetWidth; // restart the bump animation
      count.classList.add("bump");
    }
    // A merged gift keeps the animation on screen a little longer, as a combo counter does.
    const duration = reducedMotion.matches ? 1800 : item.big ? 3200 : 2600;
    clearTimeout(entry.timer);
    entry.timer = setTimeout(() => animFinish(entry), duration);
  }

  function animFinish(entry) {
    entry.node.classList.add("gift-anim-leaving");
    playing.delete(entry.item.key);
    if (entry.item.big) spotlightBusy = false;
    setTimeout(() => entry.node.remove(), reducedMotion.matches ? 0 : 350);
    animPump();
  }

  /* lottie-web is optional: when an operator installs it, Lottie gifts play their own animation. */
  function lottieInto(container, gift) {
    const animation = gift.animation || {};
    if (!window.lottie || animation.format !== "lottie" || !animation.url || reducedMotion.matches) return;
    const box = el("span", { class: "gift-anim-lottie" });
    container.append(box);
    try {
      const player = window.lottie.loadAnimation({
        container: box,
        renderer: "svg",
        loop: true,
        autoplay: true,
        path: animation.url,
      });
      player.addEventListener("DOMLoaded", () => container.classList.add("has-lottie"));
      player.addEventListener("data_failed", () => box.remove());
    } catch (error) {
      box.remove();
    }
  }

  /* --------------------------------------------------------- leaderboard ------ */

  const board = $("leaderboard");
  let boardSeq = -1;
  const me = state.viewer ? state.viewer.user_id : null;

  function boardRender(entries, seq) {
    if (!board || (seq !== undefined && seq < boardSeq)) return;
    if (seq !== undefined) boardSeq = seq;
    board.replaceChildren();
    if (!entries.length) {
      board.append(el("li", { class: "leaderboard-empty muted", text: "No gifts this live yet." }));
      return;
    }
    for (const entry of entries) {
      board.append(
        el(
          "li",
          { class: `leaderboard-row${entry.user_id === me ? " is-me" : ""}`, "data-user-id": entry.user_id },
          el("span", { class: `rank rank-${entry.rank}`, text: entry.rank }),
          el("span", { class: "avatar", "aria-hidden": "true", text: initial(entry.nickname) }),
          el("span", { class: "leaderboard-name", text: entry.nickname }),
          el("span", { class: "leaderboard-coins" }, el("span", { class: "coin", "aria-hidden": "true" }), fmt(entry.coins))
        )
      );
    }
  }

  /* --------------------------------------------------------- room state ------ */

  function liveRender(live) {
    state.live = live;
    const badge = $("live-badge");
    badge.textContent = live ? "LIVE" : "Offline";
    badge.className = `badge ${live ? "badge-live" : "badge-off"}`;
    panelRefresh();
  }

  function gameRender(game) {
    state.game = game || null;
    const box = $("game-state");
    if (!game || game.state === "ended") {
      box.hidden = true;
    } else {
      box.hidden = false;
      box.replaceChildren(el("span", { class: "game-dot", "aria-hidden": "true" }), `${game.name} · `, el("span", { class: "game-state-value", text: game.state }));
    }
    panelRefresh();
  }

  /* ---------------------------------------------------------------- goal ------ */

  let goal = null;

  /* A newer state of the room's goal (a later goal, or a later version of it); null: none. */
  function goalRender(next, announce) {
    if (next && goal && (next.goal_id < goal.goal_id || (next.goal_id === goal.goal_id && next.version <= goal.version))) {
      return;
    }
    const newlyReached = Boolean(next && next.reached && !(goal && goal.goal_id === next.goal_id && goal.reached));
    goal = next || null;
    const box = $("goal");
    box.hidden = !goal;
    if (!goal) return;
    const percent = Math.min(100, Math.floor((goal.progress * 100) / goal.target));
    $("goal-title").textContent = goal.title;
    $("goal-progress").textContent = fmt(goal.progress);
    $("goal-target").textContent = fmt(goal.target);
    $("goal-unit").textContent = goal.gift ? goal.gift.name : "coins";
    $("goal-fill").style.width = `${percent}%`;
    $("goal-track").setAttribute("aria-valuenow", percent);
    $("goal-reached").hidden = !goal.reached;
    box.classList.toggle("is-reached", goal.reached);
    // Reaching the goal is announced once, to the viewers who watched it happen.
    if (announce && newlyReached) goalAnnounce(goal);
  }

  function goalAnnounce(reached) {
    const empty = feed.querySelector(".feed-empty");
    if (empty) empty.remove();
    feed.prepend(
      el(
        "li",
        { class: "feed-item feed-item-new feed-goal", "data-seq": lastSeq },
        el("span", { class: "avatar", "aria-hidden": "true", text: "★" }),
        el("span", { class: "feed-text" }, "Goal reached: ", el("strong", { text: reached.title }))
      )
    );
    const box = $("goal");
    box.classList.remove("goal-celebrate");
    void box.offsetWidth; // restart the animation
    box.classList.add("goal-celebrate");
  }

  /* ------------------------------------------------------------ pk battle ------ */

  let pk = null;
  let pkTimer = null;

  /* The battle this room fights (or just fought); null: none. Older states of it are ignored. */
  function pkRender(next) {
    if (next && pk && next.pk_id === pk.pk_id && next.at < pk.at) return;
    pk = next && (next.state === "running" || next.state === "ended") ? next : null;
    const box = $("pk");
    box.hidden = !pk;
    if (pkTimer) clearInterval(pkTimer);
    pkTimer = null;
    if (!pk) return;
    const total = pk.sides.reduce((sum, side) => sum + side.score, 0);
    const sides = $("pk-sides");
    sides.replaceChildren();
    for (const side of pk.sides) {
      const share = total ? (side.score * 100) / total : 100 / pk.sides.length;
      const fill = el("div", { class: "pk-fill" });
      fill.style.width = `${share.toFixed(1)}%`;
      const classes = ["pk-side"];
      if (side.room_id === state.room_id) classes.push("is-here");
      if (pk.state === "ended" && side.room_id === pk.winner_room_id) classes.push("is-winner");
      sides.append(
        el(
          "li",
          { class: classes.join(" "), "data-room-id": side.room_id },
          el(
            "div",
            { class: "pk-side-head" },
            el("span", { class: "pk-room", text: side.room_id }),
            el("span", { class: "pk-host muted", text: side.host_id }),
            el("strong", { class: "pk-score", text: fmt(side.score) })
          ),
          el("div", { class: "pk-track" }, fill),
          side.top.length
            ? el("p", { class: "pk-top muted", text: `Top: ${side.top.map((fan) => fan.nickname).join(", ")}` })
            : null
        )
      );
    }
    pkClock();
    if (pk.state === "running") pkTimer = setInterval(pkClock, 1000);
  }

  async function pkFetch(pkId) {
    try {
      const response = await fetch(`/api/pk/${pkId}/`, { headers: { Accept: "application/json" } });
      if (response.ok) pkRender(await response.json());
    } catch (error) {
      /* the next snapshot or `pk` message shows it */
    }
  }

  function pkClock() {
    const status = $("pk-status");
    if (pk.state === "ended") {
      status.textContent = pk.winner_room_id ? `Winner: ${pk.winner_room_id}` : "A tie!";
      return;
    }
    const left = Math.max(0, Math.ceil((Date.parse(pk.ends_at) - Date.now()) / 1000));
    status.textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")} left`;
  }

  /* ------------------------------------------------------ sequence keeping ------ */

  let lastSeq = Number(state.seq) || 0;
  const pending = new Map(); // seq -> event that arrived before the ones ahead of it
  let resyncAskedAt = 0;

  /* Show a gift now (feed + animation) if this page has not shown it yet. */
  function display(event, animate) {
    if (!feedInsert(event)) return;
    if (event.kind === "reversal") {
      // The leaderboard follows in its own message; the sender's own balance is read again.
      if (event.sender.user_id === me) coinsRefresh();
      return;
    }
    if (event.kind === "pk_end") {
      // The `pk` message with the result follows; if it was lost, ask for the result.
      if (!pk || pk.state !== "ended") pkFetch(event.pk_id);
      return;
    }
    if (event.kind !== "gift") return;
    if (animate) animEnqueue(event);
  }

  function accept(events, animate) {
    for (const event of events) {
      if (event.seq <= lastSeq) continue; // a replay of something already counted
      pending.set(event.seq, event);
    }
    while (pending.has(lastSeq + 1)) {
      const event = pending.get(lastSeq + 1);
      pending.delete(lastSeq + 1);
      lastSeq = event.seq;
      display(event, animate);
    }
    if (pending.size) resync();
    else resyncAskedAt = 0;
  }

  function resync(force) {
    const now = Date.now();
    if (!force && resyncAskedAt && now - resyncAskedAt < RESYNC_RETRY_MS) return;
    if (!socketSend({ type: "resync", since: lastSeq })) return;
    resyncAskedAt = now;
  }

  function onSnapshot(message) {
    liveRender(Boolean(message.live));
    gameRender(message.game);
    if (!message.goal) goal = null; // a new live session has none yet
    goalRender(message.goal || null, false);
    if (message.pk || (pk && pk.state === "running")) pkRender(message.pk || null);
    if (message.seq < lastSeq) {
      // The room numbers its gifts from scratch again (its data was reset): start over.
      pending.clear();
      lastSeq = message.seq;
      boardSeq = -1;
      feedReset(message.recent || []);
      boardRender(message.leaderboard || [], message.seq);
      return;
    }
    boardRender(message.leaderboard || [], message.seq);
    const recent = (message.recent || []).filter((event) => event.seq > lastSeq);
    const covers = message.seq <= lastSeq || (recent.length && recent[0].seq <= lastSeq + 1);
    if (covers) {
      accept(recent, false);
    } else if (resyncAskedAt || !recent.length) {
      // The server answered a replay request with a snapshot: what we missed is older than
      // it keeps for replay. Start again from what it sent rather than wait forever.
      pending.clear();
      lastSeq = recent.length ? recent[0].seq - 1 : message.seq;
      accept(recent, false);
    } else {
      for (const event of recent) pending.set(event.seq, event);
      resync(true);
    }
  }

  function onGifts(message) {
    accept(message.events || [], true);
  }

  /* -------------------------------------------------------------- socket ------ */

  const connection = $("connection");
  let socket = null;
  let attempt = 0;
  let reconnectTimer = null;
  let holdUntil = 0;
  let lastHeard = Date.now();
  let everConnected = false;
  let connectedOnce = false; // this socket has delivered the room
  const CLOSE_ROOM_NOT_FOUND = 4404;

  function showConnection(text) {
    if (!connection) return;
    connection.hidden = !text;
    connection.textContent = text || "";
  }

  function socketSend(message) {
    if (!socket || socket.readyState !== WebSocket.OPEN) return false;
    socket.send(JSON.stringify(message));
    return true;
  }

  async function wsTicket() {
    // A signed-in viewer identifies the socket with a one-time ticket; without one the socket
    // still watches, so a failure here never blocks watching.
    if (!state.viewer) return null;
    try {
      const response = await fetch(state.urls.ticket, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
      });
      if (!response.ok) return null;
      return (await response.json()).ticket || null;
    } catch (error) {
      return null;
    }
  }

  async function connect() {
    reconnectTimer = null;
    if (socket && socket.readyState <= WebSocket.OPEN) return;
    const ticket = await wsTicket();
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    let url = `${scheme}://${window.location.host}${state.urls.socket}?since=${lastSeq}`;
    if (ticket) url += `&ticket=${encodeURIComponent(ticket)}`;
    const ws = new WebSocket(url);
    socket = ws;
    connectedOnce = false;
    ws.addEventListener("message", (message) => {
      lastHeard = Date.now();
      let data;
      try {
        data = JSON.parse(message.data);
      } catch (error) {
        return;
      }
      onMessage(data);
    });
    ws.addEventListener("close", (closeEvent) => {
      if (socket !== ws) return;
      socket = null;
      if (closeEvent.code === CLOSE_ROOM_NOT_FOUND) {
        showConnection("This room no longer exists");
        return;
      }
      scheduleReconnect();
    });
  }

  function onMessage(data) {
    if (data.type !== "error" && data.type !== "pong" && !connectedOnce) {
      // Back in the room: a fresh socket answers with a snapshot, a resumed one (since=) with
      // the gifts it missed plus the leaderboard and game state.
      connectedOnce = true;
      attempt = 0;
      everConnected = true;
      showConnection(null);
    }
    switch (data.type) {
      case "snapshot":
        onSnapshot(data);
        break;
      case "gifts":
        onGifts(data);
        break;
      case "leaderboard":
        boardRender(data.entries || [], data.seq);
        break;
      case "game":
        gameRender(data.game);
        break;
      case "goal":
        goalRender(data, true);
        break;
      case "pk":
        pkRender(data);
        break;
      case "room":
        if ("live" in data) liveRender(Boolean(data.live));
        break;
      case "error":
        if (window.console) console.warn("room socket:", data.code, data.message);
        break;
      default:
        break; // pong, and anything newer than this page
    }
  }

  function scheduleReconnect() {
    if (reconnectTimer) return;
    showConnection(everConnected ? "Reconnecting…" : "Connecting…");
    // Exponential backoff with jitter, so a restarted server is not hit by every viewer at once.
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_START_MS * 2 ** attempt);
    const delay = Math.max(base * (0.5 + Math.random() / 2), holdUntil - Date.now());
    attempt += 1;
    reconnectTimer = setTimeout(connect, delay);
  }

  function reconnectNow() {
    if (socket || Date.now() < holdUntil) return;
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    connect();
  }

  setInterval(() => {
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    if (Date.now() - lastHeard > SILENCE_LIMIT_MS) {
      socket.close(); // a half-open connection: drop it and reconnect
      return;
    }
    socketSend({ type: "ping" });
  }, PING_EVERY_MS);
  window.addEventListener("online", reconnectNow);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") reconnectNow();
  });

  /* --------------------------------------------------------- gift panel ------ */

  const form = $("gift-form");
  const coinsNode = $("coins");
  const message = $("send-message");
  const joinButton = $("join-game");
  let coins = state.viewer ? Number(state.viewer.coins) : 0;

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function gameRunning() {
    return Boolean(state.game && state.game.state === "started");
  }

  function selected(name) {
    const input = form ? form.querySelector(`input[name="${name}"]:checked`) : null;
    return input || null;
  }

  function tiersOf(giftId) {
    return (state.tiers && state.tiers[giftId]) || [];
  }

  let coinsVersion = 0; // bumped by every balance shown, so an older answer never overwrites a newer one

  function coinsRender(value) {
    coinsVersion += 1;
    coins = value;
    if (coinsNode) {
      coinsNode.textContent = fmt(value);
      coinsNode.dataset.coins = value;
    }
  }

  /* A gift of ours was refunded: show the balance the server has now. */
  async function coinsRefresh() {
    try {
      const asked = coinsVersion;
      const response = await fetch(state.urls.me, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) return;
      const balance = Number((await response.json()).coins);
      // A send answered meanwhile showed a balance at least as new as this one.
      if (coinsVersion === asked) coinsRender(balance);
    } catch (error) {
      // Offline for a moment: the next send answers with the balance anyway.
    }
  }

  function say(text, kind, extra) {
    if (!message) return;
    message.className = `send-message${kind ? ` send-message-${kind}` : ""}`;
    message.replaceChildren(text, extra || "");
  }

  function valueChoicesRender(giftId) {
    const picker = $("value-picker");
    const choices = $("value-choices");
    if (!picker) return;
    const tiers = gameRunning() ? tiersOf(giftId) : [];
    picker.hidden = tiers.length === 0;
    const previous = selected("value");
    const keep = previous ? Number(previous.value) : null;
    if (choices.dataset.gift === giftId && choices.dataset.running === String(gameRunning())) return;
    choices.dataset.gift = giftId;
    choices.dataset.running = String(gameRunning());
    choices.replaceChildren();
    tiers.forEach((tier, index) => {
      const input = el("input", { type: "radio", name: "value", value: tier.value });
      input.checked = keep === tier.value || (keep === null && index === 0);
      choices.append(el("label", { class: "chip" }, input, el("span", { text: `×${tier.value} ${tier.effect}` })));
    });
    if (tiers.length && !selected("value")) choices.querySelector("input").checked = true;
  }

  function panelRefresh() {
    if (!form) return;
    const running = gameRunning();
    // In a running game only the gifts with Value tiers for it can be sent.
    for (const input of form.querySelectorAll('input[name="gift"]')) {
      const usable = !running || tiersOf(input.value).length > 0;
      input.disabled = !usable;
      const note = input.parentElement.querySelector(".gift-note");
      note.hidden = usable;
      note.textContent = usable ? "" : "not in game";
    }
    let gift = selected("gift");
    if (!gift || gift.disabled) {
      const first = form.querySelector('input[name="gift"]:not(:disabled)');
      if (first) first.checked = true;
      gift = first;
    }
    if (joinButton) joinButton.closest(".game-row").hidden = !state.game || state.game.state === "ended";
    const send = $("send-gift");
    send.disabled = !gift || !state.live;
    if (!gift) {
      $("cost").textContent = "–";
      return;
    }
    valueChoicesRender(gift.value);
    const cost = Number(gift.dataset.price) * currentValue() * currentNum();
    $("cost").textContent = fmt(cost);
    $("cost").classList.toggle("too-much", cost > coins);
    send.textContent = state.live ? `Send ${gift.closest("label").querySelector(".gift-name").textContent}` : "Room offline";
  }

  function currentValue() {
    const value = selected("value");
    return gameRunning() && value ? Number(value.value) : 1;
  }

  function currentNum() {
    const num = selected("num");
    return num ? Number(num.value) : 1;
  }

  function explain(code, text, detail) {
    const name = detail.giftName;
    switch (code) {
      case 10007:
        return [`Not enough coins: ${name} ×${fmt(detail.count)} costs ${fmt(detail.cost)}, you have ${fmt(coins)}.`];
      case 7200005:
        return ["You are sending too fast. Wait a moment, then tap again."];
      case 10003:
        if (/not joined/i.test(text)) {
          return ["Join the game first to send game gifts. ", joinButton ? "Tap “Join game” above." : ""];
        }
        return [`This gift could not be delivered: ${text}`];
      case 10004:
        return [`This gift cannot be sent here: ${text}`];
      case 10006:
        return ["Your previous gift is still being processed."];
      case 7200004:
        return ["This room is not live right now."];
      case 7200001: {
        const link = el("a", { href: `/login/?next=${encodeURIComponent(window.location.pathname)}`, text: "Log in again" });
        return ["Your login has expired. ", link];
      }
      case 10005:
        return ["Something went wrong on our side and nothing was charged. Please try again."];
      default:
        return [text || "The gift could not be sent."];
    }
  }

  async function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken() },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  }

  async function sendGift() {
    const gift = selected("gift");
    if (!gift || gift.disabled) return;
    const giftName = gift.closest("label").querySelector(".gift-name").textContent;
    const value = currentValue();
    const num = currentNum();
    const cost = Number(gift.dataset.price) * value * num;
    const body = { gift_id: gift.value, msg_id: newMsgId(), num };
    if (value !== 1 || gameRunning()) body.value = value;
    say(`Sending ${giftName}…`, "pending");
    let response = null;
    // The msg_id makes the send idempotent, so one retry after a network error cannot charge twice.
    for (let tries = 0; tries < 2 && response === null; tries += 1) {
      try {
        response = await post(state.urls.send, body);
      } catch (error) {
        if (tries === 0) await new Promise((resolve) => setTimeout(resolve, 800));
      }
    }
    if (response === null) {
      say("Network problem: the gift may not have been sent. Check your connection and try again.", "error");
      return;
    }
    let data = {};
    try {
      data = await response.json();
    } catch (error) {
      data = {};
    }
    if (response.ok && data.result === 0) {
      coinsRender(data.coins_balance);
      const event = data.event;
      say(`Sent ${giftName} ×${fmt(event.count)} to the host!${event.combo > 1 ? ` Combo x${event.combo}` : ""}`, "ok");
      // Show our own gift at once; the socket's copy of the same seq is then skipped.
      display(event, true);
      panelRefresh();
      return;
    }
    const [text, extra] = explain(data.code, data.message || "", { giftName, count: value * num, cost });
    say(text, "error", extra);
  }

  async function joinGame() {
    joinButton.disabled = true;
    let response;
    try {
      response = await post(state.urls.join);
    } catch (error) {
      joinButton.disabled = false;
      say("Network problem: could not join the game. Try again.", "error");
      return;
    }
    const data = await response.json().catch(() => ({}));
    if (response.ok) {
      state.viewer.joined = true;
      joinButton.textContent = "Joined ✓";
      say(`You joined ${data.game ? data.game.name : "the game"}. Game gifts now summon fighters!`, "ok");
    } else {
      joinButton.disabled = false;
      say(data.code === 7202001 ? "No game is running in this room right now." : data.message || "Could not join.", "error");
    }
  }

  if (form) {
    form.addEventListener("change", panelRefresh);
    form.addEventListener("submit", (submitEvent) => {
      submitEvent.preventDefault();
      sendGift();
    });
  }
  if (joinButton) joinButton.addEventListener("click", joinGame);

  /* -------------------------------------------------------------- start ------ */

  feedReset(state.recent || []);
  boardRender(state.leaderboard || [], -1);
  gameRender(state.game);
  goalRender(state.goal || null, false);
  pkRender(state.pk || null);
  liveRender(Boolean(state.live));
  connect();

  // For the browser console (and the browser test): a way to see and simulate what the socket does.
  window.giftstream = {
    get lastSeq() {
      return lastSeq;
    },
    get connected() {
      return Boolean(socket && socket.readyState === WebSocket.OPEN);
    },
    /* Drop the socket as a network failure would, and stay away for at least `holdMs`. */
    dropConnection(holdMs) {
      holdUntil = Date.now() + (Number(holdMs) || 0);
      if (socket) socket.close();
    },
  };
})();
