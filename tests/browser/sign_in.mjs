// Drives Debian's Chromium (headless) through the approval page's sign-in at a real OpenID
// provider (tests/oidc/provider.mjs), as an analyst, and as an attacker would.
//   node sign_in.mjs LINK PROVIDER_URL refusals|approve [LOGIN]
// runs each case of the phase in a fresh browser context and prints one JSON object: for each
// case, {status, title, text} of the page the approval endpoint answered with. `refusals` are
// what must change nothing; `approve` signs in as LOGIN (an allowed analyst, ada@example.com
// unless named) and presses "Approve restore" if the page offers it.
import { chromium } from "playwright-core";

const [link, provider, phase, login = "ada@example.com"] = process.argv.slice(2);
const approvalUrl = link.split("?")[0];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});

async function setMode(mode) {
  const response = await fetch(`${provider}/__test/mode?set=${mode}`, { method: "POST" });
  if (!response.ok) throw new Error(`provider mode ${mode}: ${response.status}`);
}

async function answer(page, response) {
  return { status: response.status(), title: await page.title(),
    text: await page.locator("body").innerText() };
}

// Opens the link, signs in at the provider as `login` (its development login form, then its
// consent), and stops where the provider sends the browser back (the provider shows that
// link instead of redirecting): returns the callback URL, not yet loaded, and the page and
// context, so that a case can alter what comes back.
async function signIn(login) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(link);
  if (!page.url().startsWith(provider)) {
    throw new Error(`the link did not send the browser to the provider: ${page.url()}\n${
      await page.locator("body").innerText()}`);
  }
  await page.fill("input[name=login]", login);
  await page.fill("input[name=password]", "any");
  await page.click("button[type=submit]");
  const back = page.locator("#callback");
  for (let i = 0; i < 40 && !(await back.count()); i++) {
    const consent = page.locator("button[type=submit]");
    if (await consent.count()) {
      await consent.first().click().catch(() => {});
    }
    await page.waitForTimeout(250);
  }
  if (!(await back.count())) {
    throw new Error(`the provider never sent the browser back: ${page.url()}\n${
      await page.locator("body").innerText()}`);
  }
  const callback = await back.getAttribute("href");
  return { context, page, callback };
}

async function open(page, url) {
  return answer(page, await page.goto(url));
}

// The flow cookie's value, changed by `change` (a function of its decoded JSON).
async function alterFlow(context, change) {
  const cookies = await context.cookies();
  const flow = cookies.find((c) => c.name === "cordon_sign_in");
  if (!flow) throw new Error("no flow cookie");
  const value = JSON.parse(Buffer.from(flow.value, "base64url").toString());
  change(value);
  await context.addCookies([{ ...flow,
    value: Buffer.from(JSON.stringify(value)).toString("base64url") }]);
  return flow;
}

const results = {};
try {
  await setMode("normal");
  if (phase === "refusals") {
  {
    // Signed in, but not on the stack's approver list.
    const { context, page, callback } = await signIn("mallory@elsewhere.example");
    results.outsider = await open(page, callback);
    await context.close();
  }
  {
    // The callback's state is not the one this browser's sign-in started with (CSRF).
    const { context, page, callback } = await signIn("ada@example.com");
    const url = new URL(callback);
    url.searchParams.set("state", "attacker-state");
    results.wrong_state = await open(page, url.href);
    await context.close();
  }
  {
    // A nonce that is not the ID token's: a token issued for another sign-in.
    const { context, page, callback } = await signIn("ada@example.com");
    await alterFlow(context, (flow) => { flow.nonce = "attacker-nonce"; });
    results.wrong_nonce = await open(page, callback);
    await context.close();
  }
  {
    // The token endpoint's ID token, rewritten to name someone else.
    await setMode("tamper");
    const { context, page, callback } = await signIn("ada@example.com");
    results.tampered = await open(page, callback);
    await context.close();
    await setMode("normal");
  }
  {
    // An ID token that expired before it arrived.
    await setMode("expire");
    const { context, page, callback } = await signIn("ada@example.com");
    results.expired = await open(page, callback);
    await context.close();
    await setMode("normal");
  }
  {
    // A callback used once, then replayed: without the flow (spent by the first use), and
    // with a copy of the flow cookie taken before (the provider refuses a spent code).
    const { context, page, callback } = await signIn("ada@example.com");
    const flow = (await context.cookies()).find((c) => c.name === "cordon_sign_in");
    results.first_use = await open(page, callback);
    results.replayed = await open(page, callback);
    await context.addCookies([flow]);
    results.replayed_with_flow = await open(page, callback);
    await context.close();
  }
  } else if (phase === "approve") {
    // An analyst on the list signs in and approves, if the page lets them.
    const { context, page, callback } = await signIn(login);
    results.signed_in = await open(page, callback);
    if (await page.locator("#approve").count()) {
      const [decided] = await Promise.all([page.waitForNavigation(), page.click("#approve")]);
      results.approve = await answer(page, decided);
    }
    await context.close();
  } else {
    throw new Error(`unknown phase ${phase}`);
  }
  console.log(JSON.stringify(results));
} finally {
  await browser.close();
}
