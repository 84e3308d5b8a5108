// People, kept current: who the caller is, their notifications and what the people they
// follow are playing, fed by the live channel (`/v1/me/live`: Server-Sent Events, read
// through fetch because EventSource cannot send the bearer token); and the caller's own
// now-playing heartbeats, so that their followers see what they play.

import { useEffect, useState } from 'preact/hooks';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import {
  get,
  getWithHeaders,
  onSession,
  openStream,
  request,
  send,
  type Notification,
  type Notifications,
  type NowPlaying,
  type User,
} from './api';
import { player, type PlayerState } from './player';

export interface PeopleState {
  me: User | null;
  /** The caller's request budget per minute, as the gateway last told it. */
  budget: number | null;
  unread: number;
  /** The latest notifications, most recently updated first; `null` until loaded. */
  notifications: Notification[] | null;
  /** What the people the caller follows are playing, most recent first. */
  friends: NowPlaying[];
  /** Whether followers see what the caller plays; `null` until known. */
  visible: boolean | null;
  /** The live channel is open. */
  connected: boolean;
}

const initial: PeopleState = {
  me: null,
  budget: null,
  unread: 0,
  notifications: null,
  friends: [],
  visible: null,
  connected: false,
};

let state = initial;
const listeners = new Set<(state: PeopleState) => void>();

function set(patch: Partial<PeopleState>) {
  state = { ...state, ...patch };
  listeners.forEach((l) => l(state));
}

export function usePeople(): PeopleState {
  const [current, setCurrent] = useState(state);
  useEffect(() => {
    listeners.add(setCurrent);
    setCurrent(state);
    return () => void listeners.delete(setCurrent);
  }, []);
  return current;
}

// Who the caller is.

export async function loadMe() {
  const [me, headers] = await getWithHeaders<User>('/v1/me').catch(() => [null, null] as const);
  if (!me) return;
  const budget = Number(headers?.get('ratelimit-limit'));
  set({ me, budget: Number.isFinite(budget) && budget > 0 ? budget : state.budget });
}

// Notifications.

const NOTIFICATIONS = 30;

export async function loadNotifications() {
  const page = await get<Notifications>(`/v1/me/notifications?limit=${NOTIFICATIONS}`).catch(() => null);
  if (page) set({ notifications: page.items, unread: page.unread });
}

/** Marks `ids` read (every notification when absent). */
export async function markRead(ids?: string[]) {
  const unread = state.notifications?.filter((n) => !n.read && (!ids || ids.includes(n.id))).length ?? 0;
  if (!unread && ids) return;
  set({
    notifications: state.notifications?.map((n) => (!ids || ids.includes(n.id) ? { ...n, read: true } : n)) ?? null,
    unread: ids ? Math.max(0, state.unread - unread) : 0,
  });
  const answer = await send<{ unread: number }>('POST', '/v1/me/notifications/read', ids ? { ids } : {}).catch(
    () => null,
  );
  if (answer) set({ unread: answer.unread });
}

function notified(item: Notification) {
  const known = state.notifications?.find((n) => n.id === item.id);
  // A fresh notification counts once; one that grew (a playlist changed again while
  // unread) is already counted.
  const fresh = !item.read && (known ? known.read : item.count === 1);
  const rest = (state.notifications ?? []).filter((n) => n.id !== item.id);
  set({
    notifications: state.notifications ? [item, ...rest].slice(0, NOTIFICATIONS) : null,
    unread: state.unread + (fresh ? 1 : 0),
  });
}

// What friends are playing.

let expiry: number | undefined;

/** Keeps what has not expired, and wakes when the next one does. */
function setFriends(friends: NowPlaying[]) {
  const now = Date.now();
  const live = friends
    .filter((f) => Date.parse(f.expires_at) > now)
    .sort((a, b) => Date.parse(b.updated_at) - Date.parse(a.updated_at));
  set({ friends: live });
  window.clearTimeout(expiry);
  if (live.length) {
    const next = Math.min(...live.map((f) => Date.parse(f.expires_at)));
    expiry = window.setTimeout(() => setFriends(state.friends), Math.max(0, next - now) + 50);
  }
}

/** Reads again what the people the caller follows are playing (after a follow changes). */
export async function loadFriends() {
  const page = await get<{ items: NowPlaying[] }>('/v1/me/following/now-playing').catch(() => null);
  if (page) setFriends(page.items);
}

/** Someone was (un)followed: what friends play follows suit. */
export function followChanged(userId: string, followed: boolean) {
  if (followed) void loadFriends();
  else setFriends(state.friends.filter((f) => f.user.id !== userId));
}

// The live channel.

let running = false;
let connection: AbortController | null = null;
let retry: number | undefined;
let failures = 0;
/** When the open channel said it was ready. */
let readyAt = 0;
/** The channel was open before: what arrived while it was closed is read again. */
let reconnecting = false;

function handle(message: EventSourceMessage) {
  let data: unknown;
  try {
    data = JSON.parse(message.data);
  } catch {
    return;
  }
  switch (message.event) {
    case 'ready':
      readyAt = Date.now();
      // What friends play follows at once; what arrived while away is read again (the
      // list itself loads when the bell is first opened).
      set({ connected: true, unread: (data as { unread: number }).unread });
      setFriends([]);
      if (reconnecting || state.notifications) void loadNotifications();
      reconnecting = true;
      break;
    case 'notification':
      notified(data as Notification);
      break;
    case 'unread': {
      const { unread } = data as { unread: number };
      set({ unread });
      // Read elsewhere: the list catches up.
      const local = state.notifications?.filter((n) => !n.read).length;
      if (local !== undefined && local !== unread) void loadNotifications();
      break;
    }
    case 'now_playing': {
      const playing = data as NowPlaying;
      setFriends([playing, ...state.friends.filter((f) => f.user.id !== playing.user.id)]);
      break;
    }
    case 'presence_ended': {
      const { user_id } = data as { user_id: string };
      setFriends(state.friends.filter((f) => f.user.id !== user_id));
      break;
    }
  }
}

/** Opens the live channel (closing any open one); it reopens with backoff when it ends. */
function connect() {
  connection?.abort();
  window.clearTimeout(retry);
  const mine = new AbortController();
  connection = mine;
  void (async () => {
    try {
      const response = await openStream('/v1/me/live', mine.signal);
      const parser = createParser({ onEvent: handle });
      const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        parser.feed(value);
      }
    } catch {
      // Refused or cut: tried again below.
    }
    if (mine.signal.aborted || !running) return;
    set({ connected: false });
    // A channel that stayed open a while starts the backoff afresh; one cut at once
    // (a proxy that buffers or times out) does not, so that it is not hammered.
    if (readyAt && Date.now() - readyAt > 20_000) failures = 0;
    readyAt = 0;
    // 1 s, 2 s, 4 s… up to 30 s, a little jittered so that replicas' clients spread out.
    const pause = Math.min(30_000, 1000 * 2 ** failures++) * (0.8 + Math.random() * 0.4);
    retry = window.setTimeout(connect, pause);
  })();
}

onSession((signedIn) => {
  if (!running) return;
  if (signedIn) {
    // A new token: the stream reopens with it, and the tier may have changed.
    connect();
    void loadMe();
  } else {
    stopLive();
  }
});

export function startLive() {
  if (running) return;
  running = true;
  failures = 0;
  reconnecting = false;
  void loadMe();
  connect();
}

export function stopLive() {
  running = false;
  connection?.abort();
  connection = null;
  window.clearTimeout(retry);
  window.clearTimeout(expiry);
  window.clearTimeout(pending);
  window.clearInterval(renewal);
  sent = null;
  state = initial;
  listeners.forEach((l) => l(state));
}

// The caller's presence: a heartbeat on play, track change, pause and resume, and every
// 25 s while playing (it lasts 60 s unless renewed).

/** Whether followers see what the caller plays (asked when the setting is shown). */
export async function loadPresence() {
  const presence = await get<{ visible: boolean }>('/v1/me/presence').catch(() => null);
  if (presence) set({ visible: presence.visible });
}

export async function setVisible(visible: boolean) {
  const before = state.visible;
  set({ visible });
  try {
    const answer = await send<{ visible: boolean }>('PUT', '/v1/me/presence', { visible });
    set({ visible: answer.visible });
    if (answer.visible) {
      sent = null;
      beat();
    }
  } catch {
    set({ visible: before });
  }
}

const RENEW_MS = 25_000;
let sent: { trackId: string; paused: boolean } | null = null;
let pending: number | undefined;
let renewal: number | undefined;

function beat() {
  window.clearInterval(renewal);
  const track = player.current;
  if (!running || !track || state.visible === false) return;
  const paused = player.audio.paused;
  sent = { trackId: track.id, paused };
  void send('PUT', '/v1/me/now-playing', {
    track_id: track.id,
    position_ms: Math.round(player.audio.currentTime * 1000),
    paused,
  }).catch(() => {});
  if (!paused) renewal = window.setInterval(beat, RENEW_MS);
}

function playerChanged(player: PlayerState) {
  const track = player.queue[player.index];
  if (!running || !track) return;
  if (sent && sent.trackId === track.id && sent.paused === !player.playing) return;
  // Loading a track pauses and plays again within moments: say only where it settles.
  if (pending === undefined) {
    pending = window.setTimeout(() => {
      pending = undefined;
      beat();
    }, 400);
  }
}

/** Says the caller stopped playing (the end of the queue, signing out, leaving). */
export function stopPlaying(keepalive = false) {
  window.clearInterval(renewal);
  window.clearTimeout(pending);
  pending = undefined;
  if (!sent || state.visible === false) return Promise.resolve();
  sent = null;
  return request('/v1/me/now-playing', { method: 'DELETE', keepalive }).catch(() => {});
}

player.subscribe(playerChanged);
player.audio.addEventListener('ended', () => {
  // The queue ran out when nothing plays a moment later.
  window.setTimeout(() => {
    if (running && player.audio.paused) {
      void stopPlaying().then(() => {
        // Noted as stopped: the paused track is not announced again.
        const track = player.current;
        if (track) sent = { trackId: track.id, paused: true };
      });
    }
  }, 1500);
});
window.addEventListener('pagehide', () => void stopPlaying(true));
