//! Thumbnails: an image decoded under limits (size, pixels, memory), scaled to fit
//! [`THUMB_SIDE`] x [`THUMB_SIDE`] and encoded as PNG, on a blocking thread.

use std::io::Cursor;

use bytes::Bytes;
use image::{ImageFormat, ImageReader, Limits};

use crate::error::FilesError;
use crate::sniff::MAX_IMAGE_SIDE;

/// Largest side of a thumbnail, in pixels.
pub const THUMB_SIDE: u32 = 320;
/// Memory one decode may take.
pub const MAX_DECODE_BYTES: u64 = 256 * 1024 * 1024;

/// A thumbnail of `bytes` (PNG) and the image's width and height.
pub async fn thumbnail(bytes: Bytes) -> Result<(Bytes, u32, u32), FilesError> {
    tokio::task::spawn_blocking(move || make(&bytes))
        .await
        .map_err(FilesError::Join)?
}

fn make(bytes: &[u8]) -> Result<(Bytes, u32, u32), FilesError> {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| FilesError::Image(image::ImageError::IoError(e)))?;
    reader.limits(limits);
    let img = reader.decode().map_err(FilesError::Image)?;
    let (w, h) = (img.width(), img.height());
    let small = img.thumbnail(THUMB_SIDE, THUMB_SIDE);
    let mut out = Vec::new();
    small
        .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
        .map_err(FilesError::Image)?;
    Ok((Bytes::from(out), w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_large_image_fits_the_box() {
        let img = image::RgbImage::from_pixel(1000, 500, image::Rgb([200, 10, 10]));
        let mut png = Vec::new();
        img.write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        let (thumb, w, h) = thumbnail(Bytes::from(png)).await.unwrap();
        assert_eq!((w, h), (1000, 500));
        let t = image::load_from_memory(&thumb).unwrap();
        assert_eq!((t.width(), t.height()), (320, 160));
    }

    #[tokio::test]
    async fn garbage_is_an_error() {
        let e = thumbnail(Bytes::from_static(b"\x89PNG\r\n\x1a\ngarbage")).await;
        assert!(matches!(e, Err(FilesError::Image(_))), "{e:?}");
    }
}
