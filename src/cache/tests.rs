//! Unit tests with an in-memory store (the real backends are covered by tests/ against a
//! local directory and s3s-fs).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::format::FileChecksummer;
use crate::store::{ObjectMeta, StoreErrorKind, StoreResult};

#[derive(Debug, Default)]
struct MemoryStore {
    objects: Mutex<HashMap<String, Bytes>>,
    requests: Mutex<Vec<Range<u64>>>,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

#[async_trait]
impl BlobStore for MemoryStore {
    fn uri(&self) -> &str {
        "memory://"
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        self.requests.lock().unwrap().push(range.clone());
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let data = self
            .objects
            .lock()
            .unwrap()
            .get(key)
            .cloned()
            .ok_or_else(|| {
                StoreError::new(
                    StoreErrorKind::NotFound,
                    "get_range",
                    key.to_string(),
                    "no such object",
                )
            })?;
        Ok(data.slice(range.start as usize..range.end as usize))
    }
    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        let size = self.size(key).await?;
        self.get_range(key, 0..size).await
    }
    async fn size(&self, key: &str) -> StoreResult<u64> {
        Ok(self.objects.lock().unwrap()[key].len() as u64)
    }
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.objects.lock().unwrap().insert(key.to_string(), data);
        Ok(())
    }
    async fn put_file(&self, _key: &str, _local: &Path) -> StoreResult<()> {
        unimplemented!("not used by the cache")
    }
    async fn list(&self, _prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        unimplemented!("not used by the cache")
    }
    async fn delete(&self, _key: &str) -> StoreResult<()> {
        unimplemented!("not used by the cache")
    }
}

const BLOCK: u64 = 1024;

fn data() -> Vec<u8> {
    (0..20_000u32).map(|i| (i % 251) as u8).collect()
}

async fn setup() -> (Arc<MemoryStore>, Arc<BlockCache>, CachedFile) {
    let store = Arc::new(MemoryStore::default());
    let bytes = data();
    let mut checksummer = FileChecksummer::new(BLOCK);
    checksummer.update(&bytes);
    let (_, table) = checksummer.finish();
    store.put("f", Bytes::from(bytes)).await.unwrap();
    let cache = BlockCache::new(1 << 20);
    let file = cache.file_with_retries(store.clone(), Vec::new(), "f".into(), table);
    (store, cache, file)
}

#[tokio::test]
async fn missing_blocks_merge_into_runs_fetched_in_one_round() {
    let (store, cache, file) = setup().await;
    let stats = Arc::new(ReadStats::default());
    let ranges = vec![100..200, 1500..2600, 9000..9100, 19_990..20_000];
    let read = file.read_ranges(&ranges, &stats).await.unwrap();
    let source = data();
    assert_eq!(read.len(), ranges.len());
    for (range, bytes) in ranges.iter().zip(&read) {
        assert_eq!(bytes[..], source[range.start as usize..range.end as usize]);
    }
    // Blocks 0-2 are one run, 8 and 19 are two more.
    let requests = store.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert!(requests.contains(&(0..3 * BLOCK)));
    assert!(requests.contains(&(19 * BLOCK..20_000)));
    assert_eq!(
        store.max_in_flight.load(Ordering::SeqCst),
        3,
        "all requests at once"
    );
    let counts = stats.snapshot();
    assert_eq!(
        (counts.cache_hits, counts.cache_misses, counts.requests),
        (0, 5, 3)
    );
    assert_eq!(counts.bytes, 3 * BLOCK + BLOCK + (20_000 - 19 * BLOCK));

    // Again: everything from the cache.
    let again = Arc::new(ReadStats::default());
    assert_eq!(file.read_ranges(&ranges, &again).await.unwrap(), read);
    assert_eq!(again.snapshot().requests, 0);
    assert_eq!(again.snapshot().cache_hits, 5);
    cache.settle().await;
    let status = cache.status();
    assert_eq!((status.hits, status.misses), (5, 5));
    assert!(status.used_bytes >= 4 * BLOCK + (20_000 - 19 * BLOCK));
}

#[tokio::test]
async fn concurrent_misses_on_one_block_load_it_once() {
    let (store, _cache, file) = setup().await;
    let stats = Arc::new(ReadStats::default());
    let reads = (0..64).map(|i| {
        let file = file.clone();
        let stats = stats.clone();
        async move { file.read_range(10 + i..20 + i, &stats).await.unwrap() }
    });
    let results = join_all(reads).await;
    let source = data();
    for (i, bytes) in results.iter().enumerate() {
        assert_eq!(bytes[..], source[10 + i..20 + i]);
    }
    assert_eq!(store.requests.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_corrupt_block_is_never_returned_or_cached() {
    let (store, _cache, file) = setup().await;
    let mut bytes = data();
    bytes[5000] ^= 0xff;
    store.put("f", Bytes::from(bytes)).await.unwrap();
    let stats = Arc::new(ReadStats::default());
    let err = file.read_range(4096..6000, &stats).await.unwrap_err();
    assert_eq!(err.kind(), CacheErrorKind::Corrupt);
    assert!(err.to_string().contains("memory:///f block 4"), "{err}");
    // Not cached: the next read asks the store again, and succeeds once the data is good.
    store.put("f", Bytes::from(data())).await.unwrap();
    assert_eq!(
        file.read_range(4096..6000, &stats).await.unwrap()[..],
        data()[4096..6000]
    );
    // The corrupt read was tried twice (once again on the same store), then the good one.
    assert_eq!(store.requests.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn reads_outside_the_file_are_refused() {
    let (_store, _cache, file) = setup().await;
    let stats = Arc::new(ReadStats::default());
    let err = file.read_range(19_000..20_001, &stats).await.unwrap_err();
    assert_eq!(err.kind(), CacheErrorKind::OutOfBounds);
    assert!(file.read_range(5..5, &stats).await.unwrap().is_empty());
}

#[test]
fn runs_are_capped() {
    let blocks: Vec<u64> = (0..MAX_RUN_BLOCKS + 3).chain([1000, 1001]).collect();
    assert_eq!(
        runs(&blocks),
        vec![
            0..MAX_RUN_BLOCKS,
            MAX_RUN_BLOCKS..MAX_RUN_BLOCKS + 3,
            1000..1002
        ]
    );
}
