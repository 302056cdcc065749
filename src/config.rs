//! Node settings: a TOML file, overridden by command-line flags. The only place that decides a
//! setting's value; everything else receives a `NodeConfig`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::units::{parse_bytes, parse_duration};

#[derive(Debug, thiserror::Error)]
#[error("config {source_name}: {message}")]
pub struct ConfigError {
    pub source_name: String,
    pub message: String,
}

/// Defaults, each written once: shown in the help (`concat!`) and applied by `resolve`.
mod defaults {
    macro_rules! listen {
        () => {
            "127.0.0.1:50051"
        };
    }
    pub(super) use listen;
    macro_rules! cache_size {
        () => {
            "1GiB"
        };
    }
    pub(super) use cache_size;
    macro_rules! rehydrate_concurrency {
        () => {
            "16"
        };
    }
    pub(super) use rehydrate_concurrency;
    macro_rules! rehydrate_chunk_size {
        () => {
            "8MiB"
        };
    }
    pub(super) use rehydrate_chunk_size;
    macro_rules! max_results {
        () => {
            "10000"
        };
    }
    pub(super) use max_results;
    macro_rules! inline_postings {
        () => {
            "200000"
        };
    }
    pub(super) use inline_postings;
    macro_rules! default_timeout {
        () => {
            "10s"
        };
    }
    pub(super) use default_timeout;
    macro_rules! document_cache_size {
        () => {
            "64MiB"
        };
    }
    pub(super) use document_cache_size;
    macro_rules! storage_timeout {
        () => {
            "2s"
        };
    }
    pub(super) use storage_timeout;
    macro_rules! breaker_failures {
        () => {
            "5"
        };
    }
    pub(super) use breaker_failures;
    macro_rules! breaker_cool_down {
        () => {
            "5s"
        };
    }
    pub(super) use breaker_cool_down;
    macro_rules! on_degraded {
        () => {
            "answer"
        };
    }
    pub(super) use on_degraded;
    macro_rules! poll_interval {
        () => {
            "30s"
        };
    }
    pub(super) use poll_interval;
    macro_rules! replicas {
        () => {
            "2"
        };
    }
    pub(super) use replicas;
    macro_rules! fleet_refresh {
        () => {
            "2s"
        };
    }
    pub(super) use fleet_refresh;
    macro_rules! cold_index {
        () => {
            "remote"
        };
    }
    pub(super) use cold_index;
    macro_rules! disk_cache_size {
        () => {
            "1GiB"
        };
    }
    pub(super) use disk_cache_size;
    macro_rules! replica_timeout {
        () => {
            "2s"
        };
    }
    pub(super) use replica_timeout;
}

/// Every node setting, declared once: the settings file's keys (serde), the `tierdex serve`
/// flags and their `TIERDEX_*` environment variables (clap), and the help text (these doc
/// comments, with the defaults `NodeConfig::resolve` applies). Each is optional, so that a
/// flag or variable overrides the file key by key; docs/operations.md lists them.
#[derive(Debug, Clone, Default, Deserialize, Serialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where the indexes are published: a directory, file:///dir, or s3://bucket/prefix.
    #[arg(long, env = "TIERDEX_STORE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// The indexes to serve (`--index` repeated, or comma-separated).
    #[arg(long = "index", env = "TIERDEX_INDEXES", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub indexes: Option<Vec<String>>,
    #[arg(long, env = "TIERDEX_LISTEN", help = concat!("Address to listen on [default: ", defaults::listen!(), "]"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Local directory for rehydrated index files (required).
    #[arg(long, env = "TIERDEX_DATA_DIR")]
    // A path need not be UTF-8: merged apart from the serialized settings.
    #[serde(skip_serializing)]
    pub data_dir: Option<PathBuf>,
    #[arg(long, env = "TIERDEX_CACHE_SIZE", help = concat!("Block cache capacity for cold reads [default: ", defaults::cache_size!(), "]"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_size: Option<String>,
    #[arg(long, env = "TIERDEX_DISK_CACHE_SIZE", help = concat!("Capacity of the block cache's disk tier, under the data dir (verified blocks, kept across restarts); 0 turns it off [default: ", defaults::disk_cache_size!(), "]"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_cache_size: Option<String>,
    #[arg(long, env = "TIERDEX_COLD_INDEX", help = concat!("Where the cold index is searched: `remote` (in the store, through the block cache; only its hotcache on local disk) or `local` (downloaded to the data dir first) [default: ", defaults::cold_index!(), "]"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cold_index: Option<String>,
    /// Fail a search whose remote cold index reads were not all planned, instead of searching
    /// again on the blocking pool (for tests that prove plans complete; every search is then
    /// planned, none served straight from the cache's memory) [default: false].
    #[arg(long, env = "TIERDEX_COLD_PLAN_STRICT", hide = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cold_plan_strict: Option<bool>,
    #[arg(long, env = "TIERDEX_REHYDRATE_CONCURRENCY", help = concat!("Concurrent range requests while rehydrating [default: ", defaults::rehydrate_concurrency!(), "]"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rehydrate_concurrency: Option<usize>,
    #[arg(long, env = "TIERDEX_REHYDRATE_CHUNK_SIZE", help = concat!("Bytes per rehydration request, rounded to whole checksum blocks [default: ", defaults::rehydrate_chunk_size!(), "]"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rehydrate_chunk_size: Option<String>,
    #[arg(long, env = "TIERDEX_MAX_RESULTS", help = concat!("Largest limit + offset a search may ask for [default: ", defaults::max_results!(), "]"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_results: Option<u32>,
    /// Rankings running at once (tantivy search off the async runtime; cold decoding is not
    /// counted) [default: 2 × cores].
    #[arg(long, env = "TIERDEX_SEARCH_CONCURRENCY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_concurrency: Option<usize>,
    #[arg(long, env = "TIERDEX_INLINE_POSTINGS", help = concat!("Searches reading at most this many postings (their terms' document frequencies summed; ranges, prefixes and boosts count as more; a BM25 ranking of the top hits, which block-max pruning bounds, may count 10 times as many) run on the runtime worker that received them; larger ones first hand the worker's other tasks to another thread; 0 hands off every search that reads any posting [default: ", defaults::inline_postings!(), "]"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inline_postings: Option<u64>,
    #[arg(long, env = "TIERDEX_DEFAULT_TIMEOUT", help = concat!("Budget of a search without a gRPC deadline [default: ", defaults::default_timeout!(), "]"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_timeout: Option<String>,
    #[arg(long, env = "TIERDEX_DOCUMENT_CACHE_SIZE", help = concat!("Decoded cold documents kept in memory; 0 turns it off [default: ", defaults::document_cache_size!(), "]"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document_cache_size: Option<String>,
    /// A second store with the same content: query reads are hedged across both, bulk reads
    /// spread over both [default: none].
    #[arg(long, env = "TIERDEX_REPLICA_STORE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_store: Option<String>,
    #[arg(long, env = "TIERDEX_STORAGE_TIMEOUT", help = concat!("Time limit of one storage request [default: ", defaults::storage_timeout!(), "]"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_timeout: Option<String>,
    #[arg(long, env = "TIERDEX_BREAKER_FAILURES", help = concat!("Consecutive storage failures that open the circuit breaker [default: ", defaults::breaker_failures!(), "]"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker_failures: Option<u32>,
    #[arg(long, env = "TIERDEX_BREAKER_COOL_DOWN", help = concat!("How long the open breaker keeps requests away from storage [default: ", defaults::breaker_cool_down!(), "]"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker_cool_down: Option<String>,
    /// Bytes per second read from storage, queries first [default: unlimited].
    #[arg(long, env = "TIERDEX_BANDWIDTH_LIMIT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bandwidth_limit: Option<String>,
    #[arg(long, env = "TIERDEX_ON_DEGRADED", help = concat!("When cold documents cannot be read in time: `answer` (the hot hits, flagged degraded) or `fail` [default: ", defaults::on_degraded!(), "]"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_degraded: Option<String>,
    #[arg(long, env = "TIERDEX_POLL_INTERVAL", help = concat!("How often to look for a new version in the store; 0s never [default: ", defaults::poll_interval!(), "]"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_interval: Option<String>,
    /// Token required by the admin RPCs [default: none, admin RPCs refused].
    #[arg(long, env = "TIERDEX_ADMIN_TOKEN", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
    /// Address serving /metrics for Prometheus, e.g. 127.0.0.1:9464 [default: off].
    #[arg(long, env = "TIERDEX_METRICS_LISTEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    /// The fleet's members, each as the address it advertises (`host:port`, comma-separated),
    /// this node included: serve the indexes' shards placed on this node and answer searches
    /// by fanning out to the others [default: no fleet].
    #[arg(long, env = "TIERDEX_PEERS", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers: Option<Vec<String>>,
    /// The fleet's members from DNS instead: `name:port`, every address `name` resolves to
    /// (a Kubernetes headless Service), resolved again every `fleet_refresh` [default: none].
    #[arg(long, env = "TIERDEX_PEERS_DNS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers_dns: Option<String>,
    /// This node's member id: the address the others reach it at [default: `listen`].
    #[arg(long, env = "TIERDEX_ADVERTISE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise: Option<String>,
    #[arg(long, env = "TIERDEX_REPLICAS", help = concat!("Members serving each shard [default: ", defaults::replicas!(), "]"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<usize>,
    #[arg(long, env = "TIERDEX_FLEET_REFRESH", help = concat!("How often a fleet member reads the member list and CURRENT, and places shards [default: ", defaults::fleet_refresh!(), "]"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet_refresh: Option<String>,
    #[arg(long, env = "TIERDEX_REPLICA_TIMEOUT", help = concat!("How long a fan-out waits for one replica of a shard before asking the next [default: ", defaults::replica_timeout!(), "]"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_timeout: Option<String>,
    /// The certificate chain the gRPC listener presents (PEM, leaf first): TLS on, with
    /// tls_key; read again when the file changes [default: plaintext].
    #[arg(long, env = "TIERDEX_TLS_CERT")]
    #[serde(skip_serializing)]
    pub tls_cert: Option<PathBuf>,
    /// The private key of tls_cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "TIERDEX_TLS_KEY")]
    #[serde(skip_serializing)]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that clients' certificates must be signed by: mutual TLS, a client
    /// without one is refused [default: no client certificate asked].
    #[arg(long, env = "TIERDEX_TLS_CLIENT_CA")]
    #[serde(skip_serializing)]
    pub tls_client_ca: Option<PathBuf>,
    /// CA certificates (PEM) that fleet members' certificates are checked against when members
    /// ask each other over TLS [default: tls_client_ca].
    #[arg(long, env = "TIERDEX_TLS_PEER_CA")]
    #[serde(skip_serializing)]
    pub tls_peer_ca: Option<PathBuf>,
    /// Log lines as `text` (colours only on a terminal) or `json` (one object per line)
    /// [default: text].
    #[arg(long, env = "TIERDEX_LOG_FORMAT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
}

impl Settings {
    pub fn from_toml_file(path: &Path) -> Result<Settings, ConfigError> {
        let source_name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
            source_name: source_name.clone(),
            message: format!("cannot read: {err}"),
        })?;
        toml::from_str(&text).map_err(|err| ConfigError {
            source_name,
            message: err.to_string(),
        })
    }

    /// `self` with every setting that `flags` sets replaced (key by key, through their
    /// serialized form: no setting is named here; the paths, which need not be UTF-8 and are
    /// not serialized, are merged apart).
    pub fn overridden_by(mut self, mut flags: Settings) -> Settings {
        let paths: Vec<Option<PathBuf>> = flags
            .paths()
            .into_iter()
            .zip(self.paths())
            .map(|(flag, file)| flag.take().or_else(|| file.take()))
            .collect();
        let object = |settings: Settings| match serde_json::to_value(settings) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => unreachable!("settings serialize to an object"),
        };
        let mut merged = object(self);
        for (key, value) in object(flags) {
            let empty_list = value.as_array().is_some_and(|list| list.is_empty());
            if !empty_list {
                merged.insert(key, value);
            }
        }
        let mut settings: Settings = serde_json::from_value(serde_json::Value::Object(merged))
            .expect("merged settings deserialize");
        for (path, merged) in settings.paths().into_iter().zip(paths) {
            *path = merged;
        }
        settings
    }

    /// The settings that are paths (`serde(skip_serializing)`), which `overridden_by` merges
    /// apart: a new path setting must be listed here.
    fn paths(&mut self) -> [&mut Option<PathBuf>; 5] {
        [
            &mut self.data_dir,
            &mut self.tls_cert,
            &mut self.tls_key,
            &mut self.tls_client_ca,
            &mut self.tls_peer_ca,
        ]
    }

    /// The settings' names as the file writes them, and as flags (`--cache-size`): for docs.
    pub fn names() -> Vec<(String, String)> {
        use clap::CommandFactory as _;
        #[derive(clap::Parser)]
        struct All {
            #[command(flatten)]
            settings: Settings,
        }
        All::command()
            .get_arguments()
            .filter_map(|argument| {
                let flag = argument.get_long()?.to_string();
                let key = argument.get_id().to_string();
                Some((key, flag))
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub store: String,
    pub indexes: Vec<String>,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub cache_size: u64,
    /// 0: no disk tier.
    pub disk_cache_size: u64,
    pub cold_index: ColdIndexMode,
    /// A remote cold search whose plan missed a read fails instead of being searched again;
    /// every search is planned (none served straight from the cache's memory).
    pub cold_plan_strict: bool,
    pub rehydrate_concurrency: usize,
    pub rehydrate_chunk_size: u64,
    pub max_results: u32,
    pub search_concurrency: usize,
    /// Searches bounded to at most this many postings run without handing off their worker.
    pub inline_postings: u64,
    pub default_timeout: Duration,
    pub document_cache_size: u64,
    pub replica_store: Option<String>,
    pub storage_timeout: Duration,
    pub breaker_failures: u32,
    pub breaker_cool_down: Duration,
    pub bandwidth_limit: Option<u64>,
    pub on_degraded: DegradedPolicy,
    /// `None`: never poll.
    pub poll_interval: Option<Duration>,
    pub admin_token: Option<String>,
    /// Where `/metrics` is served; `None`: not served.
    pub metrics_listen: Option<SocketAddr>,
    /// `Some` when the node is a member of a fleet serving sharded indexes.
    pub fleet: Option<FleetConfig>,
    /// `Some`: the gRPC listener (and, in a fleet, the members' connections to each other)
    /// use TLS.
    pub tls: Option<TlsConfig>,
}

/// Which files TLS comes from (paths as configured; `tls` reads them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The node's certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// Clients must present a certificate signed by one of these CAs (mutual TLS).
    pub client_ca: Option<PathBuf>,
    /// Fleet members' certificates are checked against these CAs: `tls_peer_ca`, else
    /// `tls_client_ca`. Always `Some` in a fleet.
    pub peer_ca: Option<PathBuf>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// For people: colours only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl LogFormat {
    /// `text`, `json`, or unset (text).
    pub fn parse(value: Option<&str>, source_name: &str) -> Result<LogFormat, ConfigError> {
        match value.map(str::trim) {
            None | Some("") | Some("text") => Ok(LogFormat::Text),
            Some("json") => Ok(LogFormat::Json),
            Some(other) => Err(ConfigError {
                source_name: source_name.to_string(),
                message: format!("log_format: `{other}` is neither `text` nor `json`"),
            }),
        }
    }
}

/// Where a fleet's member list comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerSource {
    /// `--peers`: member ids as given.
    Static(Vec<String>),
    /// `--peers-dns name:port`: every address the name resolves to, with the port.
    Dns { name: String, port: u16 },
}

#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub peers: PeerSource,
    /// This node's member id.
    pub advertise: String,
    pub replicas: usize,
    pub refresh: Duration,
    pub replica_timeout: Duration,
}

/// Where the cold index is searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColdIndexMode {
    /// In the store, through the block cache: only the hotcache and block tables are local.
    Remote,
    /// Downloaded into the data dir, then opened.
    Local,
}

/// What a search does when the cold part of its answer cannot be read in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DegradedPolicy {
    /// Answer with the hot hits, flagged degraded.
    Answer,
    /// Fail the search.
    Fail,
}

pub const DEFAULT_LISTEN: &str = defaults::listen!();

impl NodeConfig {
    /// Resolves settings to a complete configuration, with defaults for what is not set.
    pub fn resolve(settings: Settings, source_name: &str) -> Result<NodeConfig, ConfigError> {
        let fail = |message: String| ConfigError {
            source_name: source_name.to_string(),
            message,
        };
        let store = settings
            .store
            .ok_or_else(|| fail("no store: give --store or `store = \"...\"`".into()))?;
        let indexes = settings.indexes.unwrap_or_default();
        if indexes.is_empty() {
            return Err(fail(
                "no index to serve: give --index or `indexes = [...]`".into(),
            ));
        }
        let listen = settings.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen: SocketAddr = listen.parse().map_err(|_| {
            fail(format!(
                "listen: `{listen}` is not an address like 127.0.0.1:50051"
            ))
        })?;
        let metrics_listen = match settings.metrics_listen.as_deref() {
            None | Some("") => None,
            Some(address) => Some(address.parse::<SocketAddr>().map_err(|_| {
                fail(format!(
                    "metrics_listen: `{address}` is not an address like 127.0.0.1:9464"
                ))
            })?),
        };
        let data_dir = settings
            .data_dir
            .ok_or_else(|| fail("no data dir: give --data-dir or `data_dir = \"...\"`".into()))?;
        // A setting's text, or its default's, parsed the same way.
        let size = |name: &str, value: Option<&str>, default: &str| -> Result<u64, ConfigError> {
            parse_bytes(value.unwrap_or(default)).map_err(|err| fail(format!("{name}: {err}")))
        };
        let number = |default: &str| -> usize { default.parse().expect("numeric default") };
        let cache_size = size(
            "cache_size",
            settings.cache_size.as_deref(),
            defaults::cache_size!(),
        )?;
        let disk_cache_size = size(
            "disk_cache_size",
            settings.disk_cache_size.as_deref(),
            defaults::disk_cache_size!(),
        )?;
        let cold_index = match settings
            .cold_index
            .as_deref()
            .unwrap_or(defaults::cold_index!())
        {
            "remote" => ColdIndexMode::Remote,
            "local" => ColdIndexMode::Local,
            other => {
                return Err(fail(format!(
                    "cold_index: `{other}` is neither `remote` nor `local`"
                )));
            }
        };
        let document_cache_size = size(
            "document_cache_size",
            settings.document_cache_size.as_deref(),
            defaults::document_cache_size!(),
        )?;
        let rehydrate_chunk_size = size(
            "rehydrate_chunk_size",
            settings.rehydrate_chunk_size.as_deref(),
            defaults::rehydrate_chunk_size!(),
        )?;
        if rehydrate_chunk_size == 0 {
            return Err(fail("rehydrate_chunk_size must be positive".into()));
        }
        let duration = |name: &str, value: Option<&str>, default: &str| {
            parse_duration(value.unwrap_or(default)).map_err(|err| fail(format!("{name}: {err}")))
        };
        let default_timeout = duration(
            "default_timeout",
            settings.default_timeout.as_deref(),
            defaults::default_timeout!(),
        )?;
        let storage_timeout = duration(
            "storage_timeout",
            settings.storage_timeout.as_deref(),
            defaults::storage_timeout!(),
        )?;
        let breaker_cool_down = duration(
            "breaker_cool_down",
            settings.breaker_cool_down.as_deref(),
            defaults::breaker_cool_down!(),
        )?;
        let poll_interval = duration(
            "poll_interval",
            settings.poll_interval.as_deref(),
            defaults::poll_interval!(),
        )?;
        let poll_interval = (!poll_interval.is_zero()).then_some(poll_interval);
        if storage_timeout.is_zero() || default_timeout.is_zero() {
            return Err(fail("timeouts must be positive".into()));
        }
        let bandwidth_limit = Some(size(
            "bandwidth_limit",
            settings.bandwidth_limit.as_deref(),
            "0",
        )?)
        .filter(|limit| *limit > 0);
        let on_degraded = match settings
            .on_degraded
            .as_deref()
            .unwrap_or(defaults::on_degraded!())
        {
            "answer" => DegradedPolicy::Answer,
            "fail" => DegradedPolicy::Fail,
            other => {
                return Err(fail(format!(
                    "on_degraded: `{other}` is neither `answer` nor `fail`"
                )));
            }
        };
        let positive = |name: &str, value: Option<usize>, default: usize| match value {
            Some(0) => Err(fail(format!("{name} must be positive"))),
            Some(value) => Ok(value),
            None => Ok(default),
        };
        let fleet = match (settings.peers, settings.peers_dns) {
            (Some(_), Some(_)) => {
                return Err(fail("give peers or peers_dns, not both".into()));
            }
            (None, None) => None,
            (peers, dns) => {
                let peers = match (peers, dns) {
                    (Some(list), _) => {
                        let list: Vec<String> = list
                            .into_iter()
                            .map(|peer| peer.trim().to_string())
                            .filter(|peer| !peer.is_empty())
                            .collect();
                        if list.is_empty() {
                            return Err(fail("peers: the list is empty".into()));
                        }
                        PeerSource::Static(list)
                    }
                    (None, Some(dns)) => {
                        let parsed = dns
                            .rsplit_once(':')
                            .and_then(|(name, port)| Some((name, port.parse::<u16>().ok()?)))
                            .filter(|(name, _)| !name.is_empty());
                        let Some((name, port)) = parsed else {
                            return Err(fail(format!("peers_dns: `{dns}` is not `name:port`")));
                        };
                        PeerSource::Dns {
                            name: name.to_string(),
                            port,
                        }
                    }
                    (None, None) => unreachable!("matched above"),
                };
                let advertise = settings
                    .advertise
                    .filter(|advertise| !advertise.is_empty())
                    .unwrap_or_else(|| listen.to_string());
                if let PeerSource::Static(list) = &peers
                    && !list.contains(&advertise)
                {
                    return Err(fail(format!(
                        "peers: this node's id `{advertise}` (advertise, default listen) is not \
                         in the list {list:?}"
                    )));
                }
                Some(FleetConfig {
                    peers,
                    advertise,
                    replicas: positive(
                        "replicas",
                        settings.replicas,
                        number(defaults::replicas!()),
                    )?,
                    refresh: duration(
                        "fleet_refresh",
                        settings.fleet_refresh.as_deref(),
                        defaults::fleet_refresh!(),
                    )?
                    .max(Duration::from_millis(10)),
                    replica_timeout: duration(
                        "replica_timeout",
                        settings.replica_timeout.as_deref(),
                        defaults::replica_timeout!(),
                    )?
                    .max(Duration::from_millis(1)),
                })
            }
        };
        let path = |value: Option<PathBuf>| value.filter(|path| !path.as_os_str().is_empty());
        let client_ca = path(settings.tls_client_ca);
        let peer_ca = path(settings.tls_peer_ca);
        let tls = match (path(settings.tls_cert), path(settings.tls_key)) {
            (Some(cert), Some(key)) => Some(TlsConfig {
                cert,
                key,
                peer_ca: peer_ca.or_else(|| client_ca.clone()),
                client_ca,
            }),
            (Some(_), None) => {
                return Err(fail(
                    "tls_cert without tls_key: give the certificate's private key too".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(fail(
                    "tls_key without tls_cert: give the certificate it goes with too".into(),
                ));
            }
            (None, None) => {
                if client_ca.is_some() || peer_ca.is_some() {
                    return Err(fail(
                        "tls_client_ca and tls_peer_ca need TLS on: give tls_cert and tls_key"
                            .into(),
                    ));
                }
                None
            }
        };
        if fleet.is_some() && tls.as_ref().is_some_and(|tls| tls.peer_ca.is_none()) {
            return Err(fail(
                "a fleet over TLS checks the members' certificates: give tls_peer_ca (the CA \
                 that signed them), or tls_client_ca"
                    .into(),
            ));
        }
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Ok(NodeConfig {
            store,
            indexes,
            listen,
            data_dir,
            cache_size,
            disk_cache_size,
            cold_index,
            cold_plan_strict: settings.cold_plan_strict.unwrap_or(false),
            rehydrate_concurrency: positive(
                "rehydrate_concurrency",
                settings.rehydrate_concurrency,
                number(defaults::rehydrate_concurrency!()),
            )?,
            rehydrate_chunk_size,
            max_results: settings
                .max_results
                .unwrap_or(number(defaults::max_results!()) as u32),
            search_concurrency: positive(
                "search_concurrency",
                settings.search_concurrency,
                2 * cores,
            )?,
            inline_postings: settings
                .inline_postings
                .unwrap_or(number(defaults::inline_postings!()) as u64),
            default_timeout,
            document_cache_size,
            replica_store: settings.replica_store,
            storage_timeout,
            breaker_failures: settings
                .breaker_failures
                .unwrap_or(number(defaults::breaker_failures!()) as u32)
                .max(1),
            breaker_cool_down,
            bandwidth_limit,
            on_degraded,
            poll_interval,
            admin_token: settings.admin_token.filter(|token| !token.is_empty()),
            metrics_listen,
            fleet,
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operations_guide_lists_exactly_the_declared_settings() {
        let guide = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"),
        )
        .unwrap();
        let listed: std::collections::BTreeSet<(String, String)> = guide
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let key = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                let flag = cells.get(2)?.strip_prefix("`--")?.strip_suffix('`')?;
                Some((key.to_string(), flag.to_string()))
            })
            .collect();
        let declared: std::collections::BTreeSet<(String, String)> =
            Settings::names().into_iter().collect();
        assert_eq!(listed, declared);
        // And each is a key the settings file accepts.
        for (key, _) in &declared {
            let value = if key == "indexes" || key == "peers" {
                "[\"a\"]"
            } else if key == "cold_plan_strict" {
                "true"
            } else if key.ends_with("concurrency")
                || key == "max_results"
                || key == "inline_postings"
                || key == "breaker_failures"
                || key == "replicas"
            {
                "1"
            } else {
                "\"x\""
            };
            let parsed: Result<Settings, _> = toml::from_str(&format!("{key} = {value}"));
            assert!(parsed.is_ok(), "{key}: {parsed:?}");
        }
    }

    #[test]
    fn environment_variables_and_flags_come_from_the_declaration() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Serve {
            #[command(flatten)]
            settings: Settings,
        }
        let parsed = Serve::try_parse_from([
            "serve",
            "--index",
            "a,b",
            "--index",
            "c",
            "--cache-size",
            "2GiB",
            "--metrics-listen",
            "127.0.0.1:9464",
        ])
        .unwrap();
        assert_eq!(
            parsed.settings.indexes,
            Some(vec!["a".to_string(), "b".into(), "c".into()])
        );
        assert_eq!(parsed.settings.cache_size.as_deref(), Some("2GiB"));
        assert_eq!(parsed.settings.store, None);
        let file: Settings = toml::from_str("cache_size = \"1GiB\"\nstore = \"/s\"\n").unwrap();
        let merged = file.overridden_by(parsed.settings);
        assert_eq!(merged.cache_size.as_deref(), Some("2GiB"));
        assert_eq!(merged.store.as_deref(), Some("/s"));
        assert_eq!(merged.metrics_listen.as_deref(), Some("127.0.0.1:9464"));
    }

    #[test]
    fn flags_override_the_file_field_by_field() {
        let file: Settings = toml::from_str(
            "store = \"s3://b/p\"\nindexes = [\"a\"]\ndata_dir = \"/d\"\ncache_size = \"2GiB\"\n",
        )
        .unwrap();
        let flags = Settings {
            cache_size: Some("64MiB".into()),
            listen: Some("127.0.0.1:0".into()),
            ..Settings::default()
        };
        let config = NodeConfig::resolve(file.overridden_by(flags), "node.toml").unwrap();
        assert_eq!(config.store, "s3://b/p");
        assert_eq!(config.indexes, vec!["a".to_string()]);
        assert_eq!(config.cache_size, 64 << 20);
        assert_eq!(config.listen.port(), 0);
        assert_eq!(config.default_timeout, Duration::from_secs(10));
    }

    #[test]
    fn errors_name_the_setting() {
        let settings = Settings {
            store: Some("/s".into()),
            indexes: Some(vec!["a".into()]),
            data_dir: Some("/d".into()),
            cache_size: Some("lots".into()),
            ..Settings::default()
        };
        let err = NodeConfig::resolve(settings, "node.toml").unwrap_err();
        assert!(err.to_string().contains("cache_size"), "{err}");
        assert!(toml::from_str::<Settings>("colour = 1").is_err());
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    }

    #[test]
    fn tls_settings_resolve_to_files_and_half_a_pair_is_an_error() {
        let base = || Settings {
            store: Some("/s".into()),
            indexes: Some(vec!["a".into()]),
            data_dir: Some("/d".into()),
            ..Settings::default()
        };
        let resolve = |settings: Settings| NodeConfig::resolve(settings, "node.toml");
        assert_eq!(resolve(base()).unwrap().tls, None);
        // From the file, a path overridden by a flag; the peer CA defaults to the client CA.
        let file: Settings = toml::from_str(
            "tls_cert = \"/etc/t/cert.pem\"\ntls_key = \"/etc/t/key.pem\"\ntls_client_ca = \"/etc/t/ca.pem\"\n",
        )
        .unwrap();
        let flags = Settings {
            tls_key: Some("/run/key.pem".into()),
            ..base()
        };
        let tls = resolve(file.overridden_by(flags)).unwrap().tls.unwrap();
        assert_eq!(
            tls,
            TlsConfig {
                cert: "/etc/t/cert.pem".into(),
                key: "/run/key.pem".into(),
                client_ca: Some("/etc/t/ca.pem".into()),
                peer_ca: Some("/etc/t/ca.pem".into()),
            }
        );
        let error = |settings: Settings| resolve(settings).unwrap_err().to_string();
        let err = error(Settings {
            tls_cert: Some("/c".into()),
            ..base()
        });
        assert!(err.contains("tls_cert without tls_key"), "{err}");
        let err = error(Settings {
            tls_key: Some("/k".into()),
            ..base()
        });
        assert!(err.contains("tls_key without tls_cert"), "{err}");
        let err = error(Settings {
            tls_client_ca: Some("/ca".into()),
            ..base()
        });
        assert!(
            err.contains("tls_client_ca and tls_peer_ca need TLS on"),
            "{err}"
        );
        // A fleet over TLS must know whom to trust.
        let fleet = || Settings {
            tls_cert: Some("/c".into()),
            tls_key: Some("/k".into()),
            peers: Some(vec![DEFAULT_LISTEN.into()]),
            ..base()
        };
        assert!(error(fleet()).contains("give tls_peer_ca"));
        let tls = resolve(Settings {
            tls_peer_ca: Some("/peers.pem".into()),
            ..fleet()
        })
        .unwrap()
        .tls
        .unwrap();
        assert_eq!(
            (tls.client_ca, tls.peer_ca),
            (None, Some("/peers.pem".into()))
        );
    }

    #[test]
    fn the_log_format_is_text_or_json() {
        let format = |value: &str| LogFormat::parse(Some(value), "node.toml");
        assert_eq!(LogFormat::parse(None, "x").unwrap(), LogFormat::Text);
        assert_eq!(format("json").unwrap(), LogFormat::Json);
        assert_eq!(format("text").unwrap(), LogFormat::Text);
        let err = format("xml").unwrap_err().to_string();
        assert!(
            err.contains("node.toml") && err.contains("log_format") && err.contains("`xml`"),
            "{err}"
        );
    }
}
