//! A provider's request headers that no request changes (its own headers, `Content-Type`,
//! `modelgate-hops`, `Host` for plain HTTP, the credential), prepared once per routing table in
//! the two forms a connection needs: HTTP/1.1 header lines, written as they are by our own
//! connection (`h1`), and a map, merged into the request for HTTP/2, hyper's client and request
//! signing. Cloning the provider's map for every request and writing it out again line by
//! line cost about 1,000 instructions a request (callgrind, see the README).
//!
//! A provider header whose name a request may set itself (a forwarded `User-Agent`,
//! `anthropic-version`, `x-request-id`) is not fixed: it is a default, applied per request
//! when the request has none, so the request's value wins as it always has.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName};

/// A provider's request headers. It holds the credential: it has no `Debug`, and its lines
/// are only ever written to the provider's connection.
pub struct FixedHeaders {
    /// `name: value\r\n` for each fixed header.
    lines: Bytes,
    /// The same headers as a map.
    map: HeaderMap,
    /// The provider's headers a request may replace.
    defaults: HeaderMap,
    /// Whether a `Host` is among the fixed ones.
    host: bool,
}

impl FixedHeaders {
    /// Splits `all` (a provider's headers) into the fixed ones and the defaults: those named
    /// in one of the `per_request` lists, which requests may set.
    pub fn new(all: HeaderMap, per_request: &[&[HeaderName]]) -> Self {
        let (mut map, mut defaults) = (HeaderMap::new(), HeaderMap::new());
        let mut lines = Vec::new();
        for (name, value) in &all {
            if per_request.iter().any(|names| names.contains(name)) {
                defaults.append(name, value.clone());
                continue;
            }
            // The body's framing is the connection's own: never a provider's.
            if name != CONTENT_LENGTH && name != TRANSFER_ENCODING {
                lines.extend_from_slice(name.as_str().as_bytes());
                lines.extend_from_slice(b": ");
                lines.extend_from_slice(value.as_bytes());
                lines.extend_from_slice(b"\r\n");
            }
            map.append(name, value.clone());
        }
        FixedHeaders {
            lines: Bytes::from(lines),
            host: map.contains_key(HOST),
            map,
            defaults,
        }
    }

    /// The fixed headers as HTTP/1.1 header lines.
    pub fn lines(&self) -> &[u8] {
        &self.lines
    }

    /// Whether a `Host` is among them.
    pub fn has_host(&self) -> bool {
        self.host
    }

    /// Adds the fixed headers to `headers` (a request's own), keeping any it already has.
    pub fn merge_into(&self, headers: &mut HeaderMap) {
        add_missing(&self.map, headers);
    }

    /// Adds the defaults `headers` (a request's own) does not set itself.
    pub fn apply_defaults(&self, headers: &mut HeaderMap) {
        add_missing(&self.defaults, headers);
    }
}

fn add_missing(from: &HeaderMap, to: &mut HeaderMap) {
    // A name's values come one after another: all of them are added, or none.
    let mut previous: Option<(&HeaderName, bool)> = None;
    for (name, value) in from {
        let add = match previous {
            Some((same, add)) if same == name => add,
            _ => !to.contains_key(name),
        };
        if add {
            to.append(name, value.clone());
        }
        previous = Some((name, add));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn provider() -> HeaderMap {
        let mut all = HeaderMap::new();
        for (name, value) in [
            ("x-team", "a"),
            ("user-agent", "provider"),
            ("content-type", "application/json"),
            ("content-length", "3"),
            ("host", "up:8000"),
            ("authorization", "Bearer sk-1"),
        ] {
            all.append(name, HeaderValue::from_static(value));
        }
        all.append("x-team", HeaderValue::from_static("b"));
        all
    }

    #[test]
    fn fixed_headers_are_lines_and_a_map_and_per_request_names_are_defaults() {
        let fixed = FixedHeaders::new(provider(), &[&[http::header::USER_AGENT]]);
        assert_eq!(
            std::str::from_utf8(fixed.lines()).expect("ascii"),
            "x-team: a\r\nx-team: b\r\ncontent-type: application/json\r\nhost: up:8000\r\nauthorization: Bearer sk-1\r\n"
        );
        assert!(fixed.has_host());
        let mut request = HeaderMap::new();
        request.insert("x-team", HeaderValue::from_static("mine"));
        fixed.merge_into(&mut request);
        let teams: Vec<_> = request.get_all("x-team").iter().collect();
        assert_eq!(teams, ["mine"], "the request's own value is kept");
        assert_eq!(request["authorization"], "Bearer sk-1");
        assert!(request.get("user-agent").is_none(), "defaults are not fixed");

        let mut request = HeaderMap::new();
        fixed.apply_defaults(&mut request);
        assert_eq!(request["user-agent"], "provider");
        let mut request = HeaderMap::new();
        request.insert("user-agent", HeaderValue::from_static("client"));
        fixed.apply_defaults(&mut request);
        assert_eq!(request["user-agent"], "client", "a client's forwarded header wins");
    }
}
