//! An HTTPS provider: the gateway reaches it over TLS, verifying its certificate against the
//! system's trust store (`SSL_CERT_FILE` here), and speaks HTTP/2 when ALPN offers it.
//! Its own test binary, with one test: it sets `SSL_CERT_FILE` for the whole process.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use support::*;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A self-signed certificate for 127.0.0.1, made with the openssl command line.
fn certificate(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("upstream.crt"), dir.join("upstream.key"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args(["-days", "1", "-subj", "/CN=modelgate test upstream"])
        .args([
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed (tests/all.sh installs it)");
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    (cert, key)
}

/// What the upstream saw: protocol version and Authorization of each request.
type Seen = Arc<Mutex<Vec<(hyper::Version, String)>>>;

async fn serve_tls(cert: &Path, key: &Path, seen: Seen) -> std::net::SocketAddr {
    let certs = vec![CertificateDer::from_pem_file(cert).expect("certificate")];
    let key = PrivateKeyDer::from_pem_file(key).expect("key");
    let mut config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let auth = request
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string();
                        seen.lock().expect("lock").push((request.version(), auth));
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
                        let reply = serde_json::json!({
                            "id": "chatcmpl-tls", "object": "chat.completion", "created": 1, "model": model,
                            "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("tls served {model}")}, "finish_reason": "stop"}],
                        });
                        Ok::<_, std::convert::Infallible>(
                            Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(reply.to_string())))
                                .expect("response"),
                        )
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

/// A gateway whose alias `chat` routes to `https://ADDR/v1`, with the key `sk-tls-1`.
async fn gateway_to(addr: std::net::SocketAddr) -> (ConfigDir, modelgate::gateway::Running) {
    let config = ConfigDir::new();
    config.write(
        "c.yaml",
        &format!(
            "apiVersion: modelgate.dev/v1alpha1\nkind: LLMProvider\nmetadata: {{name: secure}}\nspec:\n  type: openai-compatible\n  baseUrl: https://{addr}/v1\n  apiKey: {{secretRef: {{name: secure-key, key: apiKey}}}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: secure-key}}\nstringData: {{apiKey: sk-tls-1}}\n---\n{}",
            alias("chat", "{target: secure/model-t}")
        ),
    );
    let gateway = start_gateway(&config).await;
    (config, gateway)
}

#[tokio::test]
async fn an_https_provider_is_reached_over_verified_tls_and_http2_and_an_untrusted_one_is_not() {
    let pki = tempfile::tempdir().expect("temp dir");
    let (cert, key) = certificate(pki.path());
    // The gateway trusts the system's roots; here the system trusts only this certificate.
    std::env::set_var("SSL_CERT_FILE", &cert);
    std::env::remove_var("SSL_CERT_DIR");
    let seen = Seen::default();
    let addr = serve_tls(&cert, &key, seen.clone()).await;

    let (_config, gateway) = gateway_to(addr).await;
    for _ in 0..3 {
        let (status, body) = post(&gateway, "/v1/chat/completions", &chat("chat")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["choices"][0]["message"]["content"], "tls served model-t");
    }
    let served = seen.lock().expect("lock").clone();
    assert_eq!(served.len(), 3);
    for (version, auth) in &served {
        assert_eq!(*version, hyper::Version::HTTP_2, "ALPN chose HTTP/2");
        assert_eq!(auth, "Bearer sk-tls-1");
    }

    // Another upstream, whose certificate is in no trust store the gateway reads.
    let other = tempfile::tempdir().expect("temp dir");
    let (cert, key) = certificate(other.path());
    let seen = Seen::default();
    let addr = serve_tls(&cert, &key, seen.clone()).await;
    let (_config, gateway) = gateway_to(addr).await;
    let (status, body) = post(&gateway, "/v1/chat/completions", &chat("chat")).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "upstream_tls_failed");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("its TLS certificate failed verification"),
        "{body}"
    );
    assert!(seen.lock().expect("lock").is_empty(), "no request reached it");
}
