//! The one egress guard. Every outbound call Trellis makes for a tenant (connection
//! tests today, workflow steps and model providers as they come) goes through
//! [`Egress::client`], which refuses loopback, private, link-local, shared (CGNAT),
//! multicast, reserved and cloud-metadata addresses unless `TRELLIS_EGRESS_ALLOW` lists
//! them: a tenant must not reach the server's own ports, the database, or
//! `169.254.169.254` through Trellis.
//!
//! Hostnames are checked after resolution, by the client's resolver: the addresses
//! checked are the addresses connected to, so a name cannot resolve to a public
//! address for the check and a private one for the connection. Addresses written in a
//! URL skip resolution and are checked by [`Egress::check_url`]; redirects are
//! followed (at most five) only to addresses that pass the same checks. The client uses
//! no proxy from the environment, which would otherwise connect on the guard's behalf.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

use crate::{Error, Result};

/// Redirects a guarded request follows at most.
const MAX_REDIRECTS: usize = 5;

/// Why the guard refused an address; found in a failed request's error chain.
#[derive(Debug, thiserror::Error)]
#[error("the egress guard refused {0}: loopback, private, link-local and metadata addresses are not reachable (TRELLIS_EGRESS_ALLOW lists exceptions)")]
pub struct Refused(pub String);

/// The egress policy and the one HTTP client that applies it.
#[derive(Clone, Debug)]
pub struct Egress {
    allow: Arc<[IpNet]>,
    client: reqwest::Client,
    /// The same guard, for calls that do not follow redirects (an http connection's
    /// `followRedirects: false`).
    no_redirects: reqwest::Client,
}

impl Egress {
    /// A guard that also admits the addresses in `allow`.
    pub fn new(allow: Vec<IpNet>) -> Result<Self> {
        let allow: Arc<[IpNet]> = allow.into();
        let resolver = GuardedResolver {
            allow: allow.clone(),
        };
        let redirect_allow = allow.clone();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error("too many redirects");
            }
            match literal_refusal(&redirect_allow, attempt.url()) {
                Some(refused) => attempt.error(refused),
                None => attempt.follow(),
            }
        });
        let resolver = Arc::new(resolver);
        let build = |redirects| {
            reqwest::Client::builder()
                .dns_resolver(resolver.clone())
                .redirect(redirects)
                .no_proxy()
                .user_agent(concat!("trellis/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| Error::Internal(anyhow::anyhow!("http client: {e}")))
        };
        let client = build(redirects)?;
        let no_redirects = build(reqwest::redirect::Policy::none())?;
        Ok(Self {
            allow,
            client,
            no_redirects,
        })
    }

    /// Parses `TRELLIS_EGRESS_ALLOW`: addresses and CIDR ranges, comma-separated.
    pub fn parse_allow(spec: &str) -> anyhow::Result<Vec<IpNet>> {
        spec.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|item| {
                item.parse::<IpNet>()
                    .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "TRELLIS_EGRESS_ALLOW: {item} is neither an address nor a CIDR range"
                        )
                    })
            })
            .collect()
    }

    /// The guarded client. Check a URL with [`Self::check_url`] before sending to it.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The guarded client that returns a 3xx answer instead of following it.
    pub fn client_without_redirects(&self) -> &reqwest::Client {
        &self.no_redirects
    }

    /// Refuses a URL whose host is an address the guard does not admit (hostnames are
    /// checked when the client resolves them).
    pub fn check_url(&self, url: &str) -> Result<(), Refused> {
        let Ok(url) = Url::parse(url) else {
            // The client reports a malformed URL itself.
            return Ok(());
        };
        literal_refusal(&self.allow, &url).map_or(Ok(()), Err)
    }

    /// Whether the guard admits a connection to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        permits(&self.allow, ip)
    }
}

/// The refusal of a URL whose host is a refused address literal.
fn literal_refusal(allow: &[IpNet], url: &Url) -> Option<Refused> {
    let ip = match url.host()? {
        url::Host::Ipv4(ip) => IpAddr::V4(ip),
        url::Host::Ipv6(ip) => IpAddr::V6(ip),
        url::Host::Domain(_) => return None,
    };
    (!permits(allow, ip)).then(|| Refused(ip.to_string()))
}

fn permits(allow: &[IpNet], ip: IpAddr) -> bool {
    allow.iter().any(|net| net.contains(&ip)) || is_public(ip)
}

/// Whether an address is on the public internet: not loopback, private, link-local,
/// shared, multicast, reserved or unspecified (IPv4 inside IPv6 is judged as IPv4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        // Shared address space (RFC 6598, carrier-grade NAT).
        || (a == 100 && (64..128).contains(&b))
        // IETF protocol assignments, benchmarking, reserved.
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || (a == 198 && (18..20).contains(&b))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // Unique local (fc00::/7; cloud metadata lives at fd00:ec2::254).
        || (first & 0xfe00) == 0xfc00
        // Link-local and the old site-local.
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0
        // NAT64 (64:ff9b::/96) reaches IPv4 addresses: judge the embedded one.
        || (ip.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && {
            let [.., hi, lo] = ip.segments();
            !is_public_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)))
        }))
}

/// Resolves with the system resolver and keeps only the addresses the guard admits.
struct GuardedResolver {
    allow: Arc<[IpNet]>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let admitted: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|addr| permits(&allow, addr.ip()))
                .collect();
            if admitted.is_empty() {
                let refused = match resolved.first() {
                    Some(addr) => format!("{host} ({})", addr.ip()),
                    None => host,
                };
                return Err(Box::new(Refused(refused)) as Box<dyn std::error::Error + Send + Sync>);
            }
            let addrs: Addrs = Box::new(admitted.into_iter());
            Ok(addrs)
        })
    }
}

/// The guard's refusal in a failed request's error chain, if it is there.
pub fn refusal_in<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut source = Some(err);
    while let Some(err) = source {
        if let Some(refused) = err.downcast_ref::<Refused>() {
            return Some(refused);
        }
        source = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_refused() {
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public(refused.parse().unwrap()), "{refused}");
        }
        for public in [
            "93.184.215.14",
            "8.8.8.8",
            "2606:4700::1111",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn the_allow_list_admits_addresses_and_ranges() {
        let allow = Egress::parse_allow("127.0.0.1, 10.0.0.0/8").unwrap();
        assert!(permits(&allow, "127.0.0.1".parse().unwrap()));
        assert!(permits(&allow, "10.9.9.9".parse().unwrap()));
        assert!(!permits(&allow, "127.0.0.2".parse().unwrap()));
        assert!(Egress::parse_allow("localhost").is_err());
    }

    #[test]
    fn address_literals_in_urls_are_checked() {
        let egress = Egress::new(vec![]).unwrap();
        assert!(egress.check_url("http://127.0.0.1:8080/x").is_err());
        assert!(egress.check_url("http://[::1]/").is_err());
        assert!(egress.check_url("http://169.254.169.254/latest").is_err());
        assert!(egress.check_url("https://example.com/").is_ok());
    }
}
