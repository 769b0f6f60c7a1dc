//! Which upstream addresses are special: one list, shared by the compiler (which warns about a
//! `baseUrl` from its text) and the gateway's egress guard (which refuses to connect to the
//! resolved addresses). Pure: no I/O, no DNS.
//!
//! An address is classified after canonicalisation, so an IPv4 address written inside an
//! IPv6 one (`::ffff:169.254.169.254`, `::169.254.169.254`, NAT64 `64:ff9b::a9fe:a9fe`,
//! 6to4 `2002:a9fe:a9fe::`) is the IPv4 address it carries. Numeric spellings of IPv4
//! (`2852039166`, `0xa9fea9fe`, `0251.0376.0251.0376`, `169.254.43518`, a trailing dot) are
//! turned into addresses by [`parse_host`], the WHATWG URL host parser.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is special.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressClass {
    /// `0.0.0.0/8` or `::`: "this host" (Linux connects it to the local machine).
    Unspecified,
    /// A cloud metadata service (instance credentials live there).
    Metadata,
    /// `169.254.0.0/16` or `fe80::/10`.
    LinkLocal,
    /// `224.0.0.0/4` or `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `240.0.0.0/4`, reserved and never routed.
    Reserved,
    /// `127.0.0.0/8` or `::1`.
    Loopback,
}

impl AddressClass {
    /// Whether every gateway refuses it (all but loopback, which standalone gateways allow).
    pub fn always_refused(self) -> bool {
        self != AddressClass::Loopback
    }

    /// What the address is, for messages ("… is {describe}").
    pub fn describe(self) -> &'static str {
        match self {
            AddressClass::Unspecified => {
                "the unspecified address (0.0.0.0/8 or ::), which reaches the gateway's own host"
            }
            AddressClass::Metadata => "a cloud metadata service, which hands out the node's credentials",
            AddressClass::LinkLocal => {
                "a link-local address (169.254.0.0/16 or fe80::/10), where cloud metadata services live"
            }
            AddressClass::Multicast => "a multicast address",
            AddressClass::Broadcast => "the broadcast address",
            AddressClass::Reserved => "a reserved address (240.0.0.0/4)",
            AddressClass::Loopback => "a loopback address (127.0.0.0/8 or ::1)",
        }
    }
}

/// IPv4 metadata endpoints outside 169.254.0.0/16, and the best known inside it.
const METADATA_V4: [Ipv4Addr; 5] = [
    Ipv4Addr::new(169, 254, 169, 254), // AWS, GCP, Azure, OCI, OpenStack, DigitalOcean, …
    Ipv4Addr::new(169, 254, 170, 2),   // AWS ECS task metadata and credentials
    Ipv4Addr::new(100, 100, 100, 200), // Alibaba Cloud
    Ipv4Addr::new(168, 63, 129, 16),   // Azure WireServer
    Ipv4Addr::new(192, 0, 0, 192),     // Oracle Cloud (classic)
];

/// IPv6 metadata endpoints.
const METADATA_V6: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254), // AWS IMDS over IPv6
    Ipv6Addr::new(0xfd20, 0x00ce, 0, 0, 0, 0, 0, 0x0254), // GCP metadata over IPv6
];

/// The address a connection to `ip` really reaches: an IPv4-mapped (`::ffff:a.b.c.d`) or
/// IPv4-compatible (`::a.b.c.d`) IPv6 address is its IPv4 address; anything else is itself.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let [a, b, c, d, e, f, _, _] = v6.segments();
            // `::` and `::1` are IPv6's own unspecified and loopback addresses.
            if [a, b, c, d, e, f] == [0; 6] && !v6.is_unspecified() && !v6.is_loopback() {
                let o = v6.octets();
                return IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            ip
        }
        IpAddr::V4(_) => ip,
    }
}

/// IPv4 addresses a translating prefix carries inside an IPv6 address: NAT64 (RFC 6052: the
/// well-known `64:ff9b::/96` and the local-use `64:ff9b:1::/48` at each prefix length it
/// allows) and 6to4 (`2002::/16`).
fn embedded_v4(v6: Ipv6Addr) -> Vec<Ipv4Addr> {
    let o = v6.octets();
    let v4 = |a: u8, b: u8, c: u8, d: u8| Ipv4Addr::new(a, b, c, d);
    let s = v6.segments();
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        vec![v4(o[12], o[13], o[14], o[15])]
    } else if s[..3] == [0x64, 0xff9b, 1] {
        // RFC 6052 §2.2: bits 64..72 are zero; a /48, /56, /64 or /96 prefix places the
        // address around them.
        vec![
            v4(o[6], o[7], o[9], o[10]),
            v4(o[7], o[9], o[10], o[11]),
            v4(o[9], o[10], o[11], o[12]),
            v4(o[12], o[13], o[14], o[15]),
        ]
    } else if s[0] == 0x2002 {
        vec![v4(o[2], o[3], o[4], o[5])]
    } else {
        Vec::new()
    }
}

fn classify_v4(v4: Ipv4Addr) -> Option<AddressClass> {
    let [a, _, _, _] = v4.octets();
    if a == 0 {
        Some(AddressClass::Unspecified)
    } else if METADATA_V4.contains(&v4) {
        Some(AddressClass::Metadata)
    } else if v4.is_link_local() {
        Some(AddressClass::LinkLocal)
    } else if v4.is_loopback() {
        Some(AddressClass::Loopback)
    } else if v4.is_multicast() {
        Some(AddressClass::Multicast)
    } else if v4.is_broadcast() {
        Some(AddressClass::Broadcast)
    } else if a >= 240 {
        Some(AddressClass::Reserved)
    } else {
        None
    }
}

fn classify_v6(v6: Ipv6Addr) -> Option<AddressClass> {
    if v6.is_unspecified() {
        Some(AddressClass::Unspecified)
    } else if v6.is_loopback() {
        Some(AddressClass::Loopback)
    } else if METADATA_V6.contains(&v6) {
        Some(AddressClass::Metadata)
    } else if v6.is_unicast_link_local() {
        Some(AddressClass::LinkLocal)
    } else if v6.is_multicast() {
        Some(AddressClass::Multicast)
    } else {
        // Zeros in a position a prefix length does not use read as 0.x.x.x: only an address
        // that is special for another reason counts.
        embedded_v4(v6)
            .into_iter()
            .filter_map(classify_v4)
            .find(|class| *class != AddressClass::Unspecified)
    }
}

/// Whether `ip` is special, in any of its spellings.
pub fn classify(ip: IpAddr) -> Option<AddressClass> {
    match canonical(ip) {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// Why a host name is special.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamedHost {
    /// A cloud metadata service's name (`metadata.google.internal`, …).
    Metadata,
    /// `localhost` and its relatives.
    Loopback,
    /// The cluster's API server (`kubernetes.default.svc`, …).
    ApiServer,
}

impl NamedHost {
    pub fn describe(self) -> &'static str {
        match self {
            NamedHost::Metadata => "the name of a cloud metadata service, which hands out the node's credentials",
            NamedHost::Loopback => "a loopback name (it resolves to 127.0.0.1 or ::1)",
            NamedHost::ApiServer => "the cluster's Kubernetes API server",
        }
    }
}

/// Names of metadata services: GCP, AWS (VPC DNS), Tencent Cloud.
const METADATA_NAMES: [&str; 6] = [
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.tencentyun.com",
];

/// Whether a host name is special. Case-insensitive; a trailing dot (a fully qualified name)
/// does not hide it.
pub fn classify_name(name: &str) -> Option<NamedHost> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if METADATA_NAMES.contains(&name.as_str()) {
        Some(NamedHost::Metadata)
    } else if name == "localhost"
        || name.ends_with(".localhost")
        || matches!(
            name.as_str(),
            "localhost.localdomain" | "ip6-localhost" | "ip6-loopback"
        )
    {
        Some(NamedHost::Loopback)
    } else if matches!(
        name.as_str(),
        "kubernetes" | "kubernetes.default" | "kubernetes.default.svc"
    ) || name.starts_with("kubernetes.default.svc.")
    {
        Some(NamedHost::ApiServer)
    } else {
        None
    }
}

/// A URL host, parsed as a browser would: IPv4 in any numeric spelling, bracketed IPv6, or a
/// domain name (lowercased; a trailing dot kept).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

/// Parses the host of an `http`/`https` URL (`[…]` around IPv6 allowed). `None` when it is
/// not a valid host.
pub fn parse_host(text: &str) -> Option<Host> {
    // A special-scheme URL is the one place the WHATWG parser applies its IPv4 rules.
    let url = url::Url::parse(&format!("http://{text}/")).ok()?;
    match url.host()? {
        url::Host::Ipv4(v4) => Some(Host::Ip(IpAddr::V4(v4))),
        url::Host::Ipv6(v6) => Some(Host::Ip(IpAddr::V6(v6))),
        url::Host::Domain(name) => Some(Host::Name(name.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class_of(host: &str) -> Option<AddressClass> {
        match parse_host(host) {
            Some(Host::Ip(ip)) => classify(ip),
            other => panic!("{host} is not an address: {other:?}"),
        }
    }

    #[test]
    fn the_metadata_address_is_refused_in_every_spelling() {
        for spelling in [
            "169.254.169.254",
            "2852039166",
            "0xa9fea9fe",
            "0xA9FEA9FE",
            "0251.0376.0251.0376",
            "0xa9.0xfe.0xa9.0xfe",
            "169.254.43518",
            "169.16689662",
            "0251.254.169.254",
            "169.254.169.254.",
            "[::ffff:169.254.169.254]",
            "[::ffff:a9fe:a9fe]",
            "[0:0:0:0:0:ffff:a9fe:a9fe]",
            "[::169.254.169.254]",
            "[64:ff9b::169.254.169.254]",
            "[64:ff9b::a9fe:a9fe]",
            "[2002:a9fe:a9fe::1]",
        ] {
            assert_eq!(class_of(spelling), Some(AddressClass::Metadata), "{spelling}");
        }
    }

    #[test]
    fn nat64_local_use_prefixes_carry_the_address_at_every_rfc6052_length() {
        // 169.254.169.254 under 64:ff9b:1::/48, /56, /64 and /96.
        for spelling in [
            "[64:ff9b:1:a9fe:a9:fe00::]",
            "[64:ff9b:1:00a9:00fe:a9fe::]",
            "[64:ff9b:1:0:a9:fea9:fe00:0]",
            "[64:ff9b:1::a9fe:a9fe]",
        ] {
            assert_eq!(class_of(spelling), Some(AddressClass::Metadata), "{spelling}");
        }
    }

    #[test]
    fn other_metadata_services_are_known() {
        for host in [
            "100.100.100.200",
            "168.63.129.16",
            "192.0.0.192",
            "169.254.170.2",
            "[fd00:ec2::254]",
            "[fd20:ce::254]",
            "[::ffff:100.100.100.200]",
        ] {
            assert_eq!(class_of(host), Some(AddressClass::Metadata), "{host}");
        }
    }

    #[test]
    fn each_special_range_is_classified() {
        let cases = [
            ("169.254.0.1", AddressClass::LinkLocal),
            ("169.254.255.255", AddressClass::LinkLocal),
            ("[fe80::1]", AddressClass::LinkLocal),
            ("[febf::1]", AddressClass::LinkLocal),
            ("0.0.0.0", AddressClass::Unspecified),
            ("0", AddressClass::Unspecified),
            ("0.1.2.3", AddressClass::Unspecified),
            ("[::]", AddressClass::Unspecified),
            ("[::ffff:0.0.0.0]", AddressClass::Unspecified),
            ("[::ffff:0:0]", AddressClass::Unspecified),
            ("224.0.0.1", AddressClass::Multicast),
            ("239.255.255.250", AddressClass::Multicast),
            ("[ff02::1]", AddressClass::Multicast),
            ("255.255.255.255", AddressClass::Broadcast),
            ("4294967295", AddressClass::Broadcast),
            ("240.0.0.1", AddressClass::Reserved),
            ("127.0.0.1", AddressClass::Loopback),
            ("127.1", AddressClass::Loopback),
            ("2130706433", AddressClass::Loopback),
            ("0x7f000001", AddressClass::Loopback),
            ("017700000001", AddressClass::Loopback),
            ("127.255.255.254", AddressClass::Loopback),
            ("[::1]", AddressClass::Loopback),
            ("[::ffff:127.0.0.1]", AddressClass::Loopback),
            ("[::127.0.0.1]", AddressClass::Loopback),
            ("[64:ff9b::7f00:1]", AddressClass::Loopback),
            ("[64:ff9b:1::7f00:1]", AddressClass::Loopback),
        ];
        for (host, class) in cases {
            assert_eq!(class_of(host), Some(class), "{host}");
        }
    }

    #[test]
    fn ordinary_addresses_are_not_special() {
        for host in [
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.10",
            "100.64.0.1",
            "8.8.8.8",
            "169.253.255.255",
            "169.255.0.0",
            "223.255.255.255",
            "[2001:db8::1]",
            "[fd12:3456::1]",
            "[fd00:ec2::253]",
            "[fec0::1]",
            "[64:ff9b::808:808]",
            "[64:ff9b:1::808:808]",
            "[64:ff9b::]",
            "[2002:808:808::]",
        ] {
            assert_eq!(class_of(host), None, "{host}");
        }
    }

    #[test]
    fn mapped_addresses_canonicalise_to_ipv4_but_ipv6_loopback_stays() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(canonical(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(canonical(ip("::10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(canonical(ip("::1")), ip("::1"));
        assert_eq!(canonical(ip("::")), ip("::"));
        assert_eq!(canonical(ip("2001:db8::1")), ip("2001:db8::1"));
    }

    #[test]
    fn special_names_are_found_in_any_case_and_with_a_trailing_dot() {
        let cases = [
            ("metadata.google.internal", Some(NamedHost::Metadata)),
            ("METADATA.Google.Internal.", Some(NamedHost::Metadata)),
            ("metadata", Some(NamedHost::Metadata)),
            ("instance-data.ec2.internal", Some(NamedHost::Metadata)),
            ("localhost", Some(NamedHost::Loopback)),
            ("localhost.", Some(NamedHost::Loopback)),
            ("ollama.localhost", Some(NamedHost::Loopback)),
            ("kubernetes.default.svc", Some(NamedHost::ApiServer)),
            ("kubernetes.default.svc.cluster.local.", Some(NamedHost::ApiServer)),
            ("kubernetes", Some(NamedHost::ApiServer)),
            ("ollama.ollama.svc", None),
            ("metadata.example.com", None),
            ("notlocalhost", None),
            ("kubernetes.io", None),
        ];
        for (name, want) in cases {
            assert_eq!(classify_name(name), want, "{name}");
        }
    }

    #[test]
    fn hosts_parse_like_a_browser() {
        assert_eq!(parse_host("0x7f.1"), Some(Host::Ip("127.0.0.1".parse().expect("ip"))));
        assert_eq!(
            parse_host("Ollama.Ollama.SVC"),
            Some(Host::Name("ollama.ollama.svc".into()))
        );
        assert_eq!(parse_host("metadata."), Some(Host::Name("metadata.".into())));
        assert_eq!(parse_host("[::1]"), Some(Host::Ip("::1".parse().expect("ip"))));
        assert_eq!(parse_host("256.1.1.1"), None, "an out-of-range number is not a host");
        assert_eq!(parse_host(""), None);
    }
}
