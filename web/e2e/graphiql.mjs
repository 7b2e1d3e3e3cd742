#!/usr/bin/env node
// End-to-end check of the offline GraphiQL (ruru) page served by Trellis at /graphiql.
//
// Drives the system Chromium (never a downloaded browser) with playwright-core, the way a
// user would: open the page, paste an Authorization header into the "Headers" editor,
// replace the query, press the execute button and read the response pane.
//
// env:
//   TRELLIS_URL     base URL of a running server, e.g. http://127.0.0.1:8080   (required)
//   TRELLIS_TOKEN   bearer token; sent as {"Authorization":"Bearer <token>"}  (required)
//   TRELLIS_QUERY   GraphQL document to execute                                (required)
//   TRELLIS_EXPECT  substring that must appear in the response pane            (required)
//   TRELLIS_DOCS_TYPE, TRELLIS_DOCS_EXPECT  optional: then the docs explorer is opened, the
//                   type is searched for and picked, and its page must show the text
//   CHROMIUM        browser binary (default /usr/bin/chromium)
//   E2E_TIMEOUT_MS  wait for the expected response (default 30000)
//   E2E_ARTIFACTS   directory for the failure screenshot (default: the temp dir)
//
// Exit 0 on success; 1 with the response pane text and a screenshot path on failure.
// Also fails if the page makes any request to a host other than TRELLIS_URL's host
// (proves the page works offline, without a CDN).
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const started = Date.now();
const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined || v === "") {
    console.error(`e2e: missing env ${name}`);
    process.exit(2);
  }
  return v;
};
const base = new URL(env("TRELLIS_URL"));
const token = env("TRELLIS_TOKEN");
const query = env("TRELLIS_QUERY");
const expected = env("TRELLIS_EXPECT");
const executablePath = env("CHROMIUM", "/usr/bin/chromium");
const timeout = Number(process.env.E2E_TIMEOUT_MS ?? 30000);
const pageUrl = new URL("/graphiql", base).href;
const headersText = JSON.stringify({ Authorization: `Bearer ${token}` });

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "trellis-e2e-"));
const userDataDir = path.join(tmp, "profile");
const artifacts = process.env.E2E_ARTIFACTS || tmp;
fs.mkdirSync(artifacts, { recursive: true });

const log = (...a) => console.log(`[e2e +${((Date.now() - started) / 1000).toFixed(1)}s]`, ...a);

// Every request (and websocket) the page opens must stay on TRELLIS_URL's host.
// The first one that does not fails the run at once (the race below), and all are listed.
const foreign = [];
let onForeign;
const foreignSeen = new Promise((_, reject) => {
  onForeign = (what) => {
    foreign.push(what);
    reject(new Error(`request left ${base.host}: ${what}`));
  };
});
foreignSeen.catch(() => {});
const failedRequests = [];
const pageErrors = [];
const allowed = (u) => {
  try {
    const x = new URL(u);
    if (x.protocol === "data:" || x.protocol === "blob:" || x.protocol === "about:") return true;
    return x.host === base.host;
  } catch {
    return false;
  }
};

const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath,
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  viewport: { width: 1400, height: 1600 },
});

// The user's session, step by step.
async function drive() {
  log(`open ${pageUrl}`);
  const nav = await page.goto(pageUrl, { waitUntil: "domcontentloaded" });
  if (!nav || !nav.ok()) throw new Error(`GET ${pageUrl} -> ${nav ? nav.status() : "no response"}`);

  // Wait for ruru to mount: query editor (Monaco) and execute button.
  const queryEditor = page.locator(".graphiql-query-editor .monaco-editor").first();
  await queryEditor.waitFor({ state: "visible" });
  const executeButton = page.locator("button.graphiql-execute-button");
  await executeButton.waitFor({ state: "visible" });
  log("editor ready");

  // Replace the content of a Monaco editor the way a user does: click, select all, paste.
  // (Typing or insertText would trigger Monaco's auto-closing brackets and auto-indent.)
  const replaceEditorText = async (editor, text) => {
    await editor.locator(".view-lines").click();
    await page.keyboard.press("ControlOrMeta+KeyA");
    await page.keyboard.press("Delete");
    await page.evaluate((t) => navigator.clipboard.writeText(t), text);
    await page.keyboard.press("ControlOrMeta+KeyV");
  };
  const editorText = (editor) =>
    editor.evaluate((el) =>
      [...el.querySelectorAll(".view-lines .view-line")]
        .sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top))
        .map((l) => l.textContent.replace(/\u00a0/g, " "))
        .join("\n"),
    );

  // A paste lands asynchronously (clipboard, then Monaco's render), and on a loaded
  // machine a click can land before the editor takes focus: poll the editor until its
  // text is accepted, and paste again (three tries) if it never is.
  const pasteInto = async (editor, text, what, accept) => {
    let seen = "";
    for (let attempt = 1; attempt <= 3; attempt++) {
      await replaceEditorText(editor, text);
      const deadline = Date.now() + 3000;
      while (Date.now() < deadline) {
        seen = await editorText(editor);
        try {
          if (accept(seen)) return seen;
        } catch {}
        await page.waitForTimeout(100);
      }
      log(`${what} editor shows ${JSON.stringify(seen)} after paste ${attempt}`);
    }
    throw new Error(`${what} editor does not hold the paste: ${seen}`);
  };

  // Headers: open the "Headers" tab of the editor tools and paste the Authorization header.
  const toolsToggle = page.locator("button.graphiql-toggle-editor-tools");
  const headersTab = page.locator('.graphiql-editor-tools button[data-name="headers"]');
  if (!(await headersTab.isVisible())) await toolsToggle.click();
  await headersTab.click();
  const headersEditor = page
    .locator('section.graphiql-editor-tool .graphiql-editor:not(.hidden) .monaco-editor[data-uri$="headers.json"]')
    .first();
  await headersEditor.waitFor({ state: "visible" });
  const typedHeaders = await pasteInto(headersEditor, headersText, "headers", (t) => {
    JSON.parse(t);
    return true;
  });
  const parsedHeaders = JSON.parse(typedHeaders);
  if (parsedHeaders.Authorization !== `Bearer ${token}`) {
    throw new Error(`headers editor does not hold the token: ${typedHeaders}`);
  }
  log("headers set in the Headers editor");

  // Query: replace the query editor's content.
  await pasteInto(queryEditor, query, "query", (t) => t.trim() === query.trim());
  // GraphiQL re-parses the query 100 ms after an edit (debounced); only then does it know the
  // operation type, and a subscription is routed to the websocket instead of a POST.
  await page.waitForTimeout(400);
  log("query set");

  // Execute; make sure the result we read comes from this execution, not from schema introspection.
  const isExecution = (r) => {
    if (r.method() !== "POST") return false;
    try {
      const body = JSON.parse(r.postData() ?? "{}");
      return body.operationName !== "IntrospectionQuery" && !/\b__schema\b/.test(body.query ?? "");
    } catch {
      return true;
    }
  };
  const executed = page.waitForRequest(isExecution);
  await executeButton.click();
  const req = await executed;
  const sentAuth = (await req.allHeaders())["authorization"];
  log(`executed: ${req.method()} ${req.url()} authorization=${JSON.stringify(sentAuth)}`);
  if (sentAuth !== `Bearer ${token}`) throw new Error(`request carried authorization=${JSON.stringify(sentAuth)}`);
  const sentQuery = JSON.parse(req.postData() ?? "{}").query;
  if (sentQuery?.trim() !== query.trim()) {
    throw new Error(`request carried a different query than TRELLIS_QUERY: ${JSON.stringify(sentQuery)}`);
  }
  const res = await req.response();
  log(`response: HTTP ${res?.status()}`);

  const pane = page.locator(".graphiql-response .result-window").first();
  await page
    .waitForFunction(
      (want) => {
        const el = document.querySelector(".graphiql-response .result-window .view-lines");
        return !!el && el.textContent.replace(/\u00a0/g, " ").includes(want);
      },
      expected,
      { timeout, polling: 100 },
    )
    .catch(() => {});
  responseText = await editorText(pane).catch(() => "");
  if (!responseText.includes(expected)) {
    throw new Error(`response pane does not contain ${JSON.stringify(expected)}`);
  }
  log("response pane contains the expected text");

  // The docs explorer: it needs the schema from introspection at the server's default
  // limits, and shows the type's description.
  const docsType = process.env.TRELLIS_DOCS_TYPE;
  const docsExpect = process.env.TRELLIS_DOCS_EXPECT;
  if (docsType && docsExpect) {
    await page.locator('.graphiql-sidebar button[aria-label="Show Documentation Explorer"]').click();
    const search = page.locator('[data-cy="doc-explorer-input"]');
    await search.waitFor({ state: "visible" });
    await search.click();
    await search.fill(docsType);
    const option = page
      .locator('[data-cy="doc-explorer-list"] [data-cy="doc-explorer-option"]')
      .filter({ has: page.locator(".graphiql-doc-explorer-search-type", { hasText: new RegExp(`^${docsType}$`) }) })
      .first();
    await option.click();
    const shown = await page
      .waitForFunction(
        (want) => document.querySelector(".graphiql-doc-explorer")?.textContent.includes(want),
        docsExpect,
        { timeout, polling: 100 },
      )
      .then(() => true)
      .catch(() => false);
    if (!shown) {
      const text = await page.locator(".graphiql-doc-explorer").first().textContent().catch(() => "");
      throw new Error(`docs explorer does not show ${JSON.stringify(docsExpect)}: ${text?.slice(0, 500)}`);
    }
    log(`docs explorer shows ${docsType}'s description`);
  }

  // Let late lazy loads (chunks, workers, fonts) happen before judging the request log.
  await page.waitForLoadState("networkidle", { timeout: 5000 }).catch(() => {});
  if (foreign.length) throw new Error(`requests left ${base.host}:\n  ${foreign.join("\n  ")}`);
  if (pageErrors.length) throw new Error(`the page failed:\n  ${pageErrors.join("\n  ")}`);
}

let page;
let exitCode = 1;
let responseText = "";
try {
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(timeout);
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base.origin });
  const watch = (p) => {
    p.on("request", (r) => {
      if (!allowed(r.url())) onForeign(`${r.method()} ${r.url()}`);
    });
    p.on("websocket", (ws) => {
      if (!allowed(ws.url())) onForeign(`WEBSOCKET ${ws.url()}`);
    });
    p.on("requestfailed", (r) => failedRequests.push(`${r.method()} ${r.url()}: ${r.failure()?.errorText}`));
    p.on("response", (r) => {
      if (r.status() >= 400) failedRequests.push(`${r.request().method()} ${r.url()}: HTTP ${r.status()}`);
    });
    p.on("pageerror", (e) => {
      pageErrors.push(e.message);
      log("page error:", e.message);
    });
    p.on("console", (m) => {
      if (m.type() === "error") {
        // GraphiQL's editor worker failing on the schema (an introspection it cannot
        // build) leaves the page half-working: count it as a page error.
        if (m.text().includes("error loading worker")) pageErrors.push(m.text().split("\n")[0]);
        log("console error:", m.text());
      }
    });
  };
  context.on("page", watch);
  watch(page);
  // Workers (Monaco's module workers) are part of the page too: their script URLs must be local.
  page.on("worker", (w) => {
    if (!allowed(w.url())) onForeign(`WORKER ${w.url()}`);
  });

  await Promise.race([foreignSeen, drive()]);
  exitCode = 0;
} catch (err) {
  console.error(`e2e FAILED: ${err.message}`);
  if (!responseText && page) {
    responseText = await page
      .locator(".graphiql-response .result-window")
      .first()
      .innerText({ timeout: 2000 })
      .catch(() => "<no response pane>");
  }
  console.error("response pane text:\n" + responseText);
  if (foreign.length) console.error(`requests to other hosts:\n  ${foreign.join("\n  ")}`);
  if (failedRequests.length) console.error(`failed requests:\n  ${failedRequests.join("\n  ")}`);
  if (page) {
    const shot = path.join(artifacts, `graphiql-failure-${Date.now()}.png`);
    try {
      await page.screenshot({ path: shot, fullPage: true });
      console.error(`screenshot: ${shot}`);
    } catch (e) {
      console.error(`screenshot failed: ${e.message}`);
    }
  }
} finally {
  await context.close().catch(() => {});
  // The profile is throwaway; keep the temp dir only when it holds the failure screenshot.
  fs.rmSync(userDataDir, { recursive: true, force: true });
  if (exitCode === 0 && artifacts === tmp) fs.rmSync(tmp, { recursive: true, force: true });
}

log(exitCode === 0 ? "PASS" : "FAIL");
process.exit(exitCode);
