//! Album artwork: the picture embedded in a file, scaled to the sizes players ask for.

use image::{ImageFormat, codecs::jpeg::JpegEncoder, imageops::FilterType};

/// The edge lengths, in pixels, artwork is served at.
pub const SIZES: [u32; 2] = [300, 640];

/// Scales a cover to fit each of [`SIZES`], as JPEG; `None` when it is not an image we
/// can decode (the track is filed without artwork then).
pub fn scale_cover(original: &[u8]) -> Option<Vec<(u32, Vec<u8>)>> {
    let image = image::load_from_memory(original).ok()?;
    SIZES
        .iter()
        .map(|&size| {
            let scaled = image.resize(size, size, FilterType::Triangle).to_rgb8();
            let mut jpeg = Vec::new();
            JpegEncoder::new_with_quality(&mut jpeg, 85).encode_image(&scaled).ok()?;
            Some((size, jpeg))
        })
        .collect()
}

/// Whether bytes are a JPEG (what artwork is stored as).
pub fn is_jpeg(bytes: &[u8]) -> bool {
    image::guess_format(bytes).is_ok_and(|format| format == ImageFormat::Jpeg)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    #[test]
    fn covers_are_scaled_to_fit_each_size() {
        let mut png = Vec::new();
        image::RgbImage::from_pixel(1000, 800, image::Rgb([200, 40, 90]))
            .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        let scaled = scale_cover(&png).unwrap();
        for ((size, jpeg), expected) in scaled.iter().zip(SIZES) {
            assert_eq!(*size, expected);
            assert!(is_jpeg(jpeg));
            let decoded = image::load_from_memory(jpeg).unwrap();
            assert_eq!(decoded.width(), expected, "the longer edge fits");
            assert_eq!(decoded.height(), expected * 4 / 5, "the aspect ratio stays");
        }
        assert!(scale_cover(b"not an image").is_none());
    }
}
