//! Reading an OTLP/HTTP body: size-capped before and after decompression, so a small
//! compressed bomb is refused after inflating at most the limit, never its full size.

use std::io::Read;

use axum::body::Body;
use axum::http::{header, HeaderMap};

use super::response::Failure;

/// The body, read up to `limit` bytes and decompressed per `Content-Encoding` up to `limit`.
pub async fn read(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, Failure> {
    let encoding = content_encoding(headers)?;
    let raw = axum::body::to_bytes(body, limit).await.map_err(|why| {
        if is_length_limit(&why) {
            Failure::too_large(limit)
        } else {
            Failure::malformed(format!("cannot read request body: {why}"))
        }
    })?;
    match encoding {
        Encoding::Identity => Ok(raw.to_vec()),
        Encoding::Gzip => inflate(flate2::read::MultiGzDecoder::new(&raw[..]), "gzip", limit),
        Encoding::Deflate => {
            // "deflate" means zlib-wrapped (RFC 9110), but raw deflate is common in the wild.
            inflate(flate2::read::ZlibDecoder::new(&raw[..]), "deflate", limit)
                .or_else(|_| inflate(flate2::read::DeflateDecoder::new(&raw[..]), "deflate", limit))
        }
        Encoding::Zstd => match zstd::stream::read::Decoder::new(&raw[..]) {
            Ok(decoder) => inflate(decoder, "zstd", limit),
            Err(why) => Err(Failure::malformed(format!("zstd: {why}"))),
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
    Deflate,
    Zstd,
}

fn content_encoding(headers: &HeaderMap) -> Result<Encoding, Failure> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(Encoding::Identity);
    };
    let text = value.to_str().unwrap_or_default().trim().to_ascii_lowercase();
    match text.as_str() {
        "" | "identity" => Ok(Encoding::Identity),
        "gzip" | "x-gzip" => Ok(Encoding::Gzip),
        "deflate" | "zlib" => Ok(Encoding::Deflate),
        "zstd" => Ok(Encoding::Zstd),
        _ => Err(Failure::malformed(format!(
            "unsupported Content-Encoding {text:?}: use gzip, zstd, deflate or none"
        ))),
    }
}

/// Decompresses at most `limit + 1` bytes: one byte over the limit is enough to refuse.
fn inflate(decoder: impl Read, name: &str, limit: usize) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::new();
    match decoder.take(limit as u64 + 1).read_to_end(&mut out) {
        Ok(_) if out.len() > limit => Err(Failure::too_large(limit)),
        Ok(_) => Ok(out),
        Err(why) => Err(Failure::malformed(format!("{name}: {why}"))),
    }
}

/// Whether reading stopped at the limit: `to_bytes` reports it as http-body-util's
/// `LengthLimitError`, somewhere in the error's causes.
fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if cause.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = cause.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use std::io::Write;

    fn headers(encoding: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_str(encoding).unwrap());
        headers
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[tokio::test]
    async fn every_supported_encoding_round_trips() {
        let data = b"hello otlp".repeat(100);
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zlib.write_all(&data).unwrap();
        let cases = [
            ("gzip", gzip(&data)),
            ("deflate", zlib.finish().unwrap()),
            ("zstd", zstd::encode_all(&data[..], 3).unwrap()),
            ("identity", data.clone()),
        ];
        for (encoding, body) in cases {
            let read = read(&headers(encoding), Body::from(body), 1 << 20).await.unwrap();
            assert_eq!(read, data, "{encoding}");
        }
    }

    #[tokio::test]
    async fn a_bomb_is_refused_after_inflating_only_the_limit() {
        let bomb = gzip(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 1 << 20, "64 MiB of zeros compress to {} bytes", bomb.len());
        let failure = read(&headers("gzip"), Body::from(bomb), 1 << 20).await.unwrap_err();
        assert_eq!(failure.status, axum::http::StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn broken_or_unknown_encodings_are_400() {
        let failure = read(&headers("gzip"), Body::from("{}"), 1 << 20).await.unwrap_err();
        assert_eq!(failure.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(failure.message.starts_with("gzip:"), "{}", failure.message);
        let failure = read(&headers("br"), Body::from("{}"), 1 << 20).await.unwrap_err();
        assert_eq!(failure.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(failure.message.contains("unsupported Content-Encoding"));
    }

    #[tokio::test]
    async fn compressed_body_over_the_limit_is_413_before_decompression() {
        let failure = read(&HeaderMap::new(), Body::from(vec![1u8; 2048]), 1024).await.unwrap_err();
        assert_eq!(failure.status, axum::http::StatusCode::PAYLOAD_TOO_LARGE);
    }
}
