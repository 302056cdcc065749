//! An HTTP/1.1 proxy for fault tests. It forwards every request unchanged (headers included, so
//! S3 signatures stay valid) to one upstream server on loopback, and applies the current
//! `Faults` on the way:
//!
//! - `latency`: wait before forwarding, for a fraction of requests;
//! - `window_bytes`: with `latency`, also wait one more `latency` for every further window of
//!   answer bytes, as a TCP connection whose window is that size over a round trip of that
//!   latency (per-connection throughput = window / latency). The answer is held back, not
//!   trickled: time to the last byte is what the model gives, not time to the first;
//! - `refuse`: reset every connection, new or open, as a dead server would;
//! - `hang`: accept requests and never answer;
//! - `error_status`: answer a fraction of requests with a 5xx and an S3-style error body;
//! - `flip_bytes`: flip one byte in the body of a fraction of successful answers.
//!
//! Faults can apply to every request or only to those whose path contains `path_filter`.
//! They are switched with `FaultProxy::set` (in process) or with `PUT /__faults?...` (the
//! `fault-proxy` binary).

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Delay, and the fraction of requests it applies to (1.0 = all).
    pub latency: Option<(Duration, f64)>,
    /// Bytes an answer moves per `latency` after the first window (see the module's doc).
    pub window_bytes: Option<u64>,
    pub refuse: bool,
    pub hang: bool,
    /// Status code, and the fraction of requests answered with it.
    pub error_status: Option<(u16, f64)>,
    /// Fraction of successful answers with one byte flipped.
    pub flip_bytes: Option<f64>,
    /// Apply faults only to requests whose path contains this.
    pub path_filter: Option<String>,
}

impl Faults {
    pub fn none() -> Faults {
        Faults::default()
    }

    /// Parses `latency_ms=100&fraction=0.05&window=1048576&refuse=1&hang=1&status=503&flip=0.5&path=parquet`.
    pub fn from_query(query: &str) -> Result<Faults, String> {
        let mut faults = Faults::default();
        let mut fraction = 1.0;
        let mut latency = None;
        let mut status = None;
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, "1"));
            let number = || {
                value
                    .parse::<f64>()
                    .map_err(|_| format!("{name}: `{value}` is not a number"))
            };
            match name {
                "latency_ms" => latency = Some(Duration::from_secs_f64(number()? / 1000.0)),
                "fraction" => fraction = number()?,
                "window" => faults.window_bytes = Some(number()? as u64),
                "refuse" => faults.refuse = number()? != 0.0,
                "hang" => faults.hang = number()? != 0.0,
                "status" => status = Some(number()? as u16),
                "flip" => faults.flip_bytes = Some(number()?),
                "path" => faults.path_filter = Some(value.to_string()),
                other => return Err(format!("unknown fault `{other}`")),
            }
        }
        faults.latency = latency.map(|delay| (delay, fraction));
        faults.error_status = status.map(|code| (code, fraction));
        Ok(faults)
    }
}

#[derive(Debug, Default)]
struct Counters {
    faulted: AtomicU64,
}

struct Shared {
    upstream: SocketAddr,
    faults: Mutex<Faults>,
    counters: Counters,
    random: Mutex<u64>,
    client: Client<HttpConnector, Full<Bytes>>,
    control: bool,
}

impl Shared {
    /// A uniform number in [0, 1) (splitmix64: deterministic runs, no dependency).
    fn random(&self) -> f64 {
        let mut state = self.random.lock().expect("not poisoned");
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&self, fraction: f64) -> bool {
        fraction >= 1.0 || self.random() < fraction
    }
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        Self::start_on("127.0.0.1:0".parse().expect("valid"), upstream, false).await
    }

    /// `control` enables `PUT /__faults?...` for switching faults from outside the process.
    pub async fn start_on(
        listen: SocketAddr,
        upstream: SocketAddr,
        control: bool,
    ) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            faults: Mutex::new(Faults::none()),
            counters: Counters::default(),
            random: Mutex::new(0x5EED),
            // A fresh upstream connection per request: on a kept one, an answer the server
            // writes in two segments (headers, then body, Nagle on) waits for this side's
            // delayed ACK, adding ~40 ms to some requests on top of the injected latency. A new
            // connection starts in quick-ACK mode; on loopback it costs a fraction of a ms.
            client: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build(upstream_connector()),
            control,
        });
        let accepting = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                if accepting.faults.lock().expect("not poisoned").refuse {
                    reset_on_close(&stream);
                    drop(stream);
                    accepting.counters.faulted.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                // Without it, small answers written in two pieces wait for the peer's delayed
                // ACK (~40 ms): the proxy would add latency of its own.
                let _ = stream.set_nodelay(true);
                let shared = accepting.clone();
                // A refusal on an open connection resets it too (see `handle`).
                let socket = stream.as_raw_fd();
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request| handle(shared.clone(), request, socket));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(FaultProxy { addr, shared, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, faults: Faults) {
        *self.shared.faults.lock().expect("not poisoned") = faults;
    }

    pub fn faulted(&self) -> u64 {
        self.shared.counters.faulted.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn upstream_connector() -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

fn error_response(status: u16) -> Response<ProxyBody> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InjectedFault</Code><Message>fault proxy answered {status}</Message></Error>"
    );
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE))
        .header("content-type", "application/xml")
        .body(full(Bytes::from(body)))
        .expect("valid response")
}

/// Returned to hyper to drop a connection without answering.
#[derive(Debug)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection refused by the fault proxy")
    }
}

impl std::error::Error for Refused {}

/// A connection closed with a reset, as by a dead server: the client sees ECONNRESET at once
/// rather than an orderly end of stream. Only refused connections: an orderly close must not
/// throw away an answer still in flight.
fn reset_on_close(socket: &impl std::os::fd::AsFd) {
    let _ = socket2::SockRef::from(socket).set_linger(Some(Duration::ZERO));
}

async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
    socket: std::os::fd::RawFd,
) -> Result<Response<ProxyBody>, Refused> {
    if shared.control && request.uri().path() == "/__faults" {
        let query = request.uri().query().unwrap_or("").to_string();
        return Ok(match Faults::from_query(&query) {
            Ok(faults) => {
                *shared.faults.lock().expect("not poisoned") = faults;
                Response::new(full(Bytes::from_static(b"ok\n")))
            }
            Err(message) => Response::builder()
                .status(StatusCode::BAD_REQUEST)
                .body(full(Bytes::from(message)))
                .expect("valid response"),
        });
    }
    let faults = shared.faults.lock().expect("not poisoned").clone();
    if faults.refuse {
        // Connections opened before the fault are cut too, as a dead server would. The
        // connection (whose task runs this handler) is open, so its descriptor is valid here.
        reset_on_close(&unsafe { std::os::fd::BorrowedFd::borrow_raw(socket) });
        shared.counters.faulted.fetch_add(1, Ordering::Relaxed);
        return Err(Refused);
    }
    let applies = faults
        .path_filter
        .as_ref()
        .is_none_or(|filter| request.uri().path().contains(filter.as_str()));
    let mut window_delay = None;
    if applies {
        if faults.hang {
            shared.counters.faulted.fetch_add(1, Ordering::Relaxed);
            std::future::pending::<()>().await;
        }
        if let Some((delay, fraction)) = faults.latency
            && shared.chance(fraction)
        {
            shared.counters.faulted.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
            window_delay = faults.window_bytes.map(|window| (delay, window.max(1)));
        }
        if let Some((status, fraction)) = faults.error_status
            && shared.chance(fraction)
        {
            shared.counters.faulted.fetch_add(1, Ordering::Relaxed);
            return Ok(error_response(status));
        }
    }
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(error_response(502)),
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let uri = format!("http://{}{}", shared.upstream, path_and_query);
    let mut upstream_request = Request::builder().method(parts.method).uri(uri);
    for (name, value) in &parts.headers {
        upstream_request = upstream_request.header(name, value);
    }
    let upstream_request = upstream_request
        .body(Full::new(body))
        .expect("valid request");
    let response = match shared.client.request(upstream_request).await {
        Ok(response) => response,
        Err(_) => return Ok(error_response(502)),
    };
    let (parts, body) = response.into_parts();
    let may_flip = applies && faults.flip_bytes.is_some();
    if !may_flip && window_delay.is_none() {
        // Passed through as it arrives: a store-and-forward proxy would add a transfer time.
        return Ok(Response::from_parts(parts, body.boxed()));
    }
    let mut body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(error_response(502)),
    };
    if applies
        && parts.status.is_success()
        && !body.is_empty()
        && let Some(fraction) = faults.flip_bytes
        && shared.chance(fraction)
    {
        shared.counters.faulted.fetch_add(1, Ordering::Relaxed);
        let mut flipped = body.to_vec();
        let at = (shared.random() * flipped.len() as f64) as usize % flipped.len();
        flipped[at] ^= 0x01;
        body = Bytes::from(flipped);
    }
    if let Some((delay, window)) = window_delay {
        let further_windows = (body.len() as u64).div_ceil(window).saturating_sub(1);
        tokio::time::sleep(delay * further_windows as u32).await;
    }
    Ok(Response::from_parts(parts, full(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_from_a_control_query() {
        let faults =
            Faults::from_query("latency_ms=20&fraction=0.5&window=1048576&status=503&path=parquet")
                .unwrap();
        assert_eq!(faults.latency, Some((Duration::from_millis(20), 0.5)));
        assert_eq!(faults.window_bytes, Some(1 << 20));
        assert_eq!(faults.error_status, Some((503, 0.5)));
        assert_eq!(faults.path_filter.as_deref(), Some("parquet"));
        assert!(!faults.refuse && !faults.hang);
        assert_eq!(Faults::from_query("").unwrap(), Faults::none());
        let unknown = Faults::from_query("latency_ms=5&slow=1").unwrap_err();
        assert!(unknown.contains("slow"), "{unknown}");
        let not_a_number = Faults::from_query("latency_ms=fast").unwrap_err();
        assert!(not_a_number.contains("fast"), "{not_a_number}");
    }
}
