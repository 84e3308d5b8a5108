// Playback: one <audio> element fed HLS by hls.js (loaded on first play, so the first
// page stays small), or natively where the browser plays HLS itself; a queue with
// shuffle and repeat; the media-session keys; and every play reported to
// `/v1/me/plays` with how much of it was heard.

import type Hls from 'hls.js';
import { get, send, type Track } from './api';

export type Repeat = 'off' | 'all' | 'one';

export interface PlayerState {
  queue: Track[];
  index: number;
  playing: boolean;
  position: number;
  duration: number;
  volume: number;
  shuffle: boolean;
  repeat: Repeat;
  error: string | null;
}

type Listener = (state: PlayerState) => void;

/** What has been heard of the current track, for its play report. */
interface Listen { id: string; trackId: string; startedAt: string; heardMs: number; lastTime: number }

export class Player {
  readonly audio = new Audio();
  private hls: Hls | null = null;
  private listeners = new Set<Listener>();
  private listen: Listen | null = null;
  state: PlayerState = {
    queue: [],
    index: -1,
    playing: false,
    position: 0,
    duration: 0,
    volume: 0.8,
    shuffle: false,
    repeat: 'off',
    error: null,
  };

  constructor() {
    this.audio.preload = 'auto';
    this.audio.volume = this.state.volume;
    // In the document (hidden), where tools and extensions expect the page's media.
    this.audio.hidden = true;
    document.body.append(this.audio);
    const update = () =>
      this.set({
        playing: !this.audio.paused,
        position: this.audio.currentTime,
        duration: Number.isFinite(this.audio.duration) ? this.audio.duration : this.state.duration,
      });
    for (const event of ['play', 'pause', 'durationchange', 'loadedmetadata']) {
      this.audio.addEventListener(event, update);
    }
    this.audio.addEventListener('timeupdate', () => {
      this.count();
      update();
    });
    this.audio.addEventListener('ended', () => this.next(true));
    window.addEventListener('pagehide', () => this.report());
    const session = navigator.mediaSession;
    if (session) {
      session.setActionHandler('play', () => void this.audio.play());
      session.setActionHandler('pause', () => this.audio.pause());
      session.setActionHandler('previoustrack', () => this.previous());
      session.setActionHandler('nexttrack', () => this.next());
      session.setActionHandler('seekto', (d) => d.seekTime !== undefined && this.seek(d.seekTime));
    }
  }

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    listener(this.state);
    return () => this.listeners.delete(listener);
  }

  private set(patch: Partial<PlayerState>) {
    this.state = { ...this.state, ...patch };
    this.listeners.forEach((l) => l(this.state));
  }

  get current(): Track | null {
    return this.state.queue[this.state.index] ?? null;
  }

  /** Plays `queue` from `index`. */
  async playQueue(queue: Track[], index: number) {
    this.set({ queue, index });
    await this.load();
  }

  /** Jumps to the track at `index` of the queue. */
  jump(index: number) {
    if (index < 0 || index >= this.state.queue.length) return;
    this.set({ index });
    void this.load();
  }

  toggle() {
    if (!this.current) return;
    if (this.audio.paused) void this.audio.play();
    else this.audio.pause();
  }

  seek(seconds: number) {
    this.audio.currentTime = seconds;
    if (this.listen) this.listen.lastTime = seconds;
  }

  setVolume(volume: number) {
    this.audio.volume = volume;
    this.set({ volume });
  }

  toggleShuffle() {
    this.set({ shuffle: !this.state.shuffle });
  }

  cycleRepeat() {
    const order: Repeat[] = ['off', 'all', 'one'];
    this.set({ repeat: order[(order.indexOf(this.state.repeat) + 1) % order.length] });
  }

  next(ended = false) {
    const { queue, index, shuffle, repeat } = this.state;
    if (!queue.length) return;
    if (ended && repeat === 'one') {
      void this.load();
      return;
    }
    let next = shuffle ? Math.floor(Math.random() * queue.length) : index + 1;
    if (next >= queue.length) {
      if (repeat !== 'all') {
        this.report();
        this.audio.pause();
        return;
      }
      next = 0;
    }
    this.set({ index: next });
    void this.load();
  }

  previous() {
    if (this.audio.currentTime > 3 || this.state.index <= 0) {
      this.seek(0);
      return;
    }
    this.set({ index: this.state.index - 1 });
    void this.load();
  }

  private async load() {
    this.report();
    const track = this.current;
    if (!track) return;
    this.set({ error: null, position: 0, duration: track.duration_ms / 1000 });
    try {
      const { url } = await get<{ url: string }>(`/v1/tracks/${track.id}/stream`);
      if (this.audio.canPlayType('application/vnd.apple.mpegurl')) {
        this.audio.src = url;
      } else {
        const { default: HlsPlayer } = await import('hls.js');
        this.hls?.destroy();
        this.hls = new HlsPlayer({ maxBufferLength: 30 });
        this.hls.loadSource(url);
        this.hls.attachMedia(this.audio);
      }
      this.listen = {
        id: crypto.randomUUID(),
        trackId: track.id,
        startedAt: new Date().toISOString(),
        heardMs: 0,
        lastTime: 0,
      };
      this.announce(track);
      await this.audio.play();
    } catch (error) {
      this.set({ error: error instanceof Error ? error.message : String(error) });
    }
  }

  /** Adds what was heard since the last tick; seeking does not count as listening. */
  private count() {
    if (!this.listen) return;
    const delta = this.audio.currentTime - this.listen.lastTime;
    if (delta > 0 && delta < 2) this.listen.heardMs += delta * 1000;
    this.listen.lastTime = this.audio.currentTime;
  }

  /** Reports the current play, once, if anything was heard. */
  private report() {
    const listen = this.listen;
    this.listen = null;
    if (!listen || listen.heardMs < 1000) return;
    const play = {
      id: listen.id,
      track_id: listen.trackId,
      played_ms: Math.round(listen.heardMs),
      started_at: listen.startedAt,
    };
    void send('POST', '/v1/me/plays', play).catch(() => {});
  }

  private announce(track: Track) {
    if (!navigator.mediaSession) return;
    navigator.mediaSession.metadata = new MediaMetadata({
      title: track.title,
      artist: track.artist.name,
      album: track.album.title,
    });
  }
}

export const player = new Player();
