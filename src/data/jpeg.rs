//! Whether a JPEG file is whole. Decoders (the `image` crate's among them) fill a scan that
//! stops half-way with grey and report nothing, so an import would keep a half-grey image; a
//! whole JPEG is a chain of marker segments and entropy-coded scans that ends with the
//! end-of-image marker (EOI, `FF D9`). Bytes after EOI (some cameras append data) are fine.

/// `Ok` if `bytes` hold a JPEG whose structure runs to its EOI marker, else what is wrong,
/// with the byte offset where the file ends or breaks.
pub fn complete(bytes: &[u8]) -> Result<(), String> {
    let cut = |at: usize, what: &str| {
        Err(format!(
            "cut off: the file ends at byte {} {what}, before the JPEG's end-of-image marker",
            at.min(bytes.len())
        ))
    };
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err("not a JPEG: no start-of-image marker".into());
    }
    let mut i = 2;
    loop {
        // A marker: one or more 0xFF, then its code.
        if i >= bytes.len() {
            return cut(i, "between segments");
        }
        if bytes[i] != 0xFF {
            return Err(format!("broken: byte {i} is 0x{:02X} where a marker should be", bytes[i]));
        }
        while i < bytes.len() && bytes[i] == 0xFF {
            i += 1;
        }
        let Some(&code) = bytes.get(i) else { return cut(i, "in a marker") };
        i += 1;
        match code {
            0xD9 => return Ok(()),
            // Markers without a segment: restart markers and TEM.
            0xD0..=0xD7 | 0x01 => continue,
            _ => {}
        }
        let Some(length) =
            bytes.get(i..i + 2).map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
        else {
            return cut(i, "in a segment's length");
        };
        if length < 2 {
            return Err(format!("broken: the segment at byte {} has length {length}", i - 2));
        }
        i += length;
        if i > bytes.len() {
            return cut(bytes.len(), &format!("inside a 0x{code:02X} segment"));
        }
        if code == 0xDA {
            // Start of scan: entropy-coded data up to the next marker that is neither a
            // stuffed 0xFF (FF 00) nor a restart marker.
            loop {
                let Some(at) = bytes[i..].iter().position(|&b| b == 0xFF) else {
                    return cut(bytes.len(), "in the scan data");
                };
                i += at;
                match bytes.get(i + 1) {
                    None => return cut(bytes.len(), "in the scan data"),
                    Some(0x00 | 0xD0..=0xD7) => i += 2,
                    Some(0xFF) => i += 1,
                    Some(_) => break,
                }
            }
        }
    }
}

/// A JPEG decoded at the smallest of its DCT scales (1/8, 1/4, 1/2, 1 of each side) that is
/// still at least `side` x `side` pixels, with its EXIF orientation (not yet applied). The
/// inverse DCT then makes 64x fewer pixels for a photo 8x larger than the import's side, and
/// the image is never held at full size (libjpeg's `scale_denom`, ITU-T T.81 A.3.3).
/// `Ok(None)` for JPEGs of 16-bit grey or CMYK samples, which the general decoder takes.
///
/// # Errors
/// The decoder's message, or the refusal of an image over `max_pixels` (from its header).
pub fn decode_scaled(
    bytes: &[u8],
    side: u32,
    max_pixels: u64,
) -> Result<Option<(image::DynamicImage, image::metadata::Orientation)>, String> {
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.read_info().map_err(|e| format!("cannot decode: {e}"))?;
    let info = decoder.info().expect("read after read_info");
    super::import::check_pixels(u32::from(info.width), u32::from(info.height), max_pixels)?;
    // The decoder takes the first scale at which either side reaches its request: ask for the
    // shorter side only, so that both reach `side`.
    let side = u16::try_from(side).unwrap_or(u16::MAX);
    let request = if info.width >= info.height { (u16::MAX, side) } else { (side, u16::MAX) };
    let (width, height) =
        decoder.scale(request.0, request.1).map_err(|e| format!("cannot decode: {e}"))?;
    let orientation = decoder
        .exif_data()
        .and_then(image::metadata::Orientation::from_exif_chunk)
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let layout = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => 1,
        jpeg_decoder::PixelFormat::RGB24 => 3,
        jpeg_decoder::PixelFormat::L16 | jpeg_decoder::PixelFormat::CMYK32 => return Ok(None),
    };
    let pixels = decoder.decode().map_err(|e| format!("cannot decode: {e}"))?;
    let (width, height) = (u32::from(width), u32::from(height));
    let image = if layout == 1 {
        image::GrayImage::from_raw(width, height, pixels).map(image::DynamicImage::ImageLuma8)
    } else {
        image::RgbImage::from_raw(width, height, pixels).map(image::DynamicImage::ImageRgb8)
    };
    Ok(Some((image.ok_or("cannot decode: fewer samples than the header says")?, orientation)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg() -> Vec<u8> {
        let image = image::RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 5) as u8, ((x * y) % 251) as u8])
        });
        let mut bytes = Vec::new();
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90);
        image.write_with_encoder(encoder).unwrap();
        bytes
    }

    #[test]
    fn a_whole_jpeg_passes_and_every_cut_of_it_is_found() {
        let whole = jpeg();
        assert_eq!(complete(&whole), Ok(()));
        let mut trailing = whole.clone();
        trailing.extend_from_slice(b"camera data after the end");
        assert_eq!(complete(&trailing), Ok(()), "bytes after EOI are not a cut");
        for len in (0..whole.len() - 1).step_by(7).chain([whole.len() - 2, whole.len() - 1]) {
            let error = complete(&whole[..len]).unwrap_err();
            assert!(
                error.starts_with("cut off") || error.starts_with("not a JPEG"),
                "{len}: {error}"
            );
        }
    }

    #[test]
    fn a_jpeg_is_decoded_at_the_smallest_scale_that_covers_the_side_and_looks_the_same() {
        let image = image::RgbImage::from_fn(512, 256, |x, y| {
            image::Rgb([(x / 2) as u8, y as u8, if (x / 64 + y / 64) % 2 == 0 { 40 } else { 220 }])
        });
        let mut bytes = Vec::new();
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95);
        image.write_with_encoder(encoder).unwrap();
        let full = image::load_from_memory(&bytes).unwrap().into_rgb8();
        let shrink = |i: &image::RgbImage| {
            image::imageops::resize(i, 64, 64, image::imageops::FilterType::Triangle)
        };
        // Side 64: 1/8 would make 64 x 32, so 1/4 (128 x 64); side 300: full size.
        for (side, want) in [(64, (128, 64)), (16, (64, 32)), (300, (512, 256))] {
            let (scaled, orientation) = decode_scaled(&bytes, side, u64::MAX).unwrap().unwrap();
            assert_eq!((scaled.width(), scaled.height()), want, "side {side}");
            assert_eq!(orientation, image::metadata::Orientation::NoTransforms);
            let (a, b) = (shrink(&scaled.into_rgb8()), shrink(&full));
            let diff = a.iter().zip(b.iter()).map(|(x, y)| x.abs_diff(*y) as f64).sum::<f64>()
                / a.len() as f64;
            assert!(diff < 3.0, "side {side}: mean difference {diff} of 255");
        }
        let refused = decode_scaled(&bytes, 64, 100_000).unwrap_err();
        assert!(refused.contains("512 x 256 pixels"), "{refused}");
    }
}
