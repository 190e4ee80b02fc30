// A certified OpenID provider (the `oidc-provider` package) on loopback, for the approval
// page's sign-in tests. Usage: node provider.mjs PORT REDIRECT_URI CLIENT_ID
//
// Any login name signs in (the package's development login form); the account's email is
// the name, verified, and its groups are `incident-responders` for names at example.com.
// `POST /__test/mode?set=tamper|expire|normal` makes the token endpoint misbehave the way an
// attacker or a slow network would: `tamper` rewrites the ID token's email (so its signature
// no longer verifies), `expire` issues a one-second ID token and delays it past its expiry.
// The provider's last redirect, back to the client, is shown as a page with the link
// (`#callback`) instead of followed, so that a test can alter what comes back before its
// browser brings it (a redirect is followed inside the browser's network stack, where no
// test can reach it).
import Provider from 'oidc-provider';

const [port, redirectUri, clientId] = process.argv.slice(2);
if (!port || !redirectUri || !clientId) {
  console.error('usage: node provider.mjs PORT REDIRECT_URI CLIENT_ID');
  process.exit(2);
}
let mode = 'normal';

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: clientId,
    application_type: 'native',
    token_endpoint_auth_method: 'none',
    redirect_uris: [redirectUri],
    response_types: ['code'],
    grant_types: ['authorization_code'],
  }],
  scopes: ['openid', 'email', 'groups'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        const groups = id.endsWith('@example.com') ? ['incident-responders'] : ['developers'];
        return { sub: id, email: id, email_verified: true, groups };
      },
    };
  },
  // The email and groups in the ID token itself, as IAM Identity Center, Okta and Entra ID
  // put them (the package's default keeps them for the userinfo endpoint).
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  cookies: { keys: ['cordon-tests-only'] },
  ttl: { IdToken: () => (mode === 'expire' ? 1 : 600) },
  features: { devInteractions: { enabled: true } },
});
provider.proxy = false;

provider.use(async (ctx, next) => {
  if (ctx.path === '/__test/mode') {
    mode = ctx.query.set || 'normal';
    ctx.body = { mode };
    return;
  }
  await next();
  const location = ctx.response.get('location');
  if (ctx.status >= 300 && ctx.status < 400 && location && location.startsWith(redirectUri)) {
    ctx.status = 200;
    ctx.remove('location');
    ctx.type = 'html';
    const escaped = location.replace(/&/g, '&amp;').replace(/"/g, '&quot;');
    ctx.body = `<!doctype html><title>Back to the client</title><a id="callback" href="${escaped}">continue</a>`;
    return;
  }
  if (ctx.path === '/token' && ctx.body && ctx.body.id_token) {
    if (mode === 'tamper') {
      const [header, payload, signature] = ctx.body.id_token.split('.');
      const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
      claims.email = 'ciso@example.com';
      claims.sub = 'ciso@example.com';
      const forged = Buffer.from(JSON.stringify(claims)).toString('base64url');
      ctx.body = { ...ctx.body, id_token: `${header}.${forged}.${signature}` };
    } else if (mode === 'expire') {
      await new Promise((resolve) => setTimeout(resolve, 2500));
    }
  }
});

provider.listen(Number(port), '127.0.0.1', () => {
  console.log(JSON.stringify({ issuer: `http://127.0.0.1:${port}` }));
});
