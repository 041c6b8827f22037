//! Distinct, valid PNG files of a chosen size, generated from a seed.

use sha2::{Digest, Sha256};

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Bytes of a PNG besides the filler chunk's data: signature, IHDR, IDAT, IEND and the
/// filler chunk's length, type and CRC.
const FIXED_BYTES: usize = 8 + (12 + 13) + (12 + 13) + 12 + 12;

/// Builds a 1x1 grayscale PNG of `size` bytes (or the minimum of about 100 bytes) whose content
/// depends on `seed`. A private ancillary chunk `bnCh` pads the file with pseudo-random bytes,
/// which decoders skip, so every seed yields a different file that still decodes.
pub fn png_image(seed: u64, size: usize) -> Vec<u8> {
    let filler_len = size.saturating_sub(FIXED_BYTES).max(8);
    let mut bytes = Vec::with_capacity(FIXED_BYTES + filler_len);
    bytes.extend_from_slice(PNG_SIGNATURE);

    // Width 1, height 1, bit depth 8, color type 0 (grayscale), default methods.
    let header = [0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0];
    push_chunk(&mut bytes, b"IHDR", &header);

    let mut filler = Vec::with_capacity(filler_len);
    filler.extend_from_slice(&seed.to_le_bytes());
    let mut state = seed;
    while filler.len() < filler_len {
        filler.extend_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    filler.truncate(filler_len);
    push_chunk(&mut bytes, b"bnCh", &filler);

    let pixel = (seed % 256) as u8;
    push_chunk(&mut bytes, b"IDAT", &zlib_stored(&[0, pixel]));
    push_chunk(&mut bytes, b"IEND", &[]);
    bytes
}

/// Builds pseudo-random bytes for objects whose content is never parsed.
pub fn filler_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len + 8);
    let mut state = seed;
    while bytes.len() < len {
        bytes.extend_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// Returns `sha256:<hex>` of the bytes, the form of `status.contentHash`.
pub fn content_hash(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn push_chunk(bytes: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    let length = u32::try_from(data.len()).expect("PNG chunk larger than 4 GiB");
    bytes.extend_from_slice(&length.to_be_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    bytes.extend_from_slice(kind);
    bytes.extend_from_slice(data);
    bytes.extend_from_slice(&crc.finalize().to_be_bytes());
}

/// Wraps at most 65,535 bytes in a zlib stream with one stored (uncompressed) deflate block.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let length = u16::try_from(data.len()).expect("stored block larger than 65535 bytes");
    let mut out = vec![0x78, 0x01, 0x01];
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&(!length).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

/// SplitMix64 step: a fast generator whose output differs for every seed.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_has_requested_size_and_trailer() {
        let image = png_image(7, 64 * 1024);
        assert_eq!(image.len(), 64 * 1024);
        assert!(image.starts_with(PNG_SIGNATURE));
        assert!(image.ends_with(b"IEND\xaeB`\x82"));
    }

    #[test]
    fn png_differs_by_seed() {
        assert_ne!(png_image(1, 4096), png_image(2, 4096));
        assert_eq!(png_image(3, 4096), png_image(3, 4096));
    }

    #[test]
    fn zlib_block_matches_known_stream() {
        // zlib.compress(b"\x00\x00", level=0) in Python 3.12.
        let expected = [
            0x78, 0x01, 0x01, 0x02, 0x00, 0xfd, 0xff, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01,
        ];
        assert_eq!(zlib_stored(&[0, 0]), expected);
    }
}
