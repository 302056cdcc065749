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

/// When a version id says it was built; `None` for a name that is not a version id.
pub fn version_time(id: &str) -> Option<OffsetDateTime> {
    let (stamp, random) = id.split_once('-')?;
    if random.len() != 8 || !random.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return None;
    }
    let digits = stamp.strip_suffix('Z')?;
    let (date, time_part) = digits.split_once('T')?;
    if date.len() != 8
        || time_part.len() != 9
        || !digits.replace('T', "").bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let number = |text: &str| text.parse::<u32>().ok();
    let month = time::Month::try_from(number(&date[4..6])? as u8).ok()?;
    let date = time::Date::from_calendar_date(
        number(&date[..4])? as i32,
        month,
        number(&date[6..8])? as u8,
    )
    .ok()?;
    let time = time::Time::from_hms_milli(
        number(&time_part[..2])? as u8,
        number(&time_part[2..4])? as u8,
        number(&time_part[4..6])? as u8,
        number(&time_part[6..9])? as u16,
    )
    .ok()?;
    Some(date.with_time(time).assume_utc())
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
    fn version_ids_give_back_their_time() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_795_450_827_998_000_000).unwrap();
        let id = format_version_id(at, 0xa2eb_d767);
        assert_eq!(version_time(&id), Some(at));
        for not_an_id in [
            "",
            "CURRENT",
            "20261123T162027998Z",
            "20261123T162027998Z-xyz",
            "2026112xT162027998Z-a2ebd767",
            "20261323T162027998Z-a2ebd767",
        ] {
            assert_eq!(version_time(not_an_id), None, "{not_an_id}");
        }
    }

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
