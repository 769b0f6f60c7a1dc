//! An HTTPS provider: the gateway reaches it over TLS, verifying its certificate against the
//! system's trust store (`SSL_CERT_FILE` here), and speaks HTTP/2 when ALPN offers it.
//! Its own test binary, with one test: it sets `SSL_CERT_FILE` for the whole process.

mod support;

use std::path::Path;
use std::process::Command;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use support::tls::{Options, TlsUpstream};
use support::*;

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

/// An HTTPS upstream (HTTP/2 offered by ALPN) serving this self-signed certificate.
async fn serve_tls(cert: &Path, key: &Path) -> TlsUpstream {
    let certs = vec![CertificateDer::from_pem_file(cert).expect("certificate")];
    let key = PrivateKeyDer::from_pem_file(key).expect("key");
    let options = Options {
        h2: true,
        close_each: false,
    };
    TlsUpstream::start_with(certs, key, options).await
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
    let upstream = serve_tls(&cert, &key).await;

    let (_config, gateway) = gateway_to(upstream.addr).await;
    for _ in 0..3 {
        let (status, body) = post(&gateway, "/v1/chat/completions", &chat("chat")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["choices"][0]["message"]["content"], "tls served model-t");
    }
    let versions = upstream.counts.versions.lock().expect("lock").clone();
    assert_eq!(versions, [hyper::Version::HTTP_2; 3], "ALPN chose HTTP/2");
    let authorizations = upstream.counts.authorizations.lock().expect("lock").clone();
    assert_eq!(authorizations, ["Bearer sk-tls-1"; 3]);

    // Another upstream, whose certificate is in no trust store the gateway reads.
    let other = tempfile::tempdir().expect("temp dir");
    let (cert, key) = certificate(other.path());
    let upstream = serve_tls(&cert, &key).await;
    let (_config, gateway) = gateway_to(upstream.addr).await;
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
    assert_eq!(upstream.counts.requests(), 0, "no request reached it");
}
