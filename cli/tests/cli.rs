//! The `cordon` command line's contract: what it prints and how it exits, run as a user runs
//! it, against moto.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cordon_tests::{finding_for, findings_dir, Moto, World};
use serde_json::Value;

fn cordon(moto: Option<&Moto>, args: &[&str]) -> Output {
    cordon_as(moto, &[], args)
}

/// `cordon` with `credentials` (`AWS_*` variables) over the emulator's defaults: another
/// caller.
fn cordon_as(moto: Option<&Moto>, credentials: &[(&str, String)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cordon"));
    command.args(args);
    // Nothing from the developer's own AWS setup leaks into a test.
    for key in [
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    ] {
        command.env_remove(key);
    }
    command
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    if let Some(moto) = moto {
        command.envs(moto.cli_env());
    }
    command.envs(credentials.iter().map(|(k, v)| (k, v)));
    command.output().expect("cordon runs")
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn write(dir: &Path, name: &str, value: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
    path
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cordon-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Triages `files` at the default bar and checks what each finding's resource type implies:
/// an instance finding names its instance, any other is skipped for its type. Returns the
/// decisions, one per file.
fn triage_by_resource_type(files: &[PathBuf]) -> Vec<Value> {
    let args: Vec<&str> = std::iter::once("triage")
        .chain(files.iter().map(|p| p.to_str().unwrap()))
        .collect();
    let output = cordon(None, &args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let decisions = lines(&output);
    assert_eq!(decisions.len(), files.len(), "one line per finding");
    for (file, line) in files.iter().zip(&decisions) {
        let raw: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let resource_type = raw["resource"]["resourceType"].as_str().unwrap();
        assert_eq!(line["source"], file.display().to_string());
        assert_eq!(line["finding_id"], raw["id"]);
        assert_eq!(line["finding_type"], raw["type"]);
        if resource_type == "Instance" {
            assert_eq!(
                line["instance_id"],
                raw["resource"]["instanceDetails"]["instanceId"]
            );
        } else {
            assert_eq!(line["decision"], "skip", "{line}");
            let reason = line["reason"].as_str().unwrap();
            assert!(
                reason.contains(resource_type) && reason.contains("not Instance"),
                "{reason}"
            );
        }
    }
    decisions
}

#[test]
fn triage_gives_every_finding_the_decision_its_resource_type_implies() {
    let files = cordon_tests::json_files(&findings_dir());
    assert!(files.len() >= 5, "the findings of tests/findings");
    let decisions = triage_by_resource_type(&files);
    // No finding of the repository reaches the default bar: the instance one is severity 5.
    for line in &decisions {
        assert_eq!(line["decision"], "skip", "{line}");
        if line["instance_id"] == "i-0a1b2c3d4e5f60718" {
            let reason = line["reason"].as_str().unwrap();
            assert!(reason.contains("severity"), "{reason}");
        }
    }

    // Lowering the bar quarantines exactly the instance finding.
    let args: Vec<&str> = ["triage", "--min-severity", "5"]
        .into_iter()
        .chain(files.iter().map(|p| p.to_str().unwrap()))
        .collect();
    let quarantined: Vec<Value> = lines(&cordon(None, &args))
        .into_iter()
        .filter(|l| l["decision"] == "quarantine")
        .collect();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(
        quarantined[0]["finding_type"],
        "Canary:EC2/Stateless.IntegTest"
    );

    // A wider corpus kept outside the repository, when one is given.
    if let Some(extra) = cordon_tests::extra_findings_dir() {
        triage_by_resource_type(&cordon_tests::json_files(&extra));
    }
}

#[test]
fn triage_marks_invalid_input_and_exits_2_without_stopping_at_it() {
    let dir = temp_dir("triage");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{ this is not json").unwrap();
    let good = write(
        &dir,
        "good.json",
        &serde_json::json!({"Findings": [finding_for("i-0123456789abcdef0", 8.5, "198.51.100.7")]}),
    );
    let missing = dir.join("missing.json");
    let output = cordon(
        None,
        &[
            "triage",
            bad.to_str().unwrap(),
            good.to_str().unwrap(),
            missing.to_str().unwrap(),
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    let decisions = lines(&output);
    assert_eq!(decisions.len(), 3);
    assert_eq!(decisions[0]["decision"], "invalid");
    assert!(decisions[0]["reason"]
        .as_str()
        .unwrap()
        .contains("not JSON"));
    assert_eq!(decisions[1]["decision"], "quarantine");
    assert_eq!(decisions[1]["instance_id"], "i-0123456789abcdef0");
    assert_eq!(decisions[2]["decision"], "invalid");
    assert!(decisions[2]["reason"]
        .as_str()
        .unwrap()
        .contains("cannot read"));
}

async fn single_instance(world: &World) -> (String, String, String, [String; 2]) {
    let vpc = world.vpc("10.0.0.0/16", false).await;
    let a = world.subnet(&vpc, "10.0.1.0/24", None).await;
    let b = world.subnet(&vpc, "10.0.2.0/24", None).await;
    world
        .custom_acl(
            &vpc,
            &[&b],
            &[(100, false, "0.0.0.0/0"), (100, true, "0.0.0.0/0")],
        )
        .await;
    let web = world.security_group(&vpc, "web", 443).await;
    let ssh = world.security_group(&vpc, "ssh", 22).await;
    let (instance, enis) = world.instance(&[(&a, &[&web, &ssh])], false).await;
    (vpc, instance, enis[0].clone(), [web, ssh])
}

#[tokio::test]
async fn break_glass_isolate_status_and_restore() {
    let moto = Moto::start();
    let world = moto.world();
    let (vpc, instance, eni, [web, ssh]) = single_instance(&world).await;
    let acls_before = world.acls(&vpc).await;

    let output = cordon(
        Some(&moto),
        &[
            "isolate",
            "--instance",
            &instance,
            "--remote-ip",
            "198.51.100.7",
            "--remote-ip",
            "2001:db8::66",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let isolated = json(&output);
    assert_eq!(isolated["status"], "isolated");
    assert_eq!(isolated["instance_id"], instance.as_str());
    let isolation = world.cordon_group_ids(&vpc).await["isolation"].clone();
    assert_eq!(isolated["enis"][0]["eni_id"], eni.as_str());
    assert_eq!(
        isolated["enis"][0]["original_groups"],
        serde_json::json!([web, ssh])
    );
    assert_eq!(
        isolated["enis"][0]["groups_now"],
        serde_json::json!([isolation])
    );
    assert_eq!(world.eni_groups(&eni).await, vec![isolation.clone()]);
    let entries = isolated["nacl_entries"].as_array().unwrap();
    assert_eq!(
        entries.len(),
        6,
        "v4 and v6 remote both ways, the instance both ways: {entries:?}"
    );
    for entry in entries {
        for key in ["acl_id", "egress", "rule_number", "cidr"] {
            assert!(entry.get(key).is_some(), "{entry}");
        }
    }
    assert!(
        stderr(&output).contains("capturing"),
        "progress goes to stderr"
    );

    let output = cordon(Some(&moto), &["isolate", "--instance", &instance]);
    assert_eq!(output.status.code(), Some(0));
    let again = json(&output);
    assert_eq!(again["status"], "already_isolated");
    assert_eq!(
        again["enis"][0]["original_groups"],
        serde_json::json!([web, ssh])
    );

    let output = cordon(Some(&moto), &["status"]);
    assert_eq!(output.status.code(), Some(0));
    let status = json(&output);
    let listed = status["quarantined"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["instance_id"], instance.as_str());
    assert!(listed[0]["since"].as_str().unwrap().ends_with('Z'));
    // Each measure beyond the interfaces: no group, no role, its root volume's snapshot.
    let measures = &listed[0]["measures"];
    assert_eq!(
        measures["auto_scaling"],
        serde_json::Value::Null,
        "{measures}"
    );
    assert_eq!(
        measures["credentials"],
        serde_json::Value::Null,
        "{measures}"
    );
    assert_eq!(
        measures["evidence"].as_array().unwrap().len(),
        1,
        "{measures}"
    );

    let output = cordon(
        Some(&moto),
        &["restore", "--instance", &instance, "--trust-unverified"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let restored = json(&output);
    assert_eq!(restored["status"], "restored");
    assert_eq!(
        restored["nacl_entries_removed"].as_array().unwrap().len(),
        6
    );
    assert_eq!(world.eni_groups(&eni).await, [web, ssh]);
    assert_eq!(world.acls(&vpc).await, acls_before);

    let output = cordon(
        Some(&moto),
        &["restore", "--instance", &instance, "--trust-unverified"],
    );
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(json(&output)["status"], "not_isolated");
    let output = cordon(Some(&moto), &["status"]);
    assert_eq!(json(&output)["quarantined"], serde_json::json!([]));
}

/// Two instances isolated by hand, each in a VPC of its own; one is then terminated. The
/// clean-up lists what that one left (its VPC's groups, which allow all traffic or nothing
/// and no interface carries, and its denies, named by `cordon isolate`'s unsealed records),
/// changes nothing until told to, removes only that, and never what the other still needs.
#[tokio::test]
async fn cleanup_removes_only_what_an_instance_that_no_longer_exists_left() {
    let moto = Moto::start();
    let world = moto.world();
    let (kept_vpc, kept, kept_eni, _) = single_instance(&world).await;
    let (gone_vpc, gone, _, _) = single_instance(&world).await;
    let gone_acls_before = world.acls(&gone_vpc).await;
    for instance in [&kept, &gone] {
        let output = cordon(
            Some(&moto),
            &[
                "isolate",
                "--instance",
                instance,
                "--remote-ip",
                "198.51.100.7",
            ],
        );
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    }
    // Cordon turned termination protection on: the responder turns it off to terminate.
    world.set_termination_protection(&gone, false).await;
    world
        .ec2
        .terminate_instances()
        .instance_ids(&gone)
        .send()
        .await
        .unwrap();
    // A conversion group an isolation step could not delete after its swaps (made here as
    // that step makes it).
    cordon_core::isolate::ensure_groups(
        &moto
            .worker_aws("isolate-sg")
            .ec2(Some(cordon_tests::REGION)),
        std::slice::from_ref(&kept_vpc),
        Default::default(),
        None,
    )
    .await
    .unwrap();
    let kept_groups = world.cordon_group_ids(&kept_vpc).await;
    let kept_acls = world.acls(&kept_vpc).await;
    let gone_acls_isolated = world.acls(&gone_vpc).await;

    let output = cordon(Some(&moto), &["cleanup"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let listed = json(&output);
    assert_eq!(listed["dry_run"], true);
    let unused: Vec<(&str, &str)> = listed["unused_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["vpc_id"].as_str().unwrap(), g["role"].as_str().unwrap()))
        .collect();
    // The conversion group left where no interface is converting (an isolation by hand
    // claims nothing); the terminated instance's VPC keeps its isolation group while its
    // records wait.
    assert_eq!(unused, [(kept_vpc.as_str(), "conversion")], "{listed}");
    // Unsealed records (`cordon isolate`'s) are not taken without being told to.
    assert_eq!(listed["acl_entries"], serde_json::json!([]), "{listed}");
    assert!(listed["kept"].to_string().contains(&gone), "{listed}");
    assert_eq!(
        world.acls(&gone_vpc).await,
        gone_acls_isolated,
        "a dry run changes nothing"
    );
    assert_eq!(world.cordon_group_ids(&gone_vpc).await.len(), 1);
    assert_eq!(world.cordon_group_ids(&kept_vpc).await, kept_groups);

    let output = cordon(Some(&moto), &["cleanup", "--apply", "--trust-unverified"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let removed = json(&output);
    assert_eq!(removed["errors"], serde_json::json!([]), "{removed}");
    assert_eq!(
        world.acls(&gone_vpc).await,
        gone_acls_before,
        "the terminated instance's denies and records are gone"
    );
    // No group that allows all traffic is left. (moto keeps a terminated instance's
    // interface, which AWS deletes with it: the isolation group it carries stays here.)
    for vpc in [&gone_vpc, &kept_vpc] {
        assert!(
            !world.cordon_group_ids(vpc).await.contains_key("conversion"),
            "{removed}"
        );
    }
    // The instance still isolated keeps its isolation, its denies and its records.
    assert_eq!(world.acls(&kept_vpc).await, kept_acls);
    assert_eq!(
        world.eni_groups(&kept_eni).await,
        vec![kept_groups["isolation"].clone()]
    );
}

#[tokio::test]
async fn isolate_from_a_finding_file_and_partial_and_drift_exit_3() {
    let moto = Moto::start();
    let world = moto.world();
    let (vpc, instance, eni, [web, ssh]) = single_instance(&world).await;
    let dir = temp_dir("finding");

    let low = write(
        &dir,
        "low.json",
        &finding_for(&instance, 4.0, "198.51.100.7"),
    );
    let output = cordon(
        Some(&moto),
        &["isolate", "--finding", low.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(json(&output)["status"], "skipped");
    assert_eq!(world.eni_groups(&eni).await, [web.clone(), ssh.clone()]);

    // Fill the other subnet's ACL up to its quota: the instance deny there cannot go in.
    let acls = world.acls(&vpc).await;
    let (full_acl, _) = acls
        .iter()
        .find(|(_, (entries, _))| entries.iter().any(|e| e.1 == 100) && entries.len() == 2)
        .unwrap();
    for n in 0..19 {
        world
            .acl_entry(
                full_acl,
                200 + n,
                false,
                aws_sdk_ec2::types::RuleAction::Allow,
                &format!("10.8.{n}.0/24"),
            )
            .await;
    }
    let event = serde_json::json!({"version": "0", "source": "aws.guardduty", "detail-type": "GuardDuty Finding", "detail": finding_for(&instance, 8.0, "198.51.100.7")});
    let high = write(&dir, "high.json", &event);
    let output = cordon(
        Some(&moto),
        &["isolate", "--finding", high.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    let partial = json(&output);
    assert_eq!(partial["status"], "partial");
    assert_eq!(partial["errors"][0]["error"], "Cordon.NaclQuotaExceeded");
    assert_eq!(partial["finding"]["id"], format!("cordon-test-{instance}"));
    let isolation = world.cordon_group_ids(&vpc).await["isolation"].clone();
    assert_eq!(
        world.eni_groups(&eni).await,
        vec![isolation.clone()],
        "partial still isolates"
    );

    world.set_eni_groups(&eni, &[&isolation, &web]).await;
    let output = cordon(
        Some(&moto),
        &["restore", "--instance", &instance, "--trust-unverified"],
    );
    assert_eq!(output.status.code(), Some(3));
    let drift = json(&output);
    assert_eq!(drift["status"], "drift");
    assert_eq!(drift["enis"][0]["outcome"], "drift");
    assert_eq!(world.eni_groups(&eni).await, [isolation, web]);
}

#[tokio::test]
async fn bad_input_is_a_clear_error_and_changes_nothing() {
    let moto = Moto::start();
    let world = moto.world();
    let (vpc, instance, eni, groups) = single_instance(&world).await;
    let before = (world.acls(&vpc).await, world.groups(&vpc).await);
    let dir = temp_dir("bad");
    let two = write(
        &dir,
        "two.json",
        &serde_json::json!({"Findings": [finding_for(&instance, 8.0, "198.51.100.7"), finding_for(&instance, 8.0, "198.51.100.8")]}),
    );
    let no_type = write(
        &dir,
        "no-type.json",
        &serde_json::json!({"id": "x", "severity": 8}),
    );

    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["isolate", "--instance", "bogus"],
            1,
            "not an EC2 instance id",
        ),
        (
            vec![
                "isolate",
                "--instance",
                &instance,
                "--remote-ip",
                "not-an-ip",
            ],
            2,
            "--remote-ip",
        ),
        (
            vec!["isolate", "--finding", two.to_str().unwrap()],
            1,
            "holds 2 findings",
        ),
        (
            vec!["isolate", "--finding", no_type.to_str().unwrap()],
            1,
            "no `type`",
        ),
        (
            vec!["isolate", "--finding", "/nonexistent/finding.json"],
            1,
            "cannot read",
        ),
        (
            vec!["isolate", "--instance", &instance, "--nacl-band", "0-50"],
            1,
            "1 <= first",
        ),
        (
            vec![
                "isolate",
                "--instance",
                &instance,
                "--forensic-cidr",
                "10.0.0.0/99",
            ],
            1,
            "0..=32",
        ),
        (vec!["isolate"], 2, "--finding"),
        (
            vec!["restore", "--instance", "i-0123456789abcdef0"],
            1,
            "was not found",
        ),
        (
            vec!["triage", "--min-severity", "eleven", "x.json"],
            2,
            "severity",
        ),
    ];
    for (args, code, message) in cases {
        let output = cordon(Some(&moto), &args);
        assert_eq!(
            output.status.code(),
            Some(code),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(message),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(output.stdout.is_empty(), "{args:?}: nothing on stdout");
    }
    assert_eq!((world.acls(&vpc).await, world.groups(&vpc).await), before);
    assert_eq!(world.eni_groups(&eni).await, groups);
    assert!(!world
        .instance_tags(&instance)
        .await
        .keys()
        .any(|k| k.starts_with("cordon:")));
}

#[test]
fn the_demo_contains_and_restores_exactly() {
    let moto = Moto::start();
    let output = cordon(
        None,
        &[
            "demo",
            "--endpoint-url",
            &moto.endpoint,
            "--decision",
            "approve",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let demo = json(&output);
    assert_eq!(demo["outcome"], "restored");
    assert_eq!(demo["restored_exactly"], true);
    let states: Vec<&str> = demo["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let (parallel, rest): (Vec<&str>, Vec<&str>) = states.iter().partition(|s| {
        [
            "IsolateSecurityGroups",
            "BlockNetworkAcl",
            "HoldInAutoScalingGroup",
            "CutCredentials",
            "SnapshotVolumes",
            "DeregisterFromTargetGroups",
        ]
        .contains(s)
    });
    assert_eq!(parallel.len(), 6, "every branch ran: {states:?}");
    assert_eq!(
        rest,
        [
            "CaptureState",
            "ShouldContain",
            "Contain",
            "ContainmentOutcome",
            "RequestApproval",
            "Decision",
            "Restore",
            "RestoreOutcome",
            "NotifyRestored",
            "Restored"
        ]
    );
    assert_eq!(demo["before"], demo["after"]);
    let during = demo["during"]["interfaces"].as_object().unwrap();
    assert_eq!(during.len(), 2);
    for groups in during.values() {
        assert_eq!(groups.as_array().unwrap().len(), 1);
        assert!(
            groups[0].as_str().unwrap().contains("cordon-isolation-"),
            "{groups}"
        );
    }
    // In standby while isolated, serving again after: the group's capacity as it was.
    assert_eq!(
        demo["during"]["auto_scaling"],
        "demo-web: Standby; desired capacity 2, 2 serving"
    );
    assert_eq!(
        demo["after"]["auto_scaling"],
        "demo-web: InService; desired capacity 2, 2 serving"
    );
    // The role's credentials cut while isolated (Cordon's deny, the instance in a slot), the
    // role as it was after.
    let role = demo["during"]["credentials"].as_str().unwrap();
    assert!(
        role.contains("cordon-deny-quarantined-instances") && role.contains("cordon-quarantine-"),
        "{role}"
    );
    assert_eq!(
        demo["after"]["credentials"],
        "demo-web: tags team=demo-web; policies demo-web-read"
    );
    // The root volume kept on termination while isolated, as it was after; its snapshot stays.
    let volumes = |moment: &str| demo[moment]["volumes"].to_string();
    assert!(
        volumes("during").contains("kept on termination"),
        "{}",
        volumes("during")
    );
    assert!(
        volumes("after").contains("deleted on termination"),
        "{}",
        volumes("after")
    );
    // One snapshot per volume (root and data); the admin port out of its target group while
    // isolated, back on the same port after.
    assert_eq!(
        demo["evidence"].as_array().unwrap().len(),
        2,
        "{}",
        demo["evidence"]
    );
    let instance = demo["instance_id"].as_str().unwrap();
    assert_eq!(demo["during"]["load_balancers"], "demo-admin: no target");
    assert_eq!(
        demo["after"]["load_balancers"],
        format!("demo-admin: {instance} port 9000")
    );
    let denies = demo["during"]["acl_denies"].as_object().unwrap();
    assert!(
        denies.values().all(|d| !d.as_array().unwrap().is_empty()),
        "every subnet's ACL has denies: {denies:?}"
    );
    assert!(stderr(&output).contains("restored exactly as it was: yes"));
    assert!(
        stderr(&output).contains("Subject: Cordon: "),
        "the demo prints the email"
    );

    let refused = cordon(
        None,
        &[
            "demo",
            "--endpoint-url",
            "https://ec2.us-east-1.amazonaws.com",
        ],
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("only runs against a local emulator"));
}

#[tokio::test]
async fn run_executes_the_workflow_and_prints_its_path() {
    let moto = Moto::start();
    let world = moto.world();
    let (_, instance, eni, [web, ssh]) = single_instance(&world).await;
    let dir = temp_dir("run");
    let finding = write(
        &dir,
        "finding.json",
        &finding_for(&instance, 8.0, "198.51.100.7"),
    );

    let output = cordon(
        None,
        &[
            "run",
            "--endpoint-url",
            &moto.endpoint,
            "--finding",
            finding.to_str().unwrap(),
            "--decision",
            "approve",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report = json(&output);
    assert_eq!(report["status"], "SUCCEEDED");
    assert_eq!(report["outcome"], "restored");
    assert!(report["execution_arn"]
        .as_str()
        .unwrap()
        .starts_with("arn:aws:states:"));
    let states: Vec<&str> = report["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(states.first(), Some(&"CaptureState"));
    assert_eq!(
        &states[states.len() - 4..],
        ["Restore", "RestoreOutcome", "NotifyRestored", "Restored"]
    );
    assert_eq!(
        report["containment"]["isolation"]["enis"][0]["eni_id"],
        eni.as_str()
    );
    for state in ["CaptureState", "RequestApproval", "Restored"] {
        assert!(stderr(&output).contains(state), "progress names {state}");
    }
    assert_eq!(world.eni_groups(&eni).await, [web, ssh]);

    // A finding for an instance that does not exist: the workflow fails and says so.
    let missing = write(
        &dir,
        "missing.json",
        &finding_for("i-0123456789abcdef0", 8.0, "198.51.100.7"),
    );
    let output = cordon(
        None,
        &[
            "run",
            "--endpoint-url",
            &moto.endpoint,
            "--finding",
            missing.to_str().unwrap(),
            "--decision",
            "approve",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let report = json(&output);
    assert_eq!(report["outcome"], "failed");
    assert_eq!(
        report["states"],
        serde_json::json!(["CaptureState", "NotifyFailed", "Failed"])
    );
    let email = report["messages"][0]["body"].as_str().unwrap();
    assert!(
        email.contains("Cordon.InstanceNotFound"),
        "{}",
        report["messages"]
    );
}

#[test]
fn run_without_moto_names_the_setup_command() {
    let dir = temp_dir("nomoto");
    let finding = write(
        &dir,
        "finding.json",
        &finding_for("i-0123456789abcdef0", 8.0, "198.51.100.7"),
    );
    let output = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["run", "--finding", finding.to_str().unwrap()])
        .env("MOTO_SERVER", "/nonexistent/moto_server")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("scripts/setup"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn confirm_subscription_asks_for_authenticated_unsubscribe_and_refuses_other_links() {
    let moto = Moto::start();
    let topic = aws_sdk_sns::Client::new(&moto.sdk_config())
        .create_topic()
        .name("cordon-alerts")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let link = |topic: &str, token: &str| {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("TopicArn", topic)
            .append_pair("Token", token)
            .append_pair("Endpoint", "soc@example.com")
            .finish();
        format!("https://sns.us-east-1.amazonaws.com/confirmation.html?{query}")
    };
    let confirmed = cordon(
        Some(&moto),
        &[
            "confirm-subscription",
            "--link",
            &link(&topic, "2336412f37fb687f"),
            "--topic",
            &topic,
        ],
    );
    assert_eq!(confirmed.status.code(), Some(0), "{}", stderr(&confirmed));
    let report = json(&confirmed);
    assert_eq!(report["topic_arn"], topic.as_str());
    assert_eq!(report["authenticate_on_unsubscribe"], true);
    assert!(report["subscription_arn"]
        .as_str()
        .unwrap()
        .starts_with(&topic));
    // Another topic's link, a link that is not SNS's, and a topic that does not exist.
    let elsewhere = topic.replace("cordon-alerts", "elsewhere");
    for (bad, says) in [
        (link(&elsewhere, "ab12"), "nothing was confirmed"),
        (
            link(&topic, "ab12")
                .replace("sns.us-east-1.amazonaws.com", "sns.us-east-1.evil.example"),
            "not an SNS endpoint",
        ),
    ] {
        let refused = cordon(
            Some(&moto),
            &["confirm-subscription", "--link", &bad, "--topic", &topic],
        );
        assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
        assert!(stderr(&refused).contains(says), "{}", stderr(&refused));
        assert!(refused.stdout.is_empty());
    }
    let missing = cordon(
        Some(&moto),
        &["confirm-subscription", "--link", &link(&elsewhere, "ab12")],
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("did not confirm"),
        "{}",
        stderr(&missing)
    );
}

/// An execution of the real state machine on moto, waiting for a decision on `instance`'s
/// containment: its runner's work in the background, which answers no approval request.
async fn waiting_execution(
    runner: &std::sync::Arc<cordon::runner::Runner>,
    instance: &str,
) -> (
    String,
    tokio::task::JoinHandle<Result<cordon::runner::RunReport, cordon_core::CordonError>>,
) {
    let event = serde_json::json!({"version": "0", "id": "e-1", "detail-type": "GuardDuty Finding",
        "source": "aws.guardduty", "account": "123456789012", "region": cordon_tests::REGION,
        "resources": [], "detail": finding_for(instance, 8.0, "198.51.100.7")});
    let arn = runner.start_execution(&event, 600).await.unwrap();
    let follow = tokio::spawn({
        let (runner, arn) = (runner.clone(), arn.clone());
        async move {
            runner
                .follow(&arn, cordon::runner::DecisionMode::Wait)
                .await
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    // The approval email is out once RequestApproval waits on its task.
    while !matches!(runner.approval_links(&arn).await, Ok(Some(_))) {
        assert!(
            !follow.is_finished() && std::time::Instant::now() < deadline,
            "the workflow never asked for approval"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    (arn, follow)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_approve_restores_as_the_callers_identity_and_only_while_waiting() {
    let moto = Moto::start();
    let runner = std::sync::Arc::new(
        cordon::runner::Runner::start(&moto.endpoint, cordon_core::config::Config::default())
            .await
            .unwrap(),
    );
    let world = moto.world();
    let vpc = world.vpc("10.0.0.0/16", false).await;
    let subnet = world.subnet(&vpc, "10.0.1.0/24", None).await;
    let web = world.security_group(&vpc, "web", 443).await;
    let (instance, enis) = world.instance(&[(&subnet, &[&web])], false).await;
    let (arn, follow) = waiting_execution(&runner, &instance).await;
    let isolated = world.eni_groups(&enis[0]).await;
    assert_ne!(isolated, vec![web.clone()]);
    let key = runner.break_glass_key().key_id.clone();
    let caller = aws_sdk_sts::Client::new(&moto.sdk_config())
        .get_caller_identity()
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();

    // What is not an execution ARN, and a key that cannot seal: refused, nothing sent.
    let not_arn = cordon(
        Some(&moto),
        &["approve", "--execution", "f-1", "--break-glass-key", &key],
    );
    assert_eq!(not_arn.status.code(), Some(1));
    assert!(
        stderr(&not_arn).contains("not a Step Functions execution ARN"),
        "{}",
        stderr(&not_arn)
    );
    let wrong_key = cordon(
        Some(&moto),
        &[
            "approve",
            "--execution",
            &arn,
            "--break-glass-key",
            "alias/not-the-break-glass-key",
        ],
    );
    assert_eq!(wrong_key.status.code(), Some(1), "{}", stderr(&wrong_key));
    assert!(
        stderr(&wrong_key).contains("nothing was sent"),
        "{}",
        stderr(&wrong_key)
    );
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(
        !follow.is_finished(),
        "a refused decision moved the workflow on"
    );
    assert_eq!(world.eni_groups(&enis[0]).await, isolated);

    let approved = cordon(
        Some(&moto),
        &["approve", "--execution", &arn, "--break-glass-key", &key],
    );
    assert_eq!(approved.status.code(), Some(0), "{}", stderr(&approved));
    let sent = json(&approved);
    assert_eq!(sent["decision"], "approve");
    assert_eq!(sent["via"], "aws_iam");
    assert_eq!(sent["approver"], caller.as_str());

    let report = follow.await.unwrap().unwrap();
    assert!(
        report.states.iter().any(|s| s == "NotifyRestored"),
        "{:?}",
        report.states
    );
    assert_eq!(world.eni_groups(&enis[0]).await, vec![web]);
    assert_eq!(report.output["approval"]["via"], "aws_iam");
    assert_eq!(report.output["approval"]["approver"], caller.as_str());
    let messages = runner.messages_of(&arn).await.unwrap();
    let (_, body) = messages
        .iter()
        .find(|(subject, _)| subject.contains("restored"))
        .expect("a restored email");
    assert!(body.contains(&caller), "{body}");
    assert!(body.contains("AWS IAM identity"), "{body}");

    // Decided: a second decision is refused and sends nothing.
    let again = cordon(
        Some(&moto),
        &["reject", "--execution", &arn, "--break-glass-key", &key],
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("is not waiting for a decision"),
        "{}",
        stderr(&again)
    );
    assert!(again.stdout.is_empty());
}

/// Credentials of `role` in the emulator's account, for session `session`: another AWS
/// identity (STS names it `assumed-role/ROLE/SESSION`), as `AWS_*` variables and its ARN.
async fn another_caller(
    moto: &Moto,
    role: &str,
    session: &str,
) -> (Vec<(&'static str, String)>, String) {
    let assumed = aws_sdk_sts::Client::new(&moto.sdk_config())
        .assume_role()
        .role_arn(format!("arn:aws:iam::123456789012:role/{role}"))
        .role_session_name(session)
        .send()
        .await
        .unwrap();
    let credentials = assumed.credentials().unwrap();
    let arn = assumed.assumed_role_user().unwrap().arn().to_string();
    (
        vec![
            ("AWS_ACCESS_KEY_ID", credentials.access_key_id().to_string()),
            (
                "AWS_SECRET_ACCESS_KEY",
                credentials.secret_access_key().to_string(),
            ),
            ("AWS_SESSION_TOKEN", credentials.session_token().to_string()),
        ],
        arn,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_break_glass_decision_is_trusted_only_under_the_break_glass_key() {
    let moto = Moto::start();
    let runner = std::sync::Arc::new(
        cordon::runner::Runner::start(&moto.endpoint, cordon_core::config::Config::default())
            .await
            .unwrap(),
    );
    let world = moto.world();
    let vpc = world.vpc("10.0.0.0/16", false).await;
    let subnet = world.subnet(&vpc, "10.0.1.0/24", None).await;
    let web = world.security_group(&vpc, "web", 443).await;
    let (instance, enis) = world.instance(&[(&subnet, &[&web])], false).await;
    let (arn, follow) = waiting_execution(&runner, &instance).await;
    let isolated = world.eni_groups(&enis[0]).await;
    // A break-glass principal who may also use the approval page's key (in AWS its key policy
    // says no one but the approval function may; moto enforces no key policy): the decision
    // says `aws_iam`, so the restore step takes it only under the break-glass key.
    let page_key = runner.decision_key().key_id.clone();
    let sent = cordon(
        Some(&moto),
        &[
            "approve",
            "--execution",
            &arn,
            "--break-glass-key",
            &page_key,
        ],
    );
    assert_eq!(sent.status.code(), Some(0), "{}", stderr(&sent));
    let report = follow.await.unwrap().unwrap();
    assert_eq!(report.outcome, "decision_refused", "{:?}", report.states);
    assert_eq!(
        world.eni_groups(&enis[0]).await,
        isolated,
        "restored anyway"
    );
    let messages = runner.messages_of(&arn).await.unwrap();
    let (_, kept) = messages
        .iter()
        .find(|(subject, _)| subject.contains("kept isolated"))
        .expect("a kept-isolated email");
    assert!(kept.contains("did not make, and was refused"), "{kept}");
    assert!(kept.contains("with the break-glass key"), "{kept}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_person_rule_takes_one_break_glass_approval_at_most_and_never_the_same_caller_twice() {
    let moto = Moto::start();
    let runner = std::sync::Arc::new(
        cordon::runner::Runner::start(&moto.endpoint, cordon_core::config::Config::default())
            .await
            .unwrap()
            .with_approvals_required(2),
    );
    let world = moto.world();
    let vpc = world.vpc("10.0.0.0/16", false).await;
    let subnet = world.subnet(&vpc, "10.0.1.0/24", None).await;
    let web = world.security_group(&vpc, "web", 443).await;
    let (instance, enis) = world.instance(&[(&subnet, &[&web])], false).await;
    let (arn, follow) = waiting_execution(&runner, &instance).await;
    let isolated = world.eni_groups(&enis[0]).await;
    let key = runner.break_glass_key().key_id.clone();
    let (ada, ada_arn) = another_caller(&moto, "IncidentResponder", "ada").await;
    let (grace, _) = another_caller(&moto, "IncidentResponder", "grace").await;
    let approve = [
        "approve",
        "--execution",
        arn.as_str(),
        "--break-glass-key",
        key.as_str(),
    ];

    // The first approval restores nothing: a second approver is asked for.
    let first = cordon_as(Some(&moto), &ada, &approve);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert_eq!(json(&first)["approver"], ada_arn.as_str());
    assert_eq!(json(&first)["round"], 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let second_request = loop {
        let messages = runner.messages_of(&arn).await.unwrap();
        if let Some((_, body)) = messages
            .iter()
            .find(|(subject, _)| subject.contains("second approval needed"))
        {
            break body.clone();
        }
        assert!(
            !follow.is_finished() && std::time::Instant::now() < deadline,
            "no second approval was asked for"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(second_request.contains(&ada_arn), "{second_request}");

    // Neither the same caller nor another break-glass caller can be the second approver (a
    // break-glass seal names whoever its holder writes): nothing is sent.
    for (caller, says) in [
        (
            &ada,
            "made the first approval; a second, different person must approve",
        ),
        (
            &grace,
            "the second approver must sign in on the approval page",
        ),
    ] {
        let refused = cordon_as(Some(&moto), caller, &approve);
        assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
        assert!(stderr(&refused).contains(says), "{}", stderr(&refused));
        assert!(
            stderr(&refused).contains("Nothing was sent"),
            "{}",
            stderr(&refused)
        );
        assert!(refused.stdout.is_empty());
    }
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(
        !follow.is_finished(),
        "a refused approval moved the workflow on"
    );
    assert_eq!(world.eni_groups(&enis[0]).await, isolated);
    // A "keep isolated" is taken from anyone allowed to decide, and ends it kept isolated.
    let kept = cordon_as(
        Some(&moto),
        &grace,
        &["reject", "--execution", &arn, "--break-glass-key", &key],
    );
    assert_eq!(kept.status.code(), Some(0), "{}", stderr(&kept));
    let report = follow.await.unwrap().unwrap();
    assert_eq!(report.outcome, "kept_isolated", "{:?}", report.states);
    assert!(report.states.iter().any(|s| s == "RequestSecondApproval"));
    assert!(!report.states.iter().any(|s| s == "Restore"));
    assert_eq!(world.eni_groups(&enis[0]).await, isolated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_each_quarantine_waiting_for_a_decision_and_what_holds() {
    let moto = Moto::start();
    let runner = std::sync::Arc::new(
        cordon::runner::Runner::start(&moto.endpoint, cordon_core::config::Config::default())
            .await
            .unwrap(),
    );
    let world = moto.world();
    let vpc = world.vpc("10.0.0.0/16", false).await;
    let subnet = world.subnet(&vpc, "10.0.1.0/24", None).await;
    let web = world.security_group(&vpc, "web", 443).await;
    let (instance, _) = world.instance(&[(&subnet, &[&web])], false).await;
    let (arn, follow) = waiting_execution(&runner, &instance).await;
    // The execution's state machine (arn:...:execution:MACHINE:NAME).
    let parts: Vec<&str> = arn.split(':').collect();
    let machine = format!("{}:stateMachine:{}", parts[..5].join(":"), parts[6]);

    let output = cordon(Some(&moto), &["status", "--state-machine", &machine]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let status = json(&output);
    let waiting = status["waiting"].as_array().unwrap();
    assert_eq!(waiting.len(), 1, "{status:#}");
    let quarantine = &waiting[0];
    assert_eq!(quarantine["execution_arn"], arn.as_str());
    assert_eq!(quarantine["instance_id"], instance.as_str());
    assert_eq!(quarantine["account_id"], "123456789012");
    assert_eq!(quarantine["region"], cordon_tests::REGION);
    assert_eq!(quarantine["approval"], 1);
    assert!(
        quarantine["since"].as_str().unwrap().starts_with("20"),
        "{quarantine}"
    );
    let holds = quarantine["holds"].as_array().unwrap();
    assert!(
        holds.iter().any(|h| h.as_str().unwrap().contains("isolat")),
        "{quarantine:#}"
    );
    assert_eq!(quarantine["record_kept"], true, "{quarantine:#}");
    // No task token is printed: reading the list is not answering it.
    assert!(!String::from_utf8_lossy(&output.stdout).contains("task_token"));
    // The tag-based list is still there.
    assert_eq!(status["quarantined"][0]["instance_id"], instance.as_str());

    // Once an analyst decided, it no longer waits.
    let (_, reject) = runner.approval_links(&arn).await.unwrap().unwrap();
    runner.decide_as_a_person(&reject).await.unwrap();
    let report = follow.await.unwrap().unwrap();
    assert_eq!(report.outcome, "kept_isolated", "{:?}", report.states);
    let output = cordon(Some(&moto), &["status", "--state-machine", &machine]);
    assert_eq!(json(&output)["waiting"], serde_json::json!([]));
}

#[tokio::test]
async fn regions_names_each_region_where_guardduty_runs_without_cordon() {
    let moto = Moto::start();
    let sdk = moto.sdk_config();
    let in_region = |region: &str| {
        sdk.to_builder()
            .region(aws_sdk_ec2::config::Region::new(region.to_string()))
            .build()
    };
    for (region, enabled) in [
        ("us-east-1", true),
        ("eu-west-1", true),
        ("ap-southeast-2", false),
    ] {
        aws_sdk_guardduty::Client::new(&in_region(region))
            .create_detector()
            .enable(enabled)
            .send()
            .await
            .unwrap();
    }
    let deploy = |region: &'static str| {
        let client = aws_sdk_cloudformation::Client::new(&in_region(region));
        async move {
            client
                .create_stack()
                .stack_name("cordon")
                .template_body(r#"{"Resources": {"AlertTopic": {"Type": "AWS::SNS::Topic"}}}"#)
                .send()
                .await
                .unwrap();
        }
    };
    deploy("us-east-1").await;

    let output = cordon(Some(&moto), &["regions"]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    let standing = json(&output);
    assert_eq!(standing["missing"], serde_json::json!(["eu-west-1"]));
    let verdict_of = |standing: &Value, region: &str| {
        standing["regions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["region"] == region)
            .unwrap_or_else(|| panic!("{region} is listed"))["verdict"]
            .clone()
    };
    assert_eq!(verdict_of(&standing, "us-east-1"), "covered");
    assert_eq!(verdict_of(&standing, "eu-west-1"), "missing");
    // A suspended detector reports nothing to contain; no detector neither.
    assert_eq!(verdict_of(&standing, "ap-southeast-2"), "none");
    assert_eq!(verdict_of(&standing, "ca-central-1"), "none");

    deploy("eu-west-1").await;
    let output = cordon(Some(&moto), &["regions"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(json(&output)["missing"], serde_json::json!([]));

    // Another stack name finds none of them.
    let output = cordon(Some(&moto), &["regions", "--stack-name", "cordon-prod"]);
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(
        json(&output)["missing"],
        serde_json::json!(["eu-west-1", "us-east-1"])
    );
}

/// Every execution of `machine` that the runner has not yet followed, followed (its tasks
/// answered, its decision awaited), until `stop` is set; their reports.
async fn serve_executions(
    runner: std::sync::Arc<cordon::runner::Runner>,
    sfn: aws_sdk_sfn::Client,
    machine: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<cordon::runner::RunReport> {
    let mut following = std::collections::BTreeMap::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let listed = sfn
            .list_executions()
            .state_machine_arn(&machine)
            .send()
            .await
            .unwrap();
        for execution in listed.executions() {
            let arn = execution.execution_arn().to_string();
            following.entry(arn.clone()).or_insert_with(|| {
                let runner = runner.clone();
                tokio::spawn(async move {
                    runner
                        .follow(&arn, cordon::runner::DecisionMode::Wait)
                        .await
                })
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let mut reports = Vec::new();
    for (_, follow) in following {
        reports.push(follow.await.unwrap().unwrap());
    }
    reports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_test_proves_the_deployment_and_leaves_no_instance_behind() {
    let moto = Moto::start();
    let runner = std::sync::Arc::new(
        cordon::runner::Runner::start(&moto.endpoint, cordon_core::config::Config::default())
            .await
            .unwrap(),
    );
    // The stack's state machine, whose tasks the runner answers as the deployed functions do.
    let machine = runner.state_machine(600).await.unwrap();
    let key = runner.break_glass_key().key_id.clone();
    let world = moto.world();
    let vpc = world.vpc("10.0.0.0/16", false).await;
    let subnet = world.subnet(&vpc, "10.0.1.0/24", None).await;
    let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config());
    let instances = || async {
        let described = ec2.describe_instances().send().await.unwrap();
        described
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .map(|i| {
                (
                    i.instance_id().unwrap().to_string(),
                    i.state().unwrap().name().unwrap().as_str().to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    let smoke = |args: &[&str]| {
        let mut all = vec![
            "smoke-test",
            "--image-id",
            "ami-760aaa0f",
            "--poll-seconds",
            "1",
        ];
        all.extend_from_slice(args);
        tokio::task::block_in_place(|| cordon(Some(&moto), &all))
    };

    // What can be checked before launching is: a mistake launches nothing.
    let refusals = [
        (
            vec![
                "--subnet",
                "subnet-0123456789abcdef0",
                "--state-machine",
                &machine,
                "--break-glass-key",
                &key,
            ],
            "was not found",
        ),
        (
            vec![
                "--subnet",
                &subnet,
                "--state-machine",
                &machine,
                "--break-glass-key",
                "alias/not-the-break-glass-key",
            ],
            "BreakGlassPrincipals",
        ),
        (
            vec![
                "--subnet",
                &subnet,
                "--state-machine",
                "cordon-quarantine",
                "--break-glass-key",
                &key,
            ],
            "not a state machine ARN",
        ),
    ];
    for (args, message) in refusals {
        let refused = smoke(&args);
        assert_eq!(refused.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&refused).contains(message) && stderr(&refused).contains("nothing was launched"),
            "{args:?}: {}",
            stderr(&refused)
        );
    }
    assert!(
        instances().await.is_empty(),
        "a refusal launched an instance"
    );

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let served = tokio::spawn(serve_executions(
        runner.clone(),
        aws_sdk_sfn::Client::new(&moto.sdk_config()),
        machine.clone(),
        stop.clone(),
    ));
    let output = smoke(&[
        "--subnet",
        &subnet,
        "--state-machine",
        &machine,
        "--break-glass-key",
        &key,
    ]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reports = served.await.unwrap();

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report = json(&output);
    assert_eq!(report["passed"], true, "{report}");
    let steps: Vec<(&str, bool)> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap(), s["ok"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("launch", true),
            ("running", true),
            ("start", true),
            ("contained", true),
            ("approve", true),
            ("restored", true),
            ("exact", true),
            ("terminate", true)
        ]
    );
    // One execution, contained and restored through the whole definition.
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].outcome, "restored", "{:?}", reports[0].states);
    assert_eq!(
        report["execution_arn"].as_str(),
        Some(reports[0].execution_arn.as_str())
    );
    let contained = report["steps"][3]["detail"].as_str().unwrap();
    assert!(
        contained.contains(&format!("cordon-isolation-{vpc}")),
        "{contained}"
    );
    // The instance it launched is gone, and it launched no other.
    let instance = report["instance_id"].as_str().unwrap();
    assert_eq!(
        instances().await,
        [(instance.to_string(), "terminated".to_string())]
    );
    for step in ["launch", "contained", "exact", "terminate"] {
        assert!(stderr(&output).contains(step), "progress names {step}");
    }
}
