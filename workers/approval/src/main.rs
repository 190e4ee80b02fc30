//! approval: the page behind the email's links (a Lambda Function URL). GET shows what restore
//! would put back and changes nothing; POST sends the decision to the waiting workflow. KMS
//! verifies each link's MAC; this function may only `VerifyMac` with the link key, never make
//! one. It installs no tracing subscriber: the runtime's raw-event trace would log the request
//! (links, forms), and the decision's task token passes through this function's memory.

use cordon_core::approval::{
    handle_get, handle_post, response_headers, ApprovalPage, LinkKey, Reply, SignIn, Visit,
};
use cordon_core::aws::{AwsContext, AwsTarget};
use cordon_core::decision::{decision_key_id_from, DecisionKey};
use cordon_core::kms::AwsKms;
use cordon_core::notify::approval_key_id_from;
use cordon_core::steps::unix_now;
use lambda_http::request::RequestContext;
use lambda_http::{run, service_fn, Body, Error, Request, RequestExt, Response};

fn html(reply: Reply) -> Result<Response<Body>, Error> {
    let mut response = Response::builder().status(reply.status);
    for (name, value) in response_headers().into_iter().chain(reply.headers) {
        response = response.header(name, value);
    }
    Ok(response.body(Body::Text(reply.html))?)
}

/// The function URL the request came to, from Lambda's request context (set by Lambda, not by
/// the client): the provider sends the browser back there, and only there.
fn page_url(request: &Request) -> String {
    let domain = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.domain_name.clone(),
        _ => None,
    };
    format!("https://{}/", domain.unwrap_or_default())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let key_id = approval_key_id_from(|name| std::env::var(name).ok())?;
    let decision_key_id = decision_key_id_from(|name| std::env::var(name).ok())?;
    let aws = AwsContext::load(&AwsTarget::default())
        .await
        .acting_as("approval");
    let sfn = aws_sdk_sfn::Client::new(aws.sdk_config());
    let key = LinkKey {
        kms: AwsKms::new(aws.sdk_config()),
        key_id,
    };
    // Every decision it sends is sealed with this key; the restore step checks the seal.
    let decisions = DecisionKey {
        kms: AwsKms::new(aws.sdk_config()),
        key_id: decision_key_id,
    };
    // The stack's OpenID Connect provider, if any: then only a signed-in analyst decides.
    let sign_in = SignIn::from_env(|name| std::env::var(name).ok())?;
    let page = ApprovalPage {
        sfn: &sfn,
        key: &key,
        decisions: &decisions,
        sign_in: sign_in.as_ref(),
    };
    run(service_fn(|request: Request| {
        let page = &page;
        async move {
            let reply = match request.method().as_str() {
                "GET" => {
                    let page_url = page_url(&request);
                    let visit = Visit {
                        query: request.uri().query().unwrap_or(""),
                        cookie: request
                            .headers()
                            .get("cookie")
                            .and_then(|v| v.to_str().ok()),
                        page_url: &page_url,
                    };
                    handle_get(page, &visit, unix_now()).await
                }
                "POST" => handle_post(page, request.body().as_ref(), unix_now()).await,
                _ => Reply::page(
                    405,
                    cordon_core::approval::render_message_page(
                        "Not allowed",
                        "Use the links in the Cordon email.",
                    ),
                ),
            };
            html(reply)
        }
    }))
    .await
}
