//! What a file is, judged from its bytes: the content type (magic bytes, never the client's
//! word), whether a browser may show it inline, and for images their size from the header,
//! refused past the decompression-bomb limits before anything is decoded.

use std::io::Cursor;

/// Bytes read before an upload is judged (and before anything is written).
pub const HEAD_BYTES: usize = 256 * 1024;
/// Largest image side, in pixels.
pub const MAX_IMAGE_SIDE: u32 = 16_384;
/// Largest image, in pixels.
pub const MAX_IMAGE_PIXELS: u64 = 40_000_000;

/// Image types a browser may show inline (and that get thumbnails).
pub const INLINE_IMAGES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// Why an upload's bytes are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the name says {claimed} but the content is {found}")]
    NameMismatch {
        claimed: &'static str,
        found: &'static str,
    },
    #[error("the content starts like {0} but its header cannot be read: {1}")]
    BadImage(&'static str, String),
    #[error("the image is {0}x{1} pixels; at most {MAX_IMAGE_SIDE} a side and {MAX_IMAGE_PIXELS} in all are accepted")]
    TooManyPixels(u32, u32),
}

/// What the bytes say about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sniffed {
    pub content_type: &'static str,
    /// Width and height of an inline image type.
    pub dimensions: Option<(u32, u32)>,
}

impl Sniffed {
    /// Whether downloads may be shown inline (and a thumbnail made).
    pub fn is_image(&self) -> bool {
        is_inline_image(self.content_type)
    }
}

/// Whether `content_type` is one of [`INLINE_IMAGES`].
pub fn is_inline_image(content_type: &str) -> bool {
    INLINE_IMAGES.contains(&content_type)
}

/// Judges a file called `name` from its first bytes (`head`: up to [`HEAD_BYTES`], all of
/// it for a smaller file).
pub fn sniff(name: &str, head: &[u8]) -> Result<Sniffed, Refused> {
    let content_type = content_type(head);
    if let Some(claimed) = claimed_image(name) {
        if claimed != content_type {
            return Err(Refused::NameMismatch {
                claimed,
                found: content_type,
            });
        }
    }
    let dimensions = if is_inline_image(content_type) {
        let (w, h) = image::ImageReader::new(Cursor::new(head))
            .with_guessed_format()
            .map_err(|e| Refused::BadImage(content_type, e.to_string()))?
            .into_dimensions()
            .map_err(|e| Refused::BadImage(content_type, e.to_string()))?;
        if w > MAX_IMAGE_SIDE
            || h > MAX_IMAGE_SIDE
            || u64::from(w) * u64::from(h) > MAX_IMAGE_PIXELS
        {
            return Err(Refused::TooManyPixels(w, h));
        }
        Some((w, h))
    } else {
        None
    };
    Ok(Sniffed {
        content_type,
        dimensions,
    })
}

/// The content type of bytes starting with `head`.
pub fn content_type(head: &[u8]) -> &'static str {
    if let Some(kind) = infer::get(head) {
        return kind.mime_type();
    }
    if looks_like_text(head) {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

/// UTF-8 without control characters other than tab and line breaks (a character cut at the
/// end of the head is allowed).
fn looks_like_text(head: &[u8]) -> bool {
    let valid = match std::str::from_utf8(head) {
        Ok(s) => s,
        Err(e) if e.error_len().is_none() => {
            // Cut mid-character at the end: the part before is what counts.
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or("")
        }
        Err(_) => return false,
    };
    !head.is_empty()
        && valid
            .chars()
            .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
}

/// The image type a file name claims by its extension.
fn claimed_image(name: &str) -> Option<&'static str> {
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    match ext.as_str() {
        "png" => Some("image/png"),
        "jpg" | "jpeg" => Some("image/jpeg"),
        "gif" => Some("image/gif"),
        "webp" => Some("image/webp"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbaImage::new(w, h);
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    /// A PNG header that declares `w` x `h` pixels, with no pixel data behind it.
    pub(crate) fn png_header(w: u32, h: u32) -> Vec<u8> {
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
        chunk(&mut out, &ihdr);
        // A few bytes of compressed data: a bomb's are what would inflate.
        chunk(&mut out, b"IDAT\x78\x9c\x03\x00\x00\x00\x00\x01");
        chunk(&mut out, b"IEND");
        out
    }

    fn chunk(out: &mut Vec<u8>, typed: &[u8]) {
        out.extend_from_slice(&(typed.len() as u32 - 4).to_be_bytes());
        out.extend_from_slice(typed);
        out.extend_from_slice(&crc32(typed).to_be_bytes());
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn images_are_known_by_their_bytes() {
        let s = sniff("cat.png", &png(3, 2)).unwrap();
        assert_eq!(s.content_type, "image/png");
        assert_eq!(s.dimensions, Some((3, 2)));
        // The name does not matter when it claims nothing.
        assert_eq!(sniff("cat", &png(3, 2)).unwrap().content_type, "image/png");
    }

    #[test]
    fn a_pdf_and_text_and_bytes() {
        assert_eq!(
            content_type(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"),
            "application/pdf"
        );
        assert_eq!(
            content_type("héllo\n".as_bytes()),
            "text/plain; charset=utf-8"
        );
        assert_eq!(content_type(b"\x00\x01\x02"), "application/octet-stream");
        // HTML is known as such, and is no inline image: it is only ever downloaded.
        assert!(!is_inline_image(content_type(b"<html><script>x</script>")));
    }

    #[test]
    fn a_zip_called_png_is_refused() {
        let zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00";
        assert_eq!(
            sniff("bomb.png", zip),
            Err(Refused::NameMismatch {
                claimed: "image/png",
                found: "application/zip"
            })
        );
    }

    #[test]
    fn a_broken_image_is_refused() {
        let head = b"\x89PNG\r\n\x1a\nnot really";
        assert!(matches!(
            sniff("x.png", head),
            Err(Refused::BadImage("image/png", _))
        ));
    }

    #[test]
    fn a_pixel_bomb_is_refused_from_its_header() {
        assert_eq!(
            sniff("big.png", &png_header(100_000, 100_000)),
            Err(Refused::TooManyPixels(100_000, 100_000))
        );
        assert_eq!(
            sniff("wide.png", &png_header(10_000, 5_000)),
            Err(Refused::TooManyPixels(10_000, 5_000))
        );
        assert_eq!(
            sniff("ok.png", &png_header(4_000, 3_000))
                .unwrap()
                .dimensions,
            Some((4_000, 3_000))
        );
    }
}
