//! tierdex: a tiered search index. An offline builder splits documents by rules into a hot
//! tantivy index kept on the query node and a cold tier (parquet + a postings-only tantivy
//! index) in object storage.
//!
//! Modules follow the data flow, and each imports only from those listed before it:
//!
//! - [`units`]: byte sizes in flags and files (`64KiB`, `1GiB`).
//! - [`sample`]: the generated corpus of the quickstart.
//! - [`schema`]: the schema file and the arrow / tantivy schemas derived from it.
//! - [`rules`]: hot-tier rules (SQL expressions) evaluated on arrow batches.
//! - [`ranking`]: rank profiles (score expressions, field orders) checked against the schema.
//! - [`format`]: the artifact contract: key layout, manifest, checksums, addresses.
//! - [`store`]: the byte-range blob store trait and its backends and wrappers.
//! - [`builder`]: inputs → rules → hot index, cold parquet, cold index → a published version.
//! - [`published`]: reading and verifying published versions.
//! - [`lifecycle`]: removing old versions and build leftovers (`tierdex gc`).
//! - [`config`]: node settings from a file and flags.
//! - [`cache`]: the verified block cache in front of the store, for cold reads.
//! - [`remote`]: a tantivy index searched in object storage through the cache (the cold
//!   index): plan, fetch in rounds, then search.
//! - [`node`]: loading versions (rehydration, hot then cold) and searching them.
//! - [`tuning`]: replaying a query log against a version, suggesting rules.
//! - [`tls`]: TLS for the gRPC listener and its clients (fleet members, `tierdex query`), the
//!   node's certificate read again when renewed.
//! - [`api`]: the gRPC API: proto messages and status codes; nothing else knows gRPC.
//! - [`server`]: `run(listener, node, shutdown)` with health and reflection, plaintext or TLS.

pub mod api;
pub mod builder;
pub mod cache;
pub mod config;
pub mod fleet;
pub mod format;
pub mod lifecycle;
pub mod node;
pub mod published;
pub mod ranking;
pub mod remote;
pub mod rules;
pub mod sample;
pub mod schema;
pub mod server;
pub mod store;
pub mod tls;
pub mod tuning;
pub mod units;
