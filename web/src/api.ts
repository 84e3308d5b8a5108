// The API as the player uses it: one fetch wrapper that signs requests, refreshes the
// access token before it expires (and once more on a 401), and turns problem+json answers
// into errors that carry their detail.

export interface ArtistRef { id: string; name: string }
export interface AlbumRef { id: string; title: string }
export interface Track {
  id: string;
  title: string;
  artist: ArtistRef;
  album: AlbumRef;
  duration_ms: number;
  status?: 'processing' | 'ready' | 'failed';
}
export interface Page<T> { items: T[]; total: number; limit: number; offset: number }
export interface User {
  id: string;
  email: string;
  display_name: string;
  tier: 'free' | 'premium';
  role: string;
  /** When paid premium ends; absent unless premium was paid for. */
  premium_until?: string;
}
export interface Recommendation { track: Track; score: number; reason: string }
export interface SearchResults {
  tracks: Page<Track>;
  albums: Page<{ id: string; title: string; artist: ArtistRef }>;
  artists: Page<ArtistRef>;
}

export interface Playlist {
  id: string;
  owner_id: string;
  name: string;
  description: string | null;
  public: boolean;
  tracks_total: number;
  snapshot_id: string;
  followed: boolean;
}
export interface Entry { position: number; track: Track; added_at: string }
export interface Album { id: string; title: string; artist: ArtistRef; year: number | null; tracks: Track[] }
export interface Artist { id: string; name: string; albums: { id: string; title: string; year: number | null }[] }
export interface TopTrack { track: Track; plays: number; streams: number; listeners: number }
export interface PlayPoint { t: string; plays: number; streams: number; listeners: number }

// People: follows, notifications and what friends are playing.
export interface UserRef { id: string; display_name: string }
export interface Person extends UserRef { followed: boolean }
export interface Profile extends UserRef {
  followers: number;
  following: number;
  followed: boolean;
  follows_you: boolean;
}
export interface Follow { user: UserRef; followed_at: string }
export type NotificationKind = 'new_follower' | 'playlist_created' | 'playlist_changed' | 'playlist_followed';
export interface Notification {
  id: string;
  kind: NotificationKind;
  actor: UserRef | null;
  playlist: { id: string; name: string } | null;
  count: number;
  read: boolean;
  created_at: string;
  updated_at: string;
}
export interface Notifications extends Page<Notification> { unread: number }
export interface NowPlaying {
  user: UserRef;
  track: Track;
  position_ms: number;
  paused: boolean;
  updated_at: string;
  expires_at: string;
}

export class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

interface Tokens { access_token: string; refresh_token: string; expires_in: number }

// The refresh token outlives the page (so a reload keeps you signed in); the access
// token lives in memory only.
const REFRESH_KEY = 'tonearm.refresh';
let accessToken: string | null = null;
let refreshTimer: number | undefined;
let refreshing: Promise<boolean> | null = null;
const listeners = new Set<(signedIn: boolean) => void>();

export function onSession(listener: (signedIn: boolean) => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function keep(tokens: Tokens) {
  accessToken = tokens.access_token;
  localStorage.setItem(REFRESH_KEY, tokens.refresh_token);
  window.clearTimeout(refreshTimer);
  // Silently, a minute before it expires (or halfway, for short-lived tokens).
  const lead = Math.min(60, tokens.expires_in / 2);
  refreshTimer = window.setTimeout(() => void refresh(), (tokens.expires_in - lead) * 1000);
  listeners.forEach((l) => l(true));
}

function forget() {
  accessToken = null;
  localStorage.removeItem(REFRESH_KEY);
  window.clearTimeout(refreshTimer);
  listeners.forEach((l) => l(false));
}

/** Exchanges the stored refresh token for a new pair; false when there is none or it is spent. */
export function refresh(): Promise<boolean> {
  refreshing ??= (async () => {
    const refresh_token = localStorage.getItem(REFRESH_KEY);
    if (!refresh_token) return false;
    const response = await fetch('/v1/auth/refresh', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ refresh_token }),
    }).catch(() => null);
    if (response?.ok) {
      keep(await response.json());
      return true;
    }
    if (response && response.status < 500) forget();
    return false;
  })().finally(() => (refreshing = null));
  return refreshing;
}

async function problem(response: Response): Promise<ApiError> {
  let detail = response.statusText || `HTTP ${response.status}`;
  try {
    const body = await response.json();
    detail = body.detail ?? body.title ?? detail;
  } catch {
    // Not problem+json: the status says enough.
  }
  return new ApiError(response.status, detail);
}

/** A signed fetch, refreshed and tried once more on a 401; errors for anything but 2xx. */
async function signed(path: string, init: RequestInit = {}, retried = false): Promise<Response> {
  const headers = new Headers(init.headers);
  if (accessToken) headers.set('authorization', `Bearer ${accessToken}`);
  if (init.body && typeof init.body === 'string') headers.set('content-type', 'application/json');
  const response = await fetch(path, { ...init, headers });
  if (response.status === 401 && !retried && (await refresh())) {
    return signed(path, init, true);
  }
  if (!response.ok) throw await problem(response);
  return response;
}

export async function request<T>(path: string, init: RequestInit = {}): Promise<T> {
  const response = await signed(path, init);
  if (response.status === 204 || response.status === 202) return undefined as T;
  return response.json();
}

export const get = <T>(path: string) => request<T>(path);

/** A GET's body with its response headers (the rate limit rides on them). */
export async function getWithHeaders<T>(path: string): Promise<[T, Headers]> {
  const response = await signed(path);
  return [await response.json(), response.headers];
}

/** Opens a signed stream (Server-Sent Events, which EventSource cannot sign). */
export const openStream = (path: string, signal: AbortSignal) =>
  signed(path, { signal, headers: { accept: 'text/event-stream' }, cache: 'no-store' });

/** A signed GET of something that is not JSON (artwork); `null` when there is none. */
export async function getBlob(path: string): Promise<Blob | null> {
  const headers = new Headers();
  if (accessToken) headers.set('authorization', `Bearer ${accessToken}`);
  const response = await fetch(path, { headers }).catch(() => null);
  return response?.ok ? response.blob() : null;
}
export const send = <T>(method: string, path: string, body?: unknown) =>
  request<T>(path, { method, body: body === undefined ? undefined : JSON.stringify(body) });

export async function signIn(email: string, password: string) {
  keep(await send<Tokens>('POST', '/v1/auth/login', { email, password }));
}

export async function signUp(email: string, password: string, display_name: string) {
  keep(await send<Tokens>('POST', '/v1/auth/register', { email, password, display_name }));
}

export async function signOut() {
  const refresh_token = localStorage.getItem(REFRESH_KEY);
  if (refresh_token) await send('POST', '/v1/auth/logout', { refresh_token }).catch(() => {});
  forget();
}

/** Uploads a file, reporting progress from 0 to 1; resolves with the new track's id. */
export function upload(file: File, progress: (fraction: number) => void): Promise<string> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/v1/tracks');
    if (accessToken) xhr.setRequestHeader('authorization', `Bearer ${accessToken}`);
    xhr.upload.onprogress = (event) => event.lengthComputable && progress(event.loaded / event.total);
    xhr.onload = () => {
      let body: { id?: string; detail?: string } = {};
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        // An empty or foreign answer: reported below.
      }
      if (xhr.status >= 200 && xhr.status < 300 && body.id) resolve(body.id);
      else reject(new ApiError(xhr.status, body.detail ?? `upload failed (${xhr.status})`));
    };
    xhr.onerror = () => reject(new ApiError(0, 'the upload could not reach the server'));
    const form = new FormData();
    form.append('file', file);
    xhr.send(form);
  });
}

export const artworkUrl = (albumId: string, size: 300 | 640 = 300) =>
  `/v1/albums/${albumId}/artwork?size=${size}`;

export function duration(ms: number): string {
  const seconds = Math.round(ms / 1000);
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, '0')}`;
}
