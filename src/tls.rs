//! TLS for the gRPC listener and for connections to it (the `tierdex query` side and fleet
//! members asking each other), over rustls with the aws-lc-rs provider the S3 client already
//! uses.
//!
//! Our own acceptor and connector rather than tonic's `tls-*` features: tonic's configuration is
//! fixed when the server starts, and a renewed certificate (cert-manager, an ACME client) must
//! be picked up without a restart. A node's certificate and key are read again when either
//! file changes, looked at no more than once a second at a handshake; a pair that does not load
//! (a half-written renewal, a key not matching its certificate) is logged and the previous one
//! kept. CA files are read once, at start. Connections already open keep the certificate they
//! were made with.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use hyper_util::rt::TokioIo;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SignatureScheme};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tracing::{debug, info, warn};

use crate::config::TlsConfig;

/// gRPC is HTTP/2 only: the one protocol offered and accepted.
const ALPN_H2: &[u8] = b"h2";

/// How often the certificate files are looked at for a renewal.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// A client that connects and never finishes its handshake is dropped after this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress waiting for the server to take their connection.
const ACCEPTED_QUEUE: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} {path}: cannot read: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{what} {path}: {message}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |message: String| TlsError::Pem {
        what,
        path: path.to_path_buf(),
        message,
    };
    let bytes = read(what, path)?;
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| pem_error(format!("not PEM certificates: {err}")))?;
    if certificates.is_empty() {
        return Err(pem_error(
            "holds no certificate (expected PEM `-----BEGIN CERTIFICATE-----` blocks)".into(),
        ));
    }
    Ok(certificates)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read("private key", path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|err| TlsError::Pem {
        what: "private key",
        path: path.to_path_buf(),
        message: format!(
            "no PEM private key in it (PKCS#8, PKCS#1 or SEC1 `-----BEGIN ... PRIVATE KEY-----`): \
             {err}"
        ),
    })
}

fn roots(what: &'static str, path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for certificate in certificates(what, path)? {
        store.add(certificate).map_err(|err| TlsError::Pem {
            what,
            path: path.to_path_buf(),
            message: format!("not a usable CA certificate: {err}"),
        })?;
    }
    Ok(Arc::new(store))
}

/// A certificate chain and the key that goes with it, checked to match.
fn certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = certificates("certificate", cert)?;
    let key_der = private_key(key)?;
    CertifiedKey::from_der(chain, key_der, &provider()).map_err(|err| TlsError::Invalid {
        what: format!("certificate {} with key {}", cert.display(), key.display()),
        message: err.to_string(),
    })
}

/// What says whether a file changed: its modification time, size and inode (a Kubernetes
/// secret volume swaps a symlink; `metadata` follows it).
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len(), metadata.ino()))
}

/// A certificate and key read again when their files change: the server's certificate, and a
/// fleet member's identity when it asks another member.
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    current: ArcSwap<CertifiedKey>,
    /// What the files were when last looked at.
    seen: Mutex<[Stamp; 2]>,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ReloadingCert {
    /// Reads the pair now: a missing, unreadable or mismatched file is an error naming it.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<ReloadingCert>, TlsError> {
        // Stamped before reading, so that a change while reading is seen at the next look.
        let stamps = [stamp(cert), stamp(key)];
        let loaded = certified_key(cert, key)?;
        Ok(Arc::new(ReloadingCert {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: ArcSwap::from_pointee(loaded),
            seen: Mutex::new(stamps),
        }))
    }

    /// The pair to present.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// Reads the pair again if its files changed since the last look: file system calls, so
    /// off the runtime's workers (`watch`), never in a handshake.
    fn reload_if_changed(&self) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let stamps = [stamp(&self.cert), stamp(&self.key)];
        if stamps == *seen {
            return;
        }
        *seen = stamps;
        match certified_key(&self.cert, &self.key) {
            Ok(loaded) => {
                self.current.store(Arc::new(loaded));
                info!(cert = %self.cert.display(), key = %self.key.display(), "TLS certificate reloaded");
            }
            // Tried again when either file changes next (the other half of a renewal).
            Err(err) => {
                warn!(error = %err, "TLS certificate changed but does not load; keeping the previous one")
            }
        }
    }

    /// Looks at the files every `RELOAD_CHECK` on the blocking pool, until `stop` completes.
    async fn watch(self: Arc<Self>, stop: impl Future<Output = ()>) {
        let mut ticks = tokio::time::interval(RELOAD_CHECK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = &mut stop => break,
            }
            let reloading = self.clone();
            let _ = tokio::task::spawn_blocking(move || reloading.reload_if_changed()).await;
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for ReloadingCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The listener's side: the node's certificate (reloaded when renewed) and, for mutual TLS, the
/// CA client certificates must be signed by.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
    identity: Arc<ReloadingCert>,
}

impl ServerTls {
    /// Reads every file now, so that a bad one stops the node at start, named.
    pub fn load(files: &TlsConfig) -> Result<ServerTls, TlsError> {
        let identity = ReloadingCert::load(&files.cert, &files.key)?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|err| TlsError::Invalid {
                what: "TLS versions".into(),
                message: err.to_string(),
            })?;
        let builder = match &files.client_ca {
            Some(path) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    roots("client CA", path)?,
                    provider(),
                )
                .build()
                .map_err(|err| TlsError::Invalid {
                    what: format!("client CA {}", path.display()),
                    message: err.to_string(),
                })?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(identity.clone());
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(ServerTls {
            config: Arc::new(config),
            identity,
        })
    }

    /// The client side a fleet member asks the others with: their certificates checked against
    /// `files.peer_ca`, this node's own certificate (reloaded as the listener's is) presented to
    /// members that require one. Members offer it whenever asked: a fleet's members share one
    /// configuration, so a member requiring client certificates is asked by members holding
    /// one.
    pub fn peer_client(&self, files: &TlsConfig) -> Result<ClientTls, TlsError> {
        let ca = files.peer_ca.as_deref().ok_or_else(|| TlsError::Invalid {
            what: "tls_peer_ca".into(),
            message: "a fleet over TLS needs the CA its members' certificates are checked \
                      against"
                .into(),
        })?;
        ClientTls::with_identity(Trust::CaFile(ca), Some(self.identity.clone()))
    }

    /// Connections accepted on `listener` once their handshake completes, for
    /// `Server::serve_with_incoming*`. Handshakes run beside each other (one slow client holds
    /// up no other); one that fails (a plaintext client, a client certificate the CA did not
    /// sign) drops its connection and is logged at debug. Accepting stops when the stream is
    /// dropped.
    pub fn incoming(
        &self,
        listener: TcpListener,
    ) -> impl futures::Stream<Item = io::Result<TlsConnection>> + Send + 'static {
        let (sender, mut accepted) = mpsc::channel::<io::Result<TlsConnection>>(ACCEPTED_QUEUE);
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.clone());
        // The certificate (and a fleet member's identity, the same one) is reloaded while the
        // listener accepts.
        let accepting = sender.clone();
        tokio::spawn(
            self.identity
                .clone()
                .watch(async move { accepting.closed().await }),
        );
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(err) => {
                            // Out of descriptors, say: wait rather than spin.
                            warn!(error = %err, "gRPC listener: accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                    _ = sender.closed() => break,
                };
                // Small gRPC messages would otherwise wait on Nagle's algorithm (~40 ms each).
                if let Err(err) = tcp.set_nodelay(true) {
                    debug!(%peer, error = %err, "TCP_NODELAY");
                }
                let acceptor = acceptor.clone();
                let sender = sender.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = sender.send(Ok(TlsConnection(stream))).await;
                        }
                        Ok(Err(err)) => debug!(%peer, error = %err, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        futures::stream::poll_fn(move |cx| accepted.poll_recv(cx))
    }
}

/// A connection whose TLS handshake completed, as the gRPC server takes it.
pub struct TlsConnection(tokio_rustls::server::TlsStream<TcpStream>);

impl Connected for TlsConnection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.0.get_ref().0.connect_info()
    }
}

impl tokio::io::AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

/// Whom a client trusts.
pub enum Trust<'a> {
    /// The CAs in this PEM file.
    CaFile(&'a Path),
    /// The system's trust store (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured).
    System,
}

/// The connecting side: the CAs a server's certificate is checked against, and the client's own
/// certificate for servers that require one.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
}

impl ClientTls {
    /// `identity`: a certificate and key to present when a server asks for one (`tierdex query`).
    pub fn load(trust: Trust<'_>, identity: Option<(&Path, &Path)>) -> Result<ClientTls, TlsError> {
        let identity = identity
            .map(|(cert, key)| ReloadingCert::load(cert, key))
            .transpose()?;
        Self::with_identity(trust, identity)
    }

    /// A client presenting `identity` (when a server asks for a certificate).
    fn with_identity(
        trust: Trust<'_>,
        identity: Option<Arc<ReloadingCert>>,
    ) -> Result<ClientTls, TlsError> {
        let roots = match trust {
            Trust::CaFile(path) => roots("CA", path)?,
            Trust::System => {
                let found = rustls_native_certs::load_native_certs();
                let mut store = RootCertStore::empty();
                let (added, _) = store.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(TlsError::Invalid {
                        what: "the system's trust store".into(),
                        message: format!(
                            "no CA certificate found ({} errors); give the CA file with --ca-cert",
                            found.errors.len()
                        ),
                    });
                }
                Arc::new(store)
            }
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|err| TlsError::Invalid {
                what: "TLS versions".into(),
                message: err.to_string(),
            })?
            .with_root_certificates(roots);
        let mut config = match identity {
            Some(identity) => builder.with_client_cert_resolver(identity),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(ClientTls {
            config: Arc::new(config),
        })
    }

    /// A connector for `Endpoint::connect_with_connector*`: TCP (Nagle off) then TLS, the
    /// server's certificate checked for the URI's host (a DNS name or an IP address).
    pub fn connector(&self) -> TlsConnector {
        TlsConnector {
            connector: tokio_rustls::TlsConnector::from(self.config.clone()),
        }
    }
}

#[derive(Clone)]
pub struct TlsConnector {
    connector: tokio_rustls::TlsConnector,
}

impl tower_service::Service<hyper::Uri> for TlsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: hyper::Uri) -> Self::Future {
        let connector = self.connector.clone();
        Box::pin(async move {
            let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidInput, message);
            let host = uri
                .host()
                .ok_or_else(|| invalid(format!("{uri}: no host")))?;
            // An IPv6 address is bracketed in a URI, bare in a certificate and a socket address.
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(443);
            let name = ServerName::try_from(host.clone())
                .map_err(|err| invalid(format!("{host}: not a server name: {err}")))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let stream = connector.connect(name, tcp).await?;
            Ok(TokioIo::new(stream))
        })
    }
}
