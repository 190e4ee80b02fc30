//! The approval page behind sign-in at a real OpenID provider (the certified `oidc-provider`
//! package, on loopback: `tests/oidc/provider.mjs`), in a real headless Chromium
//! (`tests/browser/sign_in.mjs`): an outsider, a wrong `state`, a wrong nonce, a tampered or
//! expired ID token and a replayed callback are each refused with a clear page and change
//! nothing; an analyst on the approver list signs in, approves, and the instance is restored
//! with the provider's identity recorded in the decision, the execution's output and the email.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cordon::runner::{approval_links_in, DecisionMode, Runner};
use cordon_core::approval::{Approvers, SignIn};
use cordon_core::config::Config;
use cordon_tests::{finding_for, repo_root, Moto};
use serde_json::{json, Value};

const CLIENT_ID: &str = "cordon-approval";

/// The provider's node process, stopped with the test.
struct Provider {
    child: Child,
    issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the provider for a client whose redirect URI is `redirect_uri`, once it serves its
/// discovery document.
async fn provider(port: u16, redirect_uri: &str) -> Provider {
    let child = Command::new("node")
        .arg(repo_root().join("tests/oidc/provider.mjs"))
        .args([&port.to_string(), redirect_uri, CLIENT_ID])
        .current_dir(repo_root().join("tests"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("node runs (scripts/test installs the test tools)");
    let provider = Provider {
        child,
        issuer: format!("http://127.0.0.1:{port}"),
    };
    let discovery = format!("{}/.well-known/openid-configuration", provider.issuer);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = reqwest::get(&discovery).await {
            if response.status().is_success() {
                return provider;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the OpenID provider never started"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn browser(link: &str, issuer: &str, phase: &str) -> Value {
    cordon_tests::browser_script("sign_in.mjs", &[link, issuer, phase])
}

/// Signs in at `link` as `login` and approves if the page offers it.
fn approve_as(link: &str, issuer: &str, login: &str) -> Value {
    cordon_tests::browser_script("sign_in.mjs", &[link, issuer, "approve", login])
}

/// The approve link of the newest email whose subject says `subject`, once it is out.
async fn approve_link_of(
    runner: &Runner,
    run: &tokio::task::JoinHandle<Result<cordon::runner::RunReport, cordon_core::CordonError>>,
    subject: &str,
) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let messages = runner.messages().await.unwrap();
        if let Some(found) = messages.iter().rev().find_map(|(said, body)| {
            said.contains(subject)
                .then(|| approval_links_in(body))
                .flatten()
                .map(|(approve, _)| (approve, body.clone()))
        }) {
            return found;
        }
        assert!(
            !run.is_finished() && Instant::now() < deadline,
            "no email saying {subject:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn refused(results: &Value, case: &str, status: u16, says: &str) {
    let page = &results[case];
    let text = page["text"].as_str().unwrap_or_default();
    assert_eq!(page["status"], status, "{case}: {page}");
    assert!(text.contains(says), "{case}: {says:?} in {text}");
    assert!(text.contains("nothing was changed"), "{case}: {text}");
    assert!(
        !text.contains("Approve restore"),
        "{case} shows the decision: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_signed_in_approver_on_the_list_restores_and_the_identity_is_recorded() {
    let moto = Moto::start();
    let port = free_port();
    let sign_in = SignIn::new(
        &format!("http://127.0.0.1:{port}"),
        CLIENT_ID,
        Approvers::parse("@example.com").unwrap(),
    )
    .unwrap();
    let runner = Arc::new(
        Runner::start_with_sign_in(&moto.endpoint, Config::default(), Some(sign_in))
            .await
            .unwrap(),
    );
    let provider = provider(port, &runner.approval_url).await;

    let world = moto.world();
    let vpc = world.vpc("10.0.0.0/16", false).await;
    let subnet = world.subnet(&vpc, "10.0.1.0/24", None).await;
    let web = world.security_group(&vpc, "web", 443).await;
    let (instance, enis) = world.instance(&[(&subnet, &[&web])], false).await;
    let event = json!({"detail-type": "GuardDuty Finding", "source": "aws.guardduty",
        "detail": finding_for(&instance, 8.0, "198.51.100.7")});
    let run = tokio::spawn({
        let runner = runner.clone();
        async move { runner.run(&event, DecisionMode::Wait, 600).await }
    });
    let (approve_link, email) = loop {
        let messages = runner.messages().await.unwrap();
        if let Some(found) = messages.iter().find_map(|(_, body)| {
            approval_links_in(body).map(|(approve, _)| (approve, body.clone()))
        }) {
            break found;
        }
        assert!(
            !run.is_finished(),
            "the workflow ended before asking for approval"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        email.contains(&format!("sign in at {}", provider.issuer)),
        "{email}"
    );
    assert!(!email.contains("No sign-in is configured"), "{email}");
    let isolated = world.eni_groups(&enis[0]).await;
    assert_ne!(isolated, vec![web.clone()]);

    let refusals = browser(&approve_link, &provider.issuer, "refusals");
    refused(
        &refusals,
        "outsider",
        403,
        "mallory@elsewhere.example, who may not decide",
    );
    refused(
        &refusals,
        "wrong_state",
        400,
        "was not started from a Cordon link in this browser",
    );
    refused(&refusals, "wrong_nonce", 403, "did not verify");
    refused(&refusals, "tampered", 403, "did not verify");
    refused(&refusals, "expired", 403, "did not verify");
    // The callback's first use signs in; a replay, without the spent flow or with a copy of
    // it (the provider refuses a code used once), does not.
    assert_eq!(
        refusals["first_use"]["status"], 200,
        "{}",
        refusals["first_use"]
    );
    refused(
        &refusals,
        "replayed",
        400,
        "was not started from a Cordon link in this browser",
    );
    refused(&refusals, "replayed_with_flow", 403, "did not sign you in");
    // None of it moved the workflow or the instance.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!run.is_finished(), "a refused sign-in decided");
    assert_eq!(world.eni_groups(&enis[0]).await, isolated);

    let approved = browser(&approve_link, &provider.issuer, "approve");
    let signed_in = approved["signed_in"]["text"].as_str().unwrap();
    assert!(
        signed_in.contains(&format!(
            "Signed in as ada@example.com at {}",
            provider.issuer
        )),
        "{signed_in}"
    );
    assert!(!signed_in.contains("Your name"), "{signed_in}");
    assert_eq!(approved["approve"]["status"], 200, "{approved}");
    assert!(
        approved["approve"]["text"]
            .as_str()
            .unwrap()
            .contains("Restore approved"),
        "{approved}"
    );

    let report = run.await.unwrap().unwrap();
    assert_eq!(report.outcome, "restored", "{:?}", report.states);
    assert_eq!(world.eni_groups(&enis[0]).await, vec![web]);
    let decision = &report.output["approval"];
    assert_eq!(decision["via"], "signed_in", "{decision}");
    assert_eq!(decision["approver"], "ada@example.com");
    assert_eq!(decision["identity"]["issuer"], provider.issuer.as_str());
    assert_eq!(decision["identity"]["subject"], "ada@example.com");
    assert_eq!(decision["identity"]["email"], "ada@example.com");
    let messages = runner.messages().await.unwrap();
    let (_, restored) = messages
        .iter()
        .find(|(subject, _)| subject.contains("restored"))
        .expect("a restored email");
    assert!(
        restored.contains(&format!(
            "ada@example.com (signed in at {}, identity verified)",
            provider.issuer
        )),
        "{restored}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_person_rule_needs_a_second_different_signed_in_approver() {
    let moto = Moto::start();
    let port = free_port();
    let sign_in = SignIn::new(
        &format!("http://127.0.0.1:{port}"),
        CLIENT_ID,
        Approvers::parse("@example.com").unwrap(),
    )
    .unwrap();
    let runner = Arc::new(
        Runner::start_with_sign_in(&moto.endpoint, Config::default(), Some(sign_in))
            .await
            .unwrap()
            .with_approvals_required(2),
    );
    let provider = provider(port, &runner.approval_url).await;
    let world = moto.world();
    let vpc = world.vpc("10.0.0.0/16", false).await;
    let subnet = world.subnet(&vpc, "10.0.1.0/24", None).await;
    let web = world.security_group(&vpc, "web", 443).await;
    let (instance, enis) = world.instance(&[(&subnet, &[&web])], false).await;
    let event = json!({"detail-type": "GuardDuty Finding", "source": "aws.guardduty",
        "detail": finding_for(&instance, 8.0, "198.51.100.7")});
    let run = tokio::spawn({
        let runner = runner.clone();
        async move { runner.run(&event, DecisionMode::Wait, 600).await }
    });

    // Ada's approval is the first of two: nothing is restored yet.
    let (first_link, first_email) = approve_link_of(&runner, &run, "approve restore?").await;
    assert!(
        first_email.contains("The stack requires two different approvers"),
        "{first_email}"
    );
    let isolated = world.eni_groups(&enis[0]).await;
    let first = approve_as(&first_link, &provider.issuer, "ada@example.com");
    let page = first["signed_in"]["text"].as_str().unwrap();
    assert!(
        page.contains("First approval: the stack requires two different approvers"),
        "{page}"
    );
    assert_eq!(first["approve"]["status"], 200, "{first}");
    assert!(
        first["approve"]["text"]
            .as_str()
            .unwrap()
            .contains("First approval recorded"),
        "{first}"
    );
    let (second_link, second_email) =
        approve_link_of(&runner, &run, "second approval needed").await;
    assert!(
        second_email.contains(&format!(
            "SECOND APPROVAL NEEDED. ada@example.com (signed in at {}; as the workflow received it, not yet checked: restore checks its seal) approved restoring it.",
            provider.issuer
        )),
        "{second_email}"
    );
    assert_ne!(second_link, first_link);
    assert_eq!(world.eni_groups(&enis[0]).await, isolated);

    // Ada cannot be the second approver: refused at sign-in, before any button.
    let again = approve_as(&second_link, &provider.issuer, "ada@example.com");
    refused(
        &again,
        "signed_in",
        403,
        "ada@example.com made the first approval",
    );
    assert!(again.get("approve").is_none(), "{again}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!run.is_finished(), "the refused approval decided");
    assert_eq!(world.eni_groups(&enis[0]).await, isolated);

    // Grace, another analyst on the list, sees who approved first and restores.
    let second = approve_as(&second_link, &provider.issuer, "grace@example.com");
    let page = second["signed_in"]["text"].as_str().unwrap();
    assert!(
        page.contains("Second approval: ada@example.com (signed in at"),
        "{page}"
    );
    assert_eq!(second["approve"]["status"], 200, "{second}");
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.outcome, "restored", "{:?}", report.states);
    assert_eq!(world.eni_groups(&enis[0]).await, vec![web]);
    let decision = &report.output["approval"];
    assert_eq!(decision["approver"], "grace@example.com", "{decision}");
    assert_eq!(decision["round"], 2);
    assert_eq!(decision["first_approval"]["approver"], "ada@example.com");
    assert_eq!(
        decision["first_approval"]["identity"]["issuer"],
        provider.issuer.as_str()
    );
    let messages = runner.messages().await.unwrap();
    let (_, restored) = messages
        .iter()
        .find(|(subject, _)| subject.contains("restored"))
        .expect("a restored email");
    assert!(
        restored.contains(&format!(
            "grace@example.com (signed in at {issuer}, identity verified), after a first approval by ada@example.com (signed in at {issuer}, identity verified)",
            issuer = provider.issuer
        )),
        "{restored}"
    );
}
