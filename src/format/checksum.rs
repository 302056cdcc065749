//! CRC32C checksums: one per file, and a block table per file so that a reader can verify any
//! single block (a cache block, a rehydration chunk) without reading the rest of the file.
//!
//! Block table encoding (little-endian):
//!
//! ```text
//! magic      8 bytes  "TDXBLK01"
//! block_size u64
//! file_size  u64
//! count      u64      = ceil(file_size / block_size)
//! crc32c     u32 × count   checksum of block i = bytes [i*block_size, min((i+1)*block_size, file_size))
//! ```

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use super::{FormatError, FormatErrorKind};

const MAGIC: &[u8; 8] = b"TDXBLK01";
const HEADER_LEN: usize = 8 + 8 + 8 + 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockTable {
    pub block_size: u64,
    pub file_size: u64,
    pub checksums: Vec<u32>,
}

impl BlockTable {
    /// The table of a file that fits in one block: its single checksum is the file's.
    pub fn single_block(block_size: u64, file_size: u64, file_crc32c: u32) -> BlockTable {
        BlockTable {
            block_size,
            file_size,
            checksums: vec![file_crc32c],
        }
    }

    pub fn block_count(&self) -> u64 {
        self.checksums.len() as u64
    }

    /// The byte range of block `index` within the file.
    pub fn block_range(&self, index: u64) -> Range<u64> {
        let start = index * self.block_size;
        start..(start + self.block_size).min(self.file_size)
    }

    /// Checks block `index` against its recorded checksum.
    pub fn verify_block(&self, index: u64, data: &[u8]) -> bool {
        let expected_len = {
            let range = self.block_range(index);
            range.end.saturating_sub(range.start)
        };
        index < self.block_count()
            && data.len() as u64 == expected_len
            && crc32c::crc32c(data) == self.checksums[index as usize]
    }

    /// Checks a run of whole blocks starting at block `first`; returns the first bad block.
    pub fn first_bad_block(&self, first: u64, data: &[u8]) -> Option<u64> {
        let mut offset = 0usize;
        let mut index = first;
        while offset < data.len() {
            let range = self.block_range(index);
            let len = (range.end - range.start) as usize;
            let end = (offset + len).min(data.len());
            if !self.verify_block(index, &data[offset..end]) {
                return Some(index);
            }
            offset = end;
            index += 1;
        }
        None
    }

    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(HEADER_LEN + 4 * self.checksums.len());
        out.put_slice(MAGIC);
        out.put_u64_le(self.block_size);
        out.put_u64_le(self.file_size);
        out.put_u64_le(self.checksums.len() as u64);
        for checksum in &self.checksums {
            out.put_u32_le(*checksum);
        }
        out.freeze()
    }

    pub fn decode(what: &str, data: &[u8]) -> Result<BlockTable, FormatError> {
        let corrupt = |message: &str| FormatError::new(FormatErrorKind::Corrupt, what, message);
        if data.len() < HEADER_LEN || &data[..8] != MAGIC {
            return Err(corrupt("not a block table (bad magic or too short)"));
        }
        let word = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"));
        let block_size = word(8);
        let file_size = word(16);
        let count = word(24);
        if block_size == 0 || count != file_size.div_ceil(block_size).max(1) {
            return Err(corrupt("block count does not match file and block sizes"));
        }
        if (data.len() - HEADER_LEN) as u64 != count * 4 {
            return Err(corrupt("table length does not match its block count"));
        }
        let checksums = data[HEADER_LEN..]
            .chunks_exact(4)
            .map(|chunk| u32::from_le_bytes(chunk.try_into().expect("4 bytes")))
            .collect();
        Ok(BlockTable {
            block_size,
            file_size,
            checksums,
        })
    }
}

/// Computes a file's CRC32C and its block table from bytes fed in order, in pieces of any size.
#[derive(Debug)]
pub struct FileChecksummer {
    block_size: u64,
    file_crc: u32,
    block_crc: u32,
    block_filled: u64,
    size: u64,
    checksums: Vec<u32>,
}

impl FileChecksummer {
    pub fn new(block_size: u64) -> FileChecksummer {
        assert!(block_size > 0);
        FileChecksummer {
            block_size,
            file_crc: 0,
            block_crc: 0,
            block_filled: 0,
            size: 0,
            checksums: Vec::new(),
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.file_crc = crc32c::crc32c_append(self.file_crc, data);
        self.size += data.len() as u64;
        while !data.is_empty() {
            let room = (self.block_size - self.block_filled) as usize;
            let take = room.min(data.len());
            self.block_crc = crc32c::crc32c_append(self.block_crc, &data[..take]);
            self.block_filled += take as u64;
            data = &data[take..];
            if self.block_filled == self.block_size {
                self.checksums.push(self.block_crc);
                self.block_crc = 0;
                self.block_filled = 0;
            }
        }
    }

    /// The file's CRC32C and its block table.
    pub fn finish(mut self) -> (u32, BlockTable) {
        if self.block_filled > 0 || self.checksums.is_empty() {
            self.checksums.push(self.block_crc);
        }
        (
            self.file_crc,
            BlockTable {
                block_size: self.block_size,
                file_size: self.size,
                checksums: self.checksums,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_blocks_whatever_the_feed_sizes() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut checksummer = FileChecksummer::new(1024);
        for piece in data.chunks(333) {
            checksummer.update(piece);
        }
        let (file_crc, table) = checksummer.finish();
        assert_eq!(file_crc, crc32c::crc32c(&data));
        assert_eq!(table.block_count(), 10);
        for index in 0..table.block_count() {
            let range = table.block_range(index);
            assert!(table.verify_block(index, &data[range.start as usize..range.end as usize]));
        }
        assert_eq!(table.first_bad_block(0, &data), None);
        let decoded = BlockTable::decode("t", &table.encode()).unwrap();
        assert_eq!(decoded, table);
    }

    #[test]
    fn a_flipped_byte_is_found_in_its_block() {
        let mut data = vec![42u8; 5000];
        let mut checksummer = FileChecksummer::new(1024);
        checksummer.update(&data);
        let (_, table) = checksummer.finish();
        data[3000] ^= 0x01;
        assert_eq!(table.first_bad_block(0, &data), Some(2));
        assert_eq!(table.first_bad_block(3, &data[3072..]), None);
    }

    #[test]
    fn empty_file_has_one_empty_block() {
        let (crc, table) = FileChecksummer::new(64).finish();
        assert_eq!(crc, 0);
        assert_eq!(table.block_count(), 1);
        assert!(table.verify_block(0, &[]));
        assert_eq!(BlockTable::decode("t", &table.encode()).unwrap(), table);
    }

    #[test]
    fn truncated_table_is_corrupt() {
        let (_, table) = {
            let mut checksummer = FileChecksummer::new(64);
            checksummer.update(&[1u8; 200]);
            checksummer.finish()
        };
        let encoded = table.encode();
        let err = BlockTable::decode("t", &encoded[..encoded.len() - 1]).unwrap_err();
        assert_eq!(err.kind(), FormatErrorKind::Corrupt);
    }
}
