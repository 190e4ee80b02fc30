//! Sign-in with the organisation's OpenID Connect provider before a decision: authorization
//! code with PKCE, `state` and `nonce` (the `openidconnect` crate checks the ID token's
//! signature against the issuer's published keys, its issuer, audience, expiry and nonce).
//! The approver is then the token's verified identity, never a typed name.
//!
//! The approval function keeps no store. Between the redirect to the provider and its
//! callback the browser holds the flow (state, nonce, PKCE verifier, the link) in a cookie;
//! each part is checked on its own (`state` against the callback's, the nonce inside the
//! signed ID token, the verifier by the provider, the link by its KMS MAC again), so a cookie
//! an attacker writes gains nothing. After the callback the page carries a short session,
//! MAC'd by KMS with the decision key and bound to the execution and task of the link.

use base64::Engine;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};

use super::LinkParams;
use crate::decision::DecisionKey;
use crate::kms::{digest, Kms};
use crate::{CordonError, Result};

/// A client made from a discovery document: it has an authorization endpoint, maybe a token
/// and a userinfo endpoint, and none of the others.
type ProviderClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Who signed in, as the provider's signed ID token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    /// Only an address the provider says it verified (`email_verified`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The groups claim, when the provider sends one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

impl Identity {
    /// The name the record and the emails give: the verified email, else the subject.
    pub fn name(&self) -> &str {
        self.email.as_deref().unwrap_or(&self.subject)
    }
}

/// Who may decide (`CORDON_APPROVERS`): email addresses, `@domain`s and `group:NAME`s, or `*`
/// for anyone the provider signs in for this client. Never empty with sign-in: at a provider
/// anyone can join (Google, a self-sign-up pool), "anyone signed in" is anyone with the link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Approvers {
    anyone: bool,
    emails: Vec<String>,
    domains: Vec<String>,
    groups: Vec<String>,
}

impl Approvers {
    pub fn parse(text: &str) -> Result<Self> {
        let mut approvers = Approvers::default();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let printable = entry.chars().all(|c| c.is_ascii_graphic());
            if entry == "*" {
                approvers.anyone = true;
            } else if let Some(group) = entry.strip_prefix("group:").filter(|g| !g.is_empty()) {
                approvers.groups.push(group.to_string());
            } else if let Some(domain) = entry
                .strip_prefix('@')
                .filter(|d| printable && d.contains('.') && !d.contains('@'))
            {
                approvers.domains.push(domain.to_ascii_lowercase());
            } else if printable && entry.matches('@').count() == 1 && !entry.starts_with('@') {
                approvers.emails.push(entry.to_ascii_lowercase());
            } else {
                return Err(CordonError::InvalidConfiguration(format!(
                    "CORDON_APPROVERS: {entry:?} is neither an email address, an @domain nor a \
group:NAME; list who may decide, comma-separated, e.g. ada@example.com,@soc.example.com,group:incident-responders"
                )));
            }
        }
        Ok(approvers)
    }

    pub fn is_empty(&self) -> bool {
        !self.anyone && self.emails.is_empty() && self.domains.is_empty() && self.groups.is_empty()
    }

    /// Whether `identity` may decide. Email rules match only a verified address.
    pub fn admits(&self, identity: &Identity) -> bool {
        if self.anyone {
            return true;
        }
        let email = identity.email.as_deref().map(str::to_ascii_lowercase);
        let by_email = email.as_deref().is_some_and(|email| {
            self.emails.iter().any(|allowed| allowed == email)
                || email
                    .rsplit_once('@')
                    .is_some_and(|(_, domain)| self.domains.iter().any(|d| d == domain))
        });
        by_email || identity.groups.iter().any(|g| self.groups.contains(g))
    }
}

/// The stack's provider, when one is configured.
#[derive(Debug, Clone)]
pub struct SignIn {
    pub issuer: String,
    pub client_id: String,
    pub approvers: Approvers,
    /// The ID token claim that lists groups (`CORDON_OIDC_GROUPS_CLAIM`, default `groups`).
    pub groups_claim: String,
    http: Http,
}

/// Plain http is taken only for a provider on loopback (tests, a lab): anywhere else the
/// code and the keys would cross the network in clear.
fn check_issuer(issuer: &str) -> Result<()> {
    let url = url::Url::parse(issuer).map_err(|e| {
        CordonError::InvalidConfiguration(format!("CORDON_OIDC_ISSUER {issuer:?}: {e}"))
    })?;
    let loopback = matches!(
        url.host(),
        Some(url::Host::Domain("localhost"))
            | Some(url::Host::Ipv4(std::net::Ipv4Addr::LOCALHOST))
            | Some(url::Host::Ipv6(std::net::Ipv6Addr::LOCALHOST))
    );
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(CordonError::InvalidConfiguration(format!(
            "CORDON_OIDC_ISSUER {issuer:?} is not an https URL; give the issuer exactly as \
its /.well-known/openid-configuration names it"
        ))),
    }
}

impl SignIn {
    pub fn new(issuer: &str, client_id: &str, approvers: Approvers) -> Result<Self> {
        check_issuer(issuer)?;
        if client_id.is_empty()
            || client_id.len() > 255
            || !client_id.chars().all(|c| c.is_ascii_graphic())
        {
            return Err(CordonError::InvalidConfiguration(
                "CORDON_OIDC_CLIENT_ID must be the client id the provider gave Cordon's approval page".into(),
            ));
        }
        // No redirect is followed: discovery and keys come from the issuer's own URLs only.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| CordonError::InvalidConfiguration(format!("HTTP client: {e}")))?;
        Ok(SignIn {
            issuer: issuer.to_string(),
            client_id: client_id.to_string(),
            approvers,
            groups_claim: "groups".into(),
            http: Http(http),
        })
    }

    /// From `CORDON_OIDC_ISSUER`, `CORDON_OIDC_CLIENT_ID`, `CORDON_APPROVERS` and
    /// `CORDON_OIDC_GROUPS_CLAIM`. No issuer: no sign-in (the link alone decides).
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let set = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let (issuer, client_id) = match (set("CORDON_OIDC_ISSUER"), set("CORDON_OIDC_CLIENT_ID")) {
            (None, None) => {
                if set("CORDON_APPROVERS").is_some() {
                    return Err(CordonError::InvalidConfiguration(
                        "CORDON_APPROVERS is set but no CORDON_OIDC_ISSUER: an allow-list needs sign-in to mean anything".into(),
                    ));
                }
                return Ok(None);
            }
            (Some(issuer), Some(client_id)) => (issuer, client_id),
            _ => {
                return Err(CordonError::InvalidConfiguration(
                    "set both CORDON_OIDC_ISSUER and CORDON_OIDC_CLIENT_ID, or neither".into(),
                ))
            }
        };
        let approvers = Approvers::parse(&set("CORDON_APPROVERS").unwrap_or_default())?;
        if approvers.is_empty() {
            return Err(CordonError::InvalidConfiguration(
                "CORDON_APPROVERS is empty: say who may decide once signed in (emails, @domains, group:NAMEs), or * for anyone the provider signs in for this client".into(),
            ));
        }
        let mut sign_in = SignIn::new(issuer.trim(), client_id.trim(), approvers)?;
        if let Some(claim) = set("CORDON_OIDC_GROUPS_CLAIM") {
            sign_in.groups_claim = claim.trim().to_string();
        }
        Ok(Some(sign_in))
    }

    async fn metadata(&self) -> std::result::Result<CoreProviderMetadata, SignInProblem> {
        let issuer = IssuerUrl::new(self.issuer.clone())
            .map_err(|e| SignInProblem::Unavailable(format!("issuer URL: {e}")))?;
        CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| SignInProblem::Unavailable(format!("discovery at {}: {e}", self.issuer)))
    }

    /// Cordon's client at the provider, as its discovery document describes it now, sending
    /// the browser back to `redirect`; and whether the provider has a scope named after the
    /// groups claim. The groups claim is asked for as a scope only there (oidc-provider,
    /// Okta): others (Entra ID) put it in the token by configuration, and an unknown scope
    /// would fail the sign-in.
    async fn client(
        &self,
        redirect: &str,
    ) -> std::result::Result<(ProviderClient, bool), SignInProblem> {
        let metadata = self.metadata().await?;
        let groups_scope = !self.approvers.groups.is_empty()
            && metadata
                .scopes_supported()
                .is_some_and(|scopes| scopes.iter().any(|s| **s == self.groups_claim));
        let redirect = RedirectUrl::new(redirect.to_string())
            .map_err(|e| SignInProblem::Unavailable(format!("redirect URL: {e}")))?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.client_id.clone()),
            None,
        )
        .set_redirect_uri(redirect);
        Ok((client, groups_scope))
    }

    /// Where to send the browser to sign in, and the flow it must bring back. `redirect` is
    /// the approval page's own URL (the callback comes to it), `link` the link's query.
    pub async fn start(
        &self,
        redirect: &str,
        link: &str,
    ) -> std::result::Result<(String, Flow), SignInProblem> {
        let (client, groups_scope) = self.client(redirect).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .set_pkce_challenge(challenge);
        if groups_scope {
            request = request.add_scope(Scope::new(self.groups_claim.clone()));
        }
        let (url, state, nonce) = request.url();
        Ok((
            url.to_string(),
            Flow {
                state: state.secret().clone(),
                nonce: nonce.secret().clone(),
                verifier: verifier.secret().clone(),
                link: link.to_string(),
            },
        ))
    }

    /// The callback: exchanges `code` (with the flow's PKCE verifier) for an ID token and
    /// checks it (signature, issuer, audience, expiry, the flow's nonce), then the allow-list.
    pub async fn finish(
        &self,
        redirect: &str,
        flow: &Flow,
        code: &str,
    ) -> std::result::Result<Identity, SignInProblem> {
        let (client, _) = self.client(redirect).await?;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| SignInProblem::Unavailable(format!("token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(flow.verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| {
                SignInProblem::Refused(format!("the provider did not exchange the code: {e}"))
            })?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| SignInProblem::Unverified("the provider sent no ID token".into()))?;
        let claims = id_token
            .claims(&client.id_token_verifier(), &Nonce::new(flow.nonce.clone()))
            .map_err(|e| SignInProblem::Unverified(e.to_string()))?;
        let email = claims
            .email()
            .filter(|_| claims.email_verified() == Some(true))
            .map(|email| email.as_str().to_string());
        let identity = Identity {
            issuer: claims.issuer().as_str().to_string(),
            subject: claims.subject().as_str().to_string(),
            email,
            // The signature is checked above: the payload's other claims are the provider's.
            groups: claim_strings(&id_token.to_string(), &self.groups_claim),
        };
        if self.approvers.admits(&identity) {
            Ok(identity)
        } else {
            Err(SignInProblem::NotAllowed(identity.name().to_string()))
        }
    }
}

/// A claim of a JWT's payload as a list of strings (one string or an array of them).
fn claim_strings(jwt: &str, claim: &str) -> Vec<String> {
    let payload = jwt
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|p| serde_json::from_slice::<serde_json::Value>(&p).ok());
    match payload.as_ref().and_then(|p| p.get(claim)) {
        Some(serde_json::Value::String(one)) => vec![one.clone()],
        Some(serde_json::Value::Array(many)) => many
            .iter()
            .filter_map(|g| g.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

/// The `openidconnect` crate's requests, over reqwest (no redirects followed).
#[derive(Debug, Clone)]
struct Http(reqwest::Client);

type Pending<'c> = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = std::result::Result<openidconnect::HttpResponse, HttpError>,
            > + Send
            + 'c,
    >,
>;

impl<'c> openidconnect::AsyncHttpClient<'c> for Http {
    type Error = HttpError;
    type Future = Pending<'c>;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let mut outgoing = self.0.request(parts.method, parts.uri.to_string());
            for (name, value) in &parts.headers {
                outgoing = outgoing.header(name, value);
            }
            let response = outgoing
                .body(body)
                .send()
                .await
                .map_err(|e| HttpError(e.to_string()))?;
            let mut incoming = http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                incoming = incoming.header(name, value);
            }
            let body = response
                .bytes()
                .await
                .map_err(|e| HttpError(e.to_string()))?;
            incoming
                .body(body.to_vec())
                .map_err(|e| HttpError(e.to_string()))
        })
    }
}

#[derive(Debug)]
struct HttpError(String);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HttpError {}

/// Why a sign-in did not give an approver. None of them changes anything.
#[derive(Debug, PartialEq)]
pub enum SignInProblem {
    /// No flow cookie, or its `state` is not the callback's: not started in this browser.
    NotStartedHere,
    /// The provider refused (an error on the callback, a spent or unknown code).
    Refused(String),
    /// The ID token does not verify: signature, issuer, audience, expiry or nonce.
    Unverified(String),
    /// Signed in, but not on the allow-list: who.
    NotAllowed(String),
    /// The provider could not be reached or read.
    Unavailable(String),
}

/// A sign-in in progress, kept by the browser between the redirect and the callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    /// The link's query, checked again (its MAC) when the provider sends the browser back.
    pub link: String,
}

/// The cookie that holds a [`Flow`]: `__Host-` over https, so that no other site under the
/// same parent domain (another function URL on `on.aws`) can set or shadow it; browsers take
/// that prefix only with `Secure`, which a page on http loopback (the local runner) cannot set.
pub fn flow_cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-cordon_sign_in"
    } else {
        "cordon_sign_in"
    }
}

/// How long a sign-in may take, and how long the signed-in page's form stays good.
pub const SIGN_IN_SECONDS: i64 = 600;

impl Flow {
    pub fn to_cookie_value(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(self).expect("a flow serialises"))
    }

    pub fn from_cookie_value(value: &str) -> Option<Flow> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(value)
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The flow a callback belongs to, from the request's `Cookie` header: `None` unless the
    /// browser holds one whose `state` is the callback's.
    pub fn for_callback(cookie_header: Option<&str>, state: &str, secure: bool) -> Option<Flow> {
        if state.is_empty() {
            return None;
        }
        // Of several (a planted one beside the browser's own), the one whose state matches.
        cookie_header?
            .split(';')
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(name, _)| *name == flow_cookie_name(secure))
            .filter_map(|(_, value)| Flow::from_cookie_value(value))
            .find(|flow| constant_time_eq(flow.state.as_bytes(), state.as_bytes()))
    }
}

/// `Set-Cookie` for the flow (`None`: remove it). `Secure` whenever the page is served over
/// https; `SameSite=Lax` so that the provider's redirect back (a top-level GET) brings it.
pub fn flow_cookie(flow: Option<&Flow>, secure: bool) -> String {
    let (value, max_age) = match flow {
        Some(flow) => (flow.to_cookie_value(), SIGN_IN_SECONDS),
        None => (String::new(), 0),
    };
    format!(
        "{}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
        flow_cookie_name(secure),
        if secure { "; Secure" } else { "" }
    )
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A signed-in analyst's standing to decide on one link's request for a few minutes: what the
/// page's form carries from the callback to the decision. MAC'd by KMS with the decision key
/// (a message of its own kind, so a session is never a decision's seal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub identity: Identity,
    /// The link signed in for: its decision, execution and task (`a`, `x`, `k`), so that a
    /// session from the "keep isolated" page cannot approve.
    pub action: String,
    pub execution: String,
    pub task: String,
    pub expires: i64,
}

fn session_message(payload: &str) -> Vec<u8> {
    digest(&["cordon approval session v1", payload])
}

impl Session {
    /// The form field: the session and its MAC.
    pub async fn seal(&self, decisions: &DecisionKey<impl Kms>) -> Result<String> {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(self).expect("a session serialises"));
        let mac = decisions
            .kms
            .generate_mac(&decisions.key_id, &session_message(&payload))
            .await?;
        Ok(format!("{payload}.{}", super::to_hex(&mac)))
    }

    /// The session a form carries, if its MAC is the decision key's, it is for `link`'s
    /// execution and task, and it has not expired. The approval function may only
    /// `GenerateMac` with the decision key: it checks by making the MAC again.
    pub async fn open(
        field: &str,
        decisions: &DecisionKey<impl Kms>,
        link: &LinkParams,
        now: i64,
    ) -> std::result::Result<Session, SessionProblem> {
        let (payload, mac) = field.split_once('.').ok_or(SessionProblem::Forged)?;
        let mac = super::from_hex(mac).ok_or(SessionProblem::Forged)?;
        let session: Session = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or(SessionProblem::Forged)?;
        let expected = decisions
            .kms
            .generate_mac(&decisions.key_id, &session_message(payload))
            .await
            .map_err(SessionProblem::Unverifiable)?;
        if !constant_time_eq(&expected, &mac) {
            return Err(SessionProblem::Forged);
        }
        if session.action != link.a || session.execution != link.x || session.task != link.k {
            return Err(SessionProblem::Forged);
        }
        if now > session.expires {
            return Err(SessionProblem::Expired);
        }
        Ok(session)
    }
}

#[derive(Debug)]
pub enum SessionProblem {
    /// Not a session this page made for this link.
    Forged,
    Expired,
    /// KMS could not be asked.
    Unverifiable(CordonError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approval::fixtures::*;

    fn identity(email: Option<&str>, groups: &[&str]) -> Identity {
        Identity {
            issuer: "https://idp.example".into(),
            subject: "248289761001".into(),
            email: email.map(String::from),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn the_allow_list_admits_listed_addresses_domains_and_groups_only() {
        let approvers =
            Approvers::parse(" Ada@Example.com, @soc.example.com ,group:incident-responders")
                .unwrap();
        assert!(approvers.admits(&identity(Some("ada@example.com"), &[])));
        assert!(approvers.admits(&identity(Some("bob@SOC.example.com"), &[])));
        assert!(approvers.admits(&identity(None, &["incident-responders"])));
        for outsider in [
            identity(Some("mallory@example.org"), &["developers"]),
            // A look-alike domain, and a subdomain the list does not name.
            identity(Some("eve@soc.example.com.evil.example"), &[]),
            identity(Some("eve@x.soc.example.com"), &[]),
            // No verified email, no group: only the subject is known.
            identity(None, &[]),
        ] {
            assert!(!approvers.admits(&outsider), "{outsider:?}");
        }
        assert!(Approvers::parse("*").unwrap().admits(&identity(None, &[])));
        assert!(Approvers::parse("").unwrap().is_empty());
        for bad in ["ada", "@", "group:", "a@b@c", "ada @example.com"] {
            let error = Approvers::parse(bad).unwrap_err().to_string();
            assert!(error.contains("CORDON_APPROVERS"), "{bad}: {error}");
        }
    }

    #[test]
    fn sign_in_is_configured_whole_over_https_or_not_at_all() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(SignIn::from_env(env(&[])).unwrap().is_none());
        let configured = SignIn::from_env(env(&[
            ("CORDON_OIDC_ISSUER", "https://idp.example"),
            ("CORDON_OIDC_CLIENT_ID", "cordon"),
            ("CORDON_APPROVERS", "@example.com"),
            ("CORDON_OIDC_GROUPS_CLAIM", "roles"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(configured.groups_claim, "roles");
        assert!(SignIn::from_env(env(&[
            ("CORDON_OIDC_ISSUER", "http://127.0.0.1:4000"),
            ("CORDON_OIDC_CLIENT_ID", "cordon"),
            ("CORDON_APPROVERS", "*"),
        ]))
        .unwrap()
        .is_some());
        for (bad, says) in [
            (
                env(&[("CORDON_OIDC_ISSUER", "https://idp.example")]),
                "both",
            ),
            (
                env(&[("CORDON_APPROVERS", "@example.com")]),
                "no CORDON_OIDC_ISSUER",
            ),
            (
                env(&[
                    ("CORDON_OIDC_ISSUER", "http://idp.example"),
                    ("CORDON_OIDC_CLIENT_ID", "cordon"),
                    ("CORDON_APPROVERS", "*"),
                ]),
                "not an https URL",
            ),
        ] {
            let error = SignIn::from_env(bad).unwrap_err().to_string();
            assert!(error.contains(says), "{error}");
        }
    }

    #[test]
    fn a_callback_belongs_only_to_the_flow_with_its_state() {
        let flow = Flow {
            state: "s-1".into(),
            nonce: "n-1".into(),
            verifier: "v-1".into(),
            link: "a=approve".into(),
        };
        let planted = Flow {
            state: "s-planted".into(),
            ..flow.clone()
        };
        let header = format!(
            "other=1; __Host-cordon_sign_in={}; __Host-cordon_sign_in={}",
            planted.to_cookie_value(),
            flow.to_cookie_value()
        );
        assert_eq!(
            Flow::for_callback(Some(&header), "s-1", true),
            Some(flow.clone())
        );
        assert_eq!(Flow::for_callback(Some(&header), "s-2", true), None);
        assert_eq!(Flow::for_callback(Some(&header), "", true), None);
        assert_eq!(Flow::for_callback(None, "s-1", true), None);
        // Over https only the prefixed cookie counts, which no other site can set.
        let unprefixed = format!("cordon_sign_in={}", flow.to_cookie_value());
        assert_eq!(Flow::for_callback(Some(&unprefixed), "s-1", true), None);
        assert_eq!(
            Flow::for_callback(Some(&unprefixed), "s-1", false),
            Some(flow.clone())
        );
        assert_eq!(
            Flow::for_callback(Some("__Host-cordon_sign_in=not-json"), "s-1", true),
            None
        );
        let set = flow_cookie(Some(&flow), true);
        assert!(set.starts_with("__Host-cordon_sign_in="), "{set}");
        assert!(
            set.ends_with("Path=/; Max-Age=600; HttpOnly; SameSite=Lax; Secure"),
            "{set}"
        );
        assert!(flow_cookie(None, false).contains("Max-Age=0"));
    }

    #[test]
    fn groups_are_read_from_the_token_payload_as_one_or_many() {
        let jwt = |payload: serde_json::Value| {
            format!(
                "e30.{}.c2ln",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload.to_string())
            )
        };
        assert_eq!(
            claim_strings(&jwt(serde_json::json!({"groups": ["a", "b", 3]})), "groups"),
            ["a", "b"]
        );
        assert_eq!(
            claim_strings(&jwt(serde_json::json!({"roles": "a"})), "roles"),
            ["a"]
        );
        assert!(claim_strings(&jwt(serde_json::json!({})), "groups").is_empty());
        assert!(claim_strings("not a jwt", "groups").is_empty());
    }

    #[tokio::test]
    async fn a_session_opens_only_for_its_link_before_it_expires() {
        let decisions = decisions();
        let link = LinkParams {
            a: "approve".into(),
            e: 2_000,
            x: ARN.into(),
            k: "task-1".into(),
            s: String::new(),
        };
        let session = Session {
            identity: identity(Some("ada@example.com"), &[]),
            action: "approve".into(),
            execution: ARN.into(),
            task: "task-1".into(),
            expires: 1_000,
        };
        let field = session.seal(&decisions).await.unwrap();
        assert_eq!(
            Session::open(&field, &decisions, &link, 900).await.unwrap(),
            session
        );
        assert!(matches!(
            Session::open(&field, &decisions, &link, 1_001).await,
            Err(SessionProblem::Expired)
        ));
        // Another task's link, or the other decision of the same request.
        for other in [
            LinkParams {
                k: "task-2".into(),
                ..link.clone()
            },
            LinkParams {
                a: "reject".into(),
                ..link.clone()
            },
        ] {
            assert!(matches!(
                Session::open(&field, &decisions, &other, 900).await,
                Err(SessionProblem::Forged)
            ));
        }
        // Another identity written into the payload, with the old MAC.
        let (_, mac) = field.split_once('.').unwrap();
        let forged = Session {
            identity: identity(Some("mallory@example.com"), &[]),
            ..session.clone()
        };
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&forged).unwrap());
        for bad in [
            format!("{payload}.{mac}"),
            "x".into(),
            format!("{payload}.zz"),
        ] {
            assert!(matches!(
                Session::open(&bad, &decisions, &link, 900).await,
                Err(SessionProblem::Forged)
            ));
        }
        // A decision seal of the same key is not a session, nor the reverse: the messages
        // are of different kinds.
        assert_ne!(session_message("x"), digest(&["cordon decision v2", "x"]));
    }
}
