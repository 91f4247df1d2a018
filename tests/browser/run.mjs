// Opens the test page in Debian's Chromium with a DevTools virtual authenticator (CTAP2,
// resident keys, user verification) and prints the page's passkey journey as JSON.
//
//   node run.mjs <page URL> <router GraphQL URL> <email> <password>
//
// Chromium comes from TEST_CHROMIUM (default /usr/bin/chromium).
import { chromium } from "playwright-core";

const [page_url, router, email, password] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.TEST_CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
try {
  const page = await browser.newPage();
  const devtools = await page.context().newCDPSession(page);
  await devtools.send("WebAuthn.enable");
  const { authenticatorId } = await devtools.send("WebAuthn.addVirtualAuthenticator", {
    options: {
      protocol: "ctap2",
      transport: "internal",
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  await page.goto(page_url);
  const result = await page.evaluate(
    ([router, email, password]) => passkeyJourney(router, email, password),
    [router, email, password],
  );
  // What the authenticator holds: the passkey, as a discoverable (resident) credential.
  const { credentials } = await devtools.send("WebAuthn.getCredentials", { authenticatorId });
  result.resident = credentials.map((c) => c.isResidentCredential);
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
