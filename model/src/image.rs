//! Image ↔ planar float conversion shared by the command line and the page: decoding with
//! size limits checked before any pixel buffer is allocated, EXIF orientation, 8/16-bit,
//! gray and alpha; encoding back to PNG with the paper's truncation to integers.

use std::io::Cursor;

use ::image::{
    DynamicImage, ImageBuffer, ImageDecoder, ImageReader, Limits, Luma, LumaA, Rgb, Rgba,
};

use crate::error::ModelError;

/// Largest accepted width or height.
pub const MAX_SIDE: u32 = 20_000;
/// Largest accepted pixel count (a 100-megapixel photo).
pub const MAX_PIXELS: u64 = 100_000_000;

/// Bits per channel of the source, kept for the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BitDepth {
    /// 8 bits per channel.
    Eight,
    /// 16 bits per channel.
    Sixteen,
}

/// A decoded picture, upright, as the network sees it.
#[derive(Clone, Debug)]
pub struct Picture {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Planar RGB in [0, 1], `[3, H, W]` (gray sources are replicated to three channels).
    pub rgb: Vec<f32>,
    /// Alpha in [0, 1], `[H, W]`, passed through untouched.
    pub alpha: Option<Vec<f32>>,
    /// Bit depth of the source.
    pub depth: BitDepth,
    /// Whether the source was grayscale (the output is written gray too).
    pub gray: bool,
}

fn too_large(width: u64, height: u64, max_pixels: u64) -> ModelError {
    ModelError::ImageTooLarge {
        width,
        height,
        limit: MAX_SIDE,
        max_pixels,
    }
}

/// Check the size an image header claims, before decoding it.
pub fn check_size(width: u64, height: u64) -> Result<(), ModelError> {
    check_size_within(width, height, MAX_PIXELS)
}

/// [`check_size`] with a smaller pixel budget (the page's, whose memory is smaller).
pub fn check_size_within(width: u64, height: u64, max_pixels: u64) -> Result<(), ModelError> {
    if width == 0 || height == 0 {
        return Err(ModelError::decode(format!(
            "image has no pixels ({width}x{height})"
        )));
    }
    let max_pixels = max_pixels.min(MAX_PIXELS);
    if width > MAX_SIDE as u64 || height > MAX_SIDE as u64 || width * height > max_pixels {
        return Err(too_large(width, height, max_pixels));
    }
    Ok(())
}

/// Decode an image file's bytes (PNG, JPEG, TIFF, BMP, WebP), upright per its EXIF orientation.
pub fn decode(bytes: &[u8]) -> Result<Picture, ModelError> {
    decode_within(bytes, MAX_PIXELS)
}

/// [`decode`] refusing images of more than `max_pixels` pixels before decoding them.
pub fn decode_within(bytes: &[u8], max_pixels: u64) -> Result<Picture, ModelError> {
    let max_pixels = max_pixels.min(MAX_PIXELS);
    if bytes.is_empty() {
        return Err(ModelError::decode("the file is empty"));
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ModelError::decode_from("its start cannot be read", e))?;
    if reader.format().is_none() {
        return Err(ModelError::decode(
            "not an image in a known format (PNG, JPEG, TIFF, BMP, WebP)",
        ));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(max_pixels * 8 + (64 << 20));
    // Read the header without limits to learn the claimed size, then check it ourselves
    // before any pixel buffer is allocated.
    let mut reader = reader;
    reader.no_limits();
    let mut decoder = reader.into_decoder().map_err(|e| {
        ModelError::decode_from("its header is damaged or of an unsupported kind", e)
    })?;
    let (width, height) = decoder.dimensions();
    check_size_within(width as u64, height as u64, max_pixels)?;
    decoder.set_limits(limits).map_err(|e| match e {
        ::image::ImageError::Limits(_) => too_large(width as u64, height as u64, max_pixels),
        e => ModelError::decode_from("its decoder refused the size limits", e),
    })?;
    let orientation = decoder.orientation().ok();
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| match e {
        ::image::ImageError::Limits(_) => too_large(width as u64, height as u64, max_pixels),
        e => ModelError::decode_from("the file looks truncated or corrupt", e),
    })?;
    if let Some(orientation) = orientation {
        img.apply_orientation(orientation);
    }
    Ok(from_dynamic(&img))
}

/// Planar float picture from a decoded image.
pub fn from_dynamic(img: &DynamicImage) -> Picture {
    let (width, height) = (img.width() as usize, img.height() as usize);
    let color = img.color();
    let depth = if color.bytes_per_pixel() / color.channel_count() >= 2 {
        BitDepth::Sixteen
    } else {
        BitDepth::Eight
    };
    let gray = !color.has_color();
    let n = width * height;
    let mut rgb = vec![0f32; 3 * n];
    let mut alpha = color.has_alpha().then(|| vec![0f32; n]);
    match depth {
        BitDepth::Eight => {
            let buf = img.to_rgba8();
            for (i, p) in buf.pixels().enumerate() {
                for c in 0..3 {
                    rgb[c * n + i] = p[c] as f32 / 255.0;
                }
                if let Some(a) = alpha.as_mut() {
                    a[i] = p[3] as f32 / 255.0;
                }
            }
        }
        BitDepth::Sixteen => {
            let buf = img.to_rgba16();
            for (i, p) in buf.pixels().enumerate() {
                for c in 0..3 {
                    rgb[c * n + i] = p[c] as f32 / 65535.0;
                }
                if let Some(a) = alpha.as_mut() {
                    a[i] = p[3] as f32 / 65535.0;
                }
            }
        }
    }
    Picture {
        width,
        height,
        rgb,
        alpha,
        depth,
        gray,
    }
}

/// `uint8(255 * clamp(v, 0, 1))`: truncation, as the authors' test script saves its outputs.
pub fn to_u8(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0) as u8
}

/// Interleaved 8-bit RGB (an `RgbImage`'s buffer) as planar `[3, H, W]` floats in [0, 1].
pub fn planar_from_rgb8(rgb: &[u8]) -> Vec<f32> {
    let n = rgb.len() / 3;
    let mut planar = vec![0f32; 3 * n];
    for (i, p) in rgb.chunks_exact(3).enumerate() {
        for c in 0..3 {
            planar[c * n + i] = p[c] as f32 / 255.0;
        }
    }
    planar
}

/// Planar `[3, H, W]` floats in [0, 1] as interleaved 8-bit RGB, rounded to the nearest level
/// (as a photo is stored; [`to_u8`] truncates, as the paper's metric does).
pub fn rgb8_from_planar(planar: &[f32]) -> Vec<u8> {
    let n = planar.len() / 3;
    (0..n)
        .flat_map(|i| [0, 1, 2].map(|c| to_u8(planar[c * n + i] + 0.5 / 255.0)))
        .collect()
}

/// The 16-bit counterpart of [`to_u8`].
pub fn to_u16(v: f32) -> u16 {
    (v.clamp(0.0, 1.0) * 65535.0) as u16
}

/// Planar RGB `[3, H, W]` as interleaved 8-bit RGBA with the picture's alpha (opaque without
/// one), truncated as the paper saves its outputs: what a canvas shows.
pub fn rgba8(rgb: &[f32], like: &Picture) -> Vec<u8> {
    let n = like.width * like.height;
    (0..n)
        .flat_map(|i| {
            let a = like.alpha.as_ref().map(|a| to_u8(a[i])).unwrap_or(255);
            [to_u8(rgb[i]), to_u8(rgb[n + i]), to_u8(rgb[2 * n + i]), a]
        })
        .collect()
}

/// Planar RGB `[3, H, W]` in [0, 1] to an image with the source's depth, color and alpha.
pub fn to_dynamic(rgb: &[f32], like: &Picture) -> DynamicImage {
    let (w, h) = (like.width as u32, like.height as u32);
    let n = like.width * like.height;
    let luma = |i: usize| 0.299 * rgb[i] + 0.587 * rgb[n + i] + 0.114 * rgb[2 * n + i];
    let alpha = |i: usize| like.alpha.as_ref().map(|a| a[i]).unwrap_or(1.0);
    macro_rules! build {
        ($pixel:ident, $conv:ident, |$i:ident| [$($e:expr),+]) => {
            DynamicImage::from(ImageBuffer::from_fn(w, h, |x, y| {
                let $i = y as usize * like.width + x as usize;
                $pixel([$($conv($e)),+])
            }))
        };
    }
    match (like.depth, like.gray, like.alpha.is_some()) {
        (BitDepth::Eight, false, false) => {
            build!(Rgb, to_u8, |i| [rgb[i], rgb[n + i], rgb[2 * n + i]])
        }
        (BitDepth::Eight, false, true) => DynamicImage::from(
            ::image::RgbaImage::from_raw(w, h, rgba8(rgb, like)).expect("w * h RGBA pixels"),
        ),
        (BitDepth::Eight, true, false) => build!(Luma, to_u8, |i| [luma(i)]),
        (BitDepth::Eight, true, true) => build!(LumaA, to_u8, |i| [luma(i), alpha(i)]),
        (BitDepth::Sixteen, false, false) => {
            build!(Rgb, to_u16, |i| [rgb[i], rgb[n + i], rgb[2 * n + i]])
        }
        (BitDepth::Sixteen, false, true) => build!(Rgba, to_u16, |i| [
            rgb[i],
            rgb[n + i],
            rgb[2 * n + i],
            alpha(i)
        ]),
        (BitDepth::Sixteen, true, false) => build!(Luma, to_u16, |i| [luma(i)]),
        (BitDepth::Sixteen, true, true) => build!(LumaA, to_u16, |i| [luma(i), alpha(i)]),
    }
}

/// A small valid PNG whose header claims `width` x `height` pixels (with a valid checksum):
/// what a hostile or corrupt file looks like to a decoder. For tests of the size limits.
#[doc(hidden)]
pub fn png_claiming_size(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    DynamicImage::from(ImageBuffer::from_pixel(8, 8, Rgb([0u8, 0, 0])))
        .write_to(&mut Cursor::new(&mut bytes), ::image::ImageFormat::Png)
        .expect("encoding to memory");
    // Signature (8), IHDR length (4), "IHDR" (4), width (4), height (4), ..., CRC over 12..29.
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32fast::hash(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

/// Encode planar RGB like `like` as PNG bytes.
pub fn encode_png(rgb: &[f32], like: &Picture) -> Result<Vec<u8>, ModelError> {
    let mut out = Vec::new();
    to_dynamic(rgb, like)
        .write_to(&mut Cursor::new(&mut out), ::image::ImageFormat::Png)
        .map_err(|e| ModelError::encode("the PNG", e))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(img: DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), ::image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn eight_bit_rgb_round_trips_exactly() {
        let img = DynamicImage::from(ImageBuffer::from_fn(5, 3, |x, y| {
            Rgb([x as u8 * 50, y as u8 * 80, 255])
        }));
        let pic = decode(&png(img.clone())).unwrap();
        assert_eq!(
            (pic.width, pic.height, pic.depth, pic.gray),
            (5, 3, BitDepth::Eight, false)
        );
        let back = ::image::load_from_memory(&encode_png(&pic.rgb, &pic).unwrap()).unwrap();
        assert_eq!(back.to_rgb8(), img.to_rgb8());
    }

    #[test]
    fn sixteen_bit_gray_with_alpha_keeps_depth_color_and_alpha() {
        let img = DynamicImage::from(ImageBuffer::from_fn(4, 2, |x, y| {
            LumaA([x as u16 * 9000, 1000 + y as u16 * 30000])
        }));
        let pic = decode(&png(img.clone())).unwrap();
        assert_eq!((pic.depth, pic.gray), (BitDepth::Sixteen, true));
        let back = ::image::load_from_memory(&encode_png(&pic.rgb, &pic).unwrap()).unwrap();
        assert_eq!(back.color(), ::image::ColorType::La16);
        assert_eq!(back.to_luma_alpha16(), img.to_luma_alpha16());
    }

    /// A JPEG carrying an EXIF orientation tag (6: rotate 90° clockwise to display).
    fn jpeg_with_orientation(width: u32, height: u32, orientation: u16) -> Vec<u8> {
        let img = DynamicImage::from(ImageBuffer::from_fn(width, height, |x, _| {
            Rgb([(x * 20) as u8, 0, 0])
        }));
        let mut jpeg = Vec::new();
        img.write_to(&mut Cursor::new(&mut jpeg), ::image::ImageFormat::Jpeg)
            .unwrap();
        // APP1 "Exif\0\0" + little-endian TIFF with one IFD entry: Orientation (0x0112), SHORT.
        let mut tiff = b"II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0".to_vec();
        tiff.extend_from_slice(&orientation.to_le_bytes());
        tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&tiff);
        let mut out = jpeg[..2].to_vec(); // SOI
        out.extend_from_slice(&[0xff, 0xe1]);
        out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&app1);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    #[test]
    fn exif_orientation_is_applied() {
        let pic = decode(&jpeg_with_orientation(16, 8, 1)).unwrap();
        assert_eq!((pic.width, pic.height), (16, 8));
        let pic = decode(&jpeg_with_orientation(16, 8, 6)).unwrap();
        assert_eq!((pic.width, pic.height), (8, 16), "rotated upright");
        // Rotated clockwise: the source's left column (dark) is now the top row.
        let n = pic.width * pic.height;
        let top: f32 = pic.rgb[..pic.width].iter().sum();
        let bottom: f32 = pic.rgb[n - pic.width..n].iter().sum();
        assert!(top < bottom, "top {top} bottom {bottom}");
    }

    #[test]
    fn truncation_is_the_papers() {
        assert_eq!(to_u8(0.999), 254);
        assert_eq!(to_u8(1.5), 255);
        assert_eq!(to_u8(-0.1), 0);
        assert_eq!(to_u8(128.9 / 255.0), 128);
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        assert!(decode(&[]).unwrap_err().to_string().contains("empty"));
        assert!(decode(b"hello, world")
            .unwrap_err()
            .to_string()
            .contains("not an image"));
        let img = DynamicImage::from(ImageBuffer::from_fn(64, 64, |x, _| Rgb([x as u8, 0, 0])));
        let bytes = png(img);
        assert!(decode(&bytes[..bytes.len() / 2]).is_err());
        // A PNG header claiming 60000x60000 is refused before any pixel buffer exists.
        let err = decode(&png_claiming_size(60000, 60000)).unwrap_err();
        assert!(matches!(err, ModelError::ImageTooLarge { .. }), "{err}");
    }
}
