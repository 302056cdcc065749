//! The `_key` fast field: a `u64` per document that orders like its id, so that ties on score
//! break by id without reading the id itself.
//!
//! - `u64` ids: the value.
//! - `i64` ids: the value with its sign bit flipped (two's complement order becomes unsigned
//!   order).
//! - string ids: the first 8 bytes, big-endian, zero-padded. Two ids with different keys
//!   compare like their keys; ids whose keys are equal (a shared 8-byte prefix) must be
//!   compared in full.

/// Whether two documents with equal keys can still hold different ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyExactness {
    /// Numeric ids: equal keys mean equal ids.
    Exact,
    /// String ids: equal keys mean a shared prefix; compare the ids.
    Prefix,
}

pub fn u64_key(id: u64) -> u64 {
    id
}

pub fn i64_key(id: i64) -> u64 {
    (id as u64) ^ (1 << 63)
}

pub fn i64_from_key(key: u64) -> i64 {
    (key ^ (1 << 63)) as i64
}

pub fn str_key(id: &str) -> u64 {
    let mut prefix = [0u8; 8];
    let bytes = id.as_bytes();
    let len = bytes.len().min(8);
    prefix[..len].copy_from_slice(&bytes[..len]);
    u64::from_be_bytes(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_like_ids() {
        let ints = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        for pair in ints.windows(2) {
            assert!(i64_key(pair[0]) < i64_key(pair[1]), "{pair:?}");
            assert_eq!(i64_from_key(i64_key(pair[0])), pair[0]);
        }
        let strings = [
            "",
            "a",
            "a\u{0}",
            "ab",
            "abcdefgh",
            "abcdefgh-long",
            "abcdefgi",
            "b",
            "é",
        ];
        for pair in strings.windows(2) {
            assert!(pair[0] < pair[1]);
            assert!(str_key(pair[0]) <= str_key(pair[1]), "{pair:?}");
        }
        // Equal keys only where the first 8 bytes (zero-padded) agree.
        assert_eq!(str_key("abcdefgh"), str_key("abcdefgh-long"));
        assert_eq!(str_key("a"), str_key("a\u{0}"));
        assert!(str_key("abcdefgh") < str_key("abcdefgi"));
    }
}
