//! A fleet of three `tierdex serve` processes on 127.0.0.1, against s3s-fs, serving CACM built
//! with `--shards 4` and `citations >= 1` hot, each shard on two members: every CACM query and
//! every structured query, through each member, returns the monolithic oracle's top 10 (ids,
//! order, scores within 1e-4: one tantivy index over all of CACM, ranked here); after one
//! member is killed (SIGKILL) every answer is still exact; after two, answers are flagged
//! partial and name exactly the shards both of whose owners are gone, and hold only documents
//! of the shards still served. The sharded version's pages equal, field for field, those of a
//! single-shard build of the same corpus served by a plain node.

mod common;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::fleet::{Member as InProcessMember, start_member};
use common::oracle::{Id, IdStyle, Oracle, build_cacm_styled};
use common::*;
use tierdex::api::pb;
use tierdex::fleet::membership::Membership;
use tierdex::fleet::placement;
use tierdex::format::shard::shard_of;

const RULES: &str = "hot = [\"citations >= 1\"]\n";
const SHARDS: u32 = 4;
const REPLICAS: usize = 2;

/// One `tierdex serve` process, killed when dropped.
struct Member {
    id: String,
    /// Where its /metrics are served.
    metrics: String,
    child: Child,
    _data_dir: tempfile::TempDir,
}

impl Member {
    fn start(id: &str, peers: &str, store_uri: &str, indexes: &str) -> Member {
        let data_dir = tempfile::tempdir().unwrap();
        let metrics = format!("127.0.0.1:{}", free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_tierdex"))
            .args(["serve", "--store", store_uri, "--index", indexes])
            .args([
                "--listen",
                id,
                "--peers",
                peers,
                "--metrics-listen",
                &metrics,
            ])
            .args(["--replicas", &REPLICAS.to_string()])
            .args(["--fleet-refresh", "200ms", "--poll-interval", "1s"])
            .arg("--data-dir")
            .arg(data_dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Member {
            id: id.to_string(),
            metrics,
            child,
            _data_dir: data_dir,
        }
    }

    fn kill(&mut self) {
        // SIGKILL: no shutdown, connections reset.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    async fn client(&self) -> pb::tierdex_client::TierdexClient<tonic::transport::Channel> {
        pb::tierdex_client::TierdexClient::connect(format!("http://{}", self.id))
            .await
            .unwrap()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A counter's value in a member's `/metrics` (labels matched as given), read over HTTP with
/// a plain request.
async fn scrape_counter(address: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    metric_sum(&text, name, labels)
}

fn all_queries() -> Vec<String> {
    let mut queries = cacm_query_texts();
    queries.extend(cacm_structured_queries());
    queries
}

async fn search(
    client: &mut pb::tierdex_client::TierdexClient<tonic::transport::Channel>,
    index: &str,
    query: &str,
) -> pb::SearchResponse {
    client
        .search(search_request(index, query, 10))
        .await
        .unwrap_or_else(|status| panic!("{query}: {status}"))
        .into_inner()
}

fn assert_exact(oracle: &Oracle, query: &str, response: &pb::SearchResponse, through: &str) {
    assert!(
        !response.partial && !response.degraded,
        "{through} {query}: partial {:?} degraded {}",
        response.missing_shards,
        response.degraded_reason
    );
    assert_page(oracle, query, 0, 10, &response.hits, through);
}

/// `hits` are the oracle's page of `limit` at `offset`: same ids in the same order, scores
/// within 1e-4. Returns the oracle's page.
fn assert_page(
    oracle: &Oracle,
    query: &str,
    offset: usize,
    limit: usize,
    hits: &[pb::Hit],
    through: &str,
) -> Vec<(Id, f32)> {
    let expected: Vec<(Id, f32)> = oracle
        .ranking(query)
        .into_iter()
        .skip(offset)
        .take(limit)
        .collect();
    let got: Vec<Id> = hits.iter().map(|hit| oracle.style.of_hit(hit)).collect();
    let expected_ids: Vec<Id> = expected.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(got, expected_ids, "{through} {query} at {offset}");
    for (hit, (id, expected)) in hits.iter().zip(&expected) {
        assert!(
            (hit.score - f64::from(*expected)).abs() <= 1e-4,
            "{through} {query}: id {id:?} scores {}, the oracle {expected}",
            hit.score
        );
    }
    expected
}

/// Two pages with the same hits in the same order, tiers and fields equal; scores equal but
/// for float rounding (a document's BM25 terms are summed in the order its index's postings
/// meet them, which differs between one index and four). Returns the largest relative score
/// difference.
fn same_pages(sharded: &[pb::Hit], single: &[pb::Hit], query: &str) -> f64 {
    assert_eq!(sharded.len(), single.len(), "{query}");
    let mut largest: f64 = 0.0;
    for (a, b) in sharded.iter().zip(single) {
        assert_eq!(
            (&a.id, a.tier, &a.fields),
            (&b.id, b.tier, &b.fields),
            "{query}"
        );
        let relative = (a.score - b.score).abs() / b.score.abs().max(1e-9);
        assert!(relative <= 1e-6, "{query}: {} vs {}", a.score, b.score);
        largest = largest.max(relative);
    }
    largest
}

/// Waits until a search through the member at `address` is answered by every shard.
async fn wait_complete(address: &str, index: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(mut client) =
            pb::tierdex_client::TierdexClient::connect(format!("http://{address}")).await
            && let Ok(response) = client.search(search_request(index, "algorithm", 10)).await
        {
            let response = response.into_inner();
            if !response.partial && !response.degraded {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{address} never answered {index} from every shard"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_three_answers_exactly_and_says_what_it_lacks_when_members_die() {
    let s3 = S3Server::start();
    let store = s3.store("fleet", "indexes").await;
    let summary = build_cacm_styled(store.clone(), RULES, IdStyle::Numbers, "cacm", SHARDS).await;
    let shard_set = summary.manifest.shards.clone().expect("a sharded manifest");
    assert_eq!(shard_set.count, SHARDS);
    assert_eq!(shard_set.corpus.docs, 3204);
    let single = build_cacm(store.clone(), RULES, "cacm-single").await;
    assert!(single.manifest.shards.is_none());
    assert_eq!(
        summary.manifest.hot.docs + summary.manifest.cold.docs,
        single.manifest.hot.docs + single.manifest.cold.docs
    );
    assert_eq!(summary.manifest.hot.docs, single.manifest.hot.docs);

    let ids: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let peers = ids.join(",");
    // The last member started is the one left standing at the end: one not among the owners
    // of some shard, so that killing the other two leaves that shard without a replica.
    let survivor = (0..3)
        .find(|member| {
            (0..SHARDS).any(|shard| {
                !placement::owners(&ids, "cacm", shard, REPLICAS).contains(&ids[*member].as_str())
            })
        })
        .expect("4 shards on pairs of 3 members leave some member out of some pair");
    let mut order: Vec<String> = ids.clone();
    order.swap(survivor, 2);
    let uri = s3.uri("fleet", "indexes");
    let mut members: Vec<Member> = order
        .iter()
        .map(|id| Member::start(id, &peers, &uri, "cacm"))
        .collect();
    for member in &members {
        wait_complete(&member.id, "cacm").await;
    }

    // A plain node serving the single-shard build: the sharded fleet's pages must equal its.
    let plain_dir = tempfile::tempdir().unwrap();
    let plain = TestNode::start(store.clone(), &["cacm-single"], plain_dir.path()).await;
    plain.wait_ready().await;
    let mut plain_client = plain.client().await;

    // Each member reports the shards placed on it through grpc.health.v1 as <index>/<shard>,
    // and knows nothing of the others.
    for member in &members {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", member.id))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        for shard in 0..SHARDS {
            let owned =
                placement::owners(&ids, "cacm", shard, REPLICAS).contains(&member.id.as_str());
            let answer = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: format!("cacm/{shard}"),
                })
                .await;
            match answer {
                Ok(answer) => {
                    assert!(
                        owned,
                        "{} reports cacm/{shard}, not placed on it",
                        member.id
                    );
                    assert_eq!(
                        answer.into_inner().status,
                        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
                    );
                }
                Err(status) => {
                    assert!(!owned, "{}: cacm/{shard}: {status}", member.id);
                    assert_eq!(status.code(), tonic::Code::NotFound);
                }
            }
        }
    }

    let oracle = Oracle::new(IdStyle::Numbers);
    let queries = all_queries();
    assert!(queries.len() > 64, "{}", queries.len());
    for member in &members {
        let mut client = member.client().await;
        for query in &queries {
            let response = search(&mut client, "cacm", query).await;
            assert_exact(&oracle, query, &response, &member.id);
        }
    }
    let mut client = members[0].client().await;
    let mut largest_difference: f64 = 0.0;
    for query in &queries {
        let fleet = search(&mut client, "cacm", query).await;
        let single = search(&mut plain_client, "cacm-single", query).await;
        largest_difference = largest_difference.max(same_pages(&fleet.hits, &single.hits, query));
    }
    eprintln!("largest relative score difference, sharded vs single-shard: {largest_difference:e}");
    // Second pages and field choices go through the same merge.
    let mut request = search_request("cacm", "computer program", 7);
    request.offset = 5;
    request.fields = vec!["title".into(), "citations".into()];
    let fleet = client.search(request.clone()).await.unwrap().into_inner();
    request.index = "cacm-single".into();
    let single = plain_client.search(request).await.unwrap().into_inner();
    assert_eq!(fleet.hits.len(), 7);
    same_pages(&fleet.hits, &single.hits, "computer program, second page");
    // A bad query is the client's error, located, through the fleet as through one node.
    let bad = client
        .search(search_request("cacm", "title:(unclosed", 10))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad}");
    let unknown = client
        .search(search_request("nope", "x", 10))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown}");

    // One member hung (SIGSTOP): connections open, nothing answers. A member that is not an
    // owner of shard 0 asks its first owner first: once that one is late it asks the other
    // beside it (hedging), then first while the hung one stays silent.
    let owners = placement::owners(&ids, "cacm", 0, REPLICAS);
    let by_id = |id: &str| members.iter().position(|member| member.id == id).unwrap();
    let hung = by_id(owners[0]);
    let asking = (0..3)
        .find(|member| !owners.contains(&members[*member].id.as_str()))
        .unwrap();
    let hedged_count = || {
        scrape_counter(
            &members[asking].metrics,
            "tierdex_fleet_replica_requests_total",
            &[("operation", "rank"), ("outcome", "hedged")],
        )
    };
    // The counter is cumulative: this phase's hedges are the difference.
    let hedged_before = hedged_count().await;
    let stopped = members[hung].child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &stopped])
            .status()
            .unwrap()
            .success()
    );
    let mut client = members[asking].client().await;
    for query in &queries {
        let response = search(&mut client, "cacm", query).await;
        assert_exact(&oracle, query, &response, &members[asking].id);
    }
    let hedged = hedged_count().await - hedged_before;
    // Hedged once or a few times (the hung member's shards, until it was marked slow), not on
    // every search.
    assert!(
        hedged >= 1.0 && hedged < queries.len() as f64 / 4.0,
        "{hedged}"
    );
    assert!(
        Command::new("kill")
            .args(["-CONT", &stopped])
            .status()
            .unwrap()
            .success()
    );

    // One member gone: every shard still has a live owner, every answer is still exact.
    members[0].kill();
    for member in &members[1..] {
        let mut client = member.client().await;
        for query in &queries {
            let response = search(&mut client, "cacm", query).await;
            assert_exact(&oracle, query, &response, &member.id);
        }
    }

    // Two gone: the shards whose owners were both among them are named, and the page holds
    // only documents of the shards still served.
    members[1].kill();
    let survivor = &members[2];
    let missing: BTreeSet<String> = (0..SHARDS)
        .filter(|shard| {
            !placement::owners(&ids, "cacm", *shard, REPLICAS).contains(&survivor.id.as_str())
        })
        .map(|shard| format!("cacm/{shard}"))
        .collect();
    assert!(
        !missing.is_empty(),
        "with 4 shards on pairs of 3 members, some shard has no owner left"
    );
    let mut client = survivor.client().await;
    let mut partial_pages = 0;
    for query in &queries {
        let response = search(&mut client, "cacm", query).await;
        assert!(response.partial, "{query}");
        let named: BTreeSet<String> = response.missing_shards.iter().cloned().collect();
        assert_eq!(named, missing, "{query}");
        for hit in &response.hits {
            let shard = shard_of(hit_u64(hit).to_string().as_bytes(), SHARDS);
            assert!(
                !missing.contains(&format!("cacm/{shard}")),
                "{query}: {} is on a missing shard",
                hit_u64(hit)
            );
        }
        partial_pages += 1;
    }
    assert_eq!(partial_pages, queries.len());
    plain.stop().await;
}

async fn in_process_member(
    store: std::sync::Arc<dyn tierdex::store::BlobStore>,
    index: &str,
    listener: tokio::net::TcpListener,
    peers: &[String],
    replicas: usize,
) -> InProcessMember {
    in_process_member_with(store, index, listener, peers, replicas, None).await
}

/// `count` members serving `index` from `store` on fresh loopback ports, `replicas` per shard,
/// and their ids (addresses).
async fn in_process_fleet(
    store: &std::sync::Arc<dyn tierdex::store::BlobStore>,
    index: &str,
    count: usize,
    replicas: usize,
) -> (Vec<InProcessMember>, Vec<String>) {
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count {
        listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let peers: Vec<String> = listeners
        .iter()
        .map(|listener| listener.local_addr().unwrap().to_string())
        .collect();
    let mut members = Vec::with_capacity(count);
    for listener in listeners {
        members.push(in_process_member(store.clone(), index, listener, &peers, replicas).await);
    }
    (members, peers)
}

/// Every read of a shard's files waits a while.
#[derive(Debug)]
struct SlowReads;

#[async_trait::async_trait]
impl StoreHooks for SlowReads {
    async fn before_read(&self, _op: &'static str, key: &str) {
        if key.contains("/shards/") {
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
}

/// A member list tests change at will (as DNS would).
#[derive(Clone, Default)]
struct ChangingMembers(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

#[async_trait::async_trait]
impl tierdex::fleet::membership::Membership for ChangingMembers {
    async fn members(&self) -> Result<Vec<String>, String> {
        let mut members = self.0.lock().unwrap().clone();
        members.sort();
        Ok(members)
    }

    fn describe(&self) -> String {
        "a test's list".into()
    }
}

async fn in_process_member_with(
    store: std::sync::Arc<dyn tierdex::store::BlobStore>,
    index: &str,
    listener: tokio::net::TcpListener,
    peers: &[String],
    replicas: usize,
    membership: Option<ChangingMembers>,
) -> InProcessMember {
    let data_dir = tempfile::tempdir().unwrap();
    let path = data_dir.path().to_path_buf();
    let mut member =
        in_process_member_at(store, index, listener, peers, replicas, membership, &path).await;
    member.data_dir = Some(data_dir);
    member
}

/// A member whose data dir is `data_dir` (kept by the caller, e.g. across a restart).
async fn in_process_member_in(
    store: std::sync::Arc<dyn tierdex::store::BlobStore>,
    index: &str,
    listener: tokio::net::TcpListener,
    peers: &[String],
    replicas: usize,
    data_dir: &std::path::Path,
) -> InProcessMember {
    in_process_member_at(store, index, listener, peers, replicas, None, data_dir).await
}

async fn in_process_member_at(
    store: std::sync::Arc<dyn tierdex::store::BlobStore>,
    index: &str,
    listener: tokio::net::TcpListener,
    peers: &[String],
    replicas: usize,
    membership: Option<ChangingMembers>,
    data_dir: &std::path::Path,
) -> InProcessMember {
    let settings = tierdex::config::Settings {
        store: Some(store.uri().to_string()),
        indexes: Some(vec![index.to_string()]),
        listen: Some(listener.local_addr().unwrap().to_string()),
        data_dir: Some(data_dir.to_path_buf()),
        peers: Some(peers.to_vec()),
        replicas: Some(replicas),
        fleet_refresh: Some("100ms".into()),
        poll_interval: Some("150ms".into()),
        ..Default::default()
    };
    start_member(
        store,
        listener,
        settings,
        membership.map(|membership| Box::new(membership) as Box<dyn Membership>),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_ids_that_tie_on_score_and_prefix_merge_exactly_across_members() {
    // Two in three ids share their first 8 bytes (`cacm-999…`), in an order unlike the input's.
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(&dir.path().join("store"));
    build_cacm_styled(store.clone(), RULES, IdStyle::Strings, "strings", SHARDS).await;

    let (members, peers) = in_process_fleet(&store, "strings", 2, 1).await;
    // One replica per shard: searches through the member owning fewer shards reach the
    // other member's over the network (all of them if placement gave it none).
    let owned: Vec<usize> = peers
        .iter()
        .map(|peer| placement::owned_shards(&peers, peer, "strings", SHARDS, 1).len())
        .collect();
    let asked = if owned[0] <= owned[1] { 0 } else { 1 };
    let deadline = Instant::now() + Duration::from_secs(60);
    while members
        .iter()
        .zip(&owned)
        .any(|(member, owned)| member.node.served_shards("strings").len() != *owned)
    {
        assert!(Instant::now() < deadline, "shards never placed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let oracle = Oracle::new(IdStyle::Strings);
    let mut queries = cacm_structured_queries();
    queries.extend(cacm_query_texts().into_iter().take(20));
    let mut client = pb::tierdex_client::TierdexClient::connect(format!("http://{}", peers[asked]))
        .await
        .unwrap();
    let mut ties_across_prefix = 0;
    for query in &queries {
        for (offset, limit) in [(0usize, 10usize), (7, 9)] {
            let mut request = search_request("strings", query, limit as u32);
            request.offset = offset as u32;
            let response = loop {
                match client.search(request.clone()).await {
                    Ok(response) if !response.get_ref().partial => break response.into_inner(),
                    _ => {
                        assert!(Instant::now() < deadline, "{query}: no complete answer");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            };
            let page = assert_page(&oracle, query, offset, limit, &response.hits, &peers[asked]);
            ties_across_prefix += page
                .windows(2)
                .filter(|pair| match (&pair[0], &pair[1]) {
                    ((Id::Text(a), a_score), (Id::Text(b), b_score)) => {
                        a_score == b_score && a.len() >= 8 && a.get(..8) == b.get(..8)
                    }
                    _ => false,
                })
                .count();
        }
    }
    // The pages did hold hits that only their whole ids order.
    assert!(ties_across_prefix > 10, "{ties_across_prefix}");
}

/// Issue 8, item 5, across shards: each shard sends exact scores, so that documents with equal
/// exact scores in different shards tie and come in id order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_exact_scores_tie_by_id_across_shards() {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(&dir.path().join("store"));
    let copies = common::copies::build(store.clone(), "copies", SHARDS).await;
    let (members, peers) = in_process_fleet(&store, "copies", 2, 1).await;
    for peer in &peers {
        wait_complete(peer, "copies").await;
    }
    let mut client = pb::tierdex_client::TierdexClient::connect(format!("http://{}", peers[0]))
        .await
        .unwrap();
    copies.check_pages(&mut client, "copies").await;
    drop(members);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_is_searched_only_once_every_shard_serves_it_and_never_mixed() {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(&dir.path().join("store"));
    let build = |rules: &'static str| {
        let store = store.clone();
        async move { build_cacm_styled(store, rules, IdStyle::Numbers, "cacm", SHARDS).await }
    };
    let first = build(RULES).await.manifest.version;
    let (members, peers) = in_process_fleet(&store, "cacm", 3, 2).await;
    let mut clients = Vec::new();
    for peer in &peers {
        clients.push(
            pb::tierdex_client::TierdexClient::connect(format!("http://{peer}"))
                .await
                .unwrap(),
        );
    }
    for peer in &peers {
        wait_complete(peer, "cacm").await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let oracle = Oracle::new(IdStyle::Numbers);
    // A new version with every document hot: same pages, another split. Searches go on through
    // every member while the members load it, each on its own schedule.
    let second = build("hot = [\"true\"]\n").await.manifest.version;
    assert_ne!(first, second);
    let queries = cacm_query_texts();
    let mut seen_second = [false; 3];
    // Loading takes a poll, a download and an open: the first answers after publishing come
    // from the old version, so the test sees the roll, not only its end.
    let mut first_after_publish = 0;
    let mut searches = 0;
    while !seen_second.iter().all(|seen| *seen) {
        assert!(
            Instant::now() < deadline + Duration::from_secs(60),
            "members never switched: {seen_second:?}"
        );
        for (member, client) in clients.iter_mut().enumerate() {
            let query = &queries[searches % queries.len()];
            searches += 1;
            let answer = search(client, "cacm", query).await;
            // One version per page, the old one until the new one is served for every shard,
            // then the new one for good; never partial on the way.
            assert_exact(&oracle, query, &answer, &peers[member]);
            if answer.version == second {
                seen_second[member] = true;
            } else {
                assert_eq!(answer.version, first, "{query}");
                first_after_publish += 1;
                assert!(
                    !seen_second[member],
                    "{} went back to the old version",
                    peers[member]
                );
            }
            let cold_hits = answer
                .hits
                .iter()
                .filter(|hit| hit.tier == pb::Tier::Cold as i32)
                .count();
            if answer.version == second {
                assert_eq!(
                    cold_hits, 0,
                    "{query}: every document is hot in the new version"
                );
            }
        }
    }
    assert!(
        first_after_publish > 0,
        "no answer came from the old version once the new one was published"
    );
    drop(members);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_joining_takes_its_shards_and_nothing_goes_unserved() {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(&dir.path().join("store"));
    build_cacm_styled(store.clone(), RULES, IdStyle::Numbers, "cacm", SHARDS).await;
    // Member ids are their addresses, and with 4 shards rendezvous hashing gives a second
    // member nothing 1 time in 16: the newcomer takes another port until it gets a shard, so
    // that there is a hand-over to test (at most 50 ports; all failing has odds of 16^-50).
    let first = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let first_id = first.local_addr().unwrap().to_string();
    let mut newcomer = None;
    for _ in 0..50 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let id = listener.local_addr().unwrap().to_string();
        let mut both = vec![first_id.clone(), id.clone()];
        both.sort();
        if !placement::owned_shards(&both, &id, "cacm", SHARDS, 1).is_empty() {
            newcomer = Some(listener);
            break;
        }
    }
    let listeners = [first, newcomer.expect("a port whose member gets a shard")];
    let ids: Vec<String> = listeners
        .iter()
        .map(|listener| listener.local_addr().unwrap().to_string())
        .collect();
    // The list starts with the first member alone: it owns every shard.
    let members_list = ChangingMembers::default();
    members_list.0.lock().unwrap().push(ids[0].clone());
    // The newcomer loads slowly (every read from storage waits): the first member must keep
    // answering for the shards it hands over until the newcomer serves them.
    let slow: std::sync::Arc<dyn tierdex::store::BlobStore> = std::sync::Arc::new(HookedStore {
        inner: store.clone(),
        hooks: SlowReads,
    });
    let mut members = Vec::new();
    for (listener, store) in listeners.into_iter().zip([store.clone(), slow]) {
        members.push(
            in_process_member_with(store, "cacm", listener, &ids, 1, Some(members_list.clone()))
                .await,
        );
    }
    let mut client = pb::tierdex_client::TierdexClient::connect(format!("http://{}", ids[0]))
        .await
        .unwrap();
    wait_complete(&ids[0], "cacm").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    assert_eq!(members[0].node.served_shards("cacm").len(), SHARDS as usize);
    assert!(members[1].node.served_shards("cacm").is_empty());

    // The second member joins: it takes the shards rendezvous hashing gives it, the first
    // keeps each until the second serves it, and every search meanwhile is exact.
    members_list.0.lock().unwrap().push(ids[1].clone());
    let sorted = {
        let mut sorted = ids.clone();
        sorted.sort();
        sorted
    };
    let owned = |member: usize| -> BTreeSet<u32> {
        placement::owned_shards(&sorted, &ids[member], "cacm", SHARDS, 1)
            .into_iter()
            .collect()
    };
    let oracle = Oracle::new(IdStyle::Numbers);
    let queries = cacm_query_texts();
    let mut searches = 0;
    loop {
        let query = &queries[searches % queries.len()];
        searches += 1;
        let answer = search(&mut client, "cacm", query).await;
        assert_exact(&oracle, query, &answer, &ids[0]);
        let settled = [0, 1].iter().all(|member| {
            members[*member]
                .node
                .served_shards("cacm")
                .into_iter()
                .collect::<BTreeSet<u32>>()
                == owned(*member)
        });
        if settled {
            break;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(30),
            "placement never settled"
        );
    }
    // Settled: each member serves exactly its shards, and searches through either are exact.
    let mut second = pb::tierdex_client::TierdexClient::connect(format!("http://{}", ids[1]))
        .await
        .unwrap();
    for query in queries.iter().take(20) {
        let answer = search(&mut second, "cacm", query).await;
        assert_exact(&oracle, query, &answer, &ids[1]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_restarted_with_storage_down_serves_the_shards_it_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(&dir.path().join("store"));
    let all_hot = "hot = [\"true\"]\n";
    build_cacm_styled(store.clone(), all_hot, IdStyle::Numbers, "cacm", SHARDS).await;
    let data_dir = tempfile::tempdir().unwrap();
    let oracle = Oracle::new(IdStyle::Numbers);
    let queries = cacm_query_texts();
    // Twice with the same data dir: storage up, then unreachable (nothing listens there).
    let unreachable: std::sync::Arc<dyn tierdex::store::BlobStore> =
        s3_store_at(&format!("http://127.0.0.1:{}", free_port()), "gone", "").await;
    for (store, storage_up) in [(store, true), (unreachable, false)] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let id = listener.local_addr().unwrap().to_string();
        let member = in_process_member_in(
            store,
            "cacm",
            listener,
            std::slice::from_ref(&id),
            1,
            data_dir.path(),
        )
        .await;
        let mut client = pb::tierdex_client::TierdexClient::connect(format!("http://{id}"))
            .await
            .unwrap();
        wait_complete(&id, "cacm").await;
        // Every document is hot: the kept copy answers every search in full.
        for query in &queries {
            let answer = search(&mut client, "cacm", query).await;
            assert_exact(&oracle, query, &answer, &id);
        }
        let node = member.node.clone();
        let shard = node.served_shards("cacm")[0];
        let follows = |node: std::sync::Arc<tierdex::node::Node>| async move {
            node.reload(&format!("cacm/{shard}"), Duration::from_secs(2))
                .await
                .is_ok()
        };
        if storage_up {
            assert!(follows(node.clone()).await, "shard {shard} checks CURRENT");
        }
        // Stopped with the member: it must not go on writing under the data dir the next
        // member uses.
        drop(member);
        if storage_up {
            assert!(!follows(node).await, "shard {shard} still follows CURRENT");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_shard_requests_are_refused_by_name_and_the_member_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(&dir.path().join("store"));
    let version = build_cacm_styled(store.clone(), RULES, IdStyle::Numbers, "cacm", SHARDS)
        .await
        .manifest
        .version;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let id = listener.local_addr().unwrap().to_string();
    let _member = in_process_member(store, "cacm", listener, std::slice::from_ref(&id), 1).await;
    let mut client = pb::tierdex_client::TierdexClient::connect(format!("http://{id}"))
        .await
        .unwrap();
    wait_complete(&id, "cacm").await;
    let mut shards = pb::shards_client::ShardsClient::connect(format!("http://{id}"))
        .await
        .unwrap();
    let rank = |shard: &str, version: &str| pb::RankShardRequest {
        shard: shard.into(),
        version: version.into(),
        search: Some(search_request("", "computer", 10)),
    };
    // A shard or version not served here: FAILED_PRECONDITION, naming them.
    let unknown = shards.rank_shard(rank("cacm/99", "")).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::FailedPrecondition, "{unknown}");
    assert!(unknown.message().contains("cacm/99"), "{unknown}");
    let old = shards
        .rank_shard(rank("cacm/0", "20200101T000000000Z-00000000"))
        .await
        .unwrap_err();
    assert_eq!(old.code(), tonic::Code::FailedPrecondition, "{old}");
    assert!(
        old.message().contains("20200101T000000000Z-00000000"),
        "{old}"
    );
    // A bad query: INVALID_ARGUMENT with its position; no search part at all: named.
    let mut bad = rank("cacm/0", &version);
    bad.search.as_mut().unwrap().query = "title:(unclosed".into();
    let bad = shards.rank_shard(bad).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad}");
    let mut empty = rank("cacm/0", &version);
    empty.search = None;
    let empty = shards.rank_shard(empty).await.unwrap_err();
    assert!(empty.message().contains("search"), "{empty}");
    // Documents that are not there, and a tier that does not exist.
    let fetch = |tier: i32, doc: u64| pb::FetchShardRequest {
        shard: "cacm/0".into(),
        version: version.clone(),
        hits: vec![pb::ShardDocRef { tier, doc }],
        fields: Vec::new(),
    };
    let missing = shards
        .fetch_shard(fetch(pb::Tier::Hot as i32, u64::MAX))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::InvalidArgument, "{missing}");
    assert!(missing.message().contains("no hot document"), "{missing}");
    let no_tier = shards.fetch_shard(fetch(7, 0)).await.unwrap_err();
    assert_eq!(no_tier.code(), tonic::Code::InvalidArgument, "{no_tier}");
    // A cold address beyond the shard's files: the document is left out, flagged.
    let beyond = shards
        .fetch_shard(fetch(pb::Tier::Cold as i32, u64::MAX))
        .await
        .unwrap()
        .into_inner();
    assert!(!beyond.documents[0].present);
    assert!(!beyond.degraded_reason.is_empty());
    // And the member still answers.
    let answer = search(&mut client, "cacm", "computer").await;
    assert!(!answer.partial && !answer.hits.is_empty());
}
