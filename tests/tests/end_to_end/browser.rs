//! The approval page in a real headless Chromium (Debian's package, driven by playwright-core):
//! open the link from the email, check what the page shows and that opening it changed
//! nothing, press "Approve restore", and check the execution went on to Restore.

use std::sync::Arc;

use cordon::runner::{approval_links_in, DecisionMode, Runner};
use cordon_core::config::Config;
use cordon_tests::{finding_for, Moto};
use serde_json::{json, Value};

fn browser(args: &[&str]) -> Value {
    cordon_tests::browser_script("approval.mjs", args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyst_approves_from_the_email_link_in_chromium() {
    let moto = Moto::start();
    let runner = Arc::new(
        Runner::start(&moto.endpoint, Config::default())
            .await
            .unwrap(),
    );
    let world = moto.world();
    let vpc = world.vpc("10.0.0.0/16", false).await;
    let a = world.subnet(&vpc, "10.0.1.0/24", None).await;
    let web = world.security_group(&vpc, "web", 443).await;
    let ssh = world.security_group(&vpc, "ssh", 22).await;
    let (instance, enis) = world.instance(&[(&a, &[&web, &ssh])], false).await;
    let event = json!({"detail-type": "GuardDuty Finding", "source": "aws.guardduty", "detail": finding_for(&instance, 8.0, "198.51.100.7")});

    let run = tokio::spawn({
        let runner = runner.clone();
        async move { runner.run(&event, DecisionMode::Wait, 600).await }
    });
    // The email, as moto received it.
    let approve_link = loop {
        let messages = runner.messages().await.unwrap();
        if let Some((approve, _)) = messages
            .iter()
            .find_map(|(_, body)| approval_links_in(body))
        {
            break approve;
        }
        assert!(
            !run.is_finished(),
            "the workflow ended before asking for approval"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let isolation = world.cordon_group_ids(&vpc).await["isolation"].clone();
    assert_eq!(world.eni_groups(&enis[0]).await, vec![isolation.clone()]);

    let screenshot =
        std::env::temp_dir().join(format!("cordon-approval-{}.png", std::process::id()));
    let page = browser(&["inspect", &approve_link, screenshot.to_str().unwrap()]);
    assert_eq!(page["status"], 200);
    let text = page["text"].as_str().unwrap();
    assert!(text.contains(&format!("Restore {instance}?")), "{text}");
    assert!(
        text.contains("Backdoor:EC2/C&CActivity.B") && text.contains(&enis[0]),
        "{text}"
    );
    assert!(
        text.contains(&format!("{web} (web), {ssh} (ssh)")),
        "restore will put back both groups, in order, with their names: {text}"
    );
    // What the analyst needs to decide: the finding, since when, and what restore undoes.
    for shown in [
        "first seen 2026-11-29T13:51:00.000Z, last seen 2026-11-29T13:58:30.000Z",
        "Remote addresses: 198.51.100.7.",
        "(approval requested 20",
        "and remove these network ACL entries",
        "inbound rule",
        "deny 198.51.100.7/32",
        "What Cordon holds now",
        "termination protection: on",
    ] {
        assert!(text.contains(shown), "{shown:?} in {text}");
    }
    // The approve link renders its own decision only.
    assert_eq!(page["buttons"], json!(["Approve restore"]));
    // Without sign-in the page says who can decide.
    assert!(
        text.contains("No sign-in is configured: anyone with this link can decide"),
        "{text}"
    );
    // Nothing may load, run, frame or sniff it; its own style applies (allowed by its hash),
    // and the browser refused nothing on it.
    let headers = &page["headers"];
    let policy = headers["content-security-policy"]
        .as_str()
        .unwrap_or_default();
    for directive in [
        "default-src 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{policy}");
    }
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(page["blocked"], json!([]), "{page}");
    assert_eq!(page["style"], "rgb(10, 107, 45)");
    // Opening the link (as a mail scanner would) changed nothing.
    assert_eq!(world.eni_groups(&enis[0]).await, vec![isolation]);
    assert!(!run.is_finished(), "GET must not decide");

    // A forged link (signature altered, or the action swapped) gets a clear page, changes nothing.
    let forged = approve_link.replace("a=approve", "a=reject");
    let page = reqwest::get(&forged).await.unwrap();
    assert_eq!(page.status().as_u16(), 403);
    assert!(page.text().await.unwrap().contains("not valid"));
    let (base, query) = approve_link.split_once('?').unwrap();
    let tampered = reqwest::Client::new()
        .post(base)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(query.replace("&s=", "&s=00"))
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status().as_u16(), 403);
    assert!(
        !run.is_finished(),
        "a forged decision must not reach the workflow"
    );

    let result = browser(&["approve", &approve_link, "Ada Analyst"]);
    assert_eq!(result["status"], 200);
    assert_eq!(result["title"], "Restore approved");

    let report = run.await.unwrap().unwrap();
    assert_eq!(report.outcome, "restored");
    assert!(report.states.iter().any(|s| s == "Restore"));
    assert_eq!(report.output["approval"]["approver"], "Ada Analyst");
    assert_eq!(report.output["approval"]["via"], "unauthenticated_link");
    assert_eq!(world.eni_groups(&enis[0]).await, vec![web, ssh]);

    // The same link again: already used, a clear page, nothing changes.
    let again = browser(&["inspect", &approve_link]);
    assert_eq!(again["status"], 410);
    assert!(again["text"]
        .as_str()
        .unwrap()
        .contains("no longer waiting"));
}
