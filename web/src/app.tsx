import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import {
  ApiError,
  duration,
  get,
  onSession,
  refresh,
  send,
  signIn,
  signUp,
  upload,
  type Page,
  type Playlist,
  type Recommendation,
  type SearchResults,
  type Track,
  type User,
} from './api';
import {
  Artwork,
  Cards,
  Section,
  TrackList,
  refreshPlaylists,
  useGet,
  usePlayer,
  usePlaylists,
} from './components';
import { Icon } from './icons';
import { startLive, stopLive, usePeople } from './live';
import { AlbumPage, AnalyticsPage, ArtistPage, PlaylistPage, SimilarPage } from './pages';
import { FriendsPanel, PeoplePage, PersonPage, TopBar } from './people';
import { player } from './player';
import { Recording, voiceSearch, type VoiceResult } from './voice';

type Route =
  | { view: 'home' | 'search' | 'upload' | 'liked' | 'analytics' | 'people' }
  | { view: 'playlist' | 'album' | 'artist' | 'similar' | 'person'; id: string };

function parseRoute(): Route {
  const [view, id] = location.hash.replace(/^#\/?/, '').split('/');
  if (view === 'people') return id ? { view: 'person', id } : { view };
  if (view === 'search' || view === 'upload' || view === 'liked' || view === 'analytics') return { view };
  if ((view === 'playlist' || view === 'album' || view === 'artist' || view === 'similar') && id) {
    return { view, id };
  }
  return { view: 'home' };
}

function useRoute(): Route {
  const [route, setRoute] = useState(parseRoute);
  useEffect(() => {
    const changed = () => setRoute(parseRoute());
    window.addEventListener('hashchange', changed);
    return () => window.removeEventListener('hashchange', changed);
  }, []);
  return route;
}

export function App() {
  const [signedIn, setSignedIn] = useState<boolean | null>(null);
  useEffect(() => {
    const off = onSession(setSignedIn);
    void refresh().then((ok) => setSignedIn(ok));
    return off;
  }, []);
  if (signedIn === null) return <div class="splash" aria-busy="true" />;
  return signedIn ? <Shell /> : <SignIn />;
}

function SignIn() {
  const [mode, setMode] = useState<'in' | 'up'>('in');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event: Event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget as HTMLFormElement);
    const [email, password, name] = ['email', 'password', 'name'].map((f) => String(form.get(f) ?? ''));
    setBusy(true);
    setError(null);
    try {
      if (mode === 'up') await signUp(email, password, name || email.split('@')[0]);
      else await signIn(email, password);
    } catch (e) {
      setError(e instanceof ApiError ? e.message : 'The server cannot be reached.');
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="auth">
      <form class="auth-card" onSubmit={submit}>
        <div class="brand brand-large"><Logo /> Tonearm</div>
        <h1>{mode === 'in' ? 'Welcome back' : 'Create your account'}</h1>
        {mode === 'up' && (
          <label>
            Name
            <input name="name" autocomplete="nickname" placeholder="How others see you" />
          </label>
        )}
        <label>
          Email
          <input name="email" type="email" required autocomplete="email" />
        </label>
        <label>
          Password
          <input
            name="password"
            type="password"
            required
            minLength={mode === 'up' ? 8 : undefined}
            autocomplete={mode === 'up' ? 'new-password' : 'current-password'}
          />
        </label>
        {error && <p class="error" role="alert">{error}</p>}
        <button class="primary" type="submit" disabled={busy}>
          {mode === 'in' ? 'Sign in' : 'Sign up'}
        </button>
        <p class="muted">
          {mode === 'in' ? 'New here? ' : 'Have an account? '}
          <button type="button" class="link" onClick={() => setMode(mode === 'in' ? 'up' : 'in')}>
            {mode === 'in' ? 'Create an account' : 'Sign in'}
          </button>
        </p>
      </form>
    </main>
  );
}

function Logo() {
  return (
    <svg class="logo" viewBox="0 0 32 32" aria-hidden="true">
      <circle cx="16" cy="16" r="15" fill="currentColor" />
      <circle cx="16" cy="16" r="9" fill="none" stroke="#121417" stroke-width="1.2" opacity=".5" />
      <circle cx="16" cy="16" r="4" fill="#121417" />
    </svg>
  );
}

/** Friend activity: a column on wide screens (open unless closed), a drawer on narrow ones. */
function useFriendsPanel(route: Route): [boolean, () => void] {
  const wide = useMemo(() => window.matchMedia('(min-width: 1100px)'), []);
  const [isWide, setWide] = useState(wide.matches);
  const [column, setColumn] = useState(localStorage.getItem('tonearm.friends') !== 'hidden');
  const [drawer, setDrawer] = useState(false);
  useEffect(() => {
    const changed = () => setWide(wide.matches);
    wide.addEventListener('change', changed);
    return () => wide.removeEventListener('change', changed);
  }, []);
  // The drawer covers the page: going somewhere from it closes it.
  useEffect(() => setDrawer(false), [route]);
  const toggle = () => {
    if (!isWide) return setDrawer(!drawer);
    localStorage.setItem('tonearm.friends', column ? 'hidden' : 'shown');
    setColumn(!column);
  };
  return [isWide ? column : drawer, toggle];
}

function Shell() {
  const route = useRoute();
  const { me } = usePeople();
  const playlists = usePlaylists();
  const content = useRef<HTMLElement>(null);
  const [friendsShown, toggleFriends] = useFriendsPanel(route);
  useEffect(() => {
    startLive();
    return stopLive;
  }, []);
  useEffect(() => content.current?.scrollTo(0, 0), [route]);
  const nav = (view: Route['view'], label: string) => (
    <a
      href={`#/${view === 'home' ? '' : view}`}
      aria-current={route.view === view || (view === 'people' && route.view === 'person') ? 'page' : undefined}
    >
      {label}
    </a>
  );
  const create = async () => {
    const name = `My playlist #${playlists.filter((p) => !p.followed).length + 1}`;
    const playlist = await send<Playlist>('POST', '/v1/playlists', { name });
    await refreshPlaylists();
    location.hash = `#/playlist/${playlist.id}`;
  };
  return (
    <div class={`shell ${friendsShown ? 'with-friends' : ''}`}>
      <nav class="sidebar" aria-label="Main">
        <div class="brand"><Logo /> Tonearm</div>
        {nav('home', 'Home')}
        {nav('search', 'Search')}
        {nav('people', 'People')}
        {nav('liked', 'Liked songs')}
        {nav('upload', 'Upload')}
        {nav('analytics', 'Listening')}
        <div class="playlists">
          <div class="playlists-head">
            <span>Playlists</span>
            <button class="icon" onClick={() => void create()} aria-label="New playlist">
              <Icon name="plus" />
            </button>
          </div>
          {playlists.map((p) => (
            <a
              key={p.id}
              href={`#/playlist/${p.id}`}
              aria-current={route.view === 'playlist' && route.id === p.id ? 'page' : undefined}
            >
              {p.name}
            </a>
          ))}
        </div>
      </nav>
      <div class="column">
      <TopBar friendsShown={friendsShown} onFriends={toggleFriends} />
      <main class="content" id="content" ref={content}>
        {route.view === 'home' && <Home name={me?.display_name} />}
        {route.view === 'search' && <Search />}
        {route.view === 'liked' && <Liked />}
        {route.view === 'upload' && <Upload />}
        {route.view === 'analytics' && <AnalyticsPage />}
        {route.view === 'playlist' && <PlaylistPage key={route.id} id={route.id} />}
        {route.view === 'album' && <AlbumPage key={route.id} id={route.id} />}
        {route.view === 'artist' && <ArtistPage key={route.id} id={route.id} />}
        {route.view === 'similar' && <SimilarPage key={route.id} id={route.id} />}
        {route.view === 'people' && <PeoplePage />}
        {route.view === 'person' && <PersonPage key={route.id} id={route.id} />}
      </main>
      </div>
      {friendsShown && <FriendsPanel onClose={toggleFriends} />}
      <PlayerBar />
    </div>
  );
}

interface HomeView {
  profile: User | null;
  playlists: Page<Playlist>;
  recently_played: Page<{ track: Track; played_at: string }>;
  recommendations: Page<Recommendation>;
  degraded: string[];
}

function Home({ name }: { name?: string }) {
  // One request for the first screen; each part may come back empty if its service is down.
  const [home] = useGet<HomeView>('/v1/home');
  const [recent] = useGet<Page<Track>>('/v1/tracks?sort=recent&limit=20');
  const hour = new Date().getHours();
  const greeting = hour < 12 ? 'Good morning' : hour < 18 ? 'Good afternoon' : 'Good evening';
  const recommended = home?.recommendations.items ?? [];
  const reasons = useMemo(() => new Map(recommended.map((r) => [r.track.id, r.reason])), [home]);
  const played = useMemo(() => {
    const seen = new Set<string>();
    return (home?.recently_played.items ?? [])
      .map((h) => h.track)
      .filter((t) => !seen.has(t.id) && seen.add(t.id));
  }, [home]);
  const unavailable = (part: string) =>
    home?.degraded.includes(part) ? <p class="muted">Unavailable right now.</p> : null;
  return (
    <>
      <h1>
        {greeting}
        {(home?.profile?.display_name ?? name) ? `, ${home?.profile?.display_name ?? name}` : ''}
      </h1>
      <Section title="Made for you">
        {unavailable('recommendations') ?? (
          <Cards items={recommended.map((r) => r.track)} reason={(t) => reasons.get(t.id)} />
        )}
      </Section>
      <Section title="Recently played">{unavailable('recently_played') ?? <Cards items={played} />}</Section>
      <Section title="New in the catalog">
        <TrackList tracks={recent?.items ?? []} />
      </Section>
    </>
  );
}

function Search() {
  const [query, setQuery] = useState('');
  const [results, setResults] = useState<SearchResults | null>(null);
  const [heard, setHeard] = useState<string | null>(null);
  const [spoken, setSpoken] = useState<SearchResults | null>(null);
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => input.current?.focus(), []);
  useEffect(() => {
    const q = query.trim();
    if (!q) {
      setResults(null);
      return;
    }
    // Debounced: a search per pause in typing, not per key.
    const timer = window.setTimeout(() => {
      get<SearchResults>(`/v1/search?q=${encodeURIComponent(q)}&limit=20`)
        .then(setResults)
        .catch(() => setResults(null));
    }, 150);
    return () => window.clearTimeout(timer);
  }, [query]);
  // What was said wins until something is typed.
  const shown = spoken ?? results;
  return (
    <>
      <h1>Search</h1>
      <div class="search-bar">
        <input
          ref={input}
          class="search"
          type="search"
          placeholder="Songs, albums or artists"
          aria-label="Search"
          value={query}
          onInput={(e) => {
            setHeard(null);
            setSpoken(null);
            setQuery((e.currentTarget as HTMLInputElement).value);
          }}
          onKeyDown={(e) => {
            // Down from the box goes to the first song found.
            if (e.key === 'ArrowDown') {
              e.preventDefault();
              document.querySelector<HTMLElement>('.content .tracks .row')?.focus();
            }
          }}
        />
        <VoiceButton
          onResult={(result) => {
            setQuery('');
            setHeard(result.text ? `“${result.text}”` : 'Nothing was heard.');
            setSpoken(result.results);
            if (result.intent.action === 'play' && result.results.tracks.items.length) {
              void player.playQueue(result.results.tracks.items, 0);
            }
          }}
          onError={(message) => setHeard(message)}
        />
      </div>
      {heard && <p class="heard" role="status">{heard}</p>}
      {shown && (
        <>
          <Section title="Songs">
            <TrackList tracks={shown.tracks.items} />
          </Section>
          <Section title="Albums">
            <p class="chips">
              {shown.albums.items.map((a) => (
                <a class="chip" key={a.id} href={`#/album/${a.id}`}>
                  {a.title} <span class="muted">· {a.artist.name}</span>
                </a>
              ))}
              {!shown.albums.items.length && <span class="muted">No albums match.</span>}
            </p>
          </Section>
          <Section title="Artists">
            <p class="chips">
              {shown.artists.items.map((a) => (
                <a class="chip" key={a.id} href={`#/artist/${a.id}`}>{a.name}</a>
              ))}
              {!shown.artists.items.length && <span class="muted">No artists match.</span>}
            </p>
          </Section>
        </>
      )}
    </>
  );
}

/** Hold to speak (pointer, or Space or Enter held); the request is sent on release. */
function VoiceButton({
  onResult,
  onError,
}: {
  onResult: (result: VoiceResult) => void;
  onError: (message: string) => void;
}) {
  const [state, setState] = useState<'idle' | 'listening' | 'thinking'>('idle');
  const recording = useRef<Promise<Recording> | null>(null);
  const start = () => {
    if (recording.current || state === 'thinking') return;
    setState('listening');
    recording.current = Recording.start();
    recording.current.catch(() => {
      recording.current = null;
      setState('idle');
      onError('The microphone is not available.');
    });
  };
  const stop = async () => {
    const pending = recording.current;
    if (!pending) return;
    recording.current = null;
    setState('thinking');
    try {
      const audio = await (await pending).stop();
      onResult(await voiceSearch(audio));
    } catch (e) {
      onError(e instanceof ApiError ? `Voice search: ${e.message}` : 'Voice search failed.');
    } finally {
      setState('idle');
    }
  };
  const label = { idle: 'Hold to search by voice', listening: 'Listening… release to search', thinking: 'Searching…' }[state];
  return (
    <button
      class={`mic ${state}`}
      aria-label={label}
      title={label}
      onPointerDown={start}
      onPointerUp={() => void stop()}
      onPointerLeave={() => void stop()}
      onKeyDown={(e) => (e.key === ' ' || e.key === 'Enter') && !e.repeat && (e.preventDefault(), start())}
      onKeyUp={(e) => (e.key === ' ' || e.key === 'Enter') && void stop()}
    >
      <Icon name="mic" />
    </button>
  );
}

function Liked() {
  const [likes] = useGet<Page<{ track: Track }>>('/v1/me/likes?limit=100');
  return (
    <>
      <h1>Liked songs</h1>
      <TrackList tracks={likes?.items.map((l) => l.track) ?? []} />
    </>
  );
}

interface Uploading { name: string; progress: number; id?: string; status: string; error?: string }

function Upload() {
  const [uploads, setUploads] = useState<Uploading[]>([]);
  const patch = (name: string, change: Partial<Uploading>) =>
    setUploads((all) => all.map((u) => (u.name === name ? { ...u, ...change } : u)));
  const start = (files: FileList | null) => {
    for (const file of Array.from(files ?? [])) {
      setUploads((all) => [...all, { name: file.name, progress: 0, status: 'uploading' }]);
      upload(file, (progress) => patch(file.name, { progress }))
        .then(async (id) => {
          patch(file.name, { id, progress: 1, status: 'processing' });
          for (let i = 0; i < 600; i++) {
            const track = await get<Track>(`/v1/tracks/${id}`);
            if (track.status !== 'processing') {
              patch(file.name, { status: track.status ?? 'ready' });
              return;
            }
            await new Promise((r) => setTimeout(r, 1000));
          }
        })
        .catch((e: Error) => patch(file.name, { status: 'failed', error: e.message }));
    }
  };
  return (
    <>
      <h1>Upload</h1>
      <label class="dropzone">
        <input type="file" accept="audio/*" multiple onChange={(e) => start((e.currentTarget as HTMLInputElement).files)} />
        <strong>Choose audio files</strong>
        <span class="muted">MP3, FLAC, WAV, Ogg Vorbis or M4A. Tags name the track.</span>
      </label>
      <ul class="uploads">
        {uploads.map((u) => (
          <li key={u.name}>
            <span>{u.name}</span>
            <progress max={1} value={u.progress} aria-label={`${u.name} uploaded`} />
            <span class={`status ${u.status}`}>{u.error ?? u.status}</span>
          </li>
        ))}
      </ul>
    </>
  );
}

function PlayerBar() {
  const state = usePlayer();
  const track = state.queue[state.index];
  const [showQueue, setShowQueue] = useState(false);
  return (
    <footer class="player" aria-label="Player">
      {showQueue && (
        <aside class="queue" aria-label="Queue">
          <h2>Queue</h2>
          {state.queue.length ? (
            <ol>
              {state.queue.map((t, i) => (
                <li key={`${t.id}-${i}`}>
                  <button class={i === state.index ? 'current' : ''} onClick={() => player.jump(i)} aria-current={i === state.index ? 'true' : undefined}>
                    <strong>{t.title}</strong>
                    <span class="muted">{t.artist.name}</span>
                  </button>
                </li>
              ))}
            </ol>
          ) : (
            <p class="muted">Play something and what comes next shows here.</p>
          )}
        </aside>
      )}
      <div class="now">
        {track ? (
          <>
            <Artwork track={track} />
            <span class="title">
              <strong>{track.title}</strong>
              <span class="muted">{track.artist.name}</span>
            </span>
          </>
        ) : (
          <span class="muted">Pick something to play</span>
        )}
      </div>
      <div class="controls">
        <div class="buttons">
          <button class={`icon ${state.shuffle ? 'on' : ''}`} onClick={() => player.toggleShuffle()} aria-pressed={state.shuffle} aria-label="Shuffle">
            <Icon name="shuffle" />
          </button>
          <button class="icon" onClick={() => player.previous()} aria-label="Previous">
            <Icon name="previous" />
          </button>
          <button class="play" onClick={() => player.toggle()} aria-label={state.playing ? 'Pause' : 'Play'} disabled={!track}>
            <Icon name={state.playing ? 'pause' : 'play'} />
          </button>
          <button class="icon" onClick={() => player.next()} aria-label="Next">
            <Icon name="next" />
          </button>
          <button class={`icon repeat ${state.repeat !== 'off' ? 'on' : ''}`} onClick={() => player.cycleRepeat()} aria-label={`Repeat: ${state.repeat}`}>
            <Icon name="repeat" />
            {state.repeat === 'one' && <span class="badge">1</span>}
          </button>
        </div>
        <div class="seek">
          <span class="time">{duration(state.position * 1000)}</span>
          <input
            type="range"
            min={0}
            max={state.duration || 1}
            step={0.1}
            value={state.position}
            aria-label="Seek"
            onInput={(e) => player.seek(Number((e.currentTarget as HTMLInputElement).value))}
          />
          <span class="time">{duration(state.duration * 1000)}</span>
        </div>
        {state.error && <p class="error" role="alert">{state.error}</p>}
      </div>
      <div class="volume">
        <button class={`icon ${showQueue ? 'on' : ''}`} onClick={() => setShowQueue(!showQueue)} aria-pressed={showQueue} aria-label="Queue">
          <Icon name="queue" />
        </button>
        <Icon name="volume" />
        <label class="visually-hidden" for="volume">Volume</label>
        <input
          id="volume"
          type="range"
          min={0}
          max={1}
          step={0.01}
          value={state.volume}
          onInput={(e) => player.setVolume(Number((e.currentTarget as HTMLInputElement).value))}
        />
      </div>
    </footer>
  );
}
