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
}
