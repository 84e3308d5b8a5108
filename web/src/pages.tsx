// The pages behind a link: a playlist, an album, an artist, similar songs, and listening
// statistics.

import { useEffect, useState } from 'preact/hooks';
import {
  ApiError,
  get,
  send,
  type Album,
  type Artist,
  type Entry,
  type Page,
  type Playlist,
  type PlayPoint,
  type TopTrack,
  type Track,
} from './api';
import { Cards, Section, TrackList, refreshPlaylists, useGet } from './components';
import { Icon } from './icons';
import { usePeople } from './live';

export function PlaylistPage({ id }: { id: string }) {
  const [playlist, setPlaylist] = useState<Playlist | null>(null);
  const [entries, setEntries] = useState<Entry[]>([]);
  const [message, setMessage] = useState<string | null>(null);
  const [renaming, setRenaming] = useState(false);
  const { me } = usePeople();
  const load = async () => {
    try {
      const [found, tracks] = await Promise.all([
        get<Playlist>(`/v1/playlists/${id}`),
        get<Page<Entry>>(`/v1/playlists/${id}/tracks?limit=100`),
      ]);
      setPlaylist(found);
      setEntries(tracks.items);
    } catch (e) {
      setMessage(e instanceof Error ? e.message : String(e));
    }
  };
  useEffect(() => void load(), [id]);

  /** Moves the track at `from` before position `to`, as of the list this page shows. */
  const move = async (from: number, to: number) => {
    if (!playlist || to < 0 || to > entries.length || to === from || to === from + 1) return;
    const reordered = [...entries];
    const [moved] = reordered.splice(from, 1);
    reordered.splice(to > from ? to - 1 : to, 0, moved);
    setEntries(reordered);
    try {
      const { snapshot_id } = await send<{ snapshot_id: string }>('PUT', `/v1/playlists/${id}/tracks`, {
        range_start: from,
        insert_before: to,
        snapshot_id: playlist.snapshot_id,
      });
      setPlaylist({ ...playlist, snapshot_id });
    } catch (e) {
      // Changed elsewhere meanwhile (409): show it as it is now.
      setMessage(e instanceof ApiError && e.status === 409 ? 'The playlist changed elsewhere; here it is now.' : String(e));
      await load();
    }
  };
  const remove = async (position: number) => {
    if (!playlist) return;
    try {
      await send('DELETE', `/v1/playlists/${id}/tracks`, { positions: [position], snapshot_id: playlist.snapshot_id });
    } catch (e) {
      setMessage(e instanceof Error ? e.message : String(e));
    }
    await load();
    void refreshPlaylists();
  };
  const rename = async (event: Event) => {
    event.preventDefault();
    const name = String(new FormData(event.currentTarget as HTMLFormElement).get('name') ?? '').trim();
    if (name && playlist) {
      setPlaylist(await send<Playlist>('PATCH', `/v1/playlists/${id}`, { name }));
      void refreshPlaylists();
    }
    setRenaming(false);
  };
  const destroy = async () => {
    if (!confirm(`Delete “${playlist?.name}”?`)) return;
    await send('DELETE', `/v1/playlists/${id}`);
    await refreshPlaylists();
    location.hash = '#/';
  };
  /** Saves someone else's playlist to the caller's library, or stops. */
  const save = async () => {
    if (!playlist) return;
    try {
      await send(playlist.followed ? 'DELETE' : 'PUT', `/v1/playlists/${id}/followers`);
      setPlaylist({ ...playlist, followed: !playlist.followed });
      void refreshPlaylists();
    } catch (e) {
      setMessage(e instanceof Error ? e.message : String(e));
    }
  };
  if (!playlist) return <p class="muted">{message ?? 'Loading…'}</p>;
  const tracks = entries.map((e) => e.track);
  // Until the caller is known, a playlist they do not follow is taken for theirs.
  const mine = me ? playlist.owner_id === me.id : !playlist.followed;
  return (
    <>
      <p class="eyebrow">Playlist</p>
      {renaming ? (
        <form class="rename" onSubmit={rename}>
          <input name="name" aria-label="Playlist name" value={playlist.name} maxLength={100} autoFocus />
          <button class="primary small" type="submit">Save</button>
        </form>
      ) : (
        <h1>{playlist.name}</h1>
      )}
      <p class="muted">
        {playlist.tracks_total} {playlist.tracks_total === 1 ? 'song' : 'songs'}
        {mine && (
          <>
            {' · '}
            <button class="link" onClick={() => setRenaming(true)}>Rename</button>
            {' · '}
            <button class="link" onClick={() => void destroy()}>Delete</button>
          </>
        )}
      </p>
      {!mine && (
        <p>
          <button class={`follow ${playlist.followed ? 'on' : ''}`} aria-pressed={playlist.followed} onClick={() => void save()}>
            {playlist.followed && <Icon name="check" />}
            {playlist.followed ? 'Saved' : 'Save'}
            <span class="visually-hidden"> {playlist.name}</span>
          </button>
        </p>
      )}
      {message && <p class="notice" role="status">{message}</p>}
      <TrackList
        tracks={tracks}
        onMove={mine ? (from, to) => void move(from, to) : undefined}
        extra={
          !mine
            ? undefined
            : (track, index) => (
                <>
                  <button role="menuitem" onClick={() => void move(index, index - 1)} disabled={index === 0}>
                    Move up
                  </button>
                  <button role="menuitem" onClick={() => void move(index, index + 2)} disabled={index === tracks.length - 1}>
                    Move down
                  </button>
                  <button role="menuitem" onClick={() => void remove(index)} aria-label={`Remove ${track.title}`}>
                    Remove from playlist
                  </button>
                </>
              )
        }
      />
    </>
  );
}

export function AlbumPage({ id }: { id: string }) {
  const [album, error] = useGet<Album>(`/v1/albums/${id}`);
  if (!album) return <p class="muted">{error ?? 'Loading…'}</p>;
  return (
    <>
      <div class="hero">
        {album.tracks[0] && <Cards items={[album.tracks[0]]} />}
        <div>
          <p class="eyebrow">Album</p>
          <h1>{album.title}</h1>
          <p class="muted">
            <a href={`#/artist/${album.artist.id}`}>{album.artist.name}</a>
            {album.year ? ` · ${album.year}` : ''} · {album.tracks.length} songs
          </p>
        </div>
      </div>
      <TrackList tracks={album.tracks} />
    </>
  );
}

export function ArtistPage({ id }: { id: string }) {
  const [artist, error] = useGet<Artist>(`/v1/artists/${id}`);
  const [albums, setAlbums] = useState<Album[]>([]);
  useEffect(() => {
    if (!artist) return;
    void Promise.all(artist.albums.map((a) => get<Album>(`/v1/albums/${a.id}`).catch(() => null))).then((all) =>
      setAlbums(all.filter((a): a is Album => a !== null)),
    );
  }, [artist]);
  if (!artist) return <p class="muted">{error ?? 'Loading…'}</p>;
  return (
    <>
      <p class="eyebrow">Artist</p>
      <h1>{artist.name}</h1>
      {albums.map((album) => (
        <Section key={album.id} title={album.year ? `${album.title} (${album.year})` : album.title}>
          <TrackList tracks={album.tracks} />
        </Section>
      ))}
    </>
  );
}

export function SimilarPage({ id }: { id: string }) {
  const [track] = useGet<Track>(`/v1/tracks/${id}`);
  const [similar, error] = useGet<Page<{ track: Track; score: number }>>(`/v1/tracks/${id}/similar?limit=30`);
  return (
    <>
      <p class="eyebrow">Similar songs</p>
      <h1>{track ? `Like ${track.title}` : 'Similar songs'}</h1>
      {error && <p class="notice">{error}</p>}
      <TrackList tracks={similar?.items.map((s) => s.track) ?? []} />
    </>
  );
}

export function AnalyticsPage() {
  const [series] = useGet<{ series: PlayPoint[] }>('/v1/analytics/plays?interval=hour');
  const [top] = useGet<Page<TopTrack>>('/v1/analytics/top-tracks?window=24h&limit=10');
  const [active, activeError] = useGet<{ series: { t: string; active_users: number }[] }>(
    '/v1/analytics/users/active?interval=day',
  );
  return (
    <>
      <h1>Listening</h1>
      <Section title="Plays, last 24 hours">
        <BarChart points={(series?.series ?? []).map((p) => ({ t: p.t, value: p.plays }))} label="plays" />
      </Section>
      <Section title="Top tracks, last 24 hours">
        {top && top.items.length ? (
          <ol class="top">
            {top.items.map((item) => (
              <li key={item.track.id}>
                <strong>{item.track.title}</strong>
                <span class="muted">{item.track.artist.name}</span>
                <span class="count">
                  {item.plays} {item.plays === 1 ? 'play' : 'plays'} · {item.listeners}{' '}
                  {item.listeners === 1 ? 'listener' : 'listeners'}
                </span>
              </li>
            ))}
          </ol>
        ) : (
          <p class="muted">No plays yet.</p>
        )}
      </Section>
      <Section title="Active listeners, by day">
        {active ? (
          <BarChart points={active.series.map((p) => ({ t: p.t, value: p.active_users }))} label="listeners" />
        ) : (
          <p class="muted">{activeError ? 'Only operators see active listeners.' : 'Loading…'}</p>
        )}
      </Section>
    </>
  );
}

/** Bars over time, each with its value in its title for screen readers and hover. */
function BarChart({ points, label }: { points: { t: string; value: number }[]; label: string }) {
  if (!points.length) return <p class="muted">No data yet.</p>;
  const top = Math.max(1, ...points.map((p) => p.value));
  const width = 100 / points.length;
  const total = points.reduce((sum, p) => sum + p.value, 0);
  return (
    <figure class="chart">
      <svg viewBox="0 0 100 40" preserveAspectRatio="none" role="img" aria-label={`${total} ${label} in all`}>
        {points.map((p, i) => {
          const height = (p.value / top) * 38;
          return (
            <rect key={p.t} x={i * width + width * 0.15} y={40 - height} width={width * 0.7} height={Math.max(height, 0.4)} rx="0.6">
              <title>{`${new Date(p.t).toLocaleString()}: ${p.value} ${label}`}</title>
            </rect>
          );
        })}
      </svg>
      <figcaption class="muted">
        {total} in all · busiest: {top}
      </figcaption>
    </figure>
  );
}
