//! Addresses and CIDRs as EC2 writes them.

use std::net::IpAddr;

/// The one-address CIDR of an address: `/32` for IPv4, `/128` for IPv6.
pub fn host_cidr(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => format!("{v4}/32"),
        IpAddr::V6(v6) => format!("{v6}/128"),
    }
}

/// Parses `a.b.c.d/n` or `x::y/n`, checking the prefix length fits the family.
pub fn parse_cidr(text: &str) -> Result<(IpAddr, u8), String> {
    let (address, prefix) = text.trim().split_once('/').ok_or_else(|| {
        format!("{text:?} is not a CIDR: expected ADDRESS/PREFIX, e.g. 10.0.0.0/24")
    })?;
    let address: IpAddr = address
        .parse()
        .map_err(|_| format!("{text:?} is not a CIDR: {address:?} is not an IP address"))?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= max)
        .ok_or_else(|| format!("{text:?} is not a CIDR: the prefix must be 0..={max}"))?;
    Ok((address, prefix))
}

pub fn is_ipv6_cidr(cidr: &str) -> bool {
    cidr.contains(':')
}

/// Addresses that name no remote host worth a deny rule (GuardDuty's sample findings use
/// 0.0.0.0; a deny for loopback, link-local or multicast addresses matches no VPC traffic).
pub fn is_routable_remote(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => {
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast())
        }
        IpAddr::V6(v6) => {
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xffc0) == 0xfe80)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_cidrs_are_single_addresses() {
        assert_eq!(host_cidr("10.0.1.5".parse().unwrap()), "10.0.1.5/32");
        assert_eq!(host_cidr("2001:db8::5".parse().unwrap()), "2001:db8::5/128");
    }

    #[test]
    fn cidrs_are_checked_per_family() {
        assert!(parse_cidr("10.0.0.0/8").is_ok());
        assert!(parse_cidr("2001:db8::/56").is_ok());
        assert!(parse_cidr("10.0.0.0/33").unwrap_err().contains("0..=32"));
        assert!(parse_cidr("10.0.0.0")
            .unwrap_err()
            .contains("ADDRESS/PREFIX"));
        assert!(parse_cidr("ten/8")
            .unwrap_err()
            .contains("not an IP address"));
    }

    #[test]
    fn placeholder_and_local_addresses_are_not_remote_hosts() {
        for skipped in [
            "0.0.0.0",
            "127.0.0.1",
            "169.254.169.254",
            "224.0.0.1",
            "::",
            "::1",
            "fe80::1",
        ] {
            assert!(!is_routable_remote(skipped.parse().unwrap()), "{skipped}");
        }
        for kept in ["198.51.100.7", "10.0.2.9", "2001:db8::9"] {
            assert!(is_routable_remote(kept.parse().unwrap()), "{kept}");
        }
    }
}
