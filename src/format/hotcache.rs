//! The cold index's hotcache (`cold/hotcache`, format 4): the byte ranges that opening the
//! cold index and planning a search over it read synchronously, recorded by the builder, so
//! that a node opens and plans over the cold index with no storage request and keeps only this
//! file of it on local disk.
//!
//! Encoding, little-endian:
//!
//! ```text
//! magic        8 bytes   "TDXHOT01"
//! files        u32
//! per file:    path_len u16, path (UTF-8, relative to the version), file_len u64, ranges u32,
//!              per range: start u64, len u64, then len bytes
//! crc32c       u32       of every byte before it
//! ```
//!
//! Ranges of one file are sorted by start and do not overlap.

use std::collections::BTreeMap;
use std::ops::Range;

use super::{FormatError, FormatErrorKind};

const MAGIC: &[u8; 8] = b"TDXHOT01";

/// The recorded ranges of one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HotFile {
    pub len: u64,
    /// Sorted by start, disjoint.
    pub ranges: Vec<(u64, Vec<u8>)>,
}

impl HotFile {
    /// Adds `bytes` read at `start`, merging with ranges it overlaps or touches.
    pub fn add(&mut self, start: u64, bytes: &[u8]) {
        let end = start + bytes.len() as u64;
        let (mut low, mut high) = (start, end);
        let mut touching = Vec::new();
        let mut ranges = Vec::with_capacity(self.ranges.len() + 1);
        for (at, data) in std::mem::take(&mut self.ranges) {
            let data_end = at + data.len() as u64;
            if data_end < start || at > end {
                ranges.push((at, data));
            } else {
                low = low.min(at);
                high = high.max(data_end);
                touching.push((at, data));
            }
        }
        let mut union = vec![0u8; (high - low) as usize];
        // The same file's bytes wherever they overlap.
        for (at, data) in touching
            .iter()
            .map(|(at, data)| (*at, data.as_slice()))
            .chain([(start, bytes)])
        {
            let offset = (at - low) as usize;
            union[offset..offset + data.len()].copy_from_slice(data);
        }
        ranges.push((low, union));
        ranges.sort_by_key(|(at, _)| *at);
        self.ranges = ranges;
    }

    /// The recorded bytes of `range`, if one recorded range holds all of it.
    pub fn get(&self, range: &Range<u64>) -> Option<(usize, &[u8])> {
        let at = self
            .ranges
            .partition_point(|(start, _)| *start <= range.start)
            .checked_sub(1)?;
        let (start, data) = &self.ranges[at];
        let end = start + data.len() as u64;
        (range.end <= end).then_some((at, &data[(range.start - start) as usize..]))
    }

    pub fn bytes(&self) -> u64 {
        self.ranges.iter().map(|(_, data)| data.len() as u64).sum()
    }
}

/// Every file's recorded ranges, by path relative to the version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hotcache {
    pub files: BTreeMap<String, HotFile>,
}

impl Hotcache {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.bytes() as usize);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.files.len() as u32).to_le_bytes());
        for (path, file) in &self.files {
            out.extend_from_slice(&(path.len() as u16).to_le_bytes());
            out.extend_from_slice(path.as_bytes());
            out.extend_from_slice(&file.len.to_le_bytes());
            out.extend_from_slice(&(file.ranges.len() as u32).to_le_bytes());
            for (start, data) in &file.ranges {
                out.extend_from_slice(&start.to_le_bytes());
                out.extend_from_slice(&(data.len() as u64).to_le_bytes());
                out.extend_from_slice(data);
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes `bytes`; `what` names the file in errors, with the byte offset of the fault.
    pub fn decode(what: &str, bytes: &[u8]) -> Result<Hotcache, FormatError> {
        let corrupt = |offset: usize, message: &str| {
            FormatError::new(
                FormatErrorKind::Corrupt,
                what,
                format!("{message} at byte {offset}"),
            )
        };
        if bytes.len() < MAGIC.len() + 8 || &bytes[..MAGIC.len()] != MAGIC {
            return Err(corrupt(0, "not a hotcache (bad magic)"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(corrupt(body.len(), "checksum mismatch"));
        }
        let mut reader = Reader {
            bytes: body,
            at: MAGIC.len(),
        };
        let mut files = BTreeMap::new();
        let count = reader
            .u32()
            .ok_or_else(|| corrupt(reader.at, "truncated"))?;
        for _ in 0..count {
            let path_at = reader.at;
            let path_len = reader
                .u16()
                .ok_or_else(|| corrupt(reader.at, "truncated"))?;
            let path = reader
                .take(path_len as usize)
                .and_then(|raw| std::str::from_utf8(raw).ok())
                .ok_or_else(|| corrupt(path_at, "bad file path"))?
                .to_string();
            let len = reader
                .u64()
                .ok_or_else(|| corrupt(reader.at, "truncated"))?;
            let ranges = reader
                .u32()
                .ok_or_else(|| corrupt(reader.at, "truncated"))?;
            let mut file = HotFile {
                len,
                ranges: Vec::with_capacity(ranges as usize),
            };
            let mut last_end = 0;
            for _ in 0..ranges {
                let range_at = reader.at;
                let start = reader
                    .u64()
                    .ok_or_else(|| corrupt(reader.at, "truncated"))?;
                let size = reader
                    .u64()
                    .ok_or_else(|| corrupt(reader.at, "truncated"))?;
                let data = reader
                    .take(size as usize)
                    .ok_or_else(|| corrupt(reader.at, "truncated range"))?;
                if start < last_end || start + size > len {
                    return Err(corrupt(range_at, &format!("bad range of {path}")));
                }
                last_end = start + size;
                file.ranges.push((start, data.to_vec()));
            }
            files.insert(path, file);
        }
        if reader.at != body.len() {
            return Err(corrupt(reader.at, "trailing bytes"));
        }
        Ok(Hotcache { files })
    }

    pub fn bytes(&self) -> u64 {
        self.files.values().map(HotFile::bytes).sum()
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(len)?;
        let out = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(out)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_round_trip() {
        let content: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
        let mut file = HotFile {
            len: 200,
            ..HotFile::default()
        };
        file.add(10, &content[10..20]);
        file.add(50, &content[50..60]);
        file.add(15, &content[15..30]);
        file.add(30, &content[30..35]);
        file.add(100, &content[100..110]);
        file.add(5, &content[5..105]);
        assert_eq!(
            file.ranges.len(),
            1,
            "{:?}",
            file.ranges.iter().map(|r| r.0).collect::<Vec<_>>()
        );
        assert_eq!(file.ranges[0].0, 5);
        assert_eq!(file.ranges[0].1, content[5..110]);
        file.add(150, &content[150..160]);
        assert_eq!(file.get(&(20..30)).unwrap().1[..10], content[20..30]);
        assert!(file.get(&(100..120)).is_none());
        assert_eq!(file.get(&(150..160)).unwrap().1, &content[150..160]);
        let mut cache = Hotcache::default();
        cache.files.insert("cold/index/a.idx".into(), file);
        let bytes = cache.encode();
        assert_eq!(Hotcache::decode("x", &bytes).unwrap(), cache);
        let mut bad = bytes.clone();
        bad[20] ^= 1;
        let err = Hotcache::decode("x", &bad).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        assert!(Hotcache::decode("x", &bytes[..bytes.len() - 1]).is_err());
    }
}
