"""faster-whisper (CTranslate2) on the clip the voice benchmark times, with the same model
and threads: the reference Tonearm's Whisper is compared with.

    python voice_reference.py MODEL_DIR CLIP.wav REPEAT THREADS
"""
import statistics
import sys
import time

from faster_whisper import WhisperModel

model_dir, clip, repeat, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for compute_type in ("float32", "int8"):
    model = WhisperModel(model_dir, device="cpu", compute_type=compute_type, cpu_threads=threads)
    for beam in (1, 5):
        def once():
            segments, _ = model.transcribe(
                clip, beam_size=beam, language="en", without_timestamps=True,
                condition_on_previous_text=False, vad_filter=False, temperature=0.0)
            return "".join(s.text for s in segments)
        once()
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            once()
            times.append(time.perf_counter() - started)
        took = statistics.median(times)
        print(f"faster-whisper {compute_type}, beam {beam}, 20 s clip: {took:.2f} s "
              f"(median of {repeat}), real-time factor {took / 20:.3f}")
