// Voice search's microphone: records while held, as 16 kHz mono 16-bit WAV (what the
// speech recogniser takes), and sends it to `/v1/ai/voice-search`.

import { request, type SearchResults } from './api';

export interface VoiceResult {
  text: string;
  intent: { action: string; query: string; artist?: string | null; album?: string | null };
  results: SearchResults;
}

const RATE = 16_000;

export class Recording {
  private chunks: Float32Array[] = [];
  private constructor(
    private stream: MediaStream,
    private context: AudioContext,
    private node: ScriptProcessorNode,
  ) {}

  static async start(): Promise<Recording> {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1 } });
    const context = new AudioContext({ sampleRate: RATE });
    const source = context.createMediaStreamSource(stream);
    // A script processor is deprecated but everywhere, and needs no module of its own.
    const node = context.createScriptProcessor(4096, 1, 1);
    const recording = new Recording(stream, context, node);
    node.onaudioprocess = (event) => recording.chunks.push(new Float32Array(event.inputBuffer.getChannelData(0)));
    source.connect(node);
    node.connect(context.destination);
    return recording;
  }

  /** Stops recording; the WAV of what was heard. */
  async stop(): Promise<Blob> {
    this.node.disconnect();
    this.stream.getTracks().forEach((track) => track.stop());
    const rate = this.context.sampleRate;
    await this.context.close();
    return wav(this.chunks, rate);
  }
}

function wav(chunks: Float32Array[], rate: number): Blob {
  const samples = chunks.reduce((n, c) => n + c.length, 0);
  const buffer = new ArrayBuffer(44 + samples * 2);
  const view = new DataView(buffer);
  const text = (offset: number, value: string) =>
    [...value].forEach((ch, i) => view.setUint8(offset + i, ch.charCodeAt(0)));
  text(0, 'RIFF');
  view.setUint32(4, 36 + samples * 2, true);
  text(8, 'WAVE');
  text(12, 'fmt ');
  view.setUint32(16, 16, true);
  view.setUint16(20, 1, true);
  view.setUint16(22, 1, true);
  view.setUint32(24, rate, true);
  view.setUint32(28, rate * 2, true);
  view.setUint16(32, 2, true);
  view.setUint16(34, 16, true);
  text(36, 'data');
  view.setUint32(40, samples * 2, true);
  let offset = 44;
  for (const chunk of chunks) {
    for (const sample of chunk) {
      view.setInt16(offset, Math.max(-1, Math.min(1, sample)) * 0x7fff, true);
      offset += 2;
    }
  }
  return new Blob([buffer], { type: 'audio/wav' });
}

export function voiceSearch(audio: Blob): Promise<VoiceResult> {
  return request<VoiceResult>('/v1/ai/voice-search', {
    method: 'POST',
    headers: { 'content-type': 'audio/wav' },
    body: audio,
  });
}
