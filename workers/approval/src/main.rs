//! approval: the page behind the email's links (a Lambda Function URL). GET shows what restore
//! would put back and changes nothing; POST sends the decision to the waiting workflow. KMS
//! verifies each link's MAC; this function may only `VerifyMac` with the link key, never make
//! one. It installs no tracing subscriber: the runtime's raw-event trace would log the request
//! (links, forms), and the decision's task token passes through this function's memory.

use cordon_core::approval::{handle_get, handle_post, response_headers, LinkKey, Reply};
use cordon_core::aws::{AwsContext, AwsTarget};
use cordon_core::decision::{decision_key_id_from, DecisionKey};
use cordon_core::kms::AwsKms;
use cordon_core::notify::approval_key_id_from;
use cordon_core::steps::unix_now;
use lambda_http::{run, service_fn, Body, Error, Request, Response};

fn html(reply: Reply) -> Result<Response<Body>, Error> {
    let mut response = Response::builder().status(reply.status);
    for (name, value) in response_headers() {
        response = response.header(name, value);
    }
    Ok(response.body(Body::Text(reply.html))?)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let key_id = approval_key_id_from(|name| std::env::var(name).ok())?;
    let decision_key_id = decision_key_id_from(|name| std::env::var(name).ok())?;
    let aws = AwsContext::load(&AwsTarget::default()).await;
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
    run(service_fn(|request: Request| {
        let (sfn, key, decisions) = (&sfn, &key, &decisions);
        async move {
            let reply = match request.method().as_str() {
                "GET" => {
                    handle_get(sfn, key, request.uri().query().unwrap_or(""), unix_now()).await
                }
                "POST" => {
                    handle_post(sfn, key, decisions, request.body().as_ref(), unix_now()).await
                }
                _ => Reply {
                    status: 405,
                    html: cordon_core::approval::render_message_page(
                        "Not allowed",
                        "Use the links in the Cordon email.",
                    ),
                },
            };
            html(reply)
        }
    }))
    .await
}
