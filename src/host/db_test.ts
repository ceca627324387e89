import { assert, assertEquals, assertMatch, assertRejects } from "../../test/support/assert.ts";
import { sha256Hex } from "../hash.ts";
import { InstallError, InterruptedError } from "../errors.ts";
import {
  backupDatabase,
  type DockerRunner,
  listBackups,
  pgTargetFromEnv,
  planRetention,
  pruneBackups,
  psqlError,
  restoreDatabase,
  type RunResult,
} from "./db.ts";
import type { DockerCallOptions } from "../docker.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const SECRET = "pw-" + crypto.randomUUID();
const target = { container: "cit-pg", user: "alice", database: "shop", password: SECRET };

const DUMP = "--\n-- PostgreSQL database dump\n--\n\n\\restrict abc\n\n" +
  "CREATE TABLE public.t (x integer);\nALTER TABLE public.t OWNER TO alice;\n" +
  "COPY public.t (x) FROM stdin;\n1\n2\n\\.\n\n--\n-- PostgreSQL database dump complete\n--\n\n" +
  "\\unrestrict abc\n\n";

interface Call {
  args: string[];
  env?: Record<string, string>;
  /** What the command read on stdin. */
  stdin?: string;
  /** Largest chunk it was handed on stdin. */
  maxChunk?: number;
}

/** A fake runner: records calls, writes `stdout` to a streaming sink, reads stdin through. */
function fakeRunner(
  answer: (args: string[], stdin: string) => Partial<RunResult> & { stream?: string[] },
): { run: DockerRunner; calls: Call[] } {
  const calls: Call[] = [];
  const run: DockerRunner = {
    run: async (args: string[], call: DockerCallOptions = {}) => {
      const c: Call = { args, env: call.env };
      calls.push(c);
      let stdin = "";
      if (call.stdin && typeof call.stdin !== "function") {
        c.maxChunk = 0;
        for await (const chunk of call.stdin) {
          c.maxChunk = Math.max(c.maxChunk, chunk.length);
          stdin += dec.decode(chunk, { stream: true });
        }
        c.stdin = stdin;
      }
      const a = answer(args, stdin);
      if (call.stdout && a.stream) {
        const w = call.stdout.getWriter();
        for (const s of a.stream) await w.write(enc.encode(s));
        w.releaseLock();
      }
      return {
        code: a.code ?? 0,
        stdout: call.stdout ? "" : a.stdout ?? "",
        stderr: a.stderr ?? "",
      };
    },
  };
  return { run, calls };
}

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "cit-db-" });
}

const fixedNow = () => new Date("2026-09-10T08:15:02.123Z");

Deno.test("backupDatabase() streams pg_dump into a 0600 file with its sha256 beside it", async () => {
  const dir = await tempDir();
  try {
    const { run, calls } = fakeRunner(() => ({ stream: [DUMP.slice(0, 10), DUMP.slice(10)] }));
    const b = await backupDatabase(run, target, { dir, label: "before 0.2.0", now: fixedNow });
    assertEquals(b.file, "cortex-db-20260910T081502Z-before-0.2.0.sql");
    assertEquals(await Deno.readTextFile(b.path), DUMP);
    assertEquals(b.sha256, sha256Hex(DUMP));
    assertEquals(b.bytes, enc.encode(DUMP).length);
    assertEquals(await Deno.readTextFile(`${b.path}.sha256`), `${b.sha256}  ${b.file}\n`);
    assertEquals((await Deno.stat(b.path)).mode! & 0o777, 0o600);
    assertEquals(calls[0].args, [
      "exec",
      "-e",
      "PGPASSWORD",
      "cit-pg",
      "pg_dump",
      "--no-password",
      "--username",
      "alice",
      "--dbname",
      "shop",
    ]);
    assertEquals(calls[0].env, { PGPASSWORD: SECRET });
    assert(!calls[0].args.join(" ").includes(SECRET), "password in argv");
    // A second backup in the same second gets its own name.
    const again = await backupDatabase(run, target, { dir, label: "before 0.2.0", now: fixedNow });
    assertEquals(again.file, "cortex-db-20260910T081502Z-before-0.2.0-2.sql");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("backupDatabase() refuses an incomplete dump and leaves no file", async (t) => {
  const cases: [string, Partial<RunResult> & { stream?: string[] }, RegExp][] = [
    ["cut before the closing line", { stream: [DUMP.slice(0, 120)] }, /incomplete/],
    ["empty", { stream: [] }, /incomplete \(0 bytes/],
    ["pg_dump failed", {
      stream: [DUMP.slice(0, 50)],
      code: 1,
      stderr: 'pg_dump: error: connection to server failed: FATAL:  role "alice" does not exist',
    }, /pg_dump exited 1/],
  ];
  for (const [name, answer, message] of cases) {
    await t.step(name, async () => {
      const dir = await tempDir();
      try {
        const { run } = fakeRunner(() => answer);
        const e = await assertRejects(() => backupDatabase(run, target, { dir }), InstallError);
        assertMatch(e.message, message);
        assertEquals(e.exitCode, 3);
        assertEquals(e.step, "database");
        assertEquals([...Deno.readDirSync(dir)].map((d) => d.name), []);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  }
});

Deno.test("backupDatabase() refuses an unwritable backup dir before running pg_dump", async () => {
  const { run, calls } = fakeRunner(() => ({ stream: [DUMP] }));
  const e = await assertRejects(
    () => backupDatabase(run, target, { dir: "/dev/null/backups" }),
    InstallError,
  );
  assertMatch(e.message, /cannot write in "\/dev\/null\/backups"/);
  assertEquals(e.exitCode, 3);
  assertEquals(calls.length, 0);
});

Deno.test("backupDatabase() removes the partial file when writing fails or is interrupted", async () => {
  const dir = await tempDir();
  try {
    const failing: DockerRunner = {
      run: async (_args, call) => {
        const w = call!.stdout!.getWriter();
        await w.write(enc.encode("-- partial"));
        throw new Error("No space left on device (os error 28)");
      },
    };
    const e = await assertRejects(() => backupDatabase(failing, target, { dir }), InstallError);
    assertMatch(e.message, /No space left on device/);
    assertEquals([...Deno.readDirSync(dir)].map((d) => d.name), []);
    const ac = new AbortController();
    const aborted: DockerRunner = {
      run: async (_args, call) => {
        const w = call!.stdout!.getWriter();
        await w.write(enc.encode("-- partial"));
        ac.abort();
        return { code: 143, stdout: "", stderr: "" };
      },
    };
    await assertRejects(
      () => backupDatabase(aborted, target, { dir, signal: ac.signal }),
      InterruptedError,
    );
    assertEquals([...Deno.readDirSync(dir)].map((d) => d.name), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A psql stand-in for restores: committed when the stream ends with COMMIT and the echo. */
function psqlLike(code = 0, stderr = "") {
  return fakeRunner((_args, stdin) => ({
    code,
    stderr,
    stdout: code === 0 && /COMMIT;\n\\echo cit-restore-committed\n$/.test(stdin)
      ? "cit-restore-committed\n"
      : "",
  }));
}

Deno.test("restoreDatabase() streams the filtered dump into one transaction and commits", async () => {
  const dir = await tempDir();
  try {
    const path = `${dir}/d.sql`;
    await Deno.writeTextFile(path, DUMP);
    const { run, calls } = psqlLike();
    const r = await restoreDatabase(run, target, path, {
      expectSha256: sha256Hex(DUMP),
      chunkSize: 7,
    });
    assertEquals(r.sha256, sha256Hex(DUMP));
    assertEquals(r.stripped, { restrict: 2, pgDumpMessages: 0, owner: 1 });
    const c = calls[0];
    assertEquals(c.args.slice(0, 5), ["exec", "-i", "-e", "PGPASSWORD", "cit-pg"]);
    assert(c.args.includes("ON_ERROR_STOP=1"));
    assertEquals(c.env, { PGPASSWORD: SECRET });
    const lines = c.stdin!.split("\n");
    assertMatch(lines[0], /^BEGIN; .*DROP SCHEMA .*CREATE SCHEMA public/);
    // psql's line N+1 is the dump's line N.
    assertEquals(
      lines.slice(1, 1 + DUMP.split("\n").length - 1).join("\n"),
      DUMP
        .replace("\\restrict abc", "").replace("\\unrestrict abc", "")
        .replace("ALTER TABLE public.t OWNER TO alice;", "").replace(/\n$/, ""),
    );
    assert(c.stdin!.endsWith("COMMIT;\n\\echo cit-restore-committed\n"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("restoreDatabase() hands psql chunks no larger than a read, however big the dump", async () => {
  const dir = await tempDir();
  try {
    const rows = Array.from({ length: 200_000 }, (_, i) => `${i}\trow ${i}\n`).join("");
    const big = DUMP.replace("1\n2\n", rows);
    const path = `${dir}/big.sql`;
    await Deno.writeTextFile(path, big);
    const { run, calls } = psqlLike();
    const r = await restoreDatabase(run, target, path, { chunkSize: 64 * 1024 });
    assertEquals(r.bytes, enc.encode(big).length);
    // The prelude is the first chunk; after it, a read plus at most one carried partial line.
    assert(calls[0].maxChunk! <= 64 * 1024 + 64, `chunk of ${calls[0].maxChunk} bytes`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("restoreDatabase() never commits a cut, refused or unexpected file", async (t) => {
  const cases: [string, string, string | undefined, RegExp][] = [
    [
      "cut mid-statement",
      DUMP.slice(0, 60),
      undefined,
      /no "-- PostgreSQL database dump complete"/,
    ],
    [
      "cut inside COPY data",
      DUMP.slice(0, DUMP.indexOf("2\n\\.")),
      undefined,
      /ends inside table data/,
    ],
    [
      "a meta-command",
      DUMP.replace("\n\n\\restrict abc", "\n\n\\! touch /x"),
      undefined,
      /line 5 of the dump: psql meta-command "\\\\!"/,
    ],
    ["another file than expected", DUMP, "0".repeat(64), /sha256 is .*expected 000000000000/],
  ];
  for (const [name, text, expect, message] of cases) {
    await t.step(name, async () => {
      const dir = await tempDir();
      try {
        const path = `${dir}/d.sql`;
        await Deno.writeTextFile(path, text);
        const { run, calls } = psqlLike();
        const e = await assertRejects(
          () => restoreDatabase(run, target, path, { expectSha256: expect, chunkSize: 16 }),
          InstallError,
        );
        assertMatch(e.message, message);
        assertMatch(e.message, /left as it was before the restore/);
        assertEquals(e.exitCode, 4);
        assert(calls[0].stdin!.endsWith("ROLLBACK;\n"), "not rolled back");
        assert(!calls[0].stdin!.includes("COMMIT"), "COMMIT sent");
        assert(!calls[0].stdin!.includes("\\! touch"), "refused line sent");
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  }
});

Deno.test("restoreDatabase() reports psql's error at the dump's line, exit 6", async () => {
  const dir = await tempDir();
  try {
    const path = `${dir}/d.sql`;
    await Deno.writeTextFile(path, DUMP);
    const { run } = psqlLike(3, 'psql:<stdin>:8: ERROR:  relation "t" already exists\n');
    const e = await assertRejects(() => restoreDatabase(run, target, path), InstallError);
    assertEquals(e.exitCode, 6);
    assertMatch(e.message, /line 7 of the dump: ERROR: {2}relation "t" already exists/);
    assert(!e.message.includes(SECRET) && !(e.detail ?? "").includes(SECRET));
    // psql that exits 0 without printing the marker did not commit.
    const silent = fakeRunner(() => ({ code: 0, stdout: "" }));
    const e2 = await assertRejects(() => restoreDatabase(silent.run, target, path), InstallError);
    assertMatch(e2.message, /ended before the restore was committed/);
    const missing = await assertRejects(
      () => restoreDatabase(silent.run, target, `${dir}/nope.sql`),
      InstallError,
    );
    assertMatch(missing.message, /Cannot restore the database from ".*nope.sql"/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("psqlError() maps psql's input line to the dump's line", () => {
  assertEquals(
    psqlError("psql:<stdin>:2: ERROR:  boom\nLINE 1: x"),
    "line 1 of the dump: ERROR:  boom",
  );
  assertEquals(psqlError("FATAL: no\n"), "FATAL: no");
});

Deno.test("pgTargetFromEnv() uses the container's settings and the official image's defaults", () => {
  assertEquals(pgTargetFromEnv("c", ["PATH=/bin"]), {
    container: "c",
    user: "postgres",
    database: "postgres",
  });
  assertEquals(pgTargetFromEnv("c", ["POSTGRES_USER=u", "POSTGRES_PASSWORD=p=q"]), {
    container: "c",
    user: "u",
    database: "u",
    password: "p=q",
  });
  assertEquals(pgTargetFromEnv("c", ["POSTGRES_USER=u", "POSTGRES_DB=d"]).database, "d");
});

Deno.test("planRetention() keeps the newest N and every protected backup", async (t) => {
  const b = (file: string) => ({ file });
  const list = ["e", "d", "c", "b", "a"].map(b); // newest first
  const cases: [number, string[], string[]][] = [
    [3, [], ["e", "d", "c"]],
    [3, ["a"], ["e", "d", "c", "a"]],
    [1, ["c"], ["e", "c"]],
    [0, ["b"], ["b"]],
    [9, [], ["e", "d", "c", "b", "a"]],
  ];
  for (const [keep, protect, kept] of cases) {
    await t.step(`keep ${keep}, protect [${protect}]`, () => {
      const p = planRetention(list, keep, protect);
      assertEquals(p.keep.map((x) => x.file), kept);
      assertEquals(p.remove.length, list.length - kept.length);
    });
  }
});

Deno.test("pruneBackups() removes old backups with their sha256 and crashed partials only", async () => {
  const dir = await tempDir();
  try {
    const names = [
      "cortex-db-20260101T000000Z.sql",
      "cortex-db-20260201T000000Z-before-0.2.0.sql",
      "cortex-db-20260301T000000Z.sql",
      "cortex-db-20260401T000000Z.sql",
    ];
    for (const n of names) {
      await Deno.writeTextFile(`${dir}/${n}`, "x");
      await Deno.writeTextFile(`${dir}/${n}.sha256`, "x");
    }
    await Deno.writeTextFile(`${dir}/cortex-db-20260501T000000Z.sql.partial`, "x");
    await Deno.writeTextFile(`${dir}/journal.json`, "{}");
    assertEquals((await listBackups(dir)).map((b) => b.file), [...names].reverse());
    const removed = await pruneBackups(dir, 2, ["cortex-db-20260201T000000Z-before-0.2.0.sql"]);
    assertEquals(removed.sort(), [
      "cortex-db-20260101T000000Z.sql",
      "cortex-db-20260501T000000Z.sql.partial",
    ]);
    assertEquals([...Deno.readDirSync(dir)].map((d) => d.name).sort(), [
      "cortex-db-20260201T000000Z-before-0.2.0.sql",
      "cortex-db-20260201T000000Z-before-0.2.0.sql.sha256",
      "cortex-db-20260301T000000Z.sql",
      "cortex-db-20260301T000000Z.sql.sha256",
      "cortex-db-20260401T000000Z.sql",
      "cortex-db-20260401T000000Z.sql.sha256",
      "journal.json",
    ]);
    assertEquals(await listBackups(`${dir}/absent`), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
