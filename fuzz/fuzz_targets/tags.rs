//! An uploaded file, whatever it holds: sniffing its format and reading its tags never
//! panics, and what is read keeps to the catalog's limits.
#![no_main]

use std::io::Write as _;

use catalog::domain::{AudioFormat, MAX_NAME_CHARS, read_tags};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = AudioFormat::sniff(data);
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    file.write_all(data).expect("written");
    let tags = read_tags(file.path(), Some("upload.bin"));
    for name in [&tags.title, &tags.artist, &tags.album] {
        assert!(name.chars().count() <= MAX_NAME_CHARS, "{name:?} is longer than allowed");
    }
    if let Some(cover) = &tags.cover {
        let _ = catalog::domain::artwork::scale_cover(cover);
    }
});
