//! Text to IPA phonemes with espeak-ng, the phonemizer Piper voices were trained on.
//!
//! The library is opened when the voice loads rather than linked, so Tonearm builds and
//! runs where it is absent (speech is then reported unavailable). espeak-ng keeps global
//! state, so every call goes through one lock.
#![allow(unsafe_code)]

use std::{
    ffi::{CStr, CString, c_char, c_int, c_void},
    sync::Mutex,
};

use libloading::Library;

/// The names the shared library goes by (Debian's `libespeak-ng1`, Homebrew's, …).
const LIBRARY_NAMES: &[&str] = &["libespeak-ng.so.1", "libespeak-ng.so", "libespeak-ng.dylib"];

const AUDIO_OUTPUT_SYNCHRONOUS: c_int = 2;
const INITIALIZE_DONT_EXIT: c_int = 0x8000;
const CHARS_UTF8: c_int = 1;
const PHONEMES_IPA: c_int = 0x02;

type Initialize = unsafe extern "C" fn(c_int, c_int, *const c_char, c_int) -> c_int;
type SetVoiceByName = unsafe extern "C" fn(*const c_char) -> c_int;
type TextToPhonemes = unsafe extern "C" fn(*mut *const c_void, c_int, c_int) -> *const c_char;

#[derive(Debug, thiserror::Error)]
pub enum EspeakError {
    #[error("espeak-ng is not installed (install libespeak-ng1): {0}")]
    Missing(String),
    #[error("espeak-ng did not start: {0}")]
    Init(String),
    #[error("espeak-ng has no voice {0}")]
    Voice(String),
    #[error("the text holds a NUL character")]
    Nul,
}

/// A loaded espeak-ng, set to one voice.
pub struct Espeak {
    /// Kept open for as long as the functions below are called.
    _library: Library,
    set_voice: SetVoiceByName,
    to_phonemes: TextToPhonemes,
    voice: CString,
    /// espeak-ng keeps global state: one call at a time.
    calls: Mutex<()>,
}

impl std::fmt::Debug for Espeak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Espeak").field("voice", &self.voice).finish()
    }
}

impl Espeak {
    /// Opens the library, its data found where it was installed, and selects `voice` (such
    /// as `en-us`).
    pub fn open(voice: &str) -> Result<Self, EspeakError> {
        let mut failures = Vec::new();
        let library = LIBRARY_NAMES
            .iter()
            .find_map(|name| {
                // SAFETY: loading espeak-ng runs no initialiser with preconditions of ours.
                unsafe { Library::new(name) }.map_err(|error| failures.push(error.to_string())).ok()
            })
            .ok_or_else(|| EspeakError::Missing(failures.join("; ")))?;
        let voice = CString::new(voice).map_err(|_| EspeakError::Nul)?;
        let missing = |error: libloading::Error| EspeakError::Missing(error.to_string());
        // SAFETY: the symbols have the signatures of espeak-ng's speak_lib.h; the function
        // pointers are kept only beside the library that holds them; the voice's name
        // lives across the calls.
        let (set_voice, to_phonemes) = unsafe {
            let initialize: Initialize = *library.get(b"espeak_Initialize\0").map_err(missing)?;
            let set_voice: SetVoiceByName =
                *library.get(b"espeak_SetVoiceByName\0").map_err(missing)?;
            let to_phonemes: TextToPhonemes =
                *library.get(b"espeak_TextToPhonemes\0").map_err(missing)?;
            let rate =
                initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, std::ptr::null(), INITIALIZE_DONT_EXIT);
            if rate <= 0 {
                return Err(EspeakError::Init(format!("espeak_Initialize answered {rate}")));
            }
            if set_voice(voice.as_ptr()) != 0 {
                return Err(EspeakError::Voice(voice.to_string_lossy().into_owned()));
            }
            (set_voice, to_phonemes)
        };
        Ok(Self { _library: library, set_voice, to_phonemes, voice, calls: Mutex::new(()) })
    }

    /// The text's phonemes in IPA, clause by clause, each followed by the punctuation that
    /// ended it (as Piper's phonemizer gives them), clauses separated by a space.
    pub fn phonemize(&self, text: &str) -> Result<String, EspeakError> {
        let text = CString::new(text).map_err(|_| EspeakError::Nul)?;
        let _turn = self.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = String::new();
        // SAFETY: `text` is NUL-terminated and outlives the loop; espeak-ng advances the
        // pointer within it or sets it to null at the end; the phonemes it returns are
        // copied before the next call reuses its buffer; the lock serialises all calls.
        unsafe {
            // Another instance in this process may have selected another voice.
            (self.set_voice)(self.voice.as_ptr());
            let start = text.as_ptr();
            let end = start.add(text.as_bytes().len());
            let mut cursor: *const c_void = start.cast();
            while !cursor.is_null() {
                let before = cursor.cast::<c_char>();
                let phonemes = (self.to_phonemes)(&mut cursor, CHARS_UTF8, PHONEMES_IPA);
                let after = if cursor.is_null() { end } else { cursor.cast::<c_char>() };
                if !phonemes.is_null() {
                    let clause = CStr::from_ptr(phonemes).to_string_lossy();
                    let clause = clause.trim();
                    if !clause.is_empty() {
                        if !out.is_empty() {
                            out.push(' ');
                        }
                        out.push_str(clause);
                    }
                }
                // The punctuation that ended the clause, from the text it consumed.
                let consumed = std::slice::from_raw_parts(
                    before.cast::<u8>(),
                    usize::try_from(after.offset_from(before)).unwrap_or(0),
                );
                let ending = String::from_utf8_lossy(consumed)
                    .trim_end()
                    .chars()
                    .next_back()
                    .filter(|c| matches!(c, '.' | ',' | '?' | '!' | ';' | ':'));
                if let (Some(mark), false) = (ending, out.is_empty()) {
                    out.push(mark);
                }
            }
        }
        Ok(out)
    }
}
