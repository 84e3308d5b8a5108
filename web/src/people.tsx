// People in the player: the top bar (friends, notifications, the account), what friends
// are playing, finding people and their profiles.

import { useEffect, useRef, useState } from 'preact/hooks';
import type { ComponentChildren, RefObject } from 'preact';
import { get, send, signOut, type Follow, type Notification, type NowPlaying, type Page, type Person, type Profile } from './api';
import { Artwork, Section, usePlayer } from './components';
import { Icon } from './icons';
import {
  followChanged,
  loadMe,
  loadNotifications,
  loadPresence,
  markRead,
  setVisible,
  stopPlaying,
  usePeople,
} from './live';
import { player } from './player';

// Small parts.

/** A person's initial on a colour of their own. */
export function Avatar({ id, name, size = 'small' }: { id: string; name: string; size?: 'small' | 'large' }) {
  const hue = [...id].reduce((h, c) => (h * 31 + c.charCodeAt(0)) % 360, 11);
  return (
    <span class={`avatar avatar-${size}`} style={{ '--hue': hue }} aria-hidden="true">
      {(name.trim()[0] ?? '?').toUpperCase()}
    </span>
  );
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
const units: [Intl.RelativeTimeFormatUnit, number][] = [
  ['year', 365 * 86400],
  ['month', 30 * 86400],
  ['week', 7 * 86400],
  ['day', 86400],
  ['hour', 3600],
  ['minute', 60],
];

/** "just now", "5 minutes ago", "yesterday"… */
export function ago(iso: string, now = Date.now()): string {
  const seconds = (Date.parse(iso) - now) / 1000;
  if (Math.abs(seconds) < 45) return 'just now';
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size || unit === 'minute') {
      return relative.format(Math.round(seconds / size), unit);
    }
  }
  return 'just now';
}

/** Re-renders every `ms`, for times shown relative to now. */
function useTick(ms: number) {
  const [, setTick] = useState(0);
  useEffect(() => {
    const timer = window.setInterval(() => setTick((n) => n + 1), ms);
    return () => window.clearInterval(timer);
  }, [ms]);
}

/** Open state for a popup that closes on Escape and on a click elsewhere. */
function usePopup(): [boolean, (open: boolean) => void, RefObject<HTMLDivElement>] {
  const [open, setOpen] = useState(false);
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!open) return;
    const away = (event: PointerEvent) => {
      if (!ref.current?.contains(event.target as Node)) setOpen(false);
    };
    const escape = (event: KeyboardEvent) => {
      if (event.key !== 'Escape') return;
      setOpen(false);
      ref.current?.querySelector<HTMLElement>('[aria-expanded]')?.focus();
    };
    document.addEventListener('pointerdown', away);
    document.addEventListener('keydown', escape);
    return () => {
      document.removeEventListener('pointerdown', away);
      document.removeEventListener('keydown', escape);
    };
  }, [open]);
  return [open, setOpen, ref];
}

/** Follow or stop following someone; `onChange` hears the new state once the server took it. */
export function FollowButton({
  person,
  followed,
  onChange,
}: {
  person: { id: string; display_name: string };
  followed: boolean;
  onChange: (followed: boolean) => void;
}) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const toggle = async () => {
    setBusy(true);
    setError(null);
    try {
      await send(followed ? 'DELETE' : 'PUT', `/v1/me/following/${person.id}`);
      followChanged(person.id, !followed);
      onChange(!followed);
    } catch (e) {
      setError(e instanceof Error ? e.message : 'Not changed');
    } finally {
      setBusy(false);
    }
  };
  return (
    <span class="follow-wrap">
      <button class={`follow ${followed ? 'on' : ''}`} aria-pressed={followed} disabled={busy} onClick={() => void toggle()}>
        {followed && <Icon name="check" />}
        {followed ? 'Following' : 'Follow'}
        <span class="visually-hidden"> {person.display_name}</span>
      </button>
      {error && <span class="error small" role="alert">{error}</span>}
    </span>
  );
}

// The top bar.

export function TopBar({ friendsShown, onFriends }: { friendsShown: boolean; onFriends: () => void }) {
  return (
    <header class="topbar">
      <button
        class={`icon ${friendsShown ? 'on' : ''}`}
        aria-pressed={friendsShown}
        aria-controls={friendsShown ? 'friends' : undefined}
        aria-label="Friend activity"
        title="Friend activity"
        onClick={onFriends}
      >
        <Icon name="people" />
      </button>
      <NotificationBell />
      <AccountMenu />
    </header>
  );
}

function NotificationBell() {
  const { unread, notifications } = usePeople();
  const [open, setOpen, ref] = usePopup();
  useTick(open ? 30_000 : 3_600_000);
  useEffect(() => {
    if (open) void loadNotifications();
  }, [open]);
  const shown = unread > 99 ? '99+' : String(unread);
  return (
    <div class="popup-wrap" ref={ref}>
      <button
        class={`icon bell ${open ? 'on' : ''}`}
        aria-expanded={open}
        aria-controls={open ? 'notifications' : undefined}
        aria-label={unread ? `Notifications, ${unread} unread` : 'Notifications'}
        title="Notifications"
        onClick={() => setOpen(!open)}
      >
        <Icon name="bell" />
        {unread > 0 && <span class="count" aria-hidden="true">{shown}</span>}
      </button>
      {/* Said aloud as it changes, not only when the bell has focus. */}
      <span class="visually-hidden" role="status" aria-live="polite">
        {unread ? `${unread} unread ${unread === 1 ? 'notification' : 'notifications'}` : ''}
      </span>
      {open && (
        <section class="popup notifications" id="notifications" aria-labelledby="notifications-title">
          <div class="popup-head">
            <h2 id="notifications-title">Notifications</h2>
            <button class="link" onClick={() => void markRead()} disabled={!unread}>
              Mark all read
            </button>
          </div>
          {notifications === null ? (
            <p class="muted popup-empty">Loading…</p>
          ) : notifications.length ? (
            <ul class="notes">
              {notifications.map((n) => (
                <li key={n.id} class={n.read ? '' : 'unread'}>
                  <NotificationRow notification={n} onOpen={() => setOpen(false)} />
                </li>
              ))}
            </ul>
          ) : (
            <p class="muted popup-empty">
              Nothing yet. <a href="#/people" onClick={() => setOpen(false)}>Follow people</a> to hear when they make
              playlists.
            </p>
          )}
        </section>
      )}
    </div>
  );
}

/** What a notification says, with its names in bold. */
function sentence(n: Notification): ComponentChildren {
  const actor = <strong>{n.actor?.display_name ?? 'Someone'}</strong>;
  const playlist = <strong>{n.playlist?.name ?? 'a playlist'}</strong>;
  switch (n.kind) {
    case 'new_follower':
      return <>{actor} followed you</>;
    case 'playlist_created':
      return <>{actor} made a new playlist {playlist}</>;
    case 'playlist_changed':
      return n.count > 1 ? <>{playlist} changed {n.count} times</> : <>{playlist} changed</>;
    case 'playlist_followed':
      return <>{actor} saved your playlist {playlist}</>;
    default:
      return <>{actor} did something new</>;
  }
}

function NotificationRow({ notification: n, onOpen }: { notification: Notification; onOpen: () => void }) {
  const target = n.playlist
    ? `#/playlist/${n.playlist.id}`
    : n.actor
      ? `#/people/${n.actor.id}`
      : null;
  const body = (
    <>
      {n.actor ? <Avatar id={n.actor.id} name={n.actor.display_name} /> : <span class="avatar avatar-small" aria-hidden="true">?</span>}
      <span class="note-text">
        <span>
          {!n.read && <span class="visually-hidden">Unread: </span>}
          {sentence(n)}
        </span>
        <time class="muted" dateTime={n.updated_at} title={new Date(n.updated_at).toLocaleString()}>
          {ago(n.updated_at)}
        </time>
      </span>
      {!n.read && <span class="dot" aria-hidden="true" />}
    </>
  );
  if (!target) return <div class="note">{body}</div>;
  return (
    <a
      class="note"
      href={target}
      onClick={() => {
        void markRead([n.id]);
        onOpen();
      }}
    >
      {body}
    </a>
  );
}

function AccountMenu() {
  const { me, budget, visible } = usePeople();
  const [open, setOpen, ref] = usePopup();
  useEffect(() => {
    if (!open) return;
    // Premium may have been paid for meanwhile.
    void loadMe();
    void loadPresence();
  }, [open]);
  if (!me) return <div class="account-button placeholder" aria-hidden="true" />;
  const premium = me.tier === 'premium';
  const until = me.premium_until ? new Date(me.premium_until) : null;
  return (
    <div class="popup-wrap" ref={ref}>
      <button class="account-button" aria-expanded={open} aria-controls={open ? 'account' : undefined} onClick={() => setOpen(!open)}>
        <Avatar id={me.id} name={me.display_name} />
        <span class="account-name">{me.display_name}</span>
        <span class={`tier ${premium ? 'premium' : ''}`}>{premium ? 'Premium' : 'Free'}</span>
        <span class="visually-hidden">: account</span>
      </button>
      {open && (
        <section class="popup account-panel" id="account" aria-label="Account">
          <div class="account-who">
            <Avatar id={me.id} name={me.display_name} size="large" />
            <span class="title">
              <strong>{me.display_name}</strong>
              <span class="muted">{me.email}</span>
            </span>
          </div>
          <div class={`plan ${premium ? 'premium' : ''}`}>
            {premium ? (
              <p>
                <strong>Premium</strong>
                {until ? ` until ${until.toLocaleDateString(undefined, { dateStyle: 'long' })}` : ''}
                {budget ? <span class="muted"> · {budget.toLocaleString()} requests/min</span> : null}
              </p>
            ) : (
              <>
                <p>
                  <strong>Premium:</strong> free tier — {budget ?? 100} requests/min
                </p>
                <p class="muted small">
                  Premium comes with a payment. On your own server, the operator can grant it with{' '}
                  <code>tonearm billing simulate {me.email} --months 1</code>
                </p>
              </>
            )}
          </div>
          <label class="switch">
            <input
              type="checkbox"
              role="switch"
              checked={visible ?? true}
              disabled={visible === null}
              onChange={(e) => void setVisible((e.currentTarget as HTMLInputElement).checked)}
            />
            <span class="track" aria-hidden="true" />
            <span>Show what I'm playing to followers</span>
          </label>
          <div class="account-actions">
            <a href={`#/people/${me.id}`} onClick={() => setOpen(false)}>Your profile</a>
            <button
              class="link"
              onClick={async () => {
                await stopPlaying();
                await signOut();
              }}
            >
              Sign out
            </button>
          </div>
        </section>
      )}
    </div>
  );
}

// What friends are playing.

export function FriendsPanel({ onClose }: { onClose: () => void }) {
  const { friends } = usePeople();
  const playerState = usePlayer();
  useTick(30_000);
  const current = playerState.queue[playerState.index]?.id;
  return (
    <aside class="friends" id="friends" aria-labelledby="friends-title">
      <div class="friends-head">
        <h2 id="friends-title">Friend activity</h2>
        <button class="icon" aria-label="Hide friend activity" onClick={onClose}>
          <Icon name="close" />
        </button>
      </div>
      {friends.length ? (
        <ul class="friend-list" aria-live="polite">
          {friends.map((f) => (
            <FriendRow key={f.user.id} playing={f} current={current === f.track.id && playerState.playing} />
          ))}
        </ul>
      ) : (
        <div class="friends-empty">
          <Icon name="people" />
          <p class="muted">When people you follow play something, it shows here.</p>
          <a class="chip" href="#/people">Find people</a>
        </div>
      )}
    </aside>
  );
}

function FriendRow({ playing: f, current }: { playing: NowPlaying; current: boolean }) {
  return (
    <li class={`friend ${current ? 'current' : ''}`}>
      <a class="friend-who" href={`#/people/${f.user.id}`}>
        <Avatar id={f.user.id} name={f.user.display_name} />
        <strong>{f.user.display_name}</strong>
      </a>
      <span class="friend-when muted" title={`Since ${new Date(f.updated_at).toLocaleTimeString()}`}>
        {f.paused ? (
          `Paused · ${ago(f.updated_at)}`
        ) : (
          <>
            <span class="eq" aria-hidden="true"><i /><i /><i /></span>
            <span class="visually-hidden">Playing now</span>
          </>
        )}
      </span>
      <button
        class="friend-track"
        title={`${f.track.title} · ${f.track.artist.name} · ${f.track.album.title}`}
        onClick={() => void player.playQueue([f.track], 0)}
      >
        <Artwork track={f.track} />
        <span class="friend-text">
          <span class="visually-hidden">Play </span>
          <span class="friend-title">{f.track.title}</span>
          <span class="muted">
            <span class="visually-hidden">by </span>
            {f.track.artist.name}
          </span>
        </span>
        <span class="friend-play" aria-hidden="true"><Icon name="play" /></span>
      </button>
    </li>
  );
}

// Finding people.

export function PeoplePage() {
  const [query, setQuery] = useState('');
  const [found, setFound] = useState<Page<Person> | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [following, setFollowing] = useState<Follow[] | null>(null);
  const [followers, setFollowers] = useState<Follow[] | null>(null);
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => input.current?.focus(), []);
  const loadFollows = () => {
    void get<Page<Follow>>('/v1/me/following?limit=50').then((p) => setFollowing(p.items)).catch(() => setFollowing([]));
    void get<Page<Follow>>('/v1/me/followers?limit=50').then((p) => setFollowers(p.items)).catch(() => setFollowers([]));
  };
  useEffect(loadFollows, []);
  useEffect(() => {
    const q = query.trim();
    if (!q) {
      setFound(null);
      setError(null);
      return;
    }
    let live = true;
    // Debounced: a search per pause in typing, not per key.
    const timer = window.setTimeout(() => {
      get<Page<Person>>(`/v1/users?q=${encodeURIComponent(q.slice(0, 100))}&limit=30`)
        .then((page) => {
          if (!live) return;
          setFound(page);
          setError(null);
        })
        .catch((e: Error) => live && setError(e.message));
    }, 250);
    return () => {
      live = false;
      window.clearTimeout(timer);
    };
  }, [query]);
  const followedIds = new Set(following?.map((f) => f.user.id));
  const changed = (person: { id: string }, followed: boolean) => {
    setFound((page) => page && { ...page, items: page.items.map((p) => (p.id === person.id ? { ...p, followed } : p)) });
    loadFollows();
  };
  return (
    <>
      <h1>People</h1>
      <div class="search-bar">
        <input
          ref={input}
          class="search"
          type="search"
          placeholder="Find people by name"
          aria-label="Find people"
          maxLength={100}
          value={query}
          onInput={(e) => setQuery((e.currentTarget as HTMLInputElement).value)}
        />
      </div>
      {error && <p class="notice" role="status">{error}</p>}
      {found ? (
        <section class="section" aria-label="People found">
          <p class="muted" role="status">
            {found.total === 0 ? `No one is called “${query.trim()}”.` : `${found.total} ${found.total === 1 ? 'person' : 'people'}`}
          </p>
          <PeopleList people={found.items} onChange={changed} />
        </section>
      ) : (
        <>
          <Section title="Following">
            {following === null ? null : following.length ? (
              <PeopleList people={following.map((f) => ({ ...f.user, followed: true }))} onChange={changed} />
            ) : (
              <p class="muted">You follow no one yet. Search for a name above.</p>
            )}
          </Section>
          <Section title="Followers">
            {followers === null ? null : followers.length ? (
              <PeopleList
                people={followers.map((f) => ({ ...f.user, followed: followedIds.has(f.user.id) }))}
                onChange={changed}
              />
            ) : (
              <p class="muted">No followers yet.</p>
            )}
          </Section>
        </>
      )}
    </>
  );
}

function PeopleList({ people, onChange }: { people: Person[]; onChange: (p: Person, followed: boolean) => void }) {
  const { me } = usePeople();
  return (
    <ul class="people">
      {people.map((p) => (
        <li key={p.id}>
          <a class="person" href={`#/people/${p.id}`}>
            <Avatar id={p.id} name={p.display_name} />
            <strong>{p.display_name}</strong>
            {p.id === me?.id && <span class="muted">You</span>}
          </a>
          {p.id !== me?.id && <FollowButton person={p} followed={p.followed} onChange={(f) => onChange(p, f)} />}
        </li>
      ))}
    </ul>
  );
}

export function PersonPage({ id }: { id: string }) {
  const { me, friends } = usePeople();
  const [profile, setProfile] = useState<Profile | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [followers, setFollowers] = useState<Follow[]>([]);
  const [following, setFollowing] = useState<Follow[]>([]);
  const load = () => {
    get<Profile>(`/v1/users/${id}`)
      .then(setProfile)
      .catch((e: Error) => setError(e.message));
    void get<Page<Follow>>(`/v1/users/${id}/followers?limit=30`).then((p) => setFollowers(p.items)).catch(() => {});
    void get<Page<Follow>>(`/v1/users/${id}/following?limit=30`).then((p) => setFollowing(p.items)).catch(() => {});
  };
  useEffect(load, [id]);
  if (!profile) return <p class="muted">{error ?? 'Loading…'}</p>;
  const playing = friends.find((f) => f.user.id === id);
  const plural = (n: number, one: string, many: string) => `${n.toLocaleString()} ${n === 1 ? one : many}`;
  return (
    <>
      <div class="profile">
        <Avatar id={profile.id} name={profile.display_name} size="large" />
        <div>
          <p class="eyebrow">Profile</p>
          <h1>{profile.display_name}</h1>
          <p class="muted counts">
            <span>{plural(profile.followers, 'follower', 'followers')}</span>
            <span>{plural(profile.following, 'following', 'following')}</span>
            {profile.follows_you && <span class="chip small">Follows you</span>}
          </p>
          {me && me.id !== profile.id ? (
            <FollowButton
              person={profile}
              followed={profile.followed}
              onChange={(followed) => {
                setProfile({ ...profile, followed, followers: profile.followers + (followed ? 1 : -1) });
                load();
              }}
            />
          ) : (
            <p class="muted">This is you.</p>
          )}
        </div>
      </div>
      {playing && (
        <Section title="Listening now">
          <ul class="friend-list wide">
            <FriendRow playing={playing} current={false} />
          </ul>
        </Section>
      )}
      <Section title="Followers">
        <Chips follows={followers} none="No followers yet." />
      </Section>
      <Section title="Following">
        <Chips follows={following} none="Follows no one yet." />
      </Section>
    </>
  );
}

function Chips({ follows, none }: { follows: Follow[]; none: string }) {
  if (!follows.length) return <p class="muted">{none}</p>;
  return (
    <p class="chips">
      {follows.map((f) => (
        <a class="chip person-chip" key={f.user.id} href={`#/people/${f.user.id}`}>
          <Avatar id={f.user.id} name={f.user.display_name} />
          {f.user.display_name}
        </a>
      ))}
    </p>
  );
}
