//! Which members serve which shard, computed alike by every member from the member list alone
//! (rendezvous hashing): no coordinator, and a member joining or leaving moves only the shards
//! it gains or loses.
//!
//! A member's weight for a shard is `xxh64(seed 0, "<member>\0<index>\0<shard>")`; the owners
//! of a shard are the `replicas` members of highest weight, ties by member id.

use twox_hash::XxHash64;

fn weight(member: &str, index: &str, shard: u32) -> u64 {
    let key = format!("{member}\0{index}\0{shard}");
    XxHash64::oneshot(0, key.as_bytes())
}

/// The owners of shard `shard` of `index`, most preferred first: the first `replicas` members
/// by rendezvous weight (all of them when there are fewer). Duplicates in `members` count once.
pub fn owners<'a>(members: &'a [String], index: &str, shard: u32, replicas: usize) -> Vec<&'a str> {
    let mut ranked: Vec<(u64, &str)> = members
        .iter()
        .map(|member| (weight(member, index, shard), member.as_str()))
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    ranked.dedup_by(|a, b| a.1 == b.1);
    ranked
        .into_iter()
        .take(replicas)
        .map(|(_, member)| member)
        .collect()
}

/// The shards of `index` (out of `shards`) that `member` owns.
pub fn owned_shards(
    members: &[String],
    member: &str,
    index: &str,
    shards: u32,
    replicas: usize,
) -> Vec<u32> {
    (0..shards)
        .filter(|shard| owners(members, index, *shard, replicas).contains(&member))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:7001")).collect()
    }

    #[test]
    fn every_shard_gets_replicas_distinct_owners_independent_of_list_order() {
        let list = members(5);
        let mut reversed = list.clone();
        reversed.reverse();
        for shard in 0..64 {
            let owners_of = owners(&list, "idx", shard, 2);
            assert_eq!(owners_of.len(), 2);
            assert_ne!(owners_of[0], owners_of[1]);
            assert_eq!(owners_of, owners(&reversed, "idx", shard, 2));
        }
        assert_eq!(owners(&members(1), "idx", 0, 2).len(), 1);
    }

    #[test]
    fn a_member_leaving_moves_only_what_it_owned() {
        let before = members(5);
        let after: Vec<String> = before[..4].to_vec();
        let gone = before[4].as_str();
        for shard in 0..256 {
            let old = owners(&before, "idx", shard, 2);
            let new = owners(&after, "idx", shard, 2);
            // The remaining owners keep their shards; only the gone member's place is refilled.
            for kept in old.iter().filter(|member| **member != gone) {
                assert!(new.contains(kept), "shard {shard}: {old:?} -> {new:?}");
            }
        }
    }

    #[test]
    fn placement_spreads_shards_over_members() {
        let list = members(4);
        for member in &list {
            let owned = owned_shards(&list, member, "idx", 400, 2).len();
            // 400 shards × 2 replicas over 4 members: 200 each on average.
            assert!((150..250).contains(&owned), "{member}: {owned}");
        }
    }
}
