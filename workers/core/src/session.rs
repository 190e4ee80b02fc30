//! Session Manager while isolated (`SessionManagerWhileIsolated`, off by default): the SSM
//! Agent of an isolated instance may reach its VPC's Session Manager interface endpoints over
//! HTTPS, so that an analyst can open a session on it. The isolation group then allows TCP 443
//! to each endpoint interface's address and nothing else out; the ACL measure leaves the
//! endpoints' subnets without denies of the instance's own addresses (ACLs are stateless: a
//! deny there drops the request one way and the answer the other).
//!
//! What it opens: the endpoints accept any API call signed by any credentials, so an attacker
//! on the instance can talk to SSM (register the agent elsewhere, write parameters in another
//! account). Endpoint policies that allow only the organization's accounts close that.
//! See docs/research/session-manager-while-isolated.md.

use crate::ec2::{Direction, Ec2, Peer, SecurityGroup, SessionEndpoint, SgRule};
use crate::error::{CordonError, Result};
use crate::net::is_ipv6_cidr;

/// The services the agent needs: `ssm` (registration, heartbeat), `ssmmessages` (the session
/// channels) and `ec2messages` (older agents' commands).
pub const SERVICES: [&str; 3] = ["ssm", "ssmmessages", "ec2messages"];

/// The endpoint service names of [`SERVICES`] in `region`, in both spellings: China's regions
/// prefix some services' names with `cn.`, and which ones is not documented for these three.
pub fn service_names(region: &str) -> Vec<String> {
    SERVICES
        .iter()
        .flat_map(|service| {
            [
                format!("com.amazonaws.{region}.{service}"),
                format!("cn.com.amazonaws.{region}.{service}"),
            ]
        })
        .collect()
}

/// The service an endpoint service name is for (`com.amazonaws.eu-west-1.ssm` → `ssm`), if one
/// of [`SERVICES`].
pub fn service_of(service_name: &str) -> Option<&'static str> {
    let last = service_name.rsplit('.').next()?;
    SERVICES.iter().copied().find(|service| *service == last)
}

/// An egress rule of the shape Session Manager's rules have: TCP 443 to one address. With the
/// feature on, the isolation group's rules are put right in two moves (the others before the
/// swaps, these after them, with the endpoints read), and the first leaves these alone.
pub fn is_session_rule(rule: &SgRule) -> bool {
    let single_address = match &rule.peer {
        Peer::Ipv4(cidr) => cidr.ends_with("/32"),
        Peer::Ipv6(cidr) => cidr.ends_with("/128"),
        Peer::Group(_) | Peer::PrefixList(_) => false,
    };
    rule.protocol == "tcp"
        && rule.from_port == Some(443)
        && rule.to_port == Some(443)
        && single_address
}

/// The egress rules that let the agent reach `endpoints`: TCP 443 to each address.
pub fn rules_for(endpoints: &[SessionEndpoint]) -> Vec<SgRule> {
    let mut rules: Vec<SgRule> = Vec::new();
    for address in endpoints.iter().flat_map(|e| &e.addresses) {
        let rule = SgRule::https(if is_ipv6_cidr(address) || address.contains(':') {
            Peer::Ipv6(format!("{address}/128"))
        } else {
            Peer::Ipv4(format!("{address}/32"))
        });
        if !rules.contains(&rule) {
            rules.push(rule);
        }
    }
    rules
}

/// What to revoke and authorize on `group` so that its Session Manager rules are exactly
/// `wanted` (its other egress rules are the first move's).
pub fn session_changes(group: &SecurityGroup, wanted: &[SgRule]) -> (Vec<SgRule>, Vec<SgRule>) {
    let actual: Vec<SgRule> = group
        .egress
        .iter()
        .filter(|rule| is_session_rule(rule))
        .cloned()
        .collect();
    crate::isolate::rule_changes(&actual, wanted)
}

/// The subnets that hold the endpoints' interfaces, each once.
pub fn endpoint_subnets(endpoints: &[SessionEndpoint]) -> Vec<String> {
    let mut subnets: Vec<String> = Vec::new();
    for subnet in endpoints.iter().flat_map(|e| &e.subnet_ids) {
        if !subnets.contains(subnet) {
            subnets.push(subnet.clone());
        }
    }
    subnets
}

/// What the report says of a VPC's endpoints.
pub fn note(vpc_id: &str, endpoints: &[SessionEndpoint]) -> String {
    let services: Vec<&str> = SERVICES
        .iter()
        .copied()
        .filter(|s| endpoints.iter().any(|e| e.service == *s))
        .collect();
    let missing: Vec<&str> = ["ssm", "ssmmessages"]
        .into_iter()
        .filter(|s| !services.contains(s))
        .collect();
    if missing.is_empty() {
        let list: Vec<String> = endpoints
            .iter()
            .map(|e| format!("{} ({}: {})", e.id, e.service, e.addresses.join(", ")))
            .collect();
        format!(
            "Session Manager: the isolation group of {vpc_id} lets the instance reach HTTPS on {} and nothing else out",
            list.join("; ")
        )
    } else {
        format!(
            "Session Manager: {vpc_id} has no available endpoint with private DNS for {}: no session can reach the instance while isolated",
            missing.join(" and ")
        )
    }
}

/// Gives the VPC's isolation group `isolation` exactly the rules that let the agent reach the
/// VPC's endpoints, and returns what the report says. Made after the swaps: the instance is
/// isolated already. When the endpoints cannot be read, every rule of their shape is revoked
/// instead: one that cannot be checked against an endpoint may be anyone's way out on 443.
pub async fn allow_sessions(ec2: &impl Ec2, vpc_id: &str, isolation: &str) -> Result<String> {
    let group = ec2
        .cordon_groups(&[vpc_id.to_string()])
        .await?
        .into_iter()
        .find(|g| g.id == isolation)
        .ok_or_else(|| CordonError::Ec2 {
            operation: "DescribeSecurityGroups".into(),
            code: "InvalidGroup.NotFound".into(),
            message: format!("the isolation group {isolation} of {vpc_id} was not found"),
        })?;
    let (endpoints, read) = match ec2.session_endpoints(vpc_id).await {
        Ok(endpoints) => (endpoints, Ok(())),
        Err(error) => (Vec::new(), Err(error)),
    };
    let (revoke, authorize) = session_changes(&group, &rules_for(&endpoints));
    for (direction_rules, revoking) in [(revoke, true), (authorize, false)] {
        if direction_rules.is_empty() {
            continue;
        }
        let changed = match revoking {
            true => {
                ec2.revoke(&group.id, Direction::Egress, &direction_rules)
                    .await
            }
            false => {
                ec2.authorize(&group.id, Direction::Egress, &direction_rules)
                    .await
            }
        };
        match changed {
            // Another execution in the VPC made the same change first.
            Err(CordonError::Ec2 { code, .. })
                if code == "InvalidPermission.Duplicate"
                    || code == "InvalidPermission.NotFound" => {}
            other => other?,
        }
    }
    read?;
    Ok(note(vpc_id, &endpoints))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(id: &str, service: &str, subnet: &str, addresses: &[&str]) -> SessionEndpoint {
        SessionEndpoint {
            id: id.into(),
            service: service.into(),
            subnet_ids: vec![subnet.into()],
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn the_three_services_are_named_in_both_spellings() {
        let names = service_names("cn-north-1");
        assert_eq!(names.len(), 6);
        assert!(names.contains(&"com.amazonaws.cn-north-1.ssmmessages".to_string()));
        assert!(names.contains(&"cn.com.amazonaws.cn-north-1.ssm".to_string()));
        assert_eq!(
            service_of("com.amazonaws.eu-west-1.ec2messages"),
            Some("ec2messages")
        );
        assert_eq!(service_of("com.amazonaws.eu-west-1.s3"), None);
    }

    #[test]
    fn each_endpoint_address_gets_https_alone() {
        let endpoints = [
            endpoint("vpce-1", "ssm", "subnet-e", &["10.0.9.10", "2600:1f18::10"]),
            endpoint(
                "vpce-2",
                "ssmmessages",
                "subnet-e",
                &["10.0.9.11", "10.0.9.10"],
            ),
        ];
        let rules = rules_for(&endpoints);
        assert_eq!(
            rules,
            [
                SgRule::https(Peer::Ipv4("10.0.9.10/32".into())),
                SgRule::https(Peer::Ipv6("2600:1f18::10/128".into())),
                SgRule::https(Peer::Ipv4("10.0.9.11/32".into())),
            ]
        );
        assert!(rules.iter().all(is_session_rule));
        assert_eq!(endpoint_subnets(&endpoints), ["subnet-e"]);
    }

    #[test]
    fn only_https_to_one_address_has_the_shape_of_a_session_rule() {
        assert!(!is_session_rule(&SgRule::all_traffic(Peer::Ipv4(
            "10.0.9.10/32".into()
        ))));
        assert!(!is_session_rule(&SgRule::https(Peer::Ipv4(
            "10.0.0.0/16".into()
        ))));
        assert!(!is_session_rule(&SgRule::https(Peer::Ipv4(
            "0.0.0.0/0".into()
        ))));
        assert!(!is_session_rule(&SgRule::https(Peer::Group("sg-1".into()))));
        let mut ssh = SgRule::https(Peer::Ipv4("10.0.9.10/32".into()));
        ssh.from_port = Some(22);
        ssh.to_port = Some(22);
        assert!(!is_session_rule(&ssh));
    }

    #[test]
    fn a_session_rule_to_an_address_that_is_no_endpoint_is_revoked() {
        let group = SecurityGroup {
            id: "sg-isolation".into(),
            vpc_id: "vpc-1".into(),
            name: "cordon-isolation-vpc-1".into(),
            role: Some(crate::ec2::GroupRole::Isolation),
            ingress: vec![],
            egress: vec![
                SgRule::https(Peer::Ipv4("203.0.113.9/32".into())),
                SgRule::https(Peer::Ipv4("10.0.9.10/32".into())),
            ],
            tags: vec![],
        };
        let wanted = rules_for(&[endpoint(
            "vpce-1",
            "ssm",
            "subnet-e",
            &["10.0.9.10", "10.0.9.12"],
        )]);
        let (revoke, authorize) = session_changes(&group, &wanted);
        assert_eq!(revoke, [SgRule::https(Peer::Ipv4("203.0.113.9/32".into()))]);
        assert_eq!(
            authorize,
            [SgRule::https(Peer::Ipv4("10.0.9.12/32".into()))]
        );
    }

    #[test]
    fn the_note_says_when_a_vpc_has_no_endpoint_a_session_needs() {
        let both = [
            endpoint("vpce-1", "ssm", "subnet-e", &["10.0.9.10"]),
            endpoint("vpce-2", "ssmmessages", "subnet-e", &["10.0.9.11"]),
        ];
        assert!(note("vpc-1", &both).contains("vpce-1 (ssm: 10.0.9.10)"));
        let note = note("vpc-1", &both[..1]);
        assert!(
            note.contains("no available endpoint with private DNS for ssmmessages"),
            "{note}"
        );
    }
}
