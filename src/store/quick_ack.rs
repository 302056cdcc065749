//! The S3 client's HTTP connections: hyper's client over TCP connections that acknowledge what
//! they receive at once (`TCP_QUICKACK` re-armed after every read).
//!
//! Why: a server that leaves Nagle's algorithm on (hyper's server default; s3s-fs is one)
//! writes a response's headers, then holds back its body until the headers are acknowledged.
//! On a reused connection Linux delays that ACK by up to 40 ms, hoping to piggyback it on the
//! next request: every answer after the first on a connection then arrives 40 ms late. A packet
//! capture of range GETs on one connection shows it (docs/benchmarks.md). `TCP_NODELAY`, which
//! the SDK's own client sets, changes only what we send; the delay is in what we acknowledge.
//! The kernel leaves quick-ACK mode by itself, hence once per read.
//!
//! Everything else is what the SDK's default client does: HTTP/1.1 (and HTTP/2 where TLS
//! negotiates it), rustls with the platform's root certificates, pooled connections, a connect
//! timeout. Request timeouts stay in the SDK's `TimeoutConfig` and our `timeout` wrapper.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use hyper::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector as TcpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// An HTTP client for the S3 SDK whose connections acknowledge every read at once.
pub fn quick_ack_http_client() -> std::io::Result<SharedHttpClient> {
    let mut tcp = TcpConnector::new();
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
    // hyper-rustls must see `https` URIs itself.
    tcp.enforce_http(false);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let with_roots = match hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider.clone())
    {
        Ok(builder) => builder,
        Err(err) => {
            // As the SDK's own client does: plain-HTTP endpoints still work; HTTPS ones fail
            // certificate verification, naming the unknown issuer.
            tracing::warn!("no platform root certificates ({err}): HTTPS stores will fail TLS");
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(std::io::Error::other)?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
        }
    };
    let https = with_roots
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(QuickAckConnector(tcp));
    let client = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(https);
    Ok(SharedHttpClient::new(QuickAckHttpClient { client }))
}

#[derive(Clone)]
struct QuickAckHttpClient {
    client: Client<HttpsConnector<QuickAckConnector>, SdkBody>,
}

impl std::fmt::Debug for QuickAckHttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QuickAckHttpClient")
    }
}

impl HttpClient for QuickAckHttpClient {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

impl HttpConnector for QuickAckHttpClient {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(err) => return HttpConnectorFuture::ready(Err(ConnectorError::user(err.into()))),
        };
        let client = self.client.clone();
        HttpConnectorFuture::new(async move {
            let response = client.request(request).await.map_err(connector_error)?;
            HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                .map_err(|err| ConnectorError::other(err.into(), None))
        })
    }
}

/// Connection and I/O failures are transient (the SDK retries them); anything else is not
/// classified further.
fn connector_error(err: hyper_util::client::legacy::Error) -> ConnectorError {
    let mut chain =
        std::iter::successors(Some(&err as &(dyn std::error::Error + 'static)), |error| {
            error.source()
        });
    let transient = err.is_connect()
        || chain.any(|error| {
            error.is::<std::io::Error>()
                || error
                    .downcast_ref::<hyper::Error>()
                    .is_some_and(|err| err.is_closed() || err.is_incomplete_message())
        });
    if transient {
        ConnectorError::io(err.into())
    } else {
        ConnectorError::other(err.into(), None)
    }
}

/// hyper's TCP connector, handing out connections that re-arm quick ACKs.
#[derive(Clone)]
struct QuickAckConnector(TcpConnector);

impl tower_service::Service<Uri> for QuickAckConnector {
    type Response = QuickAckStream;
    type Error = <TcpConnector as tower_service::Service<Uri>>::Error;
    type Future = Pin<Box<dyn Future<Output = Result<QuickAckStream, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move { connecting.await.map(QuickAckStream) })
    }
}

struct QuickAckStream(TokioIo<TcpStream>);

impl QuickAckStream {
    fn quick_ack(&self) {
        // Best effort: if the option cannot be set, the connection only loses the shortcut.
        let _ = socket2::SockRef::from(self.0.inner()).set_tcp_quickack(true);
    }
}

impl hyper::rt::Read for QuickAckStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.0).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            self.quick_ack();
        }
        result
    }
}

impl hyper::rt::Write for QuickAckStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
}

impl Connection for QuickAckStream {
    fn connected(&self) -> Connected {
        self.0.connected()
    }
}
