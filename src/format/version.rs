//! Version ids: `YYYYMMDDTHHMMSSmmmZ-xxxxxxxx`, UTC time then 32 random bits, so that ids sort
//! by build time and two builds started in the same millisecond still differ.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use time::OffsetDateTime;

pub fn new_version_id() -> String {
    let now = OffsetDateTime::now_utc();
    format_version_id(now, random_u32())
}

pub fn format_version_id(at: OffsetDateTime, random: u32) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}{:03}Z-{:08x}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond(),
        random
    )
}

/// RFC 3339 with second precision, for `created_at`.
pub fn rfc3339(at: OffsetDateTime) -> String {
    format!("{}Z", date_time(at))
}

/// RFC 3339 with microseconds, as dates are stored.
pub fn rfc3339_micros(at: OffsetDateTime) -> String {
    format!("{}.{:06}Z", date_time(at), at.microsecond())
}

/// `YYYY-MM-DDTHH:MM:SS`, UTC.
fn date_time(at: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// `RandomState` is seeded from the OS per process; hashing the time with it gives bits that
/// differ between concurrent builders without another dependency.
fn random_u32() -> u32 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time() {
        let earlier = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let later = OffsetDateTime::from_unix_timestamp(1_700_000_001).unwrap();
        let a = format_version_id(earlier, u32::MAX);
        let b = format_version_id(later, 0);
        assert!(a < b, "{a} < {b}");
        assert_eq!(a, "20231114T221320000Z-ffffffff");
    }
}
