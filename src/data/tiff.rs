//! Multiband (Geo)TIFF decoding with the `tiff` crate: any number of bands of uint8, uint16,
//! int16 or float32 samples, chunky or planar, strips or tiles, uncompressed, LZW, deflate,
//! zstd or PackBits, with or without the horizontal or floating-point predictor. The first
//! image of a file is read (later ones are overviews in GDAL's files); its samples keep their
//! type, bands come out interleaved [height, width, bands].
//!
//! Metadata kept: GeoTIFF's `ModelTiepointTag` (33922), `ModelPixelScaleTag` (33550) and the
//! EPSG code of `GeoKeyDirectoryTag` (34735); band names from `GDAL_METADATA` (42112), the XML
//! in which GDAL writes each band's description (`<Item name="DESCRIPTION" sample="0"
//! role="description">B01</Item>`).

use std::io::{Read, Seek};
use std::path::Path;

use ::tiff::decoder::{Decoder, DecodingResult};
use ::tiff::tags::Tag;

use super::raster::{BandDtype, GeoTags, Pixels, Raster};

/// GDAL's metadata tag (not in the `tiff` crate's list).
const GDAL_METADATA: u16 = 42112;
/// GeoKey ids (GeoTIFF 1.1, section 7).
const PROJECTED_CRS_KEY: u16 = 3072;
const GEOGRAPHIC_CRS_KEY: u16 = 2048;

/// What a file's header says, read without decoding any pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub height: usize,
    pub width: usize,
    pub bands: usize,
    /// The sample type, or why it is not one a raster set can store.
    pub dtype: Result<BandDtype, String>,
    /// An 8-bit colour or grey image as the RGB import takes it (grey, RGB, RGBA, palette,
    /// YCbCr, CMYK): nothing an RGB conversion loses but alpha.
    pub colour_image: bool,
}

/// Whether `bytes` (the start of a file) is a TIFF or BigTIFF signature.
pub fn is_tiff(bytes: &[u8]) -> bool {
    matches!(bytes.get(..4), Some(b"II*\0" | b"MM\0*" | b"II+\0" | b"MM\0+"))
}

/// Whether `path` names a TIFF by its extension (`.tif`, `.tiff`, any case).
pub fn has_tiff_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("tif") || e.eq_ignore_ascii_case("tiff"))
}

/// The header of the TIFF `path`, or why it cannot be read (the text a skipped file gets).
pub fn header(path: &Path) -> Result<Header, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut decoder = Decoder::new(std::io::BufReader::new(file))
        .map_err(|e| format!("cannot read TIFF: {e}"))?;
    header_of(&mut decoder)
}

fn header_of<R: Read + Seek>(decoder: &mut Decoder<R>) -> Result<Header, String> {
    let bad = |e: ::tiff::TiffError| format!("cannot read TIFF: {e}");
    let (width, height) = decoder.dimensions().map_err(bad)?;
    let color = decoder.colortype().map_err(bad)?;
    let format = decoder
        .find_tag_unsigned_vec::<u16>(Tag::SampleFormat)
        .map_err(bad)?
        .and_then(|v| v.first().copied())
        .unwrap_or(1);
    use ::tiff::ColorType;
    let colour_image = matches!(
        color,
        ColorType::Gray(8)
            | ColorType::RGB(8)
            | ColorType::RGBA(8)
            | ColorType::Palette(8)
            | ColorType::YCbCr(8)
            | ColorType::CMYK(8)
    );
    let bands_of_samples = matches!(
        color,
        ColorType::Gray(_) | ColorType::RGB(_) | ColorType::RGBA(_) | ColorType::Multiband { .. }
    );
    let dtype = match (format, color.bit_depth()) {
        _ if !bands_of_samples => Err(format!(
            "{color:?} samples are colours, not bands (the RGB import takes them; leave out --raster)"
        )),
        (1, 8) => Ok(BandDtype::U8),
        (1, 16) => Ok(BandDtype::U16),
        (2, 16) => Ok(BandDtype::I16),
        (3, 32) => Ok(BandDtype::F32),
        (format, bits) => Err(format!(
            "{bits}-bit samples of SampleFormat {format} are not one of uint8, uint16, int16, \
             float32"
        )),
    };
    Ok(Header {
        height: height as usize,
        width: width as usize,
        bands: usize::from(color.num_samples()),
        dtype,
        colour_image,
    })
}

/// The first image of the TIFF in `bytes`, its band names and georeferencing, or why it
/// cannot be imported.
pub fn decode(bytes: &[u8]) -> Result<Raster, String> {
    let mut decoder =
        Decoder::new(std::io::Cursor::new(bytes)).map_err(|e| format!("cannot read TIFF: {e}"))?;
    let Header { height, width, bands, dtype, .. } = header_of(&mut decoder)?;
    let dtype = dtype?;
    let mut result = match dtype {
        BandDtype::U8 => DecodingResult::U8(Vec::new()),
        BandDtype::U16 => DecodingResult::U16(Vec::new()),
        BandDtype::I16 => DecodingResult::I16(Vec::new()),
        BandDtype::F32 => DecodingResult::F32(Vec::new()),
    };
    let layout = decoder
        .read_image_to_buffer(&mut result)
        .map_err(|e| format!("cannot decode TIFF: {e}"))?;
    let planar = layout.planes > 1;
    let samples = height * width * bands;
    let pixels = match result {
        DecodingResult::U8(v) => Pixels::U8(interleaved(v, planar, bands, samples)?),
        DecodingResult::U16(v) => Pixels::U16(interleaved(v, planar, bands, samples)?),
        DecodingResult::I16(v) => Pixels::I16(interleaved(v, planar, bands, samples)?),
        DecodingResult::F32(v) => Pixels::F32(interleaved(v, planar, bands, samples)?),
        _ => unreachable!("the buffer keeps the type it was given"),
    };
    let geo = geo_tags(&mut decoder);
    let band_names = decoder
        .get_tag_ascii_string(Tag::Unknown(GDAL_METADATA))
        .map(|xml| gdal_band_names(&xml, bands))
        .unwrap_or_else(|_| vec![None; bands]);
    Ok(Raster { height, width, bands, pixels, band_names, geo })
}

/// Samples [height, width, bands] from the decoder's buffer: as they are when chunky, bands
/// interleaved when planar ([bands, height, width]).
fn interleaved<T: Copy>(
    v: Vec<T>,
    planar: bool,
    bands: usize,
    samples: usize,
) -> Result<Vec<T>, String> {
    if v.len() < samples {
        return Err(format!("cannot decode TIFF: {} of {samples} samples", v.len()));
    }
    if !planar {
        let mut v = v;
        v.truncate(samples);
        return Ok(v);
    }
    let plane = samples / bands;
    Ok((0..samples).map(|i| v[(i % bands) * plane + i / bands]).collect())
}

fn geo_tags<R: Read + Seek>(decoder: &mut Decoder<R>) -> GeoTags {
    let doubles = |decoder: &mut Decoder<R>, tag| decoder.get_tag_f64_vec(tag).ok();
    let tiepoint = doubles(decoder, Tag::ModelTiepointTag)
        .and_then(|v| v.get(..6).map(|v| <[f64; 6]>::try_from(v).expect("six values")));
    let pixel_scale = doubles(decoder, Tag::ModelPixelScaleTag)
        .and_then(|v| v.get(..3).map(|v| <[f64; 3]>::try_from(v).expect("three values")));
    let epsg = decoder.get_tag_u16_vec(Tag::GeoKeyDirectoryTag).ok().and_then(|keys| epsg(&keys));
    GeoTags { tiepoint, pixel_scale, epsg }
}

/// The EPSG code in a GeoKey directory (header of 4 shorts, then keys of 4: id, location,
/// count, value; location 0 means the value is inline): the projected CRS, else the geographic
/// one; none for a user-defined CRS (32767).
pub fn epsg(directory: &[u16]) -> Option<u16> {
    let count = usize::from(*directory.get(3)?);
    let keys: Vec<&[u16]> = directory.get(4..)?.chunks_exact(4).take(count).collect();
    let inline = |id: u16| {
        keys.iter().find(|k| k[0] == id && k[1] == 0).map(|k| k[3]).filter(|&v| v != 32767)
    };
    inline(PROJECTED_CRS_KEY).or_else(|| inline(GEOGRAPHIC_CRS_KEY))
}

/// Band names from GDAL's metadata XML: the text of each `DESCRIPTION` item of role
/// `description`, by its `sample` (band index from 0).
pub fn gdal_band_names(xml: &str, bands: usize) -> Vec<Option<String>> {
    let mut names = vec![None; bands];
    for item in xml.split("<Item").skip(1) {
        let Some((attributes, rest)) = item.split_once('>') else { continue };
        let attribute = |key: &str| {
            let start = attributes.find(&format!("{key}=\""))? + key.len() + 2;
            attributes[start..].split('"').next()
        };
        if attribute("name") != Some("DESCRIPTION") || attribute("role") != Some("description") {
            continue;
        }
        let sample = attribute("sample").and_then(|s| s.parse::<usize>().ok());
        let text = rest.split("</Item>").next().unwrap_or_default().trim();
        if let Some(slot) = sample.and_then(|s| names.get_mut(s)) {
            *slot = Some(unescape_xml(text));
        }
    }
    names
}

fn unescape_xml(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn band_names_and_epsg_come_from_gdal_metadata_and_geokeys() {
        let xml = r#"<GDALMetadata>
  <Item name="DESCRIPTION" sample="1" role="description">B02 &amp; blue</Item>
  <Item name="OFFSET" sample="0" role="offset">0</Item>
  <Item name="DESCRIPTION" sample="0" role="description">B01</Item>
</GDALMetadata>"#;
        assert_eq!(
            gdal_band_names(xml, 3),
            [Some("B01".to_string()), Some("B02 & blue".to_string()), None]
        );
        // Version 1.1.0, 2 keys: raster type (inline 1), projected CRS 32633 (UTM 33N).
        let keys = [1, 1, 0, 2, 1025, 0, 1, 1, 3072, 0, 1, 32633];
        assert_eq!(epsg(&keys), Some(32633));
        assert_eq!(epsg(&[1, 1, 0, 1, 2048, 0, 1, 4326]), Some(4326));
        assert_eq!(epsg(&[1, 1, 0, 1, 3072, 0, 1, 32767]), None, "user-defined");
    }
}
