//! `spec.tls.caSecretRef`: what the compiler says about the CA Secret, in the words a user reads.

use super::tests::{alias, compile_yaml, said};

/// A provider at `https://vllm.ml.svc/v1` trusting `ca.crt` of the Secret `vllm-ca`, that
/// Secret holding `pem` (none when `pem` is `None`), and an alias on it.
fn provider_with_ca(pem: Option<&str>) -> String {
    let mut yaml = "---\napiVersion: modelgate.dev/v1alpha1\nkind: LLMProvider\nmetadata: {name: vllm, namespace: team-a}\nspec: {type: openai-compatible, baseUrl: 'https://vllm.ml.svc/v1', tls: {caSecretRef: {name: vllm-ca, key: ca.crt}}}\n".to_string();
    if let Some(pem) = pem {
        let indented: String = pem.lines().map(|l| format!("    {l}\n")).collect();
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: vllm-ca, namespace: team-a}}\nstringData:\n  ca.crt: |\n{indented}"
        ));
    }
    yaml + &alias("chat", "{target: vllm/llama}")
}

fn ca_pem(not_after: (i32, u8, u8)) -> String {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "team-a test CA");
    params.not_before = rcgen::date_time_ymd(2001, 1, 1);
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let key = rcgen::KeyPair::generate().expect("key");
    params.self_signed(&key).expect("certificate").pem()
}

fn tls_said(yaml: &str) -> Vec<(String, String, &'static str, String)> {
    said(&compile_yaml(yaml))
        .into_iter()
        .filter(|(object, ..)| object == "LLMProvider team-a/vllm")
        .collect()
}

#[test]
fn a_valid_ca_is_compiled_into_the_endpoint_with_its_fingerprint() {
    let pem = ca_pem((2099, 1, 1));
    let compiled = compile_yaml(&provider_with_ca(Some(&pem)));
    assert!(!compiled.has_errors(), "{:?}", said(&compiled));
    let endpoint = &compiled.table.providers[&super::ObjectKey::new("team-a", "vllm")];
    let ca = endpoint.trusted_ca.as_ref().expect("the CA is compiled");
    assert_eq!(ca.certificates.len(), 1);
    assert_eq!(ca.source, "team-a/vllm-ca[ca.crt]");
    // The same PEM gives the same fingerprint (shared client); another CA another.
    let again = compile_yaml(&provider_with_ca(Some(&pem)));
    let other = compile_yaml(&provider_with_ca(Some(&ca_pem((2099, 1, 1)))));
    let fingerprint = |c: &super::Compiled| {
        c.table.providers[&super::ObjectKey::new("team-a", "vllm")]
            .trusted_ca
            .as_ref()
            .map(|ca| ca.fingerprint)
    };
    assert_eq!(fingerprint(&again), Some(ca.fingerprint));
    assert_ne!(fingerprint(&other), Some(ca.fingerprint));
    assert!(compiled.table.route("chat").is_some());
}

#[test]
fn a_missing_or_unusable_ca_secret_is_an_error_naming_the_secret_and_what_is_wrong() {
    let missing = tls_said(&provider_with_ca(None));
    assert_eq!(
        missing,
        vec![(
            "LLMProvider team-a/vllm".into(),
            "spec.tls.caSecretRef".into(),
            "CANotFound",
            "Secret team-a/vllm-ca does not exist; create it with the key 'ca.crt' or fix tls.caSecretRef".into()
        )]
    );
    let cases = [
        ("not a certificate", "key 'ca.crt' of Secret team-a/vllm-ca holds no PEM certificate; store the CA certificate there in PEM form"),
        ("-----BEGIN CERTIFICATE-----\nMIIB\n", "key 'ca.crt' of Secret team-a/vllm-ca is not valid PEM (a section has no END line: the text may be cut short)"),
        ("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n", "the certificate in key 'ca.crt' of Secret team-a/vllm-ca cannot be used as a CA"),
        ("-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n", "key 'ca.crt' of Secret team-a/vllm-ca holds a private key; the CA Secret must hold only certificates"),
    ];
    for (pem, expected) in cases {
        let said = tls_said(&provider_with_ca(Some(pem)));
        assert_eq!(said.len(), 1, "{pem}: {said:?}");
        let (_, field, reason, message) = &said[0];
        assert_eq!((field.as_str(), *reason), ("spec.tls.caSecretRef", "InvalidCA"));
        assert!(message.starts_with(expected), "{pem}: {message}");
        assert!(
            !message.contains("c2VjcmV0"),
            "the Secret's content is never quoted: {message}"
        );
        let compiled = compile_yaml(&provider_with_ca(Some(pem)));
        let alias_said = said_about_alias(&compiled);
        assert!(alias_said.contains("its CA certificate is unusable"), "{alias_said}");
    }
}

fn said_about_alias(compiled: &super::Compiled) -> String {
    said(compiled)
        .into_iter()
        .filter(|(object, ..)| object == "ModelAlias team-a/chat")
        .map(|(.., message)| message)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn an_expired_ca_is_a_warning_and_the_provider_still_compiles() {
    let said = tls_said(&provider_with_ca(Some(&ca_pem((2002, 1, 1)))));
    assert_eq!(said.len(), 1, "{said:?}");
    let (_, field, reason, message) = &said[0];
    assert_eq!((field.as_str(), *reason), ("spec.tls.caSecretRef", "InvalidCA"));
    assert!(
        message.starts_with("the certificate in key 'ca.crt' of Secret team-a/vllm-ca (CN=team-a test CA) expired at 2002-01-01T00:00:00Z"),
        "{message}"
    );
    let compiled = compile_yaml(&provider_with_ca(Some(&ca_pem((2002, 1, 1)))));
    assert!(!compiled.has_errors());
}

#[test]
fn tls_on_a_mock_or_a_plain_http_provider_is_refused() {
    let yaml = "---\napiVersion: modelgate.dev/v1alpha1\nkind: LLMProvider\nmetadata: {name: vllm, namespace: team-a}\nspec: {type: openai-compatible, baseUrl: 'http://vllm.ml.svc/v1', tls: {caSecretRef: {name: vllm-ca, key: ca.crt}}}\n";
    let said = tls_said(yaml);
    assert_eq!(said[0].1, "spec.tls");
    assert_eq!(
        said[0].3,
        "tls applies only to an https:// baseUrl: use https:// or remove tls"
    );
    let yaml = "---\napiVersion: modelgate.dev/v1alpha1\nkind: LLMProvider\nmetadata: {name: vllm, namespace: team-a}\nspec: {type: mock, tls: {caSecretRef: {name: vllm-ca, key: ca.crt}}}\n";
    assert_eq!(
        tls_said(yaml)[0].3,
        "a mock provider answers locally: remove tls or choose another type"
    );
}
