//! TLS on the gRPC listener with certificates made by the test (rcgen): Python grpcio with
//! `ssl_channel_credentials` searches a node over TLS, while plaintext clients and clients not
//! trusting its CA are refused; with `tls_client_ca`, only clients presenting a certificate that
//! CA signed are answered; `tierdex query` / `status` reach it with `--ca-cert` (and a client
//! certificate); a renewed certificate is presented without a restart, a broken renewal is not;
//! bad files stop the node at start, named; and three fleet members asking each other over
//! mutual TLS return the oracle's CACM pages exactly.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::certs::TestCa;
use common::fleet::{Member, start_member};
use common::oracle::{IdStyle, Oracle, build_cacm_styled};
use common::*;
use serde_json::{Value, json};
use tierdex::api::client::{self, TlsOptions};
use tierdex::api::pb;
use tierdex::config::{Settings, TlsConfig};
use tierdex::store::BlobStore;
use tierdex::tls::{ClientTls, ServerTls, Trust};

const RULES: &str = "hot = [\"citations >= 1\"]\n";
const QUERY: &str = "computer programming language";

/// CACM built into a local store under `dir`, as index `cacm`.
async fn cacm_store(dir: &Path) -> Arc<dyn BlobStore> {
    let store = local_store(&dir.join("store"));
    build_cacm(store.clone(), RULES, "cacm").await;
    store
}

/// Runs tests/python/tls_client.py: one search of `QUERY` per case.
async fn python_cases(address: &str, cases: Value) -> Value {
    let args = vec![
        address.to_string(),
        "cacm".into(),
        QUERY.into(),
        cases.to_string(),
    ];
    python_grpc_client("tls_client.py", args).await
}

/// `tierdex <args>` (the binary, off the runtime): (succeeded, stdout, stderr).
async fn tierdex(args: Vec<String>) -> (bool, String, String) {
    let output = tokio::task::spawn_blocking(move || tierdex_bin().args(&args).output().unwrap())
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn ids(response: &pb::SearchResponse) -> Vec<u64> {
    response.hits.iter().map(hit_u64).collect()
}

fn path(path: &Path) -> String {
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_searches_a_node_over_tls_and_untrusted_or_plaintext_clients_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = cacm_store(dir.path()).await;
    let ca = TestCa::new("server");
    let other = TestCa::new("other");
    let certificate = ca.issue("node");
    let data = tempfile::tempdir().unwrap();
    let node = TestNode::start_with(store, &["cacm"], data.path(), |settings| {
        settings.tls_cert = Some(certificate.cert.clone());
        settings.tls_key = Some(certificate.key.clone());
    })
    .await;
    node.wait_ready().await;
    assert!(node.addr.starts_with("https://"), "{}", node.addr);

    // tierdex's own client (`tierdex query`'s), trusting the CA.
    let trusting = TlsOptions {
        ca_cert: Some(ca.cert.clone()),
        ..TlsOptions::default()
    };
    let expected = client::search(&node.addr, &trusting, search_request("cacm", QUERY, 10))
        .await
        .unwrap();
    assert_eq!(expected.hits.len(), 10);

    let report = python_cases(
        node.host_port(),
        json!([
            {"name": "tls", "ca": ca.cert},
            {"name": "plaintext", "plaintext": true},
            {"name": "untrusted", "ca": other.cert},
        ]),
    )
    .await;
    assert_eq!(report["tls"]["code"], "OK", "{report}");
    assert_eq!(report["tls"]["ids"], json!(ids(&expected)), "{report}");
    assert_eq!(report["plaintext"]["code"], "UNAVAILABLE", "{report}");
    assert_eq!(report["untrusted"]["code"], "UNAVAILABLE", "{report}");

    // A plaintext tonic client is refused as well.
    let plaintext = client::search(
        &format!("http://{}", node.host_port()),
        &TlsOptions::default(),
        search_request("cacm", QUERY, 10),
    )
    .await;
    assert!(plaintext.is_err(), "{plaintext:?}");

    // The command line: `--ca-cert` with an https:// address, and with none (https implied).
    for addr in [node.addr.clone(), node.host_port().to_string()] {
        let (ok, stdout, stderr) = tierdex(vec![
            "query".into(),
            "--addr".into(),
            addr.clone(),
            "--ca-cert".into(),
            path(&ca.cert),
            "--json".into(),
            QUERY.into(),
        ])
        .await;
        assert!(ok, "tierdex query --addr {addr}: {stderr}");
        let answer: Value = serde_json::from_str(&stdout).unwrap();
        let got: Vec<u64> = answer["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|hit| hit["id"].as_u64().unwrap())
            .collect();
        assert_eq!(got, ids(&expected));
    }
    // Without --ca-cert the node's certificate is checked against the system's CAs, which never
    // signed it.
    let (ok, _, stderr) = tierdex(vec!["status".into(), "--addr".into(), node.addr.clone()]).await;
    assert!(!ok);
    assert!(stderr.contains("certificate"), "{stderr}");
    // TLS options with a plaintext address are a mistake, said so.
    let (ok, _, stderr) = tierdex(vec![
        "status".into(),
        "--addr".into(),
        format!("http://{}", node.host_port()),
        "--ca-cert".into(),
        path(&ca.cert),
    ])
    .await;
    assert!(!ok);
    assert!(stderr.contains("are for https:// addresses"), "{stderr}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_client_ca_only_clients_presenting_a_certificate_it_signed_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let store = cacm_store(dir.path()).await;
    let server_ca = TestCa::new("server");
    let client_ca = TestCa::new("clients");
    let other = TestCa::new("other");
    let certificate = server_ca.issue("node");
    let client_certificate = client_ca.issue("client");
    let stranger = other.issue("stranger");
    let data = tempfile::tempdir().unwrap();
    let node = TestNode::start_with(store, &["cacm"], data.path(), |settings| {
        settings.tls_cert = Some(certificate.cert.clone());
        settings.tls_key = Some(certificate.key.clone());
        settings.tls_client_ca = Some(client_ca.cert.clone());
    })
    .await;
    node.wait_ready().await;

    let report = python_cases(
        node.host_port(),
        json!([
            {"name": "no_certificate", "ca": server_ca.cert},
            {"name": "signed", "ca": server_ca.cert,
             "cert": client_certificate.cert, "key": client_certificate.key},
            {"name": "other_ca", "ca": server_ca.cert,
             "cert": stranger.cert, "key": stranger.key},
        ]),
    )
    .await;
    assert_eq!(report["signed"]["code"], "OK", "{report}");
    assert_eq!(report["signed"]["ids"].as_array().unwrap().len(), 10);
    assert_eq!(report["no_certificate"]["code"], "UNAVAILABLE", "{report}");
    assert_eq!(report["other_ca"]["code"], "UNAVAILABLE", "{report}");

    let status = |identity: Option<(&Path, &Path)>| {
        let mut args = vec![
            "status".to_string(),
            "--addr".into(),
            node.addr.clone(),
            "--ca-cert".into(),
            path(&server_ca.cert),
        ];
        if let Some((cert, key)) = identity {
            args.extend([
                "--client-cert".into(),
                path(cert),
                "--client-key".into(),
                path(key),
            ]);
        }
        tierdex(args)
    };
    let (ok, stdout, stderr) =
        status(Some((&client_certificate.cert, &client_certificate.key))).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("index cacm"), "{stdout}");
    let (ok, _, _) = status(None).await;
    assert!(!ok, "answered a client without a certificate");
    node.stop().await;
}

/// The certificate a TLS server at `address` presents, as a client trusting `ca` sees it.
async fn presented(address: &str, ca: &Path) -> Result<Vec<u8>, std::io::Error> {
    use tower_service::Service;
    let tls = ClientTls::load(Trust::CaFile(ca), None).unwrap();
    let stream = tls
        .connector()
        .call(format!("https://{address}").parse().unwrap())
        .await?;
    let (_, connection) = stream.inner().get_ref();
    Ok(connection.peer_certificates().unwrap()[0].to_vec())
}

/// Replaces `path` at once (write beside, rename over), as a renewal does.
fn replace(path: &Path, contents: &str) {
    let beside = path.with_extension("new");
    std::fs::write(&beside, contents).unwrap();
    std::fs::rename(&beside, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_presented_without_a_restart_and_a_broken_one_is_not() {
    let ca = TestCa::new("server");
    let first = ca.issue("node");
    let files = TlsConfig {
        cert: first.cert.clone(),
        key: first.key.clone(),
        client_ca: None,
        peer_ca: None,
    };
    let server = ServerTls::load(&files).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let accepting = tokio::spawn(async move {
        use futures::StreamExt;
        let mut incoming = std::pin::pin!(server.incoming(listener));
        let mut open = Vec::new();
        while let Some(connection) = incoming.next().await {
            open.push(connection);
        }
    });
    assert_eq!(presented(&address, &ca.cert).await.unwrap(), first.der);

    // Renewed in place: the next handshake once the node has looked again presents it.
    let (cert, key, renewed) = ca.issue_pem("node-renewed");
    replace(&first.key, &key);
    replace(&first.cert, &cert);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = presented(&address, &ca.cert).await.unwrap();
        if now == renewed {
            break;
        }
        assert_eq!(now, first.der, "neither certificate");
        assert!(Instant::now() < deadline, "the renewal was never presented");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A renewal half written (the key not yet, or broken): the previous pair goes on serving.
    let (half_cert, _, _) = ca.issue_pem("node-half");
    replace(&first.cert, &half_cert);
    replace(&first.key, "-----BEGIN PRIVATE KEY-----\nnot base64\n");
    // Past the node's next look (once a second).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..2 {
        assert_eq!(presented(&address, &ca.cert).await.unwrap(), renewed);
    }
    accepting.abort();
}

#[test]
fn bad_certificate_files_stop_the_node_at_start_naming_them() {
    let ca = TestCa::new("server");
    let good = ca.issue("node");
    let other = ca.issue("other");
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let not_pem = dir.path().join("not-pem.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let files = |cert: &Path, key: &Path, client_ca: Option<&Path>| TlsConfig {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        client_ca: client_ca.map(Path::to_path_buf),
        peer_ca: None,
    };
    let error = |config: TlsConfig| match ServerTls::load(&config) {
        Ok(_) => panic!("{config:?} loaded"),
        Err(err) => err.to_string(),
    };
    let err = error(files(&missing, &good.key, None));
    assert!(
        err.contains(&path(&missing)) && err.contains("cannot read"),
        "{err}"
    );
    let err = error(files(&not_pem, &good.key, None));
    assert!(
        err.contains(&path(&not_pem)) && err.contains("holds no certificate"),
        "{err}"
    );
    // A certificate where the key should be.
    let err = error(files(&good.cert, &good.cert, None));
    assert!(
        err.contains(&path(&good.cert)) && err.contains("no PEM private key"),
        "{err}"
    );
    // Another certificate's key.
    let err = error(files(&good.cert, &other.key, None));
    assert!(
        err.contains(&path(&good.cert)) && err.contains(&path(&other.key)),
        "{err}"
    );
    let err = error(files(&good.cert, &good.key, Some(&not_pem)));
    assert!(
        err.contains("client CA") && err.contains(&path(&not_pem)),
        "{err}"
    );

    // The binary stops before serving, with the message (it would run on otherwise: waited for
    // a bounded time).
    let data = tempfile::tempdir().unwrap();
    let mut child = tierdex_bin()
        .args(["serve", "--store"])
        .arg(dir.path())
        .args(["--index", "cacm", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .arg("--tls-cert")
        .arg(&missing)
        .arg("--tls-key")
        .arg(&good.key)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tierdex serve with a missing certificate did not stop");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains(&path(&missing)) && stderr.contains("cannot read"),
        "{stderr}"
    );
}

/// A fleet member over TLS, as `tierdex serve` wires one (`common::fleet::start_member`).
async fn tls_member(
    store: Arc<dyn BlobStore>,
    listener: tokio::net::TcpListener,
    peers: &[String],
    adjust: impl FnOnce(&mut Settings),
) -> Member {
    let data_dir = tempfile::tempdir().unwrap();
    let mut settings = Settings {
        store: Some(store.uri().to_string()),
        indexes: Some(vec!["cacm".into()]),
        listen: Some(listener.local_addr().unwrap().to_string()),
        data_dir: Some(data_dir.path().to_path_buf()),
        peers: Some(peers.to_vec()),
        replicas: Some(2),
        fleet_refresh: Some("100ms".into()),
        poll_interval: Some("150ms".into()),
        // A TLS failure is a refused handshake, seen at once; these only keep a machine short of
        // CPU from turning slow answers into partial ones.
        replica_timeout: Some("10s".into()),
        default_timeout: Some("30s".into()),
        ..Default::default()
    };
    adjust(&mut settings);
    assert!(settings.tls_cert.is_some(), "a TLS member");
    let mut member = start_member(store, listener, settings, None).await;
    member.data_dir = Some(data_dir);
    member
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_three_over_mutual_tls_returns_the_oracle_pages() {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(&dir.path().join("store"));
    build_cacm_styled(store.clone(), RULES, IdStyle::Numbers, "cacm", 4).await;
    let ca = TestCa::new("fleet");
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let peers: Vec<String> = listeners
        .iter()
        .map(|listener| listener.local_addr().unwrap().to_string())
        .collect();
    let mut members = Vec::new();
    for (at, listener) in listeners.into_iter().enumerate() {
        let certificate = ca.issue(&format!("member-{at}"));
        // Mutual TLS: every member requires a certificate of the fleet's CA, so members present
        // their own to each other (tls_peer_ca defaults to it).
        members.push(
            tls_member(store.clone(), listener, &peers, |settings| {
                settings.tls_cert = Some(certificate.cert.clone());
                settings.tls_key = Some(certificate.key.clone());
                settings.tls_client_ca = Some(ca.cert.clone());
            })
            .await,
        );
    }
    let client_certificate = ca.issue("client");
    let tls = TlsOptions {
        ca_cert: Some(ca.cert.clone()),
        client_cert: Some(client_certificate.cert.clone()),
        client_key: Some(client_certificate.key.clone()),
    };
    // Every member answers from every shard once all have placed and loaded theirs.
    let deadline = Instant::now() + Duration::from_secs(90);
    for peer in &peers {
        loop {
            let answer = client::search(peer, &tls, search_request("cacm", "algorithm", 10)).await;
            if answer.is_ok_and(|answer| !answer.partial && !answer.degraded) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{peer} never answered from every shard"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Every CACM query, each through one member in turn: every member fans out over TLS to the
    // other two (tests/fleet.rs asks every query of every member, in plaintext).
    let oracle = Oracle::new(IdStyle::Numbers);
    for (at, query) in cacm_query_texts().iter().enumerate() {
        let peer = &peers[at % peers.len()];
        let answer = client::search(peer, &tls, search_request("cacm", query, 10))
            .await
            .unwrap_or_else(|err| panic!("{peer} {query}: {err}"));
        assert!(!answer.partial && !answer.degraded, "{peer} {query}");
        let expected: Vec<_> = oracle.ranking(query).into_iter().take(10).collect();
        let got: Vec<_> = answer
            .hits
            .iter()
            .map(|hit| oracle.style.of_hit(hit))
            .collect();
        let expected_ids: Vec<_> = expected.iter().map(|(id, _)| id.clone()).collect();
        assert_eq!(got, expected_ids, "{peer} {query}");
        for (hit, (id, score)) in answer.hits.iter().zip(&expected) {
            assert!(
                (hit.score - f64::from(*score)).abs() <= 1e-4,
                "{peer} {query}: {id:?} scores {}, the oracle {score}",
                hit.score
            );
        }
    }
    drop(members);
}
