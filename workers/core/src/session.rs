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

/// The calls [`allow_sessions`] makes at most: the group, the endpoints and their interfaces,
/// a revoke and an authorize.
pub const CALLS: u32 = 5;

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

/// The endpoints a session can use: all of them when the VPC has both `ssm` and
/// `ssmmessages` (a session needs both), none otherwise. An endpoint alone (one anyone who may
/// create endpoints could add) opens nothing.
pub fn usable(endpoints: &[SessionEndpoint]) -> &[SessionEndpoint] {
    let has = |service: &str| endpoints.iter().any(|e| e.service == service);
    match has("ssm") && has("ssmmessages") {
        true => endpoints,
        false => &[],
    }
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
/// isolated already. When the endpoints cannot be read, every rule of that shape is revoked
/// instead: one that cannot be checked against an endpoint may be anyone's way out on 443.
///
/// An error means a rule that should go may still be there (the group could not be read, or a
/// revoke was refused): the isolation is then partial. An authorize that fails only leaves
/// the group more closed than asked, and the note says sessions cannot reach the instance.
pub async fn allow_sessions(ec2: &impl Ec2, vpc_id: &str, isolation: &str) -> Result<String> {
    let group = ec2
        .cordon_groups(&[vpc_id.to_string()])
        .await?
        .into_iter()
        .find(|g| g.id == isolation)
        // Made moments ago, perhaps: EC2 may not list it yet, and the step's retry reads again.
        .ok_or_else(|| CordonError::Unavailable {
            operation: "DescribeSecurityGroups".into(),
            message: format!("the isolation group {isolation} of {vpc_id} is not listed yet"),
        })?;
    let (endpoints, unread) = match ec2.session_endpoints(vpc_id).await {
        Ok(endpoints) => (endpoints, None),
        Err(error) => (Vec::new(), Some(error)),
    };
    let (revoke, authorize) = session_changes(&group, &rules_for(usable(&endpoints)));
    change_each(ec2, &group.id, &revoke, true).await?;
    if let Some(error) = unread {
        return Ok(format!(
            "Session Manager: {vpc_id}'s endpoints could not be read ({error}): the isolation group lets nothing out, and no session can reach the instance until the next isolation in {vpc_id}"
        ));
    }
    if let Err(error) = change_each(ec2, &group.id, &authorize, false).await {
        return Ok(format!(
            "Session Manager: the isolation group of {vpc_id} could not be given its endpoints' rules ({error}): no session can reach the instance until the next isolation in {vpc_id}"
        ));
    }
    Ok(note(vpc_id, &endpoints))
}

/// Revokes (or authorizes) `rules` on the group's egress. EC2 refuses a whole call when one of
/// its rules is already gone (or already there), as when another execution in the VPC made
/// the same change first: then each rule is changed alone, and such refusals are passed over.
async fn change_each(
    ec2: &impl Ec2,
    group_id: &str,
    rules: &[SgRule],
    revoking: bool,
) -> Result<()> {
    let raced = |error: &CordonError| {
        matches!(error, CordonError::Ec2 { code, .. }
            if code == "InvalidPermission.Duplicate" || code == "InvalidPermission.NotFound")
    };
    let change = |rules: Vec<SgRule>| async move {
        match revoking {
            true => ec2.revoke(group_id, Direction::Egress, &rules).await,
            false => ec2.authorize(group_id, Direction::Egress, &rules).await,
        }
    };
    if rules.is_empty() {
        return Ok(());
    }
    match change(rules.to_vec()).await {
        Err(error) if raced(&error) => {
            for rule in rules {
                match change(vec![rule.clone()]).await {
                    Err(error) if raced(&error) => {}
                    other => other?,
                }
            }
            Ok(())
        }
        other => other,
    }
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
    fn an_endpoint_alone_opens_nothing() {
        let ssm = endpoint("vpce-1", "ssm", "subnet-e", &["10.0.9.10"]);
        let messages = endpoint("vpce-2", "ssmmessages", "subnet-e", &["10.0.9.11"]);
        let only = endpoint("vpce-3", "ec2messages", "subnet-f", &["10.0.9.12"]);
        assert!(usable(std::slice::from_ref(&ssm)).is_empty());
        assert!(usable(&[only.clone(), messages.clone()]).is_empty());
        assert_eq!(usable(&[ssm.clone(), messages.clone()]).len(), 2);
        assert_eq!(usable(&[ssm, messages, only]).len(), 3);
    }

    fn isolation_group(ec2: &crate::fake::FakeEc2, egress: Vec<SgRule>) -> String {
        let group = crate::fake::block_on(ec2.create_cordon_group(
            "vpc-1",
            crate::ec2::GroupRole::Isolation,
            None,
        ))
        .unwrap();
        ec2.with(|s| s.groups.get_mut(&group.id).unwrap().egress = egress);
        group.id
    }

    /// What may leave a rule that should go is an error (the isolation is partial); what only
    /// leaves the group closed is a note.
    #[test]
    fn a_rule_that_may_remain_is_an_error_and_a_closed_group_a_note() {
        use crate::fake::block_on;
        use crate::fake::FakeEc2;
        let stray = SgRule::https(Peer::Ipv4("203.0.113.9/32".into()));
        let refused = |operation: &str| {
            (
                operation.to_string(),
                CordonError::Ec2 {
                    operation: operation.into(),
                    code: "UnauthorizedOperation".into(),
                    message: "refused".into(),
                },
            )
        };
        for (failing, error_expected) in [
            ("DescribeSecurityGroups", true),
            ("RevokeSecurityGroup", true),
            ("DescribeVpcEndpoints", false),
        ] {
            let ec2 = FakeEc2::standard();
            let group = isolation_group(&ec2, vec![stray.clone()]);
            ec2.with(|s| s.failures.push(refused(failing)));
            let outcome = block_on(allow_sessions(&ec2, "vpc-1", &group));
            assert_eq!(outcome.is_err(), error_expected, "{failing}: {outcome:?}");
            if failing == "DescribeVpcEndpoints" {
                // Unread endpoints: every rule of their shape goes.
                assert!(ec2.with(|s| s.groups[&group].egress.is_empty()));
            }
        }
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
