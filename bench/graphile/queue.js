// graphile-worker with a no-op task, for pgshot's queue benchmark (bench/src/queues.rs).
// Jobs are enqueued by the benchmark itself through SQL; this script runs graphile-worker's own
// runner, which is the only way its jobs are claimed and completed.
//
//   node queue.js migrate
//   node queue.js drain <concurrency>          waits until the queue is empty
//   node queue.js latency <jobs per second> <jobs>
//
// Each mode prints one JSON line. DATABASE_URL names the database.
"use strict";
const { run, runMigrations, Logger } = require("graphile-worker");
const { Client } = require("pg");

const connectionString = process.env.DATABASE_URL;
// The benchmark's output is one JSON line: graphile-worker's own logging is silenced.
const quiet = new Logger(() => () => {});

function now() {
  return performance.timeOrigin + performance.now();
}

async function main() {
  const [mode, a, b] = process.argv.slice(2);
  if (mode === "migrate") {
    await runMigrations({ connectionString, logger: quiet });
    console.log(JSON.stringify({ migrated: true }));
    return;
  }
  const client = new Client({ connectionString });
  await client.connect();
  if (mode === "drain") {
    const concurrency = Number(a);
    const runner = await run({
      connectionString,
      concurrency,
      noHandleSignals: true,
      pollInterval: 1000,
      logger: quiet,
      taskList: { noop: async () => {} },
    });
    const start = now();
    for (;;) {
      const { rows } = await client.query("SELECT count(*)::int AS n FROM graphile_worker._private_jobs");
      if (rows[0].n === 0) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const seconds = (now() - start) / 1000;
    await runner.stop();
    console.log(JSON.stringify({ seconds }));
  } else if (mode === "latency") {
    const rate = Number(a);
    const total = Number(b);
    const latencies = [];
    const runner = await run({
      connectionString,
      concurrency: 1,
      noHandleSignals: true,
      pollInterval: 1000,
      logger: quiet,
      taskList: {
        noop: async (payload) => {
          latencies.push(now() - payload.sent);
        },
      },
    });
    const start = now();
    for (let i = 0; i < total; i++) {
      const due = start + (i * 1000) / rate;
      const wait = due - now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      await client.query("SELECT graphile_worker.add_job('noop', json_build_object('sent', $1::float8))", [now()]);
    }
    while (latencies.length < total) await new Promise((r) => setTimeout(r, 20));
    await runner.stop();
    latencies.sort((x, y) => x - y);
    const at = (p) => latencies[Math.round((latencies.length - 1) * p)];
    console.log(JSON.stringify({ p50: at(0.5), p99: at(0.99) }));
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
  await client.end();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
