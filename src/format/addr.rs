//! Where a cold document lives: the cold parquet file and the row within it, packed into the
//! cold index's `_addr` fast field (u64: file in the top 16 bits, row in the low 48).

const ROW_BITS: u32 = 48;
pub const MAX_ROWS_PER_FILE: u64 = 1 << ROW_BITS;
pub const MAX_FILES: u64 = 1 << (64 - ROW_BITS);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocAddr {
    pub file: u32,
    pub row: u64,
}

impl DocAddr {
    pub fn new(file: u32, row: u64) -> DocAddr {
        debug_assert!((file as u64) < MAX_FILES && row < MAX_ROWS_PER_FILE);
        DocAddr { file, row }
    }

    pub fn pack(self) -> u64 {
        ((self.file as u64) << ROW_BITS) | self.row
    }

    pub fn unpack(packed: u64) -> DocAddr {
        DocAddr {
            file: (packed >> ROW_BITS) as u32,
            row: packed & (MAX_ROWS_PER_FILE - 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trips_at_the_limits() {
        for addr in [
            DocAddr::new(0, 0),
            DocAddr::new(3, 12345),
            DocAddr::new((MAX_FILES - 1) as u32, MAX_ROWS_PER_FILE - 1),
        ] {
            assert_eq!(DocAddr::unpack(addr.pack()), addr);
        }
        assert_ne!(DocAddr::new(1, 0).pack(), DocAddr::new(0, 1).pack());
    }
}
