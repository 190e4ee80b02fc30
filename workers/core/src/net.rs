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

/// An IPv4-mapped IPv6 address (`::ffff:10.0.0.5`) is the IPv4 address it carries: EC2 and
/// the ACLs see that address, and the checks must see it too.
pub fn unmapped(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(address),
        v4 => v4,
    }
}

/// Whether `cidr` holds `address` (never across families; a CIDR that does not parse holds
/// nothing).
pub fn cidr_contains(cidr: &str, address: IpAddr) -> bool {
    let Ok((network, prefix)) = parse_cidr(cidr) else {
        return false;
    };
    match (network, address) {
        (IpAddr::V4(network), IpAddr::V4(address)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(network) & mask == u32::from(address) & mask
        }
        (IpAddr::V6(network), IpAddr::V6(address)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(network) & mask == u128::from(address) & mask
        }
        _ => false,
    }
}

/// Whether two CIDRs share an address: one holds the other's network address at the shorter
/// of the two prefixes (never across families; a CIDR that does not parse overlaps nothing).
pub fn cidrs_overlap(a: &str, b: &str) -> bool {
    let (Ok((net_a, prefix_a)), Ok((net_b, prefix_b))) = (parse_cidr(a), parse_cidr(b)) else {
        return false;
    };
    let (wider, narrower_network) = if prefix_a <= prefix_b {
        (a, net_b)
    } else {
        (b, net_a)
    };
    cidr_contains(wider, narrower_network)
}

/// Whether `wide` holds every address of `narrow` (same family, a prefix no longer).
pub fn cidr_holds(wide: &str, narrow: &str) -> bool {
    match (parse_cidr(wide), parse_cidr(narrow)) {
        (Ok((_, wide_prefix)), Ok((network, narrow_prefix))) => {
            wide_prefix <= narrow_prefix && cidr_contains(wide, network)
        }
        _ => false,
    }
}

/// Private and shared address space: RFC 1918, RFC 6598 (carrier-grade NAT) and IPv6 unique
/// local addresses. Named, for the reason a deny was not made.
pub fn private_range(address: IpAddr) -> Option<&'static str> {
    [
        ("10.0.0.0/8", "private (RFC 1918)"),
        ("172.16.0.0/12", "private (RFC 1918)"),
        ("192.168.0.0/16", "private (RFC 1918)"),
        ("100.64.0.0/10", "shared address space (RFC 6598)"),
        ("fc00::/7", "IPv6 unique local (RFC 4193)"),
    ]
    .into_iter()
    .find(|(cidr, _)| cidr_contains(cidr, address))
    .map(|(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_hold_their_own_family_only() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(cidr_contains("10.0.0.0/16", ip("10.0.255.1")));
        assert!(!cidr_contains("10.0.0.0/16", ip("10.1.0.1")));
        assert!(cidr_contains("0.0.0.0/0", ip("203.0.113.9")));
        assert!(cidr_contains("2001:db8:1::/56", ip("2001:db8:1:ff::1")));
        assert!(!cidr_contains("2001:db8:1::/56", ip("2001:db8:1:100::1")));
        assert!(!cidr_contains("10.0.0.0/8", ip("::ffff:10.0.0.1")));
        assert!(cidr_contains("10.0.0.0/8", unmapped(ip("::ffff:10.0.0.1"))));
        assert!(!cidr_contains("not a cidr", ip("10.0.0.1")));
        assert_eq!(unmapped(ip("2001:db8::1")), ip("2001:db8::1"));
    }

    #[test]
    fn cidrs_overlap_when_either_holds_the_other() {
        assert!(cidrs_overlap("10.0.0.0/16", "10.0.5.0/24"));
        assert!(cidrs_overlap("10.0.5.0/24", "10.0.0.0/16"));
        assert!(cidrs_overlap("10.0.5.9/32", "10.0.5.0/24"));
        assert!(cidrs_overlap("10.0.5.0/24", "10.0.5.0/24"));
        assert!(!cidrs_overlap("10.0.5.0/24", "10.0.6.0/24"));
        assert!(!cidrs_overlap("10.0.0.0/16", "10.1.0.0/16"));
        assert!(cidrs_overlap("2001:db8:1::/56", "2001:db8:1:5::/64"));
        assert!(!cidrs_overlap("2001:db8:1::/56", "10.0.0.0/8"));
        assert!(!cidrs_overlap("not a cidr", "10.0.0.0/8"));
        assert!(cidr_holds("10.0.0.0/8", "10.0.0.0/16"));
        assert!(cidr_holds("10.0.0.0/16", "10.0.0.0/16"));
        assert!(!cidr_holds("10.0.5.0/24", "10.0.0.0/16"));
        assert!(!cidr_holds("10.0.0.0/8", "2001:db8::/56"));
    }

    #[test]
    fn private_and_shared_ranges_are_named() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(private_range(ip("172.31.0.2")), Some("private (RFC 1918)"));
        assert_eq!(private_range(ip("172.32.0.2")), None);
        assert_eq!(
            private_range(ip("100.100.0.1")),
            Some("shared address space (RFC 6598)")
        );
        assert_eq!(
            private_range(ip("fd12::1")),
            Some("IPv6 unique local (RFC 4193)")
        );
        assert_eq!(private_range(ip("198.51.100.7")), None);
    }

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
