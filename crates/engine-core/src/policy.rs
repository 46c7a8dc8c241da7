//! Which addresses token requests may reach. Token URLs are user-supplied, so without a policy
//! the operator could be made to fetch cloud-metadata credentials (169.254.169.254) or probe
//! internal services with its network position. Checked on the URL's host, on every address it
//! resolves to (in the HTTP client's own resolver, so DNS rebinding cannot slip past), and
//! before anything is sent.

use std::net::IpAddr;

use ipnet::IpNet;

/// Host names of cloud metadata services, refused with link-local addresses.
const METADATA_HOSTS: &[&str] = &["metadata.google.internal", "metadata.goog", "metadata", "instance-data"];

/// Cloud metadata and host-agent services outside the link-local range, refused with it:
/// AWS IMDS over IPv6, Alibaba Cloud, Oracle Cloud, Azure WireServer.
const METADATA_ADDRS: &[IpAddr] = &[
    IpAddr::V6(std::net::Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)),
    IpAddr::V4(std::net::Ipv4Addr::new(100, 100, 100, 200)),
    IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 0, 192)),
    IpAddr::V4(std::net::Ipv4Addr::new(168, 63, 129, 16)),
];

/// A host pattern (`api.example.com`, `*.example.com`) or a network (`10.0.0.0/8`).
#[derive(Clone, Debug, PartialEq)]
pub enum Rule {
    Host(String),
    Net(IpNet),
}

impl Rule {
    pub fn parse(s: &str) -> Result<Rule, String> {
        let s = s.trim();
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(Rule::Net(net));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Rule::Net(IpNet::from(ip)));
        }
        let host = s.trim_end_matches('.').to_ascii_lowercase();
        let valid = !host.is_empty()
            && host
                .strip_prefix("*.")
                .unwrap_or(&host)
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if valid {
            Ok(Rule::Host(host))
        } else {
            Err(format!("`{s}` is neither a host name, *.suffix, IP address nor CIDR"))
        }
    }

    fn matches_host(&self, host: &str) -> bool {
        match self {
            Rule::Host(pattern) => match pattern.strip_prefix("*.") {
                Some(suffix) => host.ends_with(&format!(".{suffix}")),
                None => host == pattern,
            },
            Rule::Net(net) => host.parse::<IpAddr>().is_ok_and(|ip| net.contains(&ip)),
        }
    }

    fn matches_ip(&self, ip: IpAddr) -> bool {
        // (host rules are matched by name in `matches_host`)
        matches!(self, Rule::Net(net) if net.contains(&ip))
    }
}

/// The token-endpoint address policy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UrlPolicy {
    /// Allow link-local (169.254.0.0/16, fe80::/10), the other metadata addresses and metadata
    /// host names. Default false.
    pub allow_link_local: bool,
    /// Allow private, loopback, shared (100.64/10) and unique-local addresses. Default false:
    /// whoever may create a ConnectorAuth could otherwise make the operator read services
    /// inside the cluster's network. Networks on the allow list are allowed either way.
    pub allow_private: bool,
    /// If not empty, only these hosts/networks may be reached (checked before the built-in
    /// denials, which still apply to what is allowed).
    pub allow: Vec<Rule>,
    /// Never reach these.
    pub deny: Vec<Rule>,
}

impl UrlPolicy {
    /// Whether a host rule of the allow list names `host` itself.
    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allow
            .iter()
            .any(|r| matches!(r, Rule::Host(_)) && r.matches_host(&host))
    }

    /// Checks a URL host (name or IP literal) together with the addresses it resolves to.
    /// `Err` says why, naming host and address only.
    ///
    /// - the deny list refuses matching hosts and addresses;
    /// - a non-empty allow list admits a host matching a host rule, or else requires every
    ///   address to lie in an allowed network;
    /// - link-local addresses and metadata host names are refused unless `allow_link_local`,
    ///   private ones unless `allow_private`, except addresses in an explicitly allowed network.
    pub fn check(&self, host: &str, ips: &[IpAddr]) -> Result<(), String> {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if self.deny.iter().any(|r| r.matches_host(&host)) {
            return Err(format!("{host} is on the deny list"));
        }
        if !self.allow_link_local && METADATA_HOSTS.contains(&host.as_str()) {
            return Err(format!("{host} is a cloud metadata service"));
        }
        let host_allowed = self
            .allow
            .iter()
            .any(|r| matches!(r, Rule::Host(_)) && r.matches_host(&host));
        for &given in ips {
            // An IPv6 address that carries an IPv4 one (mapped, compatible, NAT64, 6to4) is
            // judged as that IPv4 address too.
            for ip in std::iter::once(given).chain(embedded_v4(given).map(IpAddr::V4)) {
                if self.deny.iter().any(|r| r.matches_ip(ip)) {
                    return Err(format!("{host} resolves to {ip}, which is on the deny list"));
                }
                let net_allowed = self.allow.iter().any(|r| r.matches_ip(ip));
                if !self.allow.is_empty() && !host_allowed && !net_allowed && ip == given {
                    return Err(format!("{host} ({ip}) is not on the allow list"));
                }
                if !self.allow_link_local && !net_allowed && (is_link_local(ip) || METADATA_ADDRS.contains(&ip)) {
                    return Err(format!(
                        "{host} resolves to {ip}, a link-local or cloud metadata address (cloud credentials are served there)"
                    ));
                }
                if !self.allow_private && !net_allowed && is_private(ip) {
                    return Err(format!(
                        "{host} resolves to private address {ip}; private, loopback and in-cluster addresses are refused unless the operator allows them (--allow-private-token-urls, or the network in --token-url-allow)"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The IPv4 address inside an IPv6 one: IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`), NAT64 (`64:ff9b::/96`, `64:ff9b:1::/48`) and 6to4 (`2002:aabb:ccdd::/48`).
fn embedded_v4(ip: IpAddr) -> Option<std::net::Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let seg = v6.segments();
    let low = |a: u16, b: u16| std::net::Ipv4Addr::new((a >> 8) as u8, a as u8, (b >> 8) as u8, b as u8);
    if seg[..6] == [0; 6] && !(seg[6] == 0 && seg[7] <= 1) {
        return Some(low(seg[6], seg[7]));
    }
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || (seg[0] == 0x64 && seg[1] == 0xff9b && seg[2] == 1) {
        return Some(low(seg[6], seg[7]));
    }
    if seg[0] == 0x2002 {
        return Some(low(seg[1], seg[2]));
    }
    None
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || o[0] == 0
                // Shared address space (carrier-grade NAT, some cluster networks).
                || o[0] == 100 && (o[1] & 0xc0) == 64
                // Benchmarking (198.18.0.0/15) and reserved (240.0.0.0/4).
                || o[0] == 198 && (o[1] & 0xfe) == 18
                || o[0] >= 240
        }
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn lit(p: &UrlPolicy, a: &str) -> Result<(), String> {
        p.check(a, &[ip(a)])
    }

    #[test]
    fn link_local_and_metadata_are_refused_by_default() {
        let p = UrlPolicy::default();
        assert!(lit(&p, "169.254.169.254").unwrap_err().contains("link-local"));
        assert!(lit(&p, "fe80::1").is_err());
        assert!(
            p.check("evil.example", &[ip("::ffff:169.254.169.254")]).is_err(),
            "IPv4-mapped IPv6 too"
        );
        assert!(p.check("metadata.google.internal", &[ip("8.8.8.8")]).is_err());
        assert!(
            p.check("rebind.example", &[ip("93.184.216.34"), ip("169.254.169.254")])
                .is_err(),
            "any address counts"
        );
        assert!(
            lit(&p, "10.1.2.3").unwrap_err().contains("private"),
            "private is refused by default"
        );
        assert!(lit(&p, "127.0.0.1").is_err());
        assert!(p.check("api.snov.io", &[ip("93.184.216.34")]).is_ok());
    }

    #[test]
    fn every_metadata_address_and_every_spelling_of_one_is_refused() {
        let p = UrlPolicy {
            allow_private: true,
            ..Default::default()
        };
        for a in [
            "fd00:ec2::254",
            "100.100.100.200",
            "192.0.0.192",
            "168.63.129.16",
            // 169.254.169.254 as IPv4-mapped, IPv4-compatible, NAT64 (both prefixes) and 6to4.
            "::ffff:169.254.169.254",
            "::a9fe:a9fe",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
        ] {
            assert!(lit(&p, a).unwrap_err().contains("metadata"), "{a}");
        }
        // The same embedded forms of a private address are private.
        let strict = UrlPolicy::default();
        for a in ["::ffff:10.0.0.1", "64:ff9b::7f00:1", "::7f00:1", "2002:0a00:0001::"] {
            assert!(lit(&strict, a).is_err(), "{a}");
        }
        assert!(lit(&strict, "2606:4700::1111").is_ok(), "a public IPv6 address");
        assert!(lit(&strict, "::1").is_err());
    }

    #[test]
    fn private_ranges_are_denied_and_networks_allowed_back() {
        let p = UrlPolicy::default();
        for a in [
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "127.0.0.1",
            "100.64.0.1",
            "::1",
            "fd00::1",
        ] {
            assert!(lit(&p, a).is_err(), "{a}");
        }
        assert!(lit(&p, "93.184.216.34").is_ok());
        let p = UrlPolicy {
            allow: vec![Rule::parse("10.20.0.0/16").unwrap()],
            ..Default::default()
        };
        assert!(
            UrlPolicy {
                allow_private: true,
                ..Default::default()
            }
            .check("10.1.2.3", &[ip("10.1.2.3")])
            .is_ok()
        );
        assert!(lit(&p, "10.20.3.4").is_ok());
        assert!(lit(&p, "10.21.3.4").is_err());
    }

    #[test]
    fn allow_and_deny_lists_by_host() {
        let p = UrlPolicy {
            allow: vec![Rule::parse("*.superoffice.com").unwrap()],
            ..Default::default()
        };
        assert!(p.check("online.superoffice.com", &[ip("20.1.1.1")]).is_ok());
        assert!(
            p.check("evil.example.com", &[ip("20.1.1.1")])
                .unwrap_err()
                .contains("not on the allow list")
        );
        assert!(
            p.check("online.superoffice.com", &[ip("169.254.169.254")]).is_err(),
            "allowed hosts still may not hit metadata"
        );
        let p = UrlPolicy {
            deny: vec![Rule::parse("internal.corp").unwrap()],
            ..Default::default()
        };
        assert!(p.check("internal.corp", &[]).is_err());
        assert!(Rule::parse("not a host!").is_err());
        let p = UrlPolicy {
            allow_link_local: true,
            ..Default::default()
        };
        assert!(lit(&p, "169.254.169.254").is_ok());
    }
}
