// Summarise a federation-gateway-audit run from its TAP logs (<out>/logs/<suite>-tests.log),
// then (unless EXPLAIN=0) replay every failing query against a fresh gateway to show the
// router's raw response, including error messages (the audit itself only records
// `errors: true/false`).
// Run with the audit's tsx:  tsx summarize.mts <logs-dir>
import { readdirSync, readFileSync, writeFileSync, createWriteStream } from "node:fs";
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const logsDir = process.argv[2];
const AUDIT_DIR = process.env.AUDIT_DIR ?? "target/federation-audit";
const AUDIT_PORT = Number(process.env.AUDIT_PORT ?? 4200);
const GATEWAY_PORT = Number(process.env.GATEWAY_PORT ?? 4100);
const EXPLAIN = process.env.EXPLAIN !== "0";
// gateway.sh sits beside this script, not in the audit's work directory.
const GATEWAY_SCRIPT = join(dirname(fileURLToPath(import.meta.url)), "gateway.sh");

type Failure = { name: string; index: number; error: string };
type Suite = { id: string; passed: number; failures: Failure[]; healthFailed: boolean };

function parseLog(id: string, text: string): Suite {
  const lines = text.split("\n");
  const suite: Suite = { id, passed: 0, failures: [], healthFailed: text.includes("Health check failed") };
  for (let i = 0; i < lines.length; i++) {
    const m = /^ {4}(not ok|ok) \d+ - (\S+)$/.exec(lines[i]);
    if (!m) continue;
    if (m[1] === "ok") { suite.passed++; continue; }
    // YAML block of the failing test, until "      ..."
    const block: string[] = [];
    for (i++; i < lines.length && lines[i] !== "      ..."; i++) block.push(lines[i]);
    let error = "";
    const e = block.findIndex((l) => l.startsWith("      error: "));
    if (e >= 0) {
      const first = block[e].slice("      error: ".length);
      if (first === "|-" || first === "|" || first === ">-") {
        const body: string[] = [];
        for (let j = e + 1; j < block.length && (block[j].startsWith("        ") || block[j].trim() === ""); j++) {
          body.push(block[j].slice(8));
        }
        error = body.join("\n");
      } else {
        error = first.replace(/^'(.*)'$/, "$1");
        const name = block.find((l) => l.startsWith("      name: "));
        if (name) error = `${name.slice(12).replace(/'/g, "")}: ${error}`;
      }
    }
    // Keep jest-diff's diff only (drop node's duplicate "+ actual - expected" diff).
    const cut = error.indexOf("\n+ actual - expected");
    if (cut >= 0) error = error.slice(0, cut);
    const idx = Number(m[2].slice(m[2].lastIndexOf("_") + 1));
    suite.failures.push({ name: m[2], index: idx, error: error.trimEnd() });
  }
  return suite;
}

const suites: Suite[] = readdirSync(logsDir)
  .filter((f) => f.endsWith("-tests.log"))
  .sort()
  .map((f) => parseLog(f.slice(0, -"-tests.log".length), readFileSync(join(logsDir, f), "utf8")));

// ---------------------------------------------------------------- replay failing queries
const responses = new Map<string, string>();

async function waitReady(ms: number) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try {
      const r = await fetch(`http://127.0.0.1:${GATEWAY_PORT}/ready`);
      if (r.ok) return true;
    } catch {}
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}

async function explain() {
  const failing = suites.filter((s) => s.failures.length && !s.healthFailed);
  if (!failing.length) return;
  const { serve } = await import(join(AUDIT_DIR, "suite/src/index.ts"));
  const server = await serve(AUDIT_PORT);
  for (const s of failing) {
    const log = createWriteStream(join(logsDir, `${s.id}-replay-gateway.log`));
    const gw = spawn("sh", [GATEWAY_SCRIPT, s.id], { cwd: AUDIT_DIR, stdio: ["ignore", "pipe", "pipe"] });
    gw.stdout.pipe(log);
    gw.stderr.pipe(log);
    const exited = new Promise<void>((r) => gw.once("exit", () => r()));
    try {
      if (!(await waitReady(30_000))) {
        for (const f of s.failures) responses.set(f.name, `(gateway not ready within 30 s; see logs/${s.id}-replay-gateway.log)`);
        continue;
      }
      const tests = (await (await fetch(`http://127.0.0.1:${AUDIT_PORT}/${s.id}/tests`, { headers: { accept: "application/json" } })).json()) as Array<{ query: string }>;
      for (const f of s.failures) {
        const query = tests[f.index]?.query;
        if (!query) continue;
        try {
          const r = await fetch(`http://127.0.0.1:${GATEWAY_PORT}/graphql`, {
            method: "POST",
            headers: { "content-type": "application/json", accept: "application/json" },
            body: JSON.stringify({ query }),
            signal: AbortSignal.timeout(10_000),
          });
          responses.set(f.name, `HTTP ${r.status} ${await r.text()}`);
        } catch (e) {
          responses.set(f.name, `request failed: ${e}`);
        }
      }
    } finally {
      gw.kill("SIGTERM");
      const t = setTimeout(() => gw.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
    }
  }
  server.close();
}

if (EXPLAIN) {
  try {
    await explain();
  } catch (e) {
    console.log(`(replay of failing queries failed: ${e})`);
  }
}

// ---------------------------------------------------------------- report
// stdout gets a compact report; the full one (complete diffs and responses) goes to the file
// given as 2nd argument. Everything is written in one go at the end (process.exit() on a
// piped stdout may otherwise drop output).
const fullPath = process.argv[3];
const total = suites.reduce((n, s) => n + s.passed + s.failures.length, 0);
const failed = suites.reduce((n, s) => n + s.failures.length, 0);
const indent = (t: string, p = "    ") => t.split("\n").map((l) => p + l).join("\n");
const trunc = (t: string, n: number) => (t.length > n ? t.slice(0, n) + ` … (${t.length} chars)` : t);
const oneLine = (q: string) => q.replace(/\s+/g, " ").trim();

function gatewayErrors(id: string): string[] {
  try {
    const log = readFileSync(join(logsDir, `${id}-gateway.log`), "utf8").replace(/\x1b\[[0-9;]*m/g, "");
    const errs = log.split("\n").filter((l) => /\b(ERROR|WARN|panicked)\b|^keygraph:|could not fetch/.test(l))
      .map((l) => l.replace(/^\S+Z\s+/, ""));
    return [...new Set(errs)];
  } catch { return []; }
}

function splitError(error: string) {
  // "Test failed for query\n<query>\n- Expected\n+ Received\n\n<diff>"
  const m = /^Test failed for query\n([\s\S]*?)\n- Expected\n\+ Received\n\n([\s\S]*)$/.exec(error);
  if (!m) return { query: "", diff: error };
  return { query: m[1], diff: m[2] };
}

function compactDiff(diff: string, max = 14) {
  const lines = diff.split("\n").filter((l) => /^[-+]/.test(l));
  const shown = lines.slice(0, max);
  if (lines.length > max) shown.push(`… (${lines.length - max} more changed lines)`);
  return shown.length ? shown : diff.split("\n").slice(0, max);
}

const compact: string[] = [];
const full: string[] = [];
const both = (...a: string[]) => { compact.push(...a); full.push(...a); };

both("==================== FAILING TESTS ====================");
for (const s of suites) {
  if (!s.failures.length) continue;
  if (s.healthFailed) {
    both(`\n✗✗ ${s.id}: gateway never became healthy; all ${s.failures.length} failing tests below are due to that`);
    for (const e of gatewayErrors(s.id)) both(`    gateway log: ${trunc(e, 400)}`);
  }
  for (const f of s.failures) {
    const { query, diff } = splitError(f.error);
    const resp = responses.get(f.name);
    full.push(`\n✗ ${f.name}`, indent(f.error || "(no error text)"));
    if (resp) full.push(`  router response (replayed):`, indent(trunc(resp, 20000)));
    if (s.healthFailed) { compact.push(`  ✗ ${f.name}   query: ${trunc(oneLine(query), 160)}`); continue; }
    compact.push(`\n✗ ${f.name}`);
    if (query) compact.push(`    query:  ${trunc(oneLine(query), 300)}`);
    compact.push(...compactDiff(diff).map((l, i) => (i ? "            " : "    diff:   ") + l));
    if (resp) compact.push(`    router: ${trunc(resp, 400)}`);
  }
}

both("\n==================== PER SUITE ====================");
for (const s of suites) {
  const n = s.passed + s.failures.length;
  const mark = s.failures.length ? "✗" : "✓";
  both(`${mark} ${s.id.padEnd(40)} ${s.passed}/${n}` + (s.failures.length ? `   failing: ${s.failures.map((f) => f.index).join(",")}` : "") + (s.healthFailed ? "   (gateway not healthy)" : ""));
}

const suitesOk = suites.filter((s) => !s.failures.length).length;
both("\n==================== RESULT ====================");
both(`Tests:  ${total - failed}/${total} passed, ${failed} failed`);
both(`Suites: ${suitesOk}/${suites.length} fully passing`);
both(`Failing tests: ${suites.flatMap((s) => s.failures.map((f) => f.name)).join(" ") || "none"}`);
if (fullPath) {
  writeFileSync(fullPath, ["", "########## FULL REPORT (complete diffs and router responses) ##########", ...full].join("\n") + "\n");
  compact.push(`(full diffs and router responses: appended to last-run.txt)`);
}
process.stdout.write(compact.join("\n") + "\n", () => process.exit(0));
