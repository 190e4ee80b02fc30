//! `cordon demo`: a compromised instance on a local emulator, taken through the real workflow
//! (the state machine on moto, the email, the approval page), with what a security engineer
//! would look at before, during and after. The story goes to stderr; the snapshots, as JSON,
//! to stdout.

use std::collections::BTreeMap;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cordon::local::{finding_in_vpc, Moto, World};
use cordon::runner::{approval_links_in, DecisionMode, Runner};
use cordon_core::config::Config;
use cordon_core::CordonError;
use serde::Serialize;
use serde_json::json;

/// What one moment looks like: each interface's groups (by name) and each ACL's denies.
#[derive(Debug, PartialEq, Serialize)]
struct Snapshot {
    interfaces: BTreeMap<String, Vec<String>>,
    acl_denies: BTreeMap<String, Vec<String>>,
    /// The instance's place in its Auto Scaling group, and the group's size.
    auto_scaling: String,
    /// The instance role's tags and managed policies.
    credentials: String,
    /// Each volume's device and whether it goes with the instance on termination. (The
    /// evidence snapshots, which stay, are shown apart: they are not the instance's state.)
    volumes: Vec<String>,
    /// The target group the instance serves in directly (not through its Auto Scaling group),
    /// and its targets.
    load_balancers: String,
}

/// The demo instance's Auto Scaling group.
const GROUP: &str = "demo-web";
/// The demo instance's role (and instance profile).
const ROLE: &str = "demo-web";
/// The target group the demo instance serves its admin port in, registered by hand.
const TARGET_GROUP: &str = "demo-admin";

struct Demo {
    world: World,
    vpc: String,
    instance: String,
    enis: Vec<String>,
    acls: Vec<(String, String)>,
    target_group: String,
}

fn is_loopback(endpoint: &str) -> bool {
    let host = endpoint.split("://").nth(1).unwrap_or(endpoint);
    ["127.0.0.1", "localhost", "[::1]"]
        .iter()
        .any(|local| host.starts_with(local))
}

pub async fn run(
    endpoint: Option<&str>,
    decision: DecisionMode,
    approval_timeout: u64,
) -> Result<u8, CordonError> {
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
    // The runner configures moto to execute state machines: before anything is created.
    let runner = Runner::start(&endpoint, Config::default()).await?;
    let sdk = cordon::local::emulator_config(&endpoint);
    let demo = build(World::from_sdk(&sdk)).await;

    let event = json!({"version": "0", "id": "cordon-demo", "source": "aws.guardduty", "detail-type": "GuardDuty Finding",
        "account": "123456789012", "region": cordon::local::REGION, "resources": [],
        "detail": finding_in_vpc(&demo.instance, &demo.vpc, 8.0, "198.51.100.23")});
    eprintln!(
        "demo: GuardDuty reports Backdoor:EC2/C&CActivity.B (severity 8) on {}, talking to 198.51.100.23",
        demo.instance
    );
    let before = snapshot(&demo).await;
    print_snapshot("before", &before);

    let done = AtomicBool::new(false);
    let run = async {
        let report = runner.run(&event, decision, approval_timeout).await;
        done.store(true, Ordering::SeqCst);
        report
    };
    // While the workflow waits for a decision: the email, the link, the isolated instance.
    let watch = async {
        while !done.load(Ordering::SeqCst) {
            if let Ok(messages) = runner.messages().await {
                if let Some((subject, body)) = messages
                    .iter()
                    .find(|(_, body)| approval_links_in(body).is_some())
                {
                    eprintln!("\ndemo: --- the email ---\nSubject: {subject}\n\n{body}");
                    let during = snapshot(&demo).await;
                    print_snapshot("isolated, waiting for a decision", &during);
                    if decision == DecisionMode::Wait {
                        let (approve, _) = approval_links_in(body).expect("checked above");
                        eprintln!("demo: open this link in a browser to decide (or wait {approval_timeout} s):\n  {approve}\n");
                    }
                    return Some(during);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    };
    let (report, during) = tokio::join!(run, watch);
    let report = report?;
    let after = snapshot(&demo).await;
    print_snapshot(&format!("after: {}", report.outcome), &after);
    let evidence: Vec<String> = demo
        .world
        .evidence_of(&demo.instance)
        .await
        .into_iter()
        .map(|(snapshot, (volume, _))| format!("{snapshot} of {volume}"))
        .collect();
    eprintln!(
        "demo: evidence kept: {}",
        if evidence.is_empty() {
            "no snapshot".to_string()
        } else {
            evidence.join(", ")
        }
    );
    let exact = after == before;
    eprintln!(
        "demo: path {}\ndemo: {}",
        report.states.join(" -> "),
        match (report.outcome.as_str(), exact) {
            ("restored", true) => "restored exactly as it was: yes",
            ("restored", false) => "restored, but NOT exactly as it was",
            _ => "the instance stays isolated",
        }
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "instance_id": demo.instance,
            "execution_arn": report.execution_arn,
            "states": report.states,
            "outcome": report.outcome,
            "before": before, "during": during, "after": after,
            "evidence": evidence,
            "restored_exactly": report.outcome == "restored" && exact,
        }))
        .expect("serialises")
    );
    Ok(
        if report.outcome == "failed" || (report.outcome == "restored" && !exact) {
            1
        } else {
            0
        },
    )
}

/// A VPC with a public subnet (NAT side, default ACL), an app and a data subnet with ACLs of
/// their own, and an instance with one interface in each of app and data, a role of its own
/// and a data volume, serving in an Auto Scaling group beside an instance of the group's own,
/// and on its admin port in a target group it was registered in by hand.
async fn build(world: World) -> Demo {
    eprintln!("demo: building a VPC with three subnets and a two-interface instance with a role and a data volume, in an Auto Scaling group and a target group");
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
    world.auto_scaling_group(GROUP, &app, &instance).await;
    // Cordon's stack deploys its deny policy; the instance's role is the application's.
    world.deploy_credentials_deny().await;
    world.instance_role(ROLE).await;
    world.give_profile(&instance, ROLE).await;
    world.attach_volume(&instance, "/dev/sdf").await;
    let target_group = world.target_group(&vpc, TARGET_GROUP, 9000).await;
    world.register_target(&target_group, &instance, 9000).await;
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
        target_group,
    }
}

async fn snapshot(demo: &Demo) -> Snapshot {
    let names = demo.world.group_names(&demo.vpc).await;
    let mut interfaces = BTreeMap::new();
    for (index, eni) in demo.enis.iter().enumerate() {
        let groups = demo.world.eni_groups(eni).await;
        interfaces.insert(
            format!("eth{index} {eni}"),
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
    let group = demo.world.group_state(GROUP).await;
    let (state, protected) = group
        .instances
        .get(&demo.instance)
        .cloned()
        .unwrap_or_else(|| ("not in the group".into(), false));
    // The group's other instances by count only: which one it retires after a restore is its
    // termination policy's choice.
    let auto_scaling = format!(
        "{GROUP}: {state}{}; desired capacity {}, {} serving",
        if protected {
            ", protected from scale-in"
        } else {
            ""
        },
        group.desired,
        group.serving()
    );
    let role = demo.world.role_state(ROLE).await;
    let short = |arn: &String| arn.rsplit('/').next().unwrap_or(arn).to_string();
    let credentials = format!(
        "{ROLE}: tags {}; policies {}",
        role.tags
            .iter()
            .map(|(k, v)| format!("{k}={}", short(v)))
            .collect::<Vec<_>>()
            .join(", "),
        role.policies
            .iter()
            .map(short)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let volumes = demo
        .world
        .volumes(&demo.instance)
        .await
        .into_iter()
        .map(|(device, (volume, delete))| {
            format!(
                "{device} {volume}: {}",
                if delete {
                    "deleted on termination"
                } else {
                    "kept on termination"
                }
            )
        })
        .collect();
    let targets = demo.world.targets(&demo.target_group).await;
    let load_balancers = format!(
        "{TARGET_GROUP}: {}",
        if targets.is_empty() {
            "no target".to_string()
        } else {
            targets
                .iter()
                .map(|(id, port)| format!("{id} port {port}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    Snapshot {
        interfaces,
        acl_denies,
        auto_scaling,
        credentials,
        volumes,
        load_balancers,
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
    eprintln!("  Auto Scaling group {}", snapshot.auto_scaling);
    eprintln!("  Role {}", snapshot.credentials);
    for volume in &snapshot.volumes {
        eprintln!("  Volume {volume}");
    }
    eprintln!("  Target group {}", snapshot.load_balancers);
    eprintln!();
}
