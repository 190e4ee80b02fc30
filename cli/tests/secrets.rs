//! A full `cordon run` does not put secrets in its logs: no task token (each one can answer a
//! step of the workflow) and no link-signing key (it can approve any restore).
//!
//! What is captured: the binary's stderr (its log: progress and errors) and stdout (the JSON
//! report). The binary installs no `tracing` subscriber, so `RUST_LOG=trace` changes nothing
//! today; it is set so that a subscriber added later is tested too. moto's own log is not
//! reachable (`cordon::local::Moto` sends the server's output to /dev/null).
//!
//! `cordon run` has links signed by a KMS HMAC key on the emulator (`Runner::start`), as the
//! stack does: no key material is ever in the process. The test still looks for anything
//! shaped like a key (a 64-digit hex run, a list of 32 bytes) outside the links themselves.
//!
//! And if signing were possible anyway (a role that may `GenerateMac` with the key), a link
//! so signed still cannot answer another execution's approval request: the approval page
//! checks the token is the one the execution waits on (tested here, where the page can be
//! called with a KMS key of our own).

use std::path::Path;
use std::process::{Command, Output};

use std::sync::Arc;
use std::time::{Duration, Instant};

use cordon::runner::{DecisionMode, Runner};
use cordon_core::approval::{
    handle_get, handle_post, link_url, Action, ApprovalPage, LinkKey, Visit,
};
use cordon_core::config::Config;
use cordon_core::kms::AwsKms;
use cordon_core::steps::unix_now;
use cordon_tests::{finding_for, Moto};
use serde_json::{json, Value};

fn cordon_run(moto: &Moto, finding: &Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cordon"));
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
        // `run` takes its emulator from --endpoint-url only (it ignores AWS_ENDPOINT_URL).
        .args(["run", "--endpoint-url", &moto.endpoint])
        .args(["--finding", finding.to_str().unwrap()])
        .args(["--decision", "approve", "--approval-timeout", "600"])
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("RUST_LOG", "trace")
        .envs(moto.cli_env())
        .output()
        .expect("cordon runs")
}

/// Every task token of the execution, from the `TaskScheduled` events' parameters: the
/// approval request's (`Payload.task_token`) and the local runner's callbacks'
/// (`Payload.token`).
async fn task_tokens(moto: &Moto, execution_arn: &str) -> Vec<String> {
    cordon_tests::scheduled_tasks(moto, execution_arn)
        .await
        .iter()
        .map(|parameters| {
            let payload = &parameters["Payload"];
            payload["task_token"]
                .as_str()
                .or(payload["token"].as_str())
                .unwrap_or_else(|| panic!("a task without a token: {parameters}"))
                .to_string()
        })
        .collect()
}

/// Runs of 64 or more hex digits: the shape of a hex key (and of a link's signature).
fn hex_runs(text: &str) -> Vec<&str> {
    text.split(|c: char| !c.is_ascii_hexdigit())
        .filter(|run| run.len() >= 64)
        .collect()
}

/// Whether `text` holds a list of 32 numbers, the way `{:?}` prints a 32-byte key.
fn has_byte_list(text: &str) -> bool {
    text.split('[').skip(1).any(|rest| {
        let list = rest.split(']').next().unwrap_or_default();
        let items: Vec<&str> = list.split(',').map(str::trim).collect();
        items.len() == 32 && items.iter().all(|i| i.parse::<u8>().is_ok())
    })
}

#[tokio::test]
async fn a_full_run_logs_no_task_token_and_nothing_shaped_like_a_key() {
    let moto = Moto::start();
    let world = moto.world();
    let vpc = world.vpc("10.0.0.0/16", false).await;
    let subnet = world.subnet(&vpc, "10.0.1.0/24", None).await;
    let web = world.security_group(&vpc, "web", 443).await;
    let (instance, enis) = world.instance(&[(&subnet, &[&web])], false).await;
    let dir = std::env::temp_dir().join(format!("cordon-cli-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let finding = dir.join("finding.json");
    std::fs::write(
        &finding,
        finding_for(&instance, 8.0, "198.51.100.7").to_string(),
    )
    .unwrap();

    let output = cordon_run(&moto, &finding);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["outcome"], "restored", "{stdout}");
    assert_eq!(world.eni_groups(&enis[0]).await, [web]);
    assert!(
        stderr.contains("RequestApproval"),
        "the log was captured: {stderr}"
    );

    let tokens = task_tokens(&moto, report["execution_arn"].as_str().unwrap()).await;
    assert!(tokens.len() >= 6, "every task of the run: {tokens:?}");
    let approve = report["approval_url"].as_str().unwrap();
    let (link, _) = cordon_core::approval::parse_params(approve.split_once('?').unwrap().1);
    let link = link.expect("the approve link is whole");
    assert!(
        tokens
            .iter()
            .any(|t| cordon_core::approval::task_key(t) == link.k),
        "the email's link names one of the history's tasks"
    );

    // The log: no token, no key, nothing shaped like a key or a signature.
    for token in &tokens {
        assert!(
            !stderr.contains(token.as_str()),
            "a task token in the log: {stderr}"
        );
    }
    assert!(!stderr.contains(&link.s), "{stderr}");
    assert_eq!(hex_runs(&stderr), Vec::<&str>::new(), "{stderr}");
    assert!(!has_byte_list(&stderr), "{stderr}");

    // The report: the emails sent and the approve link are in it, by design. Links name the
    // task by a digest of its token: no task token is anywhere in the report, emails included.
    for token in &tokens {
        assert!(
            !stdout.contains(token.as_str()),
            "a task token in the report: {stdout}"
        );
    }
    let signatures: Vec<String> = report["messages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| cordon::runner::approval_links_in(m["body"].as_str().unwrap()))
        .flat_map(|(approve, reject)| [approve, reject])
        .map(|l| {
            let query = l.split_once('?').unwrap().1.to_string();
            cordon_core::approval::parse_params(&query).0.unwrap().s
        })
        .collect();
    assert!(signatures.contains(&link.s));
    // The approval page's seal on the decision, a MAC too (of this execution's decision only).
    let mut signatures = signatures;
    signatures.extend(
        report["output"]["approval"]["seal"]
            .as_str()
            .map(String::from),
    );
    // Hex in the report: the links' MACs, the tasks' names (digests of tokens, which cannot
    // answer a task), and the decision's seal.
    let task_names: Vec<String> = tokens
        .iter()
        .map(|t| cordon_core::approval::task_key(t))
        .collect();
    for run in hex_runs(&stdout) {
        assert!(
            signatures.iter().chain(&task_names).any(|s| s == run),
            "key-shaped text in the report: {run}"
        );
    }
    assert!(!has_byte_list(&stdout), "{stdout}");
}

/// A KMS HMAC key of the test's own on moto, for calling the approval page directly.
async fn own_link_key(moto: &Moto) -> LinkKey<AwsKms> {
    let sdk = moto.sdk_config();
    LinkKey {
        key_id: cordon::local::create_hmac_key(&sdk, "the test's own")
            .await
            .unwrap(),
        kms: AwsKms::new(&sdk),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn even_a_key_that_signs_cannot_make_a_link_answer_another_execution() {
    let moto = Moto::start();
    let runner = Arc::new(
        Runner::start(&moto.endpoint, Config::default())
            .await
            .unwrap(),
    );
    let world = moto.world();
    let vpc = world.vpc("10.0.0.0/16", false).await;
    let mut executions = Vec::new();
    for (n, cidr) in ["10.0.1.0/24", "10.0.2.0/24"].iter().enumerate() {
        let subnet = world.subnet(&vpc, cidr, None).await;
        let web = world.security_group(&vpc, &format!("web-{n}"), 443).await;
        let (instance, enis) = world.instance(&[(&subnet, &[&web])], false).await;
        let event = json!({"detail-type": "GuardDuty Finding", "source": "aws.guardduty",
            "detail": finding_for(&instance, 8.0, "198.51.100.7")});
        let arn = runner.start_execution(&event, 600).await.unwrap();
        let follow = tokio::spawn({
            let (runner, arn) = (runner.clone(), arn.clone());
            async move { runner.follow(&arn, DecisionMode::Wait).await }
        });
        // The next execution starts once this one's runner has its email: the runner then
        // no longer reads moto's data.json, which can fail while EC2 objects change under it.
        let deadline = Instant::now() + Duration::from_secs(90);
        while !matches!(runner.approval_links(&arn).await, Ok(Some(_))) {
            assert!(Instant::now() < deadline, "no approval request");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        executions.push((arn, follow, enis[0].clone(), web));
    }
    let (arn_a, arn_b) = (executions[0].0.clone(), executions[1].0.clone());
    let token_a = cordon_tests::approval_token(&moto, &arn_a).await;
    let token_b = cordon_tests::approval_token(&moto, &arn_b).await;
    assert_ne!(token_a, token_b);

    // The page, called as the deployed approval function calls it, with a KMS key we may
    // both sign and verify with.
    let sfn = aws_sdk_sfn::Client::new(&moto.sdk_config());
    let leaked = &own_link_key(&moto).await;
    let signed = |execution: &str, token: &str| {
        let (execution, token) = (execution.to_string(), token.to_string());
        async move {
            let params = leaked
                .sign(Action::Approve, unix_now() + 600, &execution, &token)
                .await
                .unwrap();
            let url = link_url("http://approval.invalid/", &params);
            format!("{}&approver=Mallory", url.split_once('?').unwrap().1)
        }
    };
    // Validly signed, but A's execution with B's token (which SendTaskSuccess alone would
    // accept: a token names its task), and B's execution with A's token.
    let approval = ApprovalPage {
        sfn: &sfn,
        key: leaked,
        decisions: runner.decision_key(),
        sign_in: None,
    };
    fn visit(query: &str) -> Visit<'_> {
        Visit {
            query,
            cookie: None,
            page_url: "http://approval.invalid/",
        }
    }
    for (execution, token) in [(&arn_a, &token_b), (&arn_b, &token_a)] {
        let form = signed(execution, token).await;
        for reply in [
            handle_get(&approval, &visit(&form), unix_now()).await,
            handle_post(&approval, form.as_bytes(), unix_now()).await,
        ] {
            assert_eq!(reply.status, 403, "{}", reply.html);
            assert!(
                reply
                    .html
                    .contains("does not belong to the approval request")
                    && reply.html.contains("nothing was changed"),
                "{}",
                reply.html
            );
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(executions
        .iter()
        .all(|(_, follow, _, _)| !follow.is_finished()));

    // The matching pair is accepted: the check refuses the mismatch, not everything.
    let form = signed(&arn_a, &token_a).await;
    let page = handle_get(&approval, &visit(&form), unix_now()).await;
    assert_eq!(page.status, 200, "{}", page.html);
    let decided = handle_post(&approval, form.as_bytes(), unix_now()).await;
    assert_eq!(decided.status, 200, "{}", decided.html);
    let (_, follow_a, eni_a, web_a) = executions.remove(0);
    assert_eq!(follow_a.await.unwrap().unwrap().outcome, "restored");
    assert_eq!(world.eni_groups(&eni_a).await, [web_a]);
    let (_, follow_b, eni_b, web_b) = executions.remove(0);
    assert!(!follow_b.is_finished(), "B still waits");
    assert_ne!(world.eni_groups(&eni_b).await, [web_b]);
}
