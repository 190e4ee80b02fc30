//! The measures beyond the network under faults and kills: instances in an Auto Scaling
//! group, registered in a target group, with an instance profile and two volumes, contained
//! and restored while Auto Scaling, IAM and Elastic Load Balancing fail as EC2 does (rows 9
//! and 10 of RELIABILITY.md).

use super::*;
use cordon::local::{GroupState, RoleState};

/// An instance with something for every measure to do, each thing its own.
struct Equipped {
    instance: String,
    eni: String,
    /// Its only original security group.
    web: String,
    group: String,
    target_group: String,
    role: String,
}

/// In a VPC of its own (`n` picks the block): in Auto Scaling group `web-n`, registered on
/// port 9000 of target group `admin-n`, with role `web-n` through a profile, and a second
/// volume.
async fn equipped(world: &World, n: usize) -> Equipped {
    let vpc = world.vpc(&format!("10.{n}.0.0/16"), false).await;
    let subnet = world.subnet(&vpc, &format!("10.{n}.1.0/24"), None).await;
    let web = world.security_group(&vpc, "web", 443).await;
    let (instance, enis) = world.instance(&[(&subnet, &[&web])], false).await;
    let (group, role) = (format!("web-{n}"), format!("web-{n}"));
    world.auto_scaling_group(&group, &subnet, &instance).await;
    let target_group = world.target_group(&vpc, &format!("admin-{n}"), 9000).await;
    world.register_target(&target_group, &instance, 9000).await;
    world.instance_role(&role).await;
    world.give_profile(&instance, &role).await;
    world.attach_volume(&instance, "/dev/sdf").await;
    Equipped {
        instance,
        eni: enis[0].clone(),
        web,
        group,
        target_group,
        role,
    }
}

/// What restore must give back beyond the network, and the interface's groups.
#[derive(Debug, PartialEq)]
struct Given {
    groups: Vec<String>,
    desired: i32,
    /// The instance's lifecycle state and scale-in protection.
    lifecycle: Option<(String, bool)>,
    serving: usize,
    targets: Vec<(String, i32)>,
    role: RoleState,
    volumes: BTreeMap<String, (String, bool)>,
}

async fn given(world: &World, e: &Equipped) -> Given {
    let group: GroupState = world.group_state(&e.group).await;
    Given {
        groups: world.eni_groups(&e.eni).await,
        desired: group.desired,
        lifecycle: group.instances.get(&e.instance).cloned(),
        serving: group.serving(),
        targets: world.targets(&e.target_group).await,
        role: world.role_state(&e.role).await,
        volumes: world.volumes(&e.instance).await,
    }
}

/// Whether every measure is in force on the instance: the interface on Cordon's groups only,
/// in Standby, out of its target group, its role's sessions cut (a slot naming it, the deny
/// attached), and exactly one evidence snapshot per volume.
async fn in_force(world: &World, e: &Equipped) -> Result<(), String> {
    let groups = world.eni_groups(&e.eni).await;
    let lifecycle = world
        .group_state(&e.group)
        .await
        .instances
        .get(&e.instance)
        .cloned();
    let targets = world.targets(&e.target_group).await;
    let role = world.role_state(&e.role).await;
    let cut = role.tags.iter().any(|(key, value)| {
        key.starts_with("cordon-quarantine-") && value.ends_with(&format!("/{}", e.instance))
    }) && role.policies.iter().any(|p| p.contains("cordon-deny"));
    let evidence = world.evidence_of(&e.instance).await.len();
    let ok = !groups.contains(&e.web)
        && lifecycle
            .as_ref()
            .is_some_and(|(state, _)| state == "Standby")
        && targets.is_empty()
        && cut
        && evidence == 2;
    ok.then_some(()).ok_or(format!(
        "groups {groups:?}, lifecycle {lifecycle:?}, targets {targets:?}, role {role:?}, {evidence} snapshots"
    ))
}

fn finding_file(dir: &Path, instance: &str) -> PathBuf {
    let path = dir.join(format!("{instance}.json"));
    std::fs::write(
        &path,
        finding_for(instance, 8.0, "198.51.100.7").to_string(),
    )
    .unwrap();
    path
}

/// Every measure's result in a `cordon run` report is `done`, without errors.
fn every_measure_done(report: &Value) -> bool {
    let reached = report["states"]
        .as_array()
        .is_some_and(|s| s.iter().any(|s| s == "RequestApproval"));
    reached
        && cordon_core::measures::MEASURES.iter().all(|measure| {
            let result = &report["containment"][measure.id];
            result["status"] == "done" && result["errors"].as_array().is_none_or(|e| e.is_empty())
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_30_percent_faults_every_measure_contains_and_is_given_back_exactly() {
    let runs = size("RELIABILITY_MEASURE_RUNS", 4);
    let concurrency = size("RELIABILITY_CONCURRENCY", 4);
    let percent = size("RELIABILITY_FAULT_PERCENT", 30);
    let moto = Moto::start();
    let world = moto.world();
    world.deploy_credentials_deny().await;
    let dir = temp_dir("measure-faults");

    // One workflow without faults: the calls it needs, per service.
    let clean = FaultProxy::start(&moto.endpoint, FaultPlan::none()).await;
    let reference = equipped(&world, 200).await;
    let path = finding_file(&dir, &reference.instance);
    let output = cordon(
        &clean.endpoint,
        &[
            "run",
            "--endpoint-url",
            &clean.endpoint,
            "--finding",
            path.to_str().unwrap(),
            "--decision",
            "approve",
        ],
    )
    .await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let per_workflow = clean.calls_by_service();

    let mut members = Vec::new();
    for n in 0..runs {
        members.push(equipped(&world, 100 + n).await);
    }
    let mut before = Vec::new();
    for member in &members {
        before.push(given(&world, member).await);
    }
    let proxy = FaultProxy::start(
        &moto.endpoint,
        FaultPlan::failing(percent as f64 / 100.0, 7),
    )
    .await;
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::new();
    for member in &members {
        let path = finding_file(&dir, &member.instance)
            .to_str()
            .unwrap()
            .to_string();
        let (gate, endpoint) = (gate.clone(), proxy.endpoint.clone());
        tasks.push(tokio::spawn(async move {
            let _turn = gate.acquire().await.unwrap();
            cordon(
                &endpoint,
                &[
                    "run",
                    "--endpoint-url",
                    &endpoint,
                    "--finding",
                    &path,
                    "--decision",
                    "approve",
                ],
            )
            .await
        }));
    }
    let (mut contained, mut restored, mut lost, mut panics) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for ((task, member), before) in tasks.into_iter().zip(&members).zip(&before) {
        let output = task.await.unwrap();
        panics += usize::from(panicked(&output));
        let report: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        if every_measure_done(&report) {
            contained += 1;
        } else {
            failures.push(format!(
                "{}: not contained by every measure: {}",
                member.instance, report["containment"]
            ));
        }
        let after = given(&world, member).await;
        let evidence = world.evidence_of(&member.instance).await.len();
        if report["outcome"] == "restored" && &after == before && evidence == 2 {
            restored += 1;
        } else {
            lost += usize::from(&after != before);
            failures.push(format!(
                "{}: outcome {}, restore {}, {evidence} snapshots, {after:?} vs {before:?}\n{}",
                member.instance,
                report["outcome"],
                report["output"]["restore"],
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    let totals = proxy.totals();
    let clean_total: u64 = per_workflow.values().sum();
    let ratio = totals.calls as f64 / (clean_total as f64 * runs as f64);
    write_row(
        "9-measure-faults",
        &Row {
            order: 9,
            scenario: format!(
                "every measure (Auto Scaling group, target group, instance profile, 2 volumes): `cordon run`, approve, {percent}% of EC2, Auto Scaling, IAM and ELB calls failing, {concurrency} at once"
            ),
            runs,
            faults_injected: format!(
                "{} of {} calls ({}): {} throttled, {} HTTP 500, {} reset, {} answer lost",
                totals.faults(),
                totals.calls,
                by_service(&proxy.calls_by_service()),
                totals.throttled,
                totals.server_errors,
                totals.resets,
                totals.lost_answers
            ),
            contained,
            restored_exactly: restored,
            lost_originals: lost,
            panics,
            notes: format!(
                "{} per workflow without faults; {ratio:.2}x the calls under faults. Restored exactly: the group's desired capacity, the instance's lifecycle state and protection, the serving count, the target group's targets, the role's tags and policies, the volumes' delete-on-termination; both snapshots remain",
                by_service(&per_workflow)
            ),
        },
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert_eq!((contained, restored, lost, panics), (runs, runs, 0, 0));
    assert!(totals.faults() > 0, "the proxy injected faults");
    assert!(ratio < 3.0, "{ratio:.2}x the calls of a clean run");
}

/// Kills `cordon isolate` at each call the measures beyond the network make (Auto Scaling,
/// IAM, ELB, and EC2's snapshot and instance-attribute calls), runs it again, checks that
/// every measure is in force once (one snapshot per volume), then restores.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn isolate_killed_at_any_call_of_the_measures_is_rerun_and_converges() {
    let moto = Moto::start();
    let world = moto.world();
    world.deploy_credentials_deny().await;
    let dir = temp_dir("measure-kill");

    let reference = equipped(&world, 200).await;
    let counting = FaultProxy::start(&moto.endpoint, FaultPlan::none()).await;
    let path = finding_file(&dir, &reference.instance);
    let output = cordon(
        &counting.endpoint,
        &["isolate", "--finding", path.to_str().unwrap()],
    )
    .await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    in_force(&world, &reference).await.unwrap();
    let calls = counting.actions();
    let points: Vec<usize> = calls
        .iter()
        .enumerate()
        .filter(|(_, action)| {
            action.contains(':')
                || ["CreateSnapshots", "ModifyInstanceAttribute"].contains(&action.as_str())
        })
        .map(|(k, _)| k)
        .collect();

    let (mut converged, mut restored, mut lost, mut panics) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for (n, &k) in points.iter().enumerate() {
        let member = equipped(&world, 100 + n).await;
        let before = given(&world, &member).await;
        let path = finding_file(&dir, &member.instance);
        isolate_killed_at(&moto.endpoint, &path, k).await;
        let rerun = cordon(
            &moto.endpoint,
            &["isolate", "--finding", path.to_str().unwrap()],
        )
        .await;
        panics += usize::from(panicked(&rerun));
        let force = in_force(&world, &member).await;
        let ok = rerun.status.code() == Some(0) && force.is_ok();
        converged += usize::from(ok);
        let back = cordon(
            &moto.endpoint,
            &[
                "restore",
                "--instance",
                &member.instance,
                "--trust-unverified",
            ],
        )
        .await;
        panics += usize::from(panicked(&back));
        let after = given(&world, &member).await;
        let evidence = world.evidence_of(&member.instance).await.len();
        lost += usize::from(after != before);
        if back.status.code() == Some(0) && after == before && evidence == 2 {
            restored += 1;
        } else {
            failures.push(format!(
                "killed at call {} ({}): restore {:?} {} {}, {evidence} snapshots, after {after:?} vs {before:?}",
                k + 1,
                calls[k],
                back.status.code(),
                String::from_utf8_lossy(&back.stdout),
                String::from_utf8_lossy(&back.stderr),
            ));
        }
        if !ok {
            failures.push(format!(
                "killed at call {} ({}): rerun {:?} {}, {:?}",
                k + 1,
                calls[k],
                rerun.status.code(),
                String::from_utf8_lossy(&rerun.stderr),
                force
            ));
        }
    }
    let named: Vec<String> = points
        .iter()
        .map(|&k| format!("{} ({})", k + 1, calls[k]))
        .collect();
    write_row(
        "10-measure-kill",
        &Row {
            order: 10,
            scenario: "every measure: `cordon isolate` SIGKILLed at each call of the measures beyond the network, re-run, then `cordon restore`".into(),
            runs: points.len(),
            faults_injected: format!("kill at call {} of {}", named.join(", "), calls.len()),
            contained: converged,
            restored_exactly: restored,
            lost_originals: lost,
            panics,
            notes: "each re-run puts every measure in force once: isolated, in Standby, out of its target group, its role's sessions cut, one snapshot per volume; restore gives back the group, targets, role and volumes as they were".into(),
        },
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        (converged, restored, lost, panics),
        (points.len(), points.len(), 0, 0)
    );
}
