//! Image format detection from magic numbers and the checks an image passes before upload.

use sha2::{Digest, Sha256};

/// Image formats by their leading bytes. Only PNG and JPEG are uploaded, because they are the
/// formats the Directory API documents and its examples use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Jpeg,
    Gif,
    WebP,
    Svg,
    Html,
    Text,
    Unknown,
}

/// Reason image bytes cannot be uploaded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidImage {
    #[error("image is empty (0 bytes)")]
    Empty,

    #[error("image is {detected}, but only PNG and JPEG can be uploaded")]
    UnsupportedFormat { detected: &'static str },

    #[error("{format} image is truncated: {reason}")]
    Truncated {
        format: &'static str,
        reason: &'static str,
    },

    #[error("image is {size} bytes, larger than the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
const PNG_TRAILER: &[u8] = b"IEND\xaeB`\x82";
const JPEG_START: &[u8] = b"\xff\xd8\xff";
const JPEG_END: &[u8] = b"\xff\xd9";

impl ImageFormat {
    /// Detects the format from the first bytes, ignoring any file name or declared type.
    pub fn detect(bytes: &[u8]) -> Self {
        if bytes.starts_with(PNG_SIGNATURE) {
            return Self::Png;
        }
        if bytes.starts_with(JPEG_START) {
            return Self::Jpeg;
        }
        if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
            return Self::Gif;
        }
        if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            return Self::WebP;
        }
        Self::detect_text(bytes)
    }

    fn detect_text(bytes: &[u8]) -> Self {
        let Ok(text) = std::str::from_utf8(&bytes[..bytes.len().min(512)]) else {
            return Self::Unknown;
        };
        let head = text.trim_start().to_ascii_lowercase();
        if head.starts_with("<svg") || (head.starts_with("<?xml") && head.contains("<svg")) {
            Self::Svg
        } else if head.starts_with("<!doctype html") || head.starts_with("<html") {
            Self::Html
        } else {
            Self::Text
        }
    }

    /// Returns the media type sent as `Content-Type`, for the formats that are uploaded.
    pub fn content_type(self) -> Option<&'static str> {
        match self {
            Self::Png => Some("image/png"),
            Self::Jpeg => Some("image/jpeg"),
            _ => None,
        }
    }

    /// Returns a short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Png => "PNG",
            Self::Jpeg => "JPEG",
            Self::Gif => "GIF",
            Self::WebP => "WebP",
            Self::Svg => "SVG",
            Self::Html => "HTML",
            Self::Text => "text",
            Self::Unknown => "of an unknown type",
        }
    }
}

/// Image bytes that passed validation, with their format and hash.
#[derive(Clone, Debug)]
pub struct Image {
    pub bytes: Vec<u8>,
    pub format: ImageFormat,
    /// `sha256:<hex>` of `bytes`.
    pub hash: String,
}

impl Image {
    /// Validates bytes for upload: not empty, not larger than `max_bytes`, PNG or JPEG by their
    /// magic numbers, and not visibly truncated.
    pub fn validate(bytes: Vec<u8>, max_bytes: usize) -> Result<Self, InvalidImage> {
        if bytes.is_empty() {
            return Err(InvalidImage::Empty);
        }
        if bytes.len() > max_bytes {
            let size = bytes.len();
            return Err(InvalidImage::TooLarge {
                size,
                max: max_bytes,
            });
        }

        let format = ImageFormat::detect(&bytes);
        check_complete(format, &bytes)?;
        let hash = content_hash(&bytes);
        Ok(Self {
            bytes,
            format,
            hash,
        })
    }

    /// Returns the media type of the image.
    pub fn content_type(&self) -> &'static str {
        self.format
            .content_type()
            .unwrap_or("application/octet-stream")
    }
}

fn check_complete(format: ImageFormat, bytes: &[u8]) -> Result<(), InvalidImage> {
    let (name, trailer, reason) = match format {
        ImageFormat::Png => ("PNG", PNG_TRAILER, "the IEND chunk is missing"),
        ImageFormat::Jpeg => ("JPEG", JPEG_END, "the end-of-image marker is missing"),
        other => {
            return Err(InvalidImage::UnsupportedFormat {
                detected: other.name(),
            });
        }
    };
    // NOTE: a JPEG may carry trailing bytes after its end-of-image marker, so only a file
    // ending in the marker is checked exactly; a missing trailer anywhere means truncation.
    let ends_right = bytes.ends_with(trailer);
    let contains_trailer = bytes.windows(trailer.len()).any(|window| window == trailer);
    if ends_right || (format == ImageFormat::Jpeg && contains_trailer) {
        Ok(())
    } else {
        Err(InvalidImage::Truncated {
            format: name,
            reason,
        })
    }
}

/// Returns `sha256:<hex>` of the bytes.
pub fn content_hash(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png() -> Vec<u8> {
        let mut bytes = PNG_SIGNATURE.to_vec();
        bytes.extend_from_slice(b"\0\0\0\rIHDR....");
        bytes.extend_from_slice(b"\0\0\0\0");
        bytes.extend_from_slice(PNG_TRAILER);
        bytes
    }

    fn jpeg() -> Vec<u8> {
        let mut bytes = b"\xff\xd8\xff\xe0\0\x10JFIF\0".to_vec();
        bytes.extend_from_slice(JPEG_END);
        bytes
    }

    #[test]
    fn detects_formats_by_magic_numbers() {
        let cases: &[(&[u8], ImageFormat)] = &[
            (&png(), ImageFormat::Png),
            (&jpeg(), ImageFormat::Jpeg),
            (b"GIF89a\x01\0\x01\0", ImageFormat::Gif),
            (b"RIFF\x10\0\0\0WEBPVP8 ", ImageFormat::WebP),
            (
                b"  <svg xmlns='http://www.w3.org/2000/svg'/>",
                ImageFormat::Svg,
            ),
            (b"<?xml version='1.0'?><svg/>", ImageFormat::Svg),
            (b"<!DOCTYPE html><html></html>", ImageFormat::Html),
            (b"iVBORw0KGgoAAAANSUhEUg==", ImageFormat::Text),
            (b"\x00\x01\xfe\xff", ImageFormat::Unknown),
        ];
        for (bytes, expected) in cases {
            assert_eq!(ImageFormat::detect(bytes), *expected, "bytes {bytes:?}");
        }
    }

    #[test]
    fn validate_accepts_png_and_jpeg() {
        let png = Image::validate(png(), 1 << 20).unwrap();
        assert_eq!(png.content_type(), "image/png");
        let jpeg = Image::validate(jpeg(), 1 << 20).unwrap();
        assert_eq!(jpeg.content_type(), "image/jpeg");
    }

    #[test]
    fn validate_rejects_empty_bytes() {
        assert_eq!(
            Image::validate(Vec::new(), 10).unwrap_err(),
            InvalidImage::Empty
        );
    }

    #[test]
    fn validate_rejects_oversized_bytes() {
        let err = Image::validate(png(), 8).unwrap_err();
        assert!(
            matches!(err, InvalidImage::TooLarge { max: 8, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn validate_names_the_detected_type() {
        let err = Image::validate(b"GIF89a\x01\0\x01\0".to_vec(), 100).unwrap_err();
        assert_eq!(
            err.to_string(),
            "image is GIF, but only PNG and JPEG can be uploaded"
        );
    }

    #[test]
    fn validate_rejects_truncated_png() {
        let mut bytes = png();
        bytes.truncate(bytes.len() - 4);
        let err = Image::validate(bytes, 100).unwrap_err();
        assert!(
            matches!(err, InvalidImage::Truncated { format: "PNG", .. }),
            "{err:?}"
        );
    }

    #[test]
    fn validate_rejects_truncated_jpeg() {
        let mut bytes = jpeg();
        bytes.truncate(bytes.len() - 2);
        let err = Image::validate(bytes, 100).unwrap_err();
        assert!(
            matches!(err, InvalidImage::Truncated { format: "JPEG", .. }),
            "{err:?}"
        );
    }

    #[test]
    fn content_hash_is_prefixed_sha256() {
        let expected = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(content_hash(b""), expected);
    }
}
