//! A small GeoTIFF writer for multiband rasters, for sample folders of the shapes Sentinel-2
//! chips come in (tests, `shardsweep data rasters`): little-endian classic TIFF, strips,
//! chunky or planar, uncompressed, LZW, deflate or zstd, the horizontal predictor (integers)
//! or the floating-point one (float32, Adobe's TIFF Technical Note 3), GeoTIFF tie point,
//! pixel scale and EPSG key, and band names as GDAL writes them (`GDAL_METADATA`). The
//! `tiff` crate's encoder writes neither planar images nor more than its fixed colour types.

use std::io::Write;
use std::path::Path;

use super::raster::{with_samples, GeoTags, Pixels, Raster};

/// How the strips are compressed (TIFF's `Compression` tag values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None = 1,
    Lzw = 5,
    /// zlib streams (Adobe deflate).
    Deflate = 8,
    /// libtiff's code for zstd.
    Zstd = 50000,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    pub compression: Compression,
    /// Difference each row before compressing: horizontal for integers, floating-point for
    /// float32.
    pub predictor: bool,
    /// Bands in planes of their own (PlanarConfiguration 2) instead of interleaved.
    pub planar: bool,
    pub rows_per_strip: usize,
}

/// Writes `raster` to `path` with `band_names` (as GDAL does, when given).
///
/// # Errors
/// The file cannot be written; a compressor fails.
pub fn write(
    path: &Path,
    raster: &Raster,
    band_names: &[String],
    options: WriteOptions,
) -> std::io::Result<()> {
    std::fs::write(path, encode(raster, band_names, options)?)
}

/// The bytes of the TIFF file [`write`] writes.
pub fn encode(
    raster: &Raster,
    band_names: &[String],
    options: WriteOptions,
) -> std::io::Result<Vec<u8>> {
    let (h, w, c) = (raster.height, raster.width, raster.bands);
    let bytes = raster.pixels.dtype().bytes();
    let rows = options.rows_per_strip.clamp(1, h.max(1));
    // Each strip's samples, little-endian, one plane or all bands.
    let planes: Vec<Vec<u8>> = if options.planar {
        (0..c).map(|b| plane_bytes(&raster.pixels, c, Some(b))).collect()
    } else {
        vec![plane_bytes(&raster.pixels, c, None)]
    };
    let row_samples = if options.planar { w } else { w * c };
    let stride = if options.planar { 1 } else { c };
    let mut strips = Vec::new();
    for plane in &planes {
        for chunk in plane.chunks(rows * row_samples * bytes) {
            let mut chunk = chunk.to_vec();
            if options.predictor {
                for row in chunk.chunks_mut(row_samples * bytes) {
                    predict(row, &raster.pixels, stride);
                }
            }
            strips.push(compress(&chunk, options.compression)?);
        }
    }
    let format = match raster.pixels {
        Pixels::U8(_) | Pixels::U16(_) => 1,
        Pixels::I16(_) => 2,
        Pixels::F32(_) => 3,
    };
    let predictor = match (options.predictor, &raster.pixels) {
        (false, _) => 1,
        (true, Pixels::F32(_)) => 3,
        (true, _) => 2,
    };
    let mut tags = vec![
        (256, Value::Long(vec![w as u32])),
        (257, Value::Long(vec![h as u32])),
        (258, Value::Short(vec![8 * bytes as u16; c])),
        (259, Value::Short(vec![options.compression as u16])),
        // BlackIsZero: bands without a colour meaning, as GDAL writes multispectral files.
        (262, Value::Short(vec![1])),
        (273, Value::Long(vec![0; strips.len()])),
        (277, Value::Short(vec![c as u16])),
        (278, Value::Long(vec![rows as u32])),
        (279, Value::Long(strips.iter().map(|s| s.len() as u32).collect())),
        (284, Value::Short(vec![if options.planar { 2 } else { 1 }])),
        (317, Value::Short(vec![predictor])),
        (339, Value::Short(vec![format; c])),
    ];
    if c > 1 {
        tags.push((338, Value::Short(vec![0; c - 1])));
    }
    tags.extend(geo_tags(&raster.geo));
    if !band_names.is_empty() {
        tags.push((42112, Value::Ascii(gdal_metadata(band_names))));
    }
    tags.sort_by_key(|(tag, _)| *tag);
    Ok(layout(tags, strips))
}

/// The samples of one band (`Some`) or all, little-endian.
fn plane_bytes(pixels: &Pixels, bands: usize, band: Option<usize>) -> Vec<u8> {
    with_samples!(pixels, v => v
        .iter()
        .enumerate()
        .filter(|(i, _)| band.is_none_or(|b| i % bands == b))
        .flat_map(|(_, x)| x.to_le_bytes())
        .collect())
}

/// Differences one row in place: each sample minus the one `stride` samples before it
/// (wrapping, at the sample's type), or for float32 the floating-point predictor's byte
/// planes (most significant first) differenced byte by byte.
fn predict(row: &mut [u8], pixels: &Pixels, stride: usize) {
    match pixels {
        Pixels::U8(_) => {
            for i in (stride..row.len()).rev() {
                row[i] = row[i].wrapping_sub(row[i - stride]);
            }
        }
        Pixels::U16(_) | Pixels::I16(_) => {
            let mut v: Vec<u16> =
                row.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
            for i in (stride..v.len()).rev() {
                v[i] = v[i].wrapping_sub(v[i - stride]);
            }
            row.copy_from_slice(&v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>());
        }
        Pixels::F32(_) => {
            let n = row.len() / 4;
            let mut planes = vec![0u8; row.len()];
            for i in 0..n {
                let be = [row[4 * i + 3], row[4 * i + 2], row[4 * i + 1], row[4 * i]];
                for (byte, value) in be.into_iter().enumerate() {
                    planes[byte * n + i] = value;
                }
            }
            for i in (stride..planes.len()).rev() {
                planes[i] = planes[i].wrapping_sub(planes[i - stride]);
            }
            row.copy_from_slice(&planes);
        }
    }
}

fn compress(data: &[u8], compression: Compression) -> std::io::Result<Vec<u8>> {
    let other = std::io::Error::other;
    match compression {
        Compression::None => Ok(data.to_vec()),
        Compression::Lzw => weezl::encode::Encoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8)
            .encode(data)
            .map_err(other),
        Compression::Deflate => {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
            z.write_all(data)?;
            z.finish()
        }
        Compression::Zstd => zstd::encode_all(data, 3),
    }
}

fn geo_tags(geo: &GeoTags) -> Vec<(u16, Value)> {
    let mut tags = Vec::new();
    if let Some(scale) = geo.pixel_scale {
        tags.push((33550, Value::Double(scale.to_vec())));
    }
    if let Some(tiepoint) = geo.tiepoint {
        tags.push((33922, Value::Double(tiepoint.to_vec())));
    }
    if let Some(epsg) = geo.epsg {
        // GeoTIFF 1.1: model type projected (1024 = 1), raster is area (1025 = 1), the CRS.
        let key = if epsg == 4326 { 2048 } else { 3072 };
        let model = if epsg == 4326 { 2 } else { 1 };
        tags.push((
            34735,
            Value::Short(vec![1, 1, 1, 3, 1024, 0, 1, model, 1025, 0, 1, 1, key, 0, 1, epsg]),
        ));
    }
    tags
}

fn gdal_metadata(names: &[String]) -> String {
    let items: String = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let n = n.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
            format!("  <Item name=\"DESCRIPTION\" sample=\"{i}\" role=\"description\">{n}</Item>\n")
        })
        .collect();
    format!("<GDALMetadata>\n{items}</GDALMetadata>\n")
}

enum Value {
    Short(Vec<u16>),
    Long(Vec<u32>),
    Double(Vec<f64>),
    Ascii(String),
}

impl Value {
    fn type_and_bytes(&self) -> (u16, u32, Vec<u8>) {
        match self {
            Value::Short(v) => {
                (3, v.len() as u32, v.iter().flat_map(|x| x.to_le_bytes()).collect())
            }
            Value::Long(v) => (4, v.len() as u32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Value::Double(v) => {
                (12, v.len() as u32, v.iter().flat_map(|x| x.to_le_bytes()).collect())
            }
            Value::Ascii(s) => {
                let mut b = s.as_bytes().to_vec();
                b.push(0);
                (2, b.len() as u32, b)
            }
        }
    }
}

/// Header, strips, then the directory with its out-of-line values; strip offsets filled in.
fn layout(mut tags: Vec<(u16, Value)>, strips: Vec<Vec<u8>>) -> Vec<u8> {
    let mut out = b"II*\0\0\0\0\0".to_vec();
    let mut offsets = Vec::new();
    for strip in &strips {
        offsets.push(out.len() as u32);
        out.extend_from_slice(strip);
        if out.len() % 2 == 1 {
            out.push(0);
        }
    }
    for (tag, value) in &mut tags {
        if *tag == 273 {
            *value = Value::Long(offsets.clone());
        }
    }
    let ifd = out.len();
    out[4..8].copy_from_slice(&(ifd as u32).to_le_bytes());
    let mut extra_at = ifd + 2 + 12 * tags.len() + 4;
    let mut entries = (tags.len() as u16).to_le_bytes().to_vec();
    let mut extra = Vec::new();
    for (tag, value) in &tags {
        let (kind, count, mut bytes) = value.type_and_bytes();
        entries.extend_from_slice(&tag.to_le_bytes());
        entries.extend_from_slice(&kind.to_le_bytes());
        entries.extend_from_slice(&count.to_le_bytes());
        if bytes.len() <= 4 {
            bytes.resize(4, 0);
            entries.extend_from_slice(&bytes);
        } else {
            entries.extend_from_slice(&(extra_at as u32).to_le_bytes());
            if bytes.len() % 2 == 1 {
                bytes.push(0);
            }
            extra_at += bytes.len();
            extra.extend_from_slice(&bytes);
        }
    }
    entries.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&entries);
    out.extend_from_slice(&extra);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raster(pixels: Pixels, bands: usize) -> Raster {
        let n = pixels.len() / bands;
        let side = (n as f64).sqrt() as usize;
        Raster {
            height: side,
            width: side,
            bands,
            pixels,
            band_names: vec![None; bands],
            geo: GeoTags {
                tiepoint: Some([0.0, 0.0, 0.0, 499_980.0, 5_200_020.0, 0.0]),
                pixel_scale: Some([10.0, 10.0, 0.0]),
                epsg: Some(32633),
            },
        }
    }

    /// Every type, layout, compression and predictor decodes to the samples written.
    #[test]
    fn the_decoder_reads_back_what_is_written() {
        let (side, bands) = (9, 5);
        let n = side * side * bands;
        let all = [
            Pixels::U8((0..n).map(|i| (i * 7) as u8).collect()),
            Pixels::U16((0..n).map(|i| (i * 977 % 65536) as u16).collect()),
            Pixels::I16((0..n).map(|i| (i as i32 * 613 % 60000 - 30000) as i16).collect()),
            Pixels::F32((0..n).map(|i| (i as f32 * 0.37).sin() * 1e3).collect()),
        ];
        let names: Vec<String> = (1..=bands).map(|b| format!("B{b:02}")).collect();
        for pixels in all {
            let dtype = pixels.dtype();
            let raster = raster(pixels, bands);
            for compression in
                [Compression::None, Compression::Lzw, Compression::Deflate, Compression::Zstd]
            {
                for (predictor, planar) in
                    [(false, false), (true, false), (false, true), (true, true)]
                {
                    let options =
                        WriteOptions { compression, predictor, planar, rows_per_strip: 4 };
                    let bytes = encode(&raster, &names, options).unwrap();
                    let what = format!("{dtype} {options:?}");
                    let back = crate::data::tiff::decode(&bytes).expect(&what);
                    assert_eq!(back.pixels, raster.pixels, "{what}");
                    assert_eq!(back.geo, raster.geo, "{what}");
                    assert_eq!(back.band_names[4].as_deref(), Some("B05"), "{what}");
                }
            }
        }
    }
}
