// Peer benchmark: graphile-worker (pinned in package.json) no-op job drain rate.
//
// What it measures, mirroring graphile-worker's own perfTest/:
//   for each run: create a fresh database gw_bench_<random>, install the schema
//   with runMigrations(), enqueue N jobs of a no-op task with ONE call to the SQL
//   function graphile_worker.add_jobs(specs job_spec[]), then start a worker
//   with the library's run() and time from just before run() until
//   graphile_worker._private_jobs (the table behind the `jobs` view) is empty.
//   jobs/s = N / seconds. Each database is dropped afterwards (also on failure).
//
// Runs:
//   "tuned" (graphile-worker's recommended high-throughput settings, as in its
//   perfTest/graphile.config.js): preset.worker.localQueue = { size: 500 },
//   completeJobBatchDelay = 0, failJobBatchDelay = 0; at concurrency 4 and 24,
//   the faster is reported as best_*.
//   "default" (no local queue, no batched completion) at concurrency 4,
//   reported separately as default_config. It does two commits per job and is
//   bound by the disk's fsync rate (250-400 jobs/s on a 2-core VM: minutes
//   for 100k jobs), so it drains only min(N, 20000) jobs unless --default-jobs
//   says otherwise; --default-jobs 0 or --skip-default skips it.
//   Every run uses maxPoolSize = concurrency + 1 (as perfTest does) and
//   NO_LOG_SUCCESS=1 (graphile-worker otherwise formats a log line per job).
//
// Enqueue, measured the way pgcourier's ingest measures its inserts, after the
// drain runs, in one more fresh database and with no worker running:
//   add_jobs_bulk: ONE call of graphile_worker.add_jobs(job_spec[]) with
//   --enqueue-jobs jobs (like pgcourier's one INSERT ... SELECT generate_series);
//   add_job_single: --enqueue-connections connections (8) each calling
//   graphile_worker.add_job(...) once per transaction (autocommit, a prepared
//   statement), back to back (closed loop), ceil(M / C) each for
//   M = --enqueue-single-jobs; jobs/s from the common start to the last commit.
//   The single-row calls follow the bulk call in the same database, as
//   pgcourier's single-row inserts follow its bulk insert. --skip-enqueue skips both.
//
// Usage: node bench.mjs [--jobs N] [--default-jobs M] [--skip-default]
//          [--enqueue-jobs N] [--enqueue-single-jobs M] [--enqueue-connections C] [--skip-enqueue]
//   Admin connection from DATABASE_URL (default
//   postgres://postgres@127.0.0.1:5432/postgres); needs CREATEDB.
// Output: progress on stderr, exactly one JSON line on stdout.

import { createRequire } from "node:module";
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";

process.env.NO_LOG_SUCCESS = "1"; // read by graphile-worker at load time
const require = createRequire(import.meta.url);
const { run, runMigrations, Logger } = require("graphile-worker");
const { version: GW_VERSION } = require("graphile-worker/package.json");
const pg = require("pg");

const TUNED = { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 };
const TUNED_CONCURRENCIES = [4, 24];
const DEFAULT_CONCURRENCY = 4;
const DEFAULT_RUN_MAX_JOBS = 20000;
const DRAIN_TIMEOUT_MS = 30 * 60 * 1000;

const log = (...a) => console.error("[graphile-bench]", ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const usageError = (msg) => Object.assign(new Error(msg), { usage: true });

function parseArgs(argv) {
  const opts = { jobs: 100000, defaultJobs: null, enqueueJobs: null, enqueueSingleJobs: 20000, enqueueConnections: 8, skipEnqueue: false };
  const intArg = (a, i, min) => {
    const v = a.includes("=") ? a.slice(a.indexOf("=") + 1) : argv[i];
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw usageError(`${a.split("=")[0]} needs an integer >= ${min}, got ${v}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--jobs" || a.startsWith("--jobs=")) {
      opts.jobs = intArg(a, a.includes("=") ? i : ++i, 1);
    } else if (a === "--default-jobs" || a.startsWith("--default-jobs=")) {
      opts.defaultJobs = intArg(a, a.includes("=") ? i : ++i, 0);
    } else if (a === "--skip-default") {
      opts.defaultJobs = 0;
    } else if (a === "--enqueue-jobs" || a.startsWith("--enqueue-jobs=")) {
      opts.enqueueJobs = intArg(a, a.includes("=") ? i : ++i, 1);
    } else if (a === "--enqueue-single-jobs" || a.startsWith("--enqueue-single-jobs=")) {
      opts.enqueueSingleJobs = intArg(a, a.includes("=") ? i : ++i, 1);
    } else if (a === "--enqueue-connections" || a.startsWith("--enqueue-connections=")) {
      opts.enqueueConnections = intArg(a, a.includes("=") ? i : ++i, 1);
    } else if (a === "--skip-enqueue") {
      opts.skipEnqueue = true;
    } else {
      throw usageError(
        `unknown argument: ${a} (usage: [--jobs N] [--default-jobs M] [--skip-default] ` +
          `[--enqueue-jobs N] [--enqueue-single-jobs M] [--enqueue-connections C] [--skip-enqueue])`,
      );
    }
  }
  if (opts.defaultJobs === null) opts.defaultJobs = Math.min(opts.jobs, DEFAULT_RUN_MAX_JOBS);
  if (opts.enqueueJobs === null) opts.enqueueJobs = opts.jobs;
  return opts;
}

const adminUrl = process.env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres";
const dbUrl = (name) => {
  const u = new URL(adminUrl);
  u.pathname = "/" + name;
  return u.toString();
};

// Databases created and not yet dropped, and the run in progress: cleaned up
// on every exit path, including SIGINT/SIGTERM.
const liveDbs = new Set();
const current = { runner: null, client: null };
let stopping = false;
// Set while a finished run's database is dropped: DROP ... WITH (FORCE) ends any connection
// graphile-worker's pools still hold after runner.stop(), and a pg client left without an
// 'error' listener would end this process for it (seen once: after the default run, with every
// job already counted). Only that error (57P01, admin_shutdown), only then, is ignored.
let dropping = false;
process.on("uncaughtException", (e) => {
  if (dropping && e?.code === "57P01") {
    log(`ignored after the run: ${e.message}`);
    return;
  }
  log(`FAILED: ${e?.stack ?? e}`);
  dropAllLive().finally(() => process.exit(1));
});

// $1 no-op jobs in one add_jobs call: how the drain runs fill the queue and what the bulk enqueue times.
const ADD_JOBS_SQL = `select count(*) from graphile_worker.add_jobs(array(
         select json_populate_record(null::graphile_worker.job_spec,
                  json_build_object('identifier', 'noop', 'payload', json_build_object('id', i)))
         from generate_series(1, $1::int) i))`;

async function adminQuery(sql) {
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  try {
    return await c.query(sql);
  } finally {
    await c.end();
  }
}

async function createDb() {
  const name = `gw_bench_${randomBytes(6).toString("hex")}`;
  await adminQuery(`create database ${name}`);
  liveDbs.add(name);
  return name;
}

async function dropDb(name) {
  await adminQuery(`drop database if exists ${name} with (force)`);
  liveDbs.delete(name);
}

// Quiet logger: only warnings and errors, to stderr.
const logger = new Logger(() => (level, message) => {
  if (!stopping && (level === "error" || level === "warning")) log(`worker ${level}: ${message}`);
});

async function oneRun({ label, concurrency, workerPreset, jobs }) {
  const db = await createDb();
  const connectionString = dbUrl(db);
  const client = new pg.Client({ connectionString });
  client.on("error", (e) => stopping || log(`bench connection error: ${e.message}`));
  current.client = client;
  let runner = null;
  try {
    await runMigrations({ connectionString, logger });
    await client.connect();
    // Like pgcourier's drain: start from a clean slate of dirty buffers and a fresh checkpoint
    // cycle, so a checkpoint owed to an earlier run does not land in this one (best effort).
    try {
      await client.query("checkpoint");
    } catch (e) {
      log(`checkpoint skipped: ${e.message}`);
    }

    const t0 = process.hrtime.bigint();
    await client.query(
      ADD_JOBS_SQL,
      [jobs],
    );
    const enqueueSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const { rows: [{ n }] } = await client.query("select count(*)::int as n from graphile_worker._private_jobs");
    if (n !== jobs) throw new Error(`expected ${jobs} queued jobs, found ${n}`);
    log(`${label} c=${concurrency}: db ${db}, enqueued ${jobs} jobs in ${enqueueSeconds.toFixed(2)}s; starting worker`);

    let completed = 0;
    let failed = 0;
    const events = new EventEmitter(); // attached before run() so no event is missed
    events.on("job:success", () => void completed++);
    events.on("job:error", () => void failed++);
    const start = process.hrtime.bigint();
    runner = await run({
      connectionString,
      concurrency,
      maxPoolSize: concurrency + 1,
      noHandleSignals: true,
      logger,
      events,
      taskList: { noop: async () => {} },
      preset: { worker: workerPreset },
    });
    current.runner = runner;
    dropping = false;

    // Cheap in-process progress first (occasional DB check as a fallback), then
    // poll the table tightly once every task has finished so the batched
    // completions are included in the measured time.
    const deadline = Date.now() + DRAIN_TIMEOUT_MS;
    let lastCheck = 0;
    for (;;) {
      if (failed > 0) throw new Error(`${failed} jobs failed`);
      if (Date.now() > deadline) throw new Error(`timed out after ${DRAIN_TIMEOUT_MS / 1000}s (${completed}/${jobs} done)`);
      const now = Date.now();
      if (completed >= jobs || now - lastCheck >= 500) {
        lastCheck = now;
        const { rows: [{ empty }] } = await client.query(
          "select not exists (select 1 from graphile_worker._private_jobs) as empty",
        );
        if (empty) break;
      }
      await sleep(completed >= jobs ? 2 : 20);
    }
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    const jobsPerS = jobs / seconds;
    log(`${label} c=${concurrency}: drained ${jobs} jobs in ${seconds.toFixed(3)}s = ${Math.round(jobsPerS)} jobs/s`);
    return { concurrency, seconds: +seconds.toFixed(3), jobs_per_s: Math.round(jobsPerS) };
  } finally {
    current.runner = current.client = null;
    dropping = true;
    if (runner) await runner.stop().catch((e) => log(`runner.stop failed: ${e}`));
    await client.end().catch(() => {});
    await dropDb(db).catch((e) => log(`could not drop ${db}: ${e.message}`));
  }
}

// The enqueue measurements (see the header): one fresh database, no worker.
async function enqueueRuns({ bulkJobs, singleJobs, connections }) {
  const db = await createDb();
  const connectionString = dbUrl(db);
  const client = new pg.Client({ connectionString });
  client.on("error", (e) => stopping || log(`bench connection error: ${e.message}`));
  current.client = client;
  const singles = [];
  try {
    await runMigrations({ connectionString, logger });
    await client.connect();
    const checkpoint = () => client.query("checkpoint").catch((e) => log(`checkpoint skipped: ${e.message}`));
    const queued = async () => (await client.query("select count(*)::int as n from graphile_worker._private_jobs")).rows[0].n;

    await checkpoint();
    const t0 = process.hrtime.bigint();
    await client.query(
      ADD_JOBS_SQL,
      [bulkJobs],
    );
    const bulkSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
    if ((await queued()) !== bulkJobs) throw new Error(`add_jobs: expected ${bulkJobs} queued jobs`);
    log(`enqueue: add_jobs of ${bulkJobs} jobs in one call in ${bulkSeconds.toFixed(3)}s`);

    // ids continue after the bulk jobs; connection c takes bulkJobs + 1 + c, + C, + 2C, ...
    const perConn = Math.ceil(singleJobs / connections);
    const total = perConn * connections;
    for (let c = 0; c < connections; c++) {
      const s = new pg.Client({ connectionString });
      s.on("error", (e) => stopping || log(`enqueue connection error: ${e.message}`));
      singles.push(s);
      await s.connect();
    }
    const addJob = (id) => ({
      name: "add_job",
      text: "select id from graphile_worker.add_job('noop', json_build_object('id', $1::int))",
      values: [id],
    });
    // pg prepares a named statement on its first use: once per connection, inside the timing
    // (pgcourier's bench prepares before it; 8 parses are noise beside thousands of calls)
    await checkpoint();
    const t1 = process.hrtime.bigint();
    const ends = await Promise.all(
      singles.map(async (s, c) => {
        for (let k = 0; k < perConn; k++) await s.query(addJob(bulkJobs + 1 + c + k * connections));
        return process.hrtime.bigint();
      }),
    );
    const singleSeconds = Number(ends.reduce((a, b) => (b > a ? b : a)) - t1) / 1e9;
    if ((await queued()) !== bulkJobs + total) throw new Error(`add_job: expected ${bulkJobs + total} queued jobs`);
    log(`enqueue: ${total} add_job calls, one per transaction, from ${connections} connections in ${singleSeconds.toFixed(3)}s`);
    return {
      add_jobs_bulk: { jobs: bulkJobs, seconds: +bulkSeconds.toFixed(3), jobs_per_s: Math.round(bulkJobs / bulkSeconds) },
      add_job_single: {
        connections,
        jobs: total,
        seconds: +singleSeconds.toFixed(3),
        jobs_per_s: Math.round(total / singleSeconds),
      },
    };
  } finally {
    current.client = null;
    dropping = true;
    for (const s of singles) await s.end().catch(() => {});
    await client.end().catch(() => {});
    await dropDb(db).catch((e) => log(`could not drop ${db}: ${e.message}`));
  }
}

async function dropAllLive() {
  for (const db of [...liveDbs]) await dropDb(db).catch((e) => log(`could not drop ${db}: ${e.message}`));
}

for (const sig of ["SIGINT", "SIGTERM"]) {
  process.once(sig, async () => {
    log(`${sig}: stopping the worker and dropping benchmark databases`);
    stopping = true;
    const { runner, client } = current;
    if (runner) await runner.stop().catch(() => {});
    if (client) await client.end().catch(() => {});
    await dropAllLive();
    process.exit(130);
  });
}

async function main() {
  const { jobs, defaultJobs, enqueueJobs, enqueueSingleJobs, enqueueConnections, skipEnqueue } = parseArgs(process.argv.slice(2));
  log(`graphile-worker ${GW_VERSION}, node ${process.version}, ${jobs} no-op jobs per run, admin connection ${adminUrl}`);

  const runs = [];
  for (const concurrency of TUNED_CONCURRENCIES) {
    runs.push(await oneRun({ label: "tuned", concurrency, workerPreset: TUNED, jobs }));
  }
  const best = runs.reduce((a, b) => (b.jobs_per_s > a.jobs_per_s ? b : a));

  let defaultConfig = null;
  if (defaultJobs > 0) {
    const r = await oneRun({ label: "default", concurrency: DEFAULT_CONCURRENCY, workerPreset: {}, jobs: defaultJobs });
    defaultConfig = { jobs: defaultJobs, ...r };
  }

  const enqueue = skipEnqueue
    ? null
    : await enqueueRuns({ bulkJobs: enqueueJobs, singleJobs: enqueueSingleJobs, connections: enqueueConnections });

  const result = {
    peer: "graphile-worker",
    version: GW_VERSION,
    node: process.version,
    jobs,
    settings: TUNED,
    runs,
    best_jobs_per_s: best.jobs_per_s,
    best_concurrency: best.concurrency,
    ...(defaultConfig ? { default_config: defaultConfig } : {}),
    ...(enqueue ? { enqueue } : {}),
  };
  process.stdout.write(JSON.stringify(result) + "\n");
}

main()
  .catch(async (e) => {
    log(`FAILED: ${e?.usage ? e.message : e?.stack ?? e}`);
    await dropAllLive();
    process.exitCode = 1;
  })
  .finally(() => {
    // pg pools inside graphile-worker can keep the loop alive briefly; don't wait.
    setTimeout(() => process.exit(), 100).unref();
  });
