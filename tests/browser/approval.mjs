// Drives Debian's Chromium (headless) through the approval page, as an analyst would.
//   node approval.mjs inspect URL OUT.png   prints {status, title, text, buttons, headers,
//                                           blocked (what the page's CSP refused), style (the
//                                           approve button's computed background)} of the page
//   node approval.mjs approve URL NAME      opens the page, types NAME, presses "Approve restore",
//                                           prints {status, title, text} of the result page
import { chromium } from "playwright-core";

const [mode, url, extra] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  const blocked = [];
  page.on("console", (message) => {
    if (message.text().includes("Content Security Policy")) blocked.push(message.text());
  });
  const response = await page.goto(url);
  if (mode === "inspect") {
    if (extra) await page.screenshot({ path: extra, fullPage: true });
    const buttons = await page.locator("button").allInnerTexts();
    const style = await page.locator("#approve").count()
      ? await page.locator("#approve").evaluate((b) => getComputedStyle(b).backgroundColor)
      : null;
    console.log(JSON.stringify({ status: response.status(), title: await page.title(),
      text: await page.locator("body").innerText(), buttons,
      headers: await response.allHeaders(), blocked, style }));
  } else if (mode === "approve") {
    await page.fill("#approver", extra ?? "");
    const [result] = await Promise.all([page.waitForNavigation(), page.click("#approve")]);
    console.log(JSON.stringify({ status: result.status(), title: await page.title(),
      text: await page.locator("body").innerText() }));
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
} finally {
  await browser.close();
}
