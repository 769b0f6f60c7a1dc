//! `spec.tls`: the private CA a provider's HTTPS certificate is verified against.
//!
//! The compiler reads the PEM from the Secret and checks it the way the gateway will use it
//! (every certificate must be a usable trust anchor), so a wrong Secret shows up as a
//! condition naming the Secret and what is wrong, not as a 502 at the first request.

use std::fmt;
use std::sync::Arc;

use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use x509_cert::der::Decode;

use super::credentials::{Credentials, KeyLookup};
use super::diagnostic::{Diagnostic, ObjectRef, Reason};
use crate::crd::{LLMProviderSpec, ProviderType, SecretKeyRef};

/// A CA certificate that expires within this long gets a warning.
const EXPIRY_WARNING: std::time::Duration = std::time::Duration::from_secs(14 * 24 * 3600);

/// The certificates a provider is verified against instead of the system's roots.
#[derive(Clone, PartialEq, Eq)]
pub struct TrustedCa {
    /// DER certificates, in the order the Secret holds them.
    pub certificates: Arc<[CertificateDer<'static>]>,
    /// SHA-256 over the certificates: providers with the same CA share one HTTP client (and
    /// its connections and TLS sessions), and a rotated CA gets a new one.
    pub fingerprint: [u8; 32],
    /// `namespace/name[key]` of the Secret, for messages.
    pub source: String,
}

impl fmt::Debug for TrustedCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustedCa")
            .field("source", &self.source)
            .field("certificates", &self.certificates.len())
            .field("fingerprint", &hex(&self.fingerprint[..8]))
            .finish()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Rules of `spec.tls` that the CRD's CEL rules also enforce (files are not checked by an
/// apiserver).
pub(super) fn check_spec(object: &ObjectRef, spec: &LLMProviderSpec, out: &mut Vec<Diagnostic>) {
    if spec.tls.is_none() {
        return;
    }
    if spec.provider_type == ProviderType::Mock {
        out.push(Diagnostic::error(
            object,
            "spec.tls",
            Reason::InvalidSpec,
            "a mock provider answers locally: remove tls or choose another type",
        ));
    } else if spec.base_url.as_deref().is_some_and(|url| !url.starts_with("https://")) {
        out.push(Diagnostic::error(
            object,
            "spec.tls",
            Reason::InvalidSpec,
            "tls applies only to an https:// baseUrl: use https:// or remove tls",
        ));
    }
}

/// The CA of `spec.tls.caSecretRef`, `Ok(None)` without one, or why the provider cannot be
/// used (a diagnostic is pushed too). `now` is Unix seconds, for the expiry check.
pub(super) fn trusted_ca(
    object: &ObjectRef,
    spec: &LLMProviderSpec,
    credentials: &dyn Credentials,
    now: i64,
    out: &mut Vec<Diagnostic>,
) -> Result<Option<TrustedCa>, String> {
    let Some(secret_ref) = spec.tls.as_ref().map(|t| &t.ca_secret_ref) else {
        return Ok(None);
    };
    let namespace = &object.key.namespace;
    const FIELD: &str = "spec.tls.caSecretRef";
    let pem = match credentials.secret_bytes(namespace, secret_ref, "tls.caSecretRef") {
        KeyLookup::Found(pem) => pem,
        KeyLookup::Unchecked => return Ok(None),
        KeyLookup::Missing(why) => {
            out.push(Diagnostic::error(object, FIELD, Reason::CaNotFound, why.clone()));
            return Err(format!("its CA certificate is missing: {why}"));
        }
    };
    let source = format!("{namespace}/{}[{}]", secret_ref.name, secret_ref.key);
    match parse(&pem, secret_ref, namespace, now) {
        Ok((ca, warnings)) => {
            for warning in warnings {
                out.push(Diagnostic::warning(object, FIELD, Reason::InvalidCa, warning));
            }
            Ok(Some(TrustedCa {
                fingerprint: fingerprint(&ca),
                certificates: ca.into(),
                source,
            }))
        }
        Err(why) => {
            out.push(Diagnostic::error(object, FIELD, Reason::InvalidCa, why.clone()));
            Err(format!("its CA certificate is unusable: {why}"))
        }
    }
}

fn fingerprint(certificates: &[CertificateDer<'static>]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for certificate in certificates {
        hash.update((certificate.len() as u64).to_be_bytes());
        hash.update(certificate.as_ref());
    }
    hash.finalize().into()
}

/// The certificates in `pem` and warnings about them, or what is wrong with it. Nothing of
/// the Secret's content is quoted: a private key pasted by mistake must not reach a status.
fn parse(
    pem: &[u8],
    secret_ref: &SecretKeyRef,
    namespace: &str,
    now: i64,
) -> Result<(Vec<CertificateDer<'static>>, Vec<String>), String> {
    let what = format!("key '{}' of Secret {namespace}/{}", secret_ref.key, secret_ref.name);
    let fix = "store the CA certificate there in PEM form (-----BEGIN CERTIFICATE-----), e.g. kubectl create secret generic NAME --from-file=ca.crt=ca.pem";
    let mut certificates = Vec::new();
    let mut private_key = false;
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
        match section {
            Ok((SectionKind::Certificate, der)) => certificates.push(CertificateDer::from(der)),
            Ok((SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey, _)) => {
                private_key = true
            }
            Ok(_) => {}
            Err(e) => return Err(format!("{what} is not valid PEM ({}); {fix}", pem_problem(&e))),
        }
    }
    if private_key {
        return Err(format!(
            "{what} holds a private key; the CA Secret must hold only certificates (the gateway needs no key to trust a CA): remove the key from the Secret"
        ));
    }
    if certificates.is_empty() {
        let looks_der = pem.first() == Some(&0x30);
        return Err(match looks_der {
            true => format!("{what} looks like a DER certificate, not PEM; convert it with openssl x509 -inform der -in ca.der -out ca.pem and {fix}"),
            false => format!("{what} holds no PEM certificate; {fix}"),
        });
    }
    let mut warnings = Vec::new();
    for (i, der) in certificates.iter().enumerate() {
        let position = match certificates.len() {
            1 => "the certificate".to_string(),
            _ => format!("certificate {} of {}", i + 1, certificates.len()),
        };
        let mut roots = rustls::RootCertStore::empty();
        if let Err(e) = roots.add(der.clone()) {
            return Err(format!("{position} in {what} cannot be used as a CA ({e}); {fix}"));
        }
        let Ok(parsed) = x509_cert::Certificate::from_der(der.as_ref()) else {
            return Err(format!("{position} in {what} is not a valid X.509 certificate; {fix}"));
        };
        let validity = &parsed.tbs_certificate.validity;
        let not_after = validity.not_after.to_unix_duration().as_secs() as i64;
        let not_before = validity.not_before.to_unix_duration().as_secs() as i64;
        let subject = parsed.tbs_certificate.subject.to_string();
        if not_after < now {
            warnings.push(format!(
                "{position} in {what} ({subject}) expired at {}; certificates it signed no longer verify: store the renewed CA",
                timestamp(not_after)
            ));
        } else if not_after < now + EXPIRY_WARNING.as_secs() as i64 {
            warnings.push(format!(
                "{position} in {what} ({subject}) expires at {}; store the renewed CA (both may sit in the Secret during the change)",
                timestamp(not_after)
            ));
        } else if not_before > now {
            warnings.push(format!(
                "{position} in {what} ({subject}) is valid only from {}",
                timestamp(not_before)
            ));
        }
    }
    Ok((certificates, warnings))
}

fn timestamp(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds).map_or_else(|_| seconds.to_string(), |t| t.to_string())
}

fn pem_problem(error: &rustls::pki_types::pem::Error) -> &'static str {
    use rustls::pki_types::pem::Error;
    match error {
        Error::MissingSectionEnd { .. } => "a section has no END line: the text may be cut short",
        Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        Error::Base64Decode(_) => "a section is not valid base64",
        _ => "it cannot be read",
    }
}
