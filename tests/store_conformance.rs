//! One test body for the `BlobStore` contract, run against every backend: a local directory and
//! a real S3-compatible server (s3s-fs) over HTTP on 127.0.0.1.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use tierdex::store::{
    BlobStore, Expected, MULTIPART_PART_SIZE, MULTIPART_THRESHOLD, StoreErrorKind,
};

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(seed as u32) as u8)
        .collect()
}

async fn conformance(store: Arc<dyn BlobStore>) {
    let data = pattern(1000, 1);
    store
        .put("a/b/one.bin", Bytes::from(data.clone()))
        .await
        .unwrap();
    assert_eq!(store.get("a/b/one.bin").await.unwrap(), data);
    assert_eq!(store.size("a/b/one.bin").await.unwrap(), 1000);
    assert_eq!(
        store.get_range("a/b/one.bin", 10..20).await.unwrap(),
        data[10..20]
    );
    assert_eq!(
        store.get_range("a/b/one.bin", 990..1000).await.unwrap(),
        data[990..]
    );
    assert!(
        store
            .get_range("a/b/one.bin", 5..5)
            .await
            .unwrap()
            .is_empty()
    );
    let ranges = store
        .get_ranges("a/b/one.bin", &[500..600, 0..10, 10..20])
        .await
        .unwrap();
    assert_eq!(ranges[0], data[500..600]);
    assert_eq!(ranges[1], data[0..10]);
    assert_eq!(ranges[2], data[10..20]);

    // Errors name the operation, the object and the range.
    let err = store.get_range("a/b/one.bin", 995..1005).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::InvalidRange, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("a/b/one.bin") && message.contains("995..1005"),
        "{message}"
    );
    let err = store.get_range("a/b/missing.bin", 0..10).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::NotFound, "{err}");
    assert!(
        err.to_string().contains("a/b/missing.bin") && err.to_string().contains("0..10"),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with(&format!("get_range {}", store.uri())),
        "{err}"
    );
    assert_eq!(
        store.get("nope").await.unwrap_err().kind(),
        StoreErrorKind::NotFound
    );
    assert_eq!(
        store.size("nope").await.unwrap_err().kind(),
        StoreErrorKind::NotFound
    );
    assert_eq!(
        store.get("../escape").await.unwrap_err().kind(),
        StoreErrorKind::Refused
    );
    assert_eq!(
        store.put("a//b", Bytes::new()).await.unwrap_err().kind(),
        StoreErrorKind::Refused
    );

    // Overwrite replaces the whole object.
    store
        .put("a/b/one.bin", Bytes::from_static(b"short"))
        .await
        .unwrap();
    assert_eq!(store.get("a/b/one.bin").await.unwrap(), &b"short"[..]);
    assert_eq!(store.size("a/b/one.bin").await.unwrap(), 5);

    // Files, small and large enough for a multipart upload where the backend has one.
    let dir = tempfile::tempdir().unwrap();
    let small = pattern(100_000, 2);
    std::fs::write(dir.path().join("small"), &small).unwrap();
    store
        .put_file("a/small.bin", &dir.path().join("small"))
        .await
        .unwrap();
    assert_eq!(store.get("a/small.bin").await.unwrap(), small);
    let large_len = (MULTIPART_THRESHOLD + MULTIPART_PART_SIZE / 2) as usize;
    let large = pattern(large_len, 3);
    std::fs::write(dir.path().join("large"), &large).unwrap();
    store
        .put_file("a/large.bin", &dir.path().join("large"))
        .await
        .unwrap();
    assert_eq!(store.size("a/large.bin").await.unwrap(), large_len as u64);
    let boundary = MULTIPART_PART_SIZE;
    assert_eq!(
        store
            .get_range("a/large.bin", boundary - 10..boundary + 10)
            .await
            .unwrap(),
        large[(boundary - 10) as usize..(boundary + 10) as usize]
    );
    assert_eq!(store.get("a/large.bin").await.unwrap(), large);
    let missing_local = dir.path().join("not-there");
    assert_eq!(
        store
            .put_file("a/x.bin", &missing_local)
            .await
            .unwrap_err()
            .kind(),
        StoreErrorKind::Io
    );

    // Listing is by prefix, recursive and sorted.
    store
        .put("z/other", Bytes::from_static(b"1"))
        .await
        .unwrap();
    let listed: Vec<(String, u64)> = store
        .list("a/")
        .await
        .unwrap()
        .into_iter()
        .map(|object| (object.key, object.size))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("a/b/one.bin".to_string(), 5),
            ("a/large.bin".to_string(), large_len as u64),
            ("a/small.bin".to_string(), 100_000),
        ]
    );
    let partial: Vec<String> = store
        .list("a/s")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(partial, vec!["a/small.bin".to_string()]);
    assert!(store.list("nothing/").await.unwrap().is_empty());

    // Delete is idempotent.
    store.delete("a/small.bin").await.unwrap();
    store.delete("a/small.bin").await.unwrap();
    assert_eq!(
        store.get("a/small.bin").await.unwrap_err().kind(),
        StoreErrorKind::NotFound
    );
    assert_eq!(store.list("a/s").await.unwrap(), vec![]);

    // Conditional writes: create only if absent, replace only if unchanged since read.
    let key = "cas/CURRENT";
    assert!(store.get_tagged(key).await.unwrap().is_none());
    store
        .put_if(key, Bytes::from_static(b"v1"), &Expected::Absent)
        .await
        .unwrap();
    let err = store
        .put_if(key, Bytes::from_static(b"v1-again"), &Expected::Absent)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Conflict, "{err}");
    let (data, first_tag) = store.get_tagged(key).await.unwrap().unwrap();
    assert_eq!(&data[..], b"v1");
    store
        .put_if(
            key,
            Bytes::from_static(b"v2"),
            &Expected::Tag(first_tag.clone()),
        )
        .await
        .unwrap();
    // The tag read before that write no longer holds.
    let err = store
        .put_if(key, Bytes::from_static(b"v3"), &Expected::Tag(first_tag))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Conflict, "{err}");
    assert!(err.to_string().contains("CURRENT"), "{err}");
    let (data, _) = store.get_tagged(key).await.unwrap().unwrap();
    assert_eq!(&data[..], b"v2");
    // Nothing is left beside the object (no lock file).
    let keys: Vec<String> = store
        .list("cas/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, vec![key.to_string()]);
}

#[tokio::test]
async fn local_directory_store_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    conformance(common::local_store(dir.path())).await;
}

#[tokio::test]
async fn s3_compatible_store_meets_the_contract() {
    let server = common::S3Server::start();
    let store = server.store("conformance", "some/prefix").await;
    conformance(store).await;
    // The prefix is honoured: objects live under it in the bucket.
    assert!(
        server
            .object_path("conformance", "some/prefix/z/other")
            .is_file()
    );
}

#[tokio::test]
async fn s3_store_reports_an_unreachable_server_by_object() {
    let server = common::S3Server::start();
    let store = server.store("gone", "").await;
    drop(server);
    let err = store.get_range("index/file", 0..10).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("s3://gone/index/file"), "{err}");
    assert!(err.to_string().contains("0..10"), "{err}");
}
