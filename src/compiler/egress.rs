//! Warnings about base URLs that gateways refuse to connect to, from the URL text alone (the
//! gateway checks the resolved addresses again on every new connection).

use super::address::{canonical, classify, classify_name, parse_host, Host, NamedHost};
use super::diagnostic::{Diagnostic, ObjectRef, Reason};

const FIELD: &str = "spec.baseUrl";

/// What refusing it means for a host that every gateway refuses.
const ALWAYS: &str = "every modelgate gateway refuses to connect to it, so requests routed here fail with 502 upstream_blocked; point baseUrl at the provider's real address (or, if this is really intended, allow the address on the gateway with --allow-upstream-cidr)";

/// What refusing it means for a host that gateways in a cluster refuse.
const IN_CLUSTER: &str = "a gateway in a cluster (started without --config) refuses to connect to it unless its address is allowed with --allow-upstream-cidr, so requests routed here fail with 502 upstream_blocked; point baseUrl at a Service instead (for example http://ollama.ollama.svc:11434/v1)";

/// Pushes a warning when the host of `url` (an already valid http(s) URL) is an address or a
/// name gateways refuse.
pub(super) fn warn_about_host(object: &ObjectRef, url: &str, out: &mut Vec<Diagnostic>) {
    let raw = raw_host(url);
    let Some(host) = parse_host(raw) else {
        return;
    };
    let message = match host {
        Host::Ip(ip) => {
            let Some(class) = classify(ip) else {
                return;
            };
            let canonical = canonical(ip);
            let spelled = if ip != canonical {
                // An IPv4 address hidden in an IPv6 one: name the IPv4 address it reaches.
                format!("baseUrl host '{raw}' is {canonical} in another spelling")
            } else if raw.trim_matches(['[', ']']) != ip.to_string() {
                format!("baseUrl host '{raw}' is {ip} in another spelling")
            } else {
                format!("baseUrl points at {ip}")
            };
            let consequence = if class.always_refused() { ALWAYS } else { IN_CLUSTER };
            format!("{spelled}, {}: {consequence}", class.describe())
        }
        Host::Name(name) => {
            let Some(named) = classify_name(&name) else {
                return;
            };
            let consequence = match named {
                NamedHost::Metadata => ALWAYS,
                NamedHost::Loopback | NamedHost::ApiServer => IN_CLUSTER,
            };
            format!("baseUrl host '{raw}' is {}: {consequence}", named.describe())
        }
    };
    out.push(Diagnostic::warning(object, FIELD, Reason::UpstreamBlocked, message));
}

/// The host of a URL as written: between `://` (and any `user@`) and the port or path.
fn raw_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    if authority.starts_with('[') {
        return authority.find(']').map_or(authority, |end| &authority[..=end]);
    }
    authority.rsplit_once(':').map_or(authority, |(host, _)| host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiler::ObjectKey;

    fn warning(url: &str) -> Option<String> {
        let mut out = Vec::new();
        warn_about_host(&ObjectRef::provider(ObjectKey::new("ml", "p")), url, &mut out);
        assert!(out.len() <= 1);
        out.pop().map(|d| {
            assert_eq!((d.field.as_str(), d.reason), (FIELD, Reason::UpstreamBlocked));
            assert!(!d.is_error());
            d.message
        })
    }

    #[test]
    fn raw_hosts_are_cut_from_the_authority() {
        assert_eq!(raw_host("http://2852039166/v1"), "2852039166");
        assert_eq!(raw_host("http://[::1]:8080/v1"), "[::1]");
        assert_eq!(raw_host("https://h.example:443"), "h.example");
        assert_eq!(raw_host("http://u@10.0.0.1:80/x"), "10.0.0.1");
    }

    #[test]
    fn each_spelling_is_named_with_the_address_it_reaches() {
        let metadata = "a cloud metadata service, which hands out the node's credentials";
        assert_eq!(
            warning("http://169.254.169.254/latest").as_deref(),
            Some(format!("baseUrl points at 169.254.169.254, {metadata}: {ALWAYS}").as_str())
        );
        assert_eq!(
            warning("http://2852039166/v1").as_deref(),
            Some(
                format!("baseUrl host '2852039166' is 169.254.169.254 in another spelling, {metadata}: {ALWAYS}")
                    .as_str()
            )
        );
        assert_eq!(
            warning("http://[::ffff:a9fe:a9fe]:80/v1").as_deref(),
            Some(
                format!(
                    "baseUrl host '[::ffff:a9fe:a9fe]' is 169.254.169.254 in another spelling, {metadata}: {ALWAYS}"
                )
                .as_str()
            )
        );
        assert_eq!(
            warning("http://[fd00:ec2::254]/v1").as_deref(),
            Some(format!("baseUrl points at fd00:ec2::254, {metadata}: {ALWAYS}").as_str())
        );
        for url in [
            "http://0xa9fea9fe/v1",
            "http://0251.0376.0251.0376/",
            "http://169.254.169.254./v1",
            "http://[64:ff9b::a9fe:a9fe]/v1",
            "https://100.100.100.200/v1",
        ] {
            let message = warning(url).unwrap_or_else(|| panic!("no warning for {url}"));
            assert!(message.contains(metadata), "{url}: {message}");
        }
    }

    #[test]
    fn loopback_and_cluster_names_warn_about_in_cluster_gateways() {
        assert_eq!(
            warning("http://127.0.0.1:11434/v1").as_deref(),
            Some(
                format!("baseUrl points at 127.0.0.1, a loopback address (127.0.0.0/8 or ::1): {IN_CLUSTER}").as_str()
            )
        );
        assert_eq!(
            warning("http://localhost:11434/v1").as_deref(),
            Some(
                format!("baseUrl host 'localhost' is a loopback name (it resolves to 127.0.0.1 or ::1): {IN_CLUSTER}")
                    .as_str()
            )
        );
        assert_eq!(
            warning("https://kubernetes.default.svc.cluster.local/api").as_deref(),
            Some(format!("baseUrl host 'kubernetes.default.svc.cluster.local' is the cluster's Kubernetes API server: {IN_CLUSTER}").as_str())
        );
        assert_eq!(
            warning("http://metadata.google.internal./computeMetadata/v1").as_deref(),
            Some(format!("baseUrl host 'metadata.google.internal.' is the name of a cloud metadata service, which hands out the node's credentials: {ALWAYS}").as_str())
        );
    }

    #[test]
    fn ordinary_hosts_get_no_warning() {
        for url in [
            "https://api.openai.com/v1",
            "http://ollama.ollama.svc:11434/v1",
            "http://10.0.0.7:8000/v1",
            "http://[2001:db8::1]/v1",
        ] {
            assert_eq!(warning(url), None, "{url}");
        }
    }
}
