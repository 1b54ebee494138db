// The whole pgshot flow through openapi-fetch, typed by what openapi-typescript generates from
// openapi/openapi.json (tests/tests/generated_clients.rs generates it into generated/, compiles
// this with tsc --strict and runs it). A field or operation the spec lacks fails the compile.
//
// Environment: PGSHOT_BASE (the API), PGSHOT_KEY (an API key), PGSHOT_SITE (the test site).

import createClient from "openapi-fetch";
import type { components, paths } from "./generated/pgshot.js";

type Job = components["schemas"]["Job"];
type ScreenshotRequest = components["schemas"]["ScreenshotRequest"];

const env = (name: string): string => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const SITE = env("PGSHOT_SITE");
const client = createClient<paths>({ baseUrl: env("PGSHOT_BASE"), headers: { "X-API-Key": env("PGSHOT_KEY") } });

function check(ok: boolean, what: string, detail?: unknown): asserts ok {
  if (!ok) throw new Error(`${what}: ${JSON.stringify(detail)}`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFinished(jobId: string): Promise<Job> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const { data, error } = await client.GET("/v1/screenshots/jobs/{jobId}", { params: { path: { jobId } } });
    check(data !== undefined, "getJob", error);
    if (data.status === "COMPLETED" || data.status === "FAILED" || data.status === "CANCELLED") return data;
    check(Date.now() < deadline, `job ${jobId} still ${data.status}`);
    await sleep(200);
  }
}

async function create(body: ScreenshotRequest): Promise<string> {
  const { data, error } = await client.POST("/v1/screenshots/async", { body });
  check(data !== undefined && data.status === "QUEUED", "createAsyncJob", error);
  return data.id;
}

// Create a job with one output of every kind, poll it, download each.
const id = await create({
  url: `${SITE}/plain`,
  viewport: { width: 640, height: 480 },
  outputs: [
    { type: "screenshot", id: "shot", format: "webp", quality: 70 },
    { type: "pdf", id: "print", paperFormat: "A4" },
    { type: "html", id: "page", mainContentOnly: false },
    { type: "markdown", id: "md" },
    { type: "text", id: "text" },
    { type: "json", id: "data", schema: { heading: { selector: "h1", type: "text" } } },
  ],
});
const job = await waitFinished(id);
check(job.status === "COMPLETED", "job completed", job);
check(job.metadata?.format === "MULTI" && Object.keys(job.outputs ?? {}).length === 6, "outputs", job);

async function download(outputId: string): Promise<Uint8Array> {
  const { data, error } = await client.GET("/v1/screenshots/jobs/{jobId}/result/{outputId}", {
    params: { path: { jobId: id, outputId } },
    parseAs: "arrayBuffer",
  });
  check(data !== undefined, `download ${outputId}`, error);
  return new Uint8Array(data);
}
const ascii = (bytes: Uint8Array, n: number) => new TextDecoder().decode(bytes.slice(0, n));
check(ascii(await download("shot"), 4) === "RIFF", "a WebP");
check(ascii(await download("print"), 5) === "%PDF-", "a PDF");
check(new TextDecoder().decode(await download("page")).includes("Hello pgshot"), "html");
check(new TextDecoder().decode(await download("md")).trimStart().startsWith("# Hello pgshot"), "markdown");
check(new TextDecoder().decode(await download("text")).includes("Hello pgshot"), "text");
const extracted = JSON.parse(new TextDecoder().decode(await download("data")));
check(extracted.data.heading === "Hello pgshot", "json schema", extracted);

// Cancel a job that is not due yet.
const later = await create({ url: `${SITE}/plain`, runAt: "2099-01-01T00:00:00Z" });
const cancelled = await client.POST("/v1/screenshots/jobs/{jobId}/cancel", { params: { path: { jobId: later } } });
check(cancelled.data?.status === "CANCELLED", "cancelJob", cancelled.error);

// List with paging through X-Next-Cursor.
const seen: string[] = [];
let cursor: string | undefined;
for (;;) {
  const { data, response } = await client.GET("/v1/screenshots/jobs", { params: { query: { limit: 1, cursor } } });
  check(data !== undefined, "listJobs");
  seen.push(...data.map((j) => j.id));
  cursor = response.headers.get("X-Next-Cursor") ?? undefined;
  if (cursor === undefined) break;
}
check(JSON.stringify(seen) === JSON.stringify([later, id]), "every job once, newest first", seen);

// Bulk: create with defaults, follow, list, cancel.
const bulk = await client.POST("/v1/screenshots/bulk", {
  body: {
    urls: [{ url: `${SITE}/plain` }, { url: `${SITE}/box`, options: { format: "jpeg" } }],
    defaults: { viewport: { width: 320, height: 240 } },
  },
});
check(bulk.data !== undefined && bulk.data.totalJobs === 2, "createBulkJob", bulk.error);
const bulkId = bulk.data.id;
const deadline = Date.now() + 60_000;
for (;;) {
  const { data } = await client.GET("/v1/screenshots/bulk/{bulkId}", { params: { path: { bulkId } } });
  check(data !== undefined, "getBulkJob");
  if (data.status === "COMPLETED") {
    check(JSON.stringify(data.jobs?.map((j) => j.format)) === '["PNG","JPEG"]', "bulk formats", data.jobs);
    break;
  }
  check(Date.now() < deadline, "bulk still running", data);
  await sleep(200);
}
const listed = await client.GET("/v1/screenshots/bulk", { params: { query: { limit: 10 } } });
check(listed.data?.length === 1 && listed.data[0].id === bulkId, "listBulkJobs", listed.data);
const bulkCancel = await client.POST("/v1/screenshots/bulk/{bulkId}/cancel", { params: { path: { bulkId } } });
check(bulkCancel.data?.status === "COMPLETED", "a finished bulk stays COMPLETED", bulkCancel.data);

// Errors: typed bodies with their codes; a refused option names its field.
const missing = await client.GET("/v1/screenshots/jobs/{jobId}", { params: { path: { jobId: "nosuchjob0000000" } } });
check(missing.response.status === 404 && missing.error?.errorCode === "NOT_FOUND", "404", missing.error);
const refused = await client.POST("/v1/screenshots/async", { body: { url: `${SITE}/plain`, viewport: { width: 5000 } } });
check(refused.response.status === 400 && refused.error?.errorCode === "INVALID_OPTION", "400", refused.error);
check(refused.error.validationErrors?.["viewport.width"] === "viewport.width must be between 100 and 2560", "field", refused.error);
console.log("typescript client flow: ok");
