//! An HTTPS upstream for tests: a private CA made in the test (rcgen), a rustls server that
//! counts its TLS handshakes (full and resumed), and certificate rotation.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::HandshakeKind;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// A certificate authority made for one test.
pub struct Ca {
    pub pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().expect("key");
        let pem = params.self_signed(&key).expect("CA certificate").pem();
        Ca {
            pem,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A server certificate for 127.0.0.1 signed by this CA, and its key.
    pub fn server_certificate(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
        let key = rcgen::KeyPair::generate().expect("key");
        let certificate = params.signed_by(&key, &self.issuer).expect("server certificate");
        (
            vec![certificate.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }
}

/// What the upstream counted.
#[derive(Default)]
pub struct Counts {
    pub full: AtomicUsize,
    pub resumed: AtomicUsize,
    pub failed: AtomicUsize,
    pub requests: AtomicUsize,
    /// Connections that ended (closed by either side) after their handshake.
    pub closed: AtomicUsize,
    /// Requests for the model `held` wait until this is true.
    pub release: Release,
    /// HTTP versions of the requests.
    pub versions: Mutex<Vec<hyper::Version>>,
    /// The `Authorization` header of each request.
    pub authorizations: Mutex<Vec<String>>,
}

impl Counts {
    pub fn full(&self) -> usize {
        self.full.load(Ordering::SeqCst)
    }
    pub fn resumed(&self) -> usize {
        self.resumed.load(Ordering::SeqCst)
    }
    pub fn handshakes(&self) -> usize {
        self.full() + self.resumed()
    }
    pub fn failed(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
    }
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
    pub fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }
}

/// Lets requests for the model `held` answer.
pub struct Release(watch::Sender<bool>);

impl Default for Release {
    fn default() -> Self {
        Release(watch::Sender::new(false))
    }
}

impl Release {
    pub fn release(&self) {
        self.0.send_replace(true);
    }
}

/// How the upstream behaves.
#[derive(Clone, Copy)]
pub struct Options {
    /// Offer HTTP/2 by ALPN (else HTTP/1.1 only).
    pub h2: bool,
    /// Close every connection after one response (`Connection: close`), so each request
    /// needs a new connection and a handshake: full, or resumed from the session cache.
    pub close_each: bool,
}

/// An OpenAI-compatible HTTPS upstream on 127.0.0.1: chat completions answer
/// `tls served <model>`.
pub struct TlsUpstream {
    pub addr: SocketAddr,
    pub counts: Arc<Counts>,
    acceptor: watch::Sender<TlsAcceptor>,
    goaway: watch::Sender<()>,
    options: Options,
}

impl TlsUpstream {
    pub async fn start(ca: &Ca, options: Options) -> Self {
        let (certificates, key) = ca.server_certificate();
        Self::start_with(certificates, key, options).await
    }

    /// An upstream serving this certificate chain and key.
    pub async fn start_with(
        certificates: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        options: Options,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (acceptor, mut current) = watch::channel(acceptor(certificates, key, options));
        let counts = Arc::new(Counts::default());
        let served = counts.clone();
        let (goaway, going) = watch::channel(());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let tls = current.borrow_and_update().clone();
                let (counts, mut rotated, mut going) = (served.clone(), current.clone(), going.clone());
                going.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(stream) = tls.accept(tcp).await else {
                        counts.failed.fetch_add(1, Ordering::SeqCst);
                        return;
                    };
                    match stream.get_ref().1.handshake_kind() {
                        Some(HandshakeKind::Resumed) => counts.resumed.fetch_add(1, Ordering::SeqCst),
                        _ => counts.full.fetch_add(1, Ordering::SeqCst),
                    };
                    let served = counts.clone();
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let counts = served.clone();
                        async move { Ok::<_, std::convert::Infallible>(answer(request, &counts, options).await) }
                    });
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(connection);
                    // A rotated certificate closes the connections made with the old one, as a
                    // restarted server would; `goaway` closes them gracefully (HTTP/2 GOAWAY).
                    tokio::select! {
                        _ = connection.as_mut() => {}
                        _ = rotated.changed() => {}
                        _ = going.changed() => {
                            connection.as_mut().graceful_shutdown();
                            let _ = connection.await;
                        }
                    }
                    counts.closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        TlsUpstream {
            addr,
            counts,
            acceptor,
            goaway,
            options,
        }
    }

    pub fn base_url(&self) -> String {
        format!("https://{}/v1", self.addr)
    }

    /// Closes every open connection gracefully: HTTP/2 `GOAWAY` (requests in flight finish),
    /// HTTP/1.1 `Connection: close`.
    pub fn goaway(&self) {
        self.goaway.send_replace(());
    }

    /// Closes every open connection at once, as a crashed or restarted server would.
    pub fn kill_connections(&self) {
        self.acceptor.send_modify(|_| {});
    }

    /// Serves a certificate signed by `ca` from now on; open connections are closed.
    pub fn rotate(&self, ca: &Ca) {
        let (certificates, key) = ca.server_certificate();
        self.acceptor.send_replace(acceptor(certificates, key, self.options));
    }
}

fn acceptor(certificates: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>, options: Options) -> TlsAcceptor {
    let mut config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .with_no_client_auth()
            .with_single_cert(certificates, key)
            .expect("server config");
    config.alpn_protocols = match options.h2 {
        true => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        false => vec![b"http/1.1".to_vec()],
    };
    TlsAcceptor::from(Arc::new(config))
}

async fn answer(request: Request<Incoming>, counts: &Counts, options: Options) -> Response<Full<Bytes>> {
    counts.requests.fetch_add(1, Ordering::SeqCst);
    counts.versions.lock().expect("lock").push(request.version());
    let authorization = request.headers().get("authorization").and_then(|v| v.to_str().ok());
    let authorization = authorization.unwrap_or_default().to_string();
    counts.authorizations.lock().expect("lock").push(authorization);
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let model = serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default()["model"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if model == "held" {
        let _ = counts.release.0.subscribe().wait_for(|released| *released).await;
    }
    let reply = serde_json::json!({
        "id": "chatcmpl-tls", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("tls served {model}")}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
    });
    let mut response = Response::builder().header("content-type", "application/json");
    if options.close_each {
        response = response.header("connection", "close");
    }
    response
        .body(Full::new(Bytes::from(reply.to_string())))
        .expect("response")
}

/// A Secret manifest holding `pem` under `ca.crt`.
pub fn ca_secret(name: &str, pem: &str) -> String {
    let indented: String = pem.lines().map(|l| format!("    {l}\n")).collect();
    format!("---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\nstringData:\n  ca.crt: |\n{indented}")
}

/// An `openai-compatible` LLMProvider at `base_url`, trusting the CA in the Secret `ca` when
/// given.
pub fn https_provider(name: &str, base_url: &str, ca: Option<&str>) -> String {
    let tls = ca.map_or_else(String::new, |ca| {
        format!("\n  tls: {{caSecretRef: {{name: {ca}, key: ca.crt}}}}")
    });
    format!("---\napiVersion: modelgate.dev/v1alpha1\nkind: LLMProvider\nmetadata: {{name: {name}}}\nspec:\n  type: openai-compatible\n  baseUrl: {base_url}{tls}\n")
}
