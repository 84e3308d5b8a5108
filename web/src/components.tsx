import { useEffect, useState } from 'preact/hooks';
import type { ComponentChildren } from 'preact';
import { artworkUrl, duration, get, getBlob, onSession, send, type Playlist, type Track } from './api';
import { Icon } from './icons';
import { player, type PlayerState } from './player';

/** Loads `path` (again whenever `key` changes); `null` while loading. */
export function useGet<T>(path: string | null, key: unknown = path): [T | null, string | null] {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    if (!path) return;
    let live = true;
    setError(null);
    get<T>(path)
      .then((value) => live && setData(value))
      .catch((e: Error) => live && setError(e.message));
    return () => {
      live = false;
    };
  }, [key]);
  return [data, error];
}

export function usePlayer(): PlayerState {
  const [state, setState] = useState(player.state);
  useEffect(() => player.subscribe(setState), []);
  return state;
}

export function Artwork({ track, size = 'small' }: { track: Track; size?: 'small' | 'large' }) {
  const [src, setSrc] = useState<string | null>(null);
  useEffect(() => {
    let url: string | null = null;
    let live = true;
    // Artwork needs the bearer token, which an <img> cannot send.
    fetchArtwork(track.album.id).then((blob) => {
      if (live && blob) setSrc((url = URL.createObjectURL(blob)));
    });
    return () => {
      live = false;
      if (url) URL.revokeObjectURL(url);
    };
  }, [track.album.id]);
  const hue = [...track.album.id].reduce((h, c) => (h * 31 + c.charCodeAt(0)) % 360, 7);
  return (
    <div class={`art art-${size}`} style={{ '--hue': hue }} aria-hidden="true">
      {src ? <img src={src} alt="" /> : <span>{track.album.title.slice(0, 1)}</span>}
    </div>
  );
}

const artwork = new Map<string, Promise<Blob | null>>();
function fetchArtwork(albumId: string): Promise<Blob | null> {
  if (!artwork.has(albumId)) artwork.set(albumId, getBlob(artworkUrl(albumId)));
  return artwork.get(albumId)!;
}

export function Section({ title, children }: { title: string; children: ComponentChildren }) {
  return (
    <section class="section">
      <h2>{title}</h2>
      {children}
    </section>
  );
}

export function Cards({ items, reason }: { items: Track[]; reason?: (t: Track) => string | undefined }) {
  if (!items.length) return <p class="muted">Nothing here yet.</p>;
  return (
    <ul class="cards">
      {items.map((track, index) => (
        <li key={track.id}>
          {/* Named by what it shows, so that voice control can say it. */}
          <button class="card" onClick={() => void player.playQueue(items, index)}>
            <Artwork track={track} size="large" />
            <strong>{track.title}</strong>
            <span class="muted">{reason?.(track) ?? track.artist.name}</span>
          </button>
        </li>
      ))}
    </ul>
  );
}

export interface ListProps {
  tracks: Track[];
  /** More actions for a row (a playlist's reorder and removal). */
  extra?: (track: Track, index: number) => ComponentChildren;
  /** Rows can be dragged to a new place: `from` goes before `to` (positions before the move). */
  onMove?: (from: number, to: number) => void;
}

export function TrackList({ tracks, extra, onMove }: ListProps) {
  const state = usePlayer();
  const [dragged, setDragged] = useState<number | null>(null);
  useEffect(() => void learnLikes(tracks.map((t) => t.id)), [tracks]);
  if (!tracks.length) return <p class="muted">No tracks yet. <a href="#/upload">Upload some music</a>.</p>;
  return (
    <ol class="tracks" onKeyDown={moveFocus}>
      {tracks.map((track, index) => {
        const current = state.queue[state.index]?.id === track.id;
        const drag = onMove && {
          draggable: true,
          onDragStart: () => setDragged(index),
          onDragOver: (e: DragEvent) => e.preventDefault(),
          onDrop: (e: DragEvent) => {
            e.preventDefault();
            if (dragged !== null && dragged !== index) onMove(dragged, index > dragged ? index + 1 : index);
            setDragged(null);
          },
        };
        return (
          <li key={`${track.id}-${index}`} class={`${current ? 'current' : ''} ${dragged === index ? 'dragging' : ''}`} {...drag}>
            <button class="row" onClick={() => void player.playQueue(tracks, index)} aria-current={current ? 'true' : undefined}>
              <span class="num" aria-hidden="true">
                {current && state.playing ? (
                  <span class="eq"><i /><i /><i /></span>
                ) : (
                  index + 1
                )}
              </span>
              <Artwork track={track} />
              <span class="title">
                <strong>{track.title}</strong>
                <span class="muted">{track.artist.name}</span>
              </span>
              <span class="muted album">{track.album.title}</span>
              <span class="muted">{track.status && track.status !== 'ready' ? track.status : duration(track.duration_ms)}</span>
            </button>
            <LikeButton track={track} />
            <TrackMenu track={track}>{extra?.(track, index)}</TrackMenu>
          </li>
        );
      })}
    </ol>
  );
}

/** Up and down arrows move between a list's rows. */
function moveFocus(event: KeyboardEvent) {
  if (event.key !== 'ArrowDown' && event.key !== 'ArrowUp') return;
  const rows = [...(event.currentTarget as HTMLElement).querySelectorAll<HTMLElement>('.row')];
  const at = rows.indexOf(document.activeElement as HTMLElement);
  const next = rows[at + (event.key === 'ArrowDown' ? 1 : -1)];
  if (next) {
    event.preventDefault();
    next.focus();
  }
}

// The caller's playlists, shared by the sidebar and every "add to playlist" menu.
// Loaded once (every row's menu shares it, so mounting a list asks nothing), and again
// after each change.
let playlists: Playlist[] = [];
let playlistsLoaded = false;
const playlistListeners = new Set<(all: Playlist[]) => void>();
onSession((signedIn) => {
  if (signedIn) return;
  playlists = [];
  playlistsLoaded = false;
});

export async function refreshPlaylists() {
  playlistsLoaded = true;
  const page = await get<{ items: Playlist[] }>('/v1/me/playlists?limit=100').catch(() => null);
  if (!page) {
    playlistsLoaded = false;
    return;
  }
  playlists = page.items;
  playlistListeners.forEach((l) => l(playlists));
}

export function usePlaylists(): Playlist[] {
  const [all, setAll] = useState(playlists);
  useEffect(() => {
    playlistListeners.add(setAll);
    setAll(playlists);
    if (!playlistsLoaded) void refreshPlaylists();
    return () => playlistListeners.delete(setAll);
  }, []);
  return all;
}

/** A row's menu: add to a playlist, similar songs, the album and the artist. */
export function TrackMenu({ track, children }: { track: Track; children?: ComponentChildren }) {
  const mine = usePlaylists().filter((p) => !p.followed);
  const [note, setNote] = useState<string | null>(null);
  const add = async (playlist: Playlist, menu: HTMLDetailsElement | null) => {
    try {
      await send('POST', `/v1/playlists/${playlist.id}/tracks`, { track_ids: [track.id] });
      setNote(`Added to ${playlist.name}`);
      void refreshPlaylists();
    } catch (e) {
      setNote(e instanceof Error ? e.message : 'Not added');
    }
    menu?.removeAttribute('open');
    window.setTimeout(() => setNote(null), 2500);
  };
  return (
    <span class="menu-wrap">
    <details class="menu">
      <summary class="icon" aria-label={`More for ${track.title}`}>
        <Icon name="more" />
      </summary>
      <div class="popover" role="menu">
        {children}
        <a role="menuitem" href={`#/similar/${track.id}`}>Similar songs</a>
        <a role="menuitem" href={`#/album/${track.album.id}`}>Go to album</a>
        <a role="menuitem" href={`#/artist/${track.artist.id}`}>Go to artist</a>
        {mine.length > 0 && <p class="menu-label">Add to playlist</p>}
        {mine.map((playlist) => (
          <button
            role="menuitem"
            key={playlist.id}
            onClick={(e) => void add(playlist, (e.currentTarget as HTMLElement).closest('details'))}
          >
            {playlist.name}
          </button>
        ))}
      </div>
    </details>
    {note && <span class="toast" role="status">{note}</span>}
    </span>
  );
}

// Whether the caller likes each track seen so far, learned a list at a time.
const likes = new Map<string, boolean>();
/** Asked about already: lists shown together ask once. */
const likesAsked = new Set<string>();
const likeListeners = new Set<() => void>();
const likesChanged = () => likeListeners.forEach((l) => l());
onSession((signedIn) => {
  if (signedIn) return;
  likes.clear();
  likesAsked.clear();
});

/** Asks which of `ids` the caller likes, for those not known yet. */
async function learnLikes(ids: string[]) {
  const unknown = [...new Set(ids)].filter((id) => !likes.has(id) && !likesAsked.has(id));
  if (!unknown.length) return;
  unknown.forEach((id) => likesAsked.add(id));
  for (let start = 0; start < unknown.length; start += 100) {
    const chunk = unknown.slice(start, start + 100);
    const flags = await get<boolean[]>(`/v1/me/likes/contains?ids=${chunk.join(',')}`).catch(() => null);
    if (!flags) {
      unknown.forEach((id) => likesAsked.delete(id));
      break;
    }
    chunk.forEach((id, index) => likes.set(id, flags[index] ?? false));
  }
  likesChanged();
}

export function LikeButton({ track }: { track: Track }) {
  const [, rerender] = useState(0);
  useEffect(() => {
    const listener = () => rerender((n) => n + 1);
    likeListeners.add(listener);
    return () => void likeListeners.delete(listener);
  }, []);
  const on = likes.get(track.id) ?? false;
  const toggle = async () => {
    likes.set(track.id, !on);
    likesChanged();
    try {
      await send(on ? 'DELETE' : 'PUT', `/v1/me/likes/${track.id}`);
    } catch {
      likes.set(track.id, on);
      likesChanged();
    }
  };
  return (
    <button class={`icon like ${on ? 'on' : ''}`} onClick={toggle} aria-pressed={on} aria-label={`Like ${track.title}`}>
      <Icon name="heart" filled={on} />
    </button>
  );
}

