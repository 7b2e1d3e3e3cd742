#!/usr/bin/env node
// GraphQL-over-HTTP conformance of a running Trellis server, checked with the server audits
// of the `graphql-http` package (the reference implementation of the spec's test suite).
//
// env:
//   TRELLIS_URL   base URL of a running server, e.g. http://127.0.0.1:8080   (required)
//
// Prints one line per audit (ok / warn / error / notice, id, name; the reason and an excerpt
// of the response for the ones that are not ok) and a summary line.
// Exit 1 if any MUST audit is not ok, or any SHOULD audit is not ok and its id is not in
// ALLOWED, or any audit could not run at all (fatal, e.g. no connection). A MAY audit that
// is not met is only a "notice" and does not fail the run.
import { serverAudits } from "graphql-http";

// SHOULD audits that Trellis deliberately does not meet: audit id -> one-line reason.
const ALLOWED = {};

const base = process.env.TRELLIS_URL;
if (!base) {
  console.error("http-audit: missing env TRELLIS_URL");
  process.exit(2);
}
const url = new URL("/graphql", base).href;

// "HTTP 415 application/json {"errors":[...]}", cut short; the body may already be consumed.
const excerpt = async (res) => {
  if (!res) return "";
  let body;
  try {
    body = (await res.clone().text()).replace(/\s+/g, " ");
  } catch {
    body = "<body already read>";
  }
  if (body.length > 200) body = body.slice(0, 200) + "…";
  return ` [HTTP ${res.status} ${res.headers.get("content-type") ?? "-"} ${body}]`;
};

const counts = { ok: 0, warn: 0, error: 0, notice: 0 };
const failing = [];
for (const audit of serverAudits({ url, fetchFn: fetch })) {
  let result;
  try {
    result = await audit.fn();
  } catch (err) {
    // graphql-http throws (instead of returning a result) on a fatal error, e.g. no connection.
    result = { ...audit, status: "error", reason: `fatal: ${err.cause?.message ?? err.message}`, fatal: true };
  }
  counts[result.status] = (counts[result.status] ?? 0) + 1;
  let line = `${result.status.padEnd(6)} ${result.id} ${result.name}`;
  if (result.status !== "ok") {
    line += ` -- ${result.reason}${await excerpt(result.response)}`;
    const level = result.name.split(" ")[0];
    if (result.fatal || level === "MUST" || (level === "SHOULD" && !(result.id in ALLOWED))) failing.push(result.id);
    else if (result.id in ALLOWED) line += ` (allowed: ${ALLOWED[result.id]})`;
  }
  console.log(line);
}

if (counts.notice) console.log(`(${counts.notice} MAY audits not met: notice only)`);
console.log(`graphql-http audits: ${counts.ok} ok, ${counts.warn} warn, ${counts.error} error`);
if (failing.length) {
  console.log(`FAIL: audits not met (MUST; SHOULD not in ALLOWED; or fatal): ${failing.join(", ")}`);
  process.exit(1);
}
