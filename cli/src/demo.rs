//! `cordon demo`: a compromised instance on a local emulator, contained and given back, with
//! what a security engineer would look at before, during and after. The story goes to stderr;
//! the snapshots, as JSON, to stdout.

use std::collections::BTreeMap;

use cordon::local::{finding_for, Moto, World};
use cordon_core::aws::AwsContext;
use cordon_core::capture::FindingSummary;
use cordon_core::config::Config;
use cordon_core::finding::{findings_in_value, ParsedFinding};
use cordon_core::restore::{restore, RestoreStatus};
use cordon_core::CordonError;
use serde::Serialize;
use serde_json::json;

/// What one moment looks like: each interface's groups (by name) and each ACL's denies.
#[derive(Debug, PartialEq, Serialize)]
struct Snapshot {
    interfaces: BTreeMap<String, Vec<String>>,
    acl_denies: BTreeMap<String, Vec<String>>,
}

struct Demo {
    world: World,
    vpc: String,
    instance: String,
    enis: Vec<String>,
    acls: Vec<(String, String)>,
}

fn is_loopback(endpoint: &str) -> bool {
    let host = endpoint.split("://").nth(1).unwrap_or(endpoint);
    ["127.0.0.1", "localhost", "[::1]"]
        .iter()
        .any(|local| host.starts_with(local))
}

pub async fn run(endpoint: Option<&str>) -> Result<u8, CordonError> {
    let own_moto;
    let endpoint = match endpoint {
        Some(url) if is_loopback(url) => url.to_string(),
        Some(url) => {
            return Err(CordonError::InvalidInput(format!(
                "the demo builds and isolates resources; it only runs against a local emulator, not {url}"
            )))
        }
        None => {
            eprintln!("demo: starting the local AWS emulator (moto)");
            own_moto = Moto::start().map_err(CordonError::InvalidConfiguration)?;
            own_moto.endpoint.clone()
        }
    };
    let sdk = cordon::local::emulator_config(&endpoint);
    let ec2 = AwsContext::from_sdk_config(sdk.clone()).ec2(None);
    let demo = build(World {
        ec2: aws_sdk_ec2::Client::new(&sdk),
    })
    .await;

    let event = json!({"version": "0", "source": "aws.guardduty", "detail-type": "GuardDuty Finding",
        "detail": finding_for(&demo.instance, 8.0, "198.51.100.23")});
    let Some(ParsedFinding::Valid(finding)) = findings_in_value(&event).pop() else {
        unreachable!("the demo's finding is valid")
    };
    let config = Config::default();
    let decision = config.policy.decide(&finding);
    eprintln!(
        "demo: GuardDuty reports {} (severity {}) on {}, talking to {}\ndemo: decision: {:?}, {}",
        finding.finding_type,
        finding.severity,
        demo.instance,
        finding.remote_addresses[0],
        decision.verdict,
        decision.reason
    );

    let before = snapshot(&demo).await;
    print_snapshot("before", &before);
    let contained = crate::contain(
        &ec2,
        &demo.instance,
        Some(FindingSummary::from(&*finding)),
        &finding.remote_addresses,
        &config,
    )
    .await?;
    let during = snapshot(&demo).await;
    print_snapshot(&format!("isolated ({})", contained.status), &during);
    eprintln!("demo: restoring (in the workflow, an analyst's approval starts this)");
    let restored = restore(&ec2, &demo.instance, None, &[]).await?;
    let after = snapshot(&demo).await;
    print_snapshot(&format!("restored ({:?})", restored.status), &after);
    let exact = after == before && restored.status == RestoreStatus::Restored;
    eprintln!(
        "demo: restored exactly as it was: {}",
        if exact { "yes" } else { "NO" }
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "instance_id": demo.instance,
            "finding": FindingSummary::from(&*finding),
            "before": before, "during": during, "after": after,
            "containment": contained.status, "restore": restored.status,
            "restored_exactly": exact,
        }))
        .expect("serialises")
    );
    Ok(if exact { 0 } else { 1 })
}

/// A VPC with a public subnet (NAT side, default ACL), an app and a data subnet with ACLs of
/// their own, and an instance with one interface in each of app and data.
async fn build(world: World) -> Demo {
    eprintln!("demo: building a VPC with three subnets and a two-interface instance");
    let vpc = world.vpc("10.0.0.0/16", false).await;
    let public = world.subnet(&vpc, "10.0.0.0/24", None).await;
    let app = world.subnet(&vpc, "10.0.1.0/24", None).await;
    let data = world.subnet(&vpc, "10.0.2.0/24", None).await;
    let allow_all = [(100, false, "0.0.0.0/0"), (100, true, "0.0.0.0/0")];
    let app_acl = world.custom_acl(&vpc, &[&app], &allow_all).await;
    let data_acl = world.custom_acl(&vpc, &[&data], &allow_all).await;
    let public_acl = world.acl_of(&public).await;
    let web = world.security_group(&vpc, "web", 443).await;
    let ssh = world.security_group(&vpc, "ssh", 22).await;
    let db = world.security_group(&vpc, "db", 5432).await;
    let (instance, enis) = world
        .instance(&[(&app, &[&web, &ssh]), (&data, &[&db])], false)
        .await;
    let acls = vec![
        ("public".into(), public_acl),
        ("app".into(), app_acl),
        ("data".into(), data_acl),
    ];
    Demo {
        world,
        vpc,
        instance,
        enis,
        acls,
    }
}

async fn snapshot(demo: &Demo) -> Snapshot {
    let names = demo.world.group_names(&demo.vpc).await;
    let mut interfaces = BTreeMap::new();
    for eni in &demo.enis {
        let groups = demo.world.eni_groups(eni).await;
        interfaces.insert(
            eni.clone(),
            groups
                .iter()
                .map(|g| format!("{g} ({})", names.get(g).map(String::as_str).unwrap_or("?")))
                .collect(),
        );
    }
    let mut acl_denies = BTreeMap::new();
    for (subnet, acl) in &demo.acls {
        let denies = demo.world.denies(acl).await;
        let lines = denies
            .iter()
            .map(|(egress, number, cidr)| {
                format!(
                    "{} {number} deny {cidr}",
                    if *egress { "out" } else { "in" }
                )
            })
            .collect();
        acl_denies.insert(format!("{subnet} subnet ({acl})"), lines);
    }
    Snapshot {
        interfaces,
        acl_denies,
    }
}

fn print_snapshot(moment: &str, snapshot: &Snapshot) {
    eprintln!("\ndemo: --- {moment} ---");
    for (eni, groups) in &snapshot.interfaces {
        eprintln!("  {eni}: {}", groups.join(", "));
    }
    for (acl, denies) in &snapshot.acl_denies {
        let shown = if denies.is_empty() {
            "no Cordon deny".to_string()
        } else {
            denies.join("; ")
        };
        eprintln!("  {acl}: {shown}");
    }
    eprintln!();
}
