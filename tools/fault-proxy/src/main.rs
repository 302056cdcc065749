//! `fault-proxy --listen 127.0.0.1:9100 --upstream 127.0.0.1:9000`
//!
//! Switch faults while it runs, e.g.:
//! `curl -X PUT 'http://127.0.0.1:9100/__faults?latency_ms=100&fraction=0.05'`,
//! `...?latency_ms=20&window=1048576` (20 ms per request and per further MiB), `...?hang=1`,
//! `...?refuse=1`, `...?status=503&fraction=0.5`, `...?flip=1&path=.parquet`,
//! and `.../__faults` with no parameters to clear them.

use std::net::SocketAddr;

#[tokio::main]
async fn main() {
    let mut listen: SocketAddr = "127.0.0.1:9100".parse().expect("valid");
    let mut upstream: Option<SocketAddr> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| fail(&format!("{arg} needs a value")));
        let address = value.parse().unwrap_or_else(|_| {
            fail(&format!(
                "{arg}: `{value}` is not an address like 127.0.0.1:9000"
            ))
        });
        match arg.as_str() {
            "--listen" => listen = address,
            "--upstream" => upstream = Some(address),
            other => fail(&format!("unknown argument {other}")),
        }
    }
    let upstream = upstream.unwrap_or_else(|| fail("--upstream is required"));
    if !listen.ip().is_loopback() || !upstream.ip().is_loopback() {
        fail("the fault proxy is for tests on loopback only");
    }
    let proxy = fault_proxy::FaultProxy::start_on(listen, upstream, true)
        .await
        .unwrap_or_else(|err| fail(&format!("listening on {listen}: {err}")));
    eprintln!(
        "fault-proxy: {} -> {upstream}; PUT {}/__faults?... to switch faults",
        proxy.addr(),
        proxy.url()
    );
    let _ = tokio::signal::ctrl_c().await;
}

fn fail(message: &str) -> ! {
    eprintln!("fault-proxy: {message}");
    std::process::exit(2)
}
