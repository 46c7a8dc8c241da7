//! Compression of what is kept per resource (the cached object, the last record). These are
//! small JSON documents, alike in their keys and in most values (condition reasons, the fleet's
//! token URL, timestamps of the same day), so LZ4 against a dictionary of one such document
//! takes a cached ConnectorAuth from ~700 bytes to ~100, where LZ4 alone gets ~490.

use std::sync::OnceLock;

/// The largest first document taken into a dictionary (an odd, huge first object would only
/// make every later compression slower).
const FIRST_LIMIT: usize = 4096;

/// Compresses documents of one kind against a dictionary: a built-in sample of the kind,
/// followed by the first document this process compresses (so the fleet's own names and URLs
/// are in it). The dictionary is fixed from then on: every document is decompressed against
/// the one it was compressed with.
pub struct Compactor {
    sample: &'static str,
    dictionary: OnceLock<Box<[u8]>>,
}

impl Compactor {
    pub const fn new(sample: &'static str) -> Self {
        Compactor {
            sample,
            dictionary: OnceLock::new(),
        }
    }

    fn dictionary(&self, first: &[u8]) -> &[u8] {
        self.dictionary.get_or_init(|| {
            let mut d = self.sample.as_bytes().to_vec();
            if first.len() <= FIRST_LIMIT {
                d.extend_from_slice(first);
            }
            d.into_boxed_slice()
        })
    }

    pub fn compress(&self, document: &[u8]) -> Box<[u8]> {
        lz4_flex::block::compress_prepend_size_with_dict(document, self.dictionary(document)).into_boxed_slice()
    }

    pub fn decompress(&self, compressed: &[u8]) -> Result<Vec<u8>, lz4_flex::block::DecompressError> {
        lz4_flex::block::decompress_size_prepended_with_dict(compressed, self.dictionary(&[]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_come_back_as_they_went_in_and_alike_ones_take_a_fraction_of_their_size() {
        let c = Compactor::new(r#"{"metadata":{"name":"","namespace":""},"status":{"conditions":[]}}"#);
        let doc = |i: u32| {
            format!(
                r#"{{"metadata":{{"name":"app-{i}","namespace":"team-{i}"}},"spec":{{"tokenUrl":"https://idp.example.com/oauth2/token"}},"status":{{"conditions":[{{"type":"Ready","status":"True","reason":"TokenValid","lastTransitionTime":"2026-11-28T07:1{}:00Z"}}]}}}}"#,
                i % 10
            )
        };
        let first = c.compress(doc(1).as_bytes());
        assert_eq!(c.decompress(&first).unwrap(), doc(1).as_bytes());
        for i in [2, 4711, 99_999] {
            let d = doc(i);
            let packed = c.compress(d.as_bytes());
            assert_eq!(c.decompress(&packed).unwrap(), d.as_bytes());
            assert!(packed.len() * 3 < d.len(), "{} of {}", packed.len(), d.len());
        }
        // An unlike document still comes back whole.
        let odd = "x".repeat(10_000) + "\u{1F511} not JSON at all";
        assert_eq!(c.decompress(&c.compress(odd.as_bytes())).unwrap(), odd.as_bytes());
    }
}
