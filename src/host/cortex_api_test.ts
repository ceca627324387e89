import { assert, assertEquals, assertMatch, assertRejects } from "../../test/support/assert.ts";
import { InstallError, InterruptedError } from "../errors.ts";
import {
  bundleContainerPath,
  type BundleJob,
  type CortexApiOptions,
  gatewayViewFromInspect,
  login,
  modelOutcomes,
  normalizePath,
  registerModels,
  waitForJob,
} from "./cortex_api.ts";

const PASSWORD = "pw-" + crypto.randomUUID();
const COOKIE_VALUE = "1.999." + crypto.randomUUID();

interface Seen {
  method: string;
  path: string;
  cookie: string | null;
  // deno-lint-ignore no-explicit-any
  body?: any;
}

/**
 * A fake gateway: login checks PASSWORD, /admin needs the cookie, an import creates a job whose
 * status advances one step per status read through `statuses`.
 */
function fakeGateway(o: {
  statuses?: string[];
  models?: string[];
  artifacts?: BundleJob["artifacts"];
  error?: string;
  busyFirst?: boolean;
} = {}) {
  const seen: Seen[] = [];
  let job: Record<string, unknown> | null = null;
  let reads = 0;
  let busy = o.busyFirst ?? false;
  const statuses = o.statuses ?? ["pending", "running", "completed"];
  const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
    new Response(JSON.stringify(body), {
      status,
      headers: { "content-type": "application/json", ...headers },
    });
  const handle = (input: RequestInfo | URL, init?: RequestInit): Response => {
    const url = new URL(String(input));
    const headers = new Headers(init?.headers);
    const body = init?.body ? JSON.parse(String(init.body)) : undefined;
    seen.push({
      method: init?.method ?? "GET",
      path: url.pathname + url.search,
      cookie: headers.get("cookie"),
      body,
    });
    if (url.pathname === "/auth/login") {
      if (body?.password !== PASSWORD) {
        return json(401, {
          error: { code: "invalid_credentials", message: "Invalid username or password" },
        });
      }
      return json(200, { status: "ok", user: { id: 1, username: body.username, role: "Admin" } }, {
        "set-cookie": `cortex_session=${COOKIE_VALUE}; HttpOnly; Path=/; SameSite=Lax`,
      });
    }
    if (headers.get("cookie") !== `cortex_session=${COOKIE_VALUE}`) {
      return json(401, { error: { code: "not_authenticated", message: "Admin session required" } });
    }
    if (url.pathname === "/admin/bundles/scan") {
      return json(200, {
        models: (o.models ?? ["m1", "m2"]).map((m) => ({
          served_model_name: m,
          already_registered: false,
        })),
        checksums: { verified: false },
      });
    }
    if (url.pathname === "/admin/bundles/import") {
      if (busy) {
        busy = false;
        job = { id: "theirs", status: "running", artifacts: { models: [] } };
        return json(409, {
          error: { code: "job_running", message: "Another bundle job is running" },
        });
      }
      job = { id: "ours", status: "pending", artifacts: { images: [], models: [] } };
      reads = 0;
      return json(200, { job });
    }
    if (url.pathname === "/admin/bundles/status") {
      if (job) {
        job.status = job.id === "theirs"
          ? (reads++ > 0 ? "completed" : "running")
          : statuses[Math.min(reads++, statuses.length - 1)];
        if (job.status === "completed" && job.id === "ours") {
          job.artifacts = o.artifacts ?? {
            images: [],
            models: (o.models ?? ["m1", "m2"]).map((m, i) => ({
              served_model_name: m,
              status: i === 0 ? "created" : "skipped",
              model_id: i + 1,
            })),
          };
        }
        if (job.status === "failed") job.error = o.error ?? "boom";
      }
      return json(200, { job });
    }
    return json(404, { error: { code: "not_found", message: "Not Found" } });
  };
  const f: typeof fetch = (input, init) => Promise.resolve(handle(input, init));
  return { f, seen };
}

/** A fake clock whose sleep advances time (no real waiting). */
function fakeTime() {
  let t = 1_000_000;
  const sleeps: number[] = [];
  return {
    now: () => t,
    sleep: (ms: number, signal?: AbortSignal) => {
      if (signal?.aborted) return Promise.reject(new InterruptedError());
      sleeps.push(ms);
      t += ms;
      return Promise.resolve();
    },
    sleeps,
  };
}

function opts(f: typeof fetch, extra: Partial<CortexApiOptions> = {}): CortexApiOptions {
  const time = fakeTime();
  return { baseUrl: "http://127.0.0.1:8084", fetch: f, now: time.now, sleep: time.sleep, ...extra };
}

Deno.test("login() keeps the cookie out of JSON and names the user, never the password, on refusal", async () => {
  const g = fakeGateway();
  const s = await login(opts(g.f), "admin", PASSWORD);
  assertEquals(s.header(), `cortex_session=${COOKIE_VALUE}`);
  assertEquals(JSON.stringify(s), '{"user":{"username":"admin","role":"Admin"}}');
  const e = await assertRejects(() => login(opts(g.f), "admin", "wrong-" + PASSWORD), InstallError);
  assertMatch(
    e.message,
    /Cannot log in to Cortex as "admin": 401 invalid_credentials: Invalid username or password/,
  );
  assert(!e.message.includes(PASSWORD) && !(e.hint ?? "").includes(PASSWORD));
});

Deno.test("registerModels() imports with copy_files=false, load_images=false and polls to the end", async () => {
  const g = fakeGateway();
  const time = fakeTime();
  const seenStatuses: string[] = [];
  const r = await registerModels(
    { baseUrl: "http://127.0.0.1:8084", fetch: g.f, now: time.now, sleep: time.sleep },
    {
      username: "admin",
      password: PASSWORD,
      containerPath: "/host/media/usb/bundle",
      conflict: "skip",
      pollMs: 250,
      onStatus: (j) => seenStatuses.push(j.status),
    },
  );
  assertEquals(r.models, [
    { servedModelName: "m1", source: "m1", status: "created", modelId: 1 },
    { servedModelName: "m2", source: "m2", status: "skipped", modelId: 2 },
  ]);
  assertEquals(r.scanned, 2);
  assertEquals(seenStatuses, ["pending", "running", "completed"]);
  assertEquals(time.sleeps, [250, 250]);
  const imp = g.seen.find((s) => s.path === "/admin/bundles/import")!;
  assertEquals(imp.body, {
    path: "/host/media/usb/bundle",
    load_images: false,
    import_models: true,
    copy_files: false,
    conflict: "skip",
    verify_checksums: false,
  });
  assertEquals(
    g.seen[1].path,
    "/admin/bundles/scan?path=%2Fhost%2Fmedia%2Fusb%2Fbundle&verify=false",
  );
  assert(g.seen.slice(1).every((s) => s.cookie === `cortex_session=${COOKIE_VALUE}`));
  assert(!JSON.stringify(r).includes(PASSWORD) && !JSON.stringify(r).includes(COOKIE_VALUE));
});

Deno.test("registerModels() fails with Cortex's error when the job fails (conflict=error)", async () => {
  const g = fakeGateway({ statuses: ["running", "failed"], error: 'Model "m1" already exists' });
  const e = await assertRejects(
    () =>
      registerModels(opts(g.f), {
        username: "admin",
        password: PASSWORD,
        containerPath: "/host/media/b",
        conflict: "error",
      }),
    InstallError,
  );
  assertMatch(e.message, /the import job failed: Model "m1" already exists/);
  assertMatch(e.hint!, /--model-conflict/);
});

Deno.test("registerModels() waits for someone else's job, then imports", async () => {
  const g = fakeGateway({ busyFirst: true });
  const r = await registerModels(opts(g.f), {
    username: "admin",
    password: PASSWORD,
    containerPath: "/host/media/b",
    conflict: "rename",
  });
  assertEquals(r.models.length, 2);
  assertEquals(g.seen.filter((s) => s.path === "/admin/bundles/import").length, 2);
});

Deno.test("registerModels() starts no job for a bundle without model records", async () => {
  const g = fakeGateway({ models: [] });
  const r = await registerModels(opts(g.f), {
    username: "admin",
    password: PASSWORD,
    containerPath: "/host/media/b",
    conflict: "skip",
  });
  assertEquals(r, { models: [], scanned: 0 });
  assert(!g.seen.some((s) => s.path.startsWith("/admin/bundles/import")));
});

Deno.test("waitForJob() is bounded by its timeout and stops on abort", async () => {
  const g = fakeGateway({ statuses: ["running"] });
  const o = opts(g.f);
  const s = await login(o, "admin", PASSWORD);
  await g.f("http://127.0.0.1:8084/admin/bundles/import", {
    method: "POST",
    headers: { cookie: s.header() },
    body: "{}",
  });
  const before = g.seen.length;
  const e = await assertRejects(
    () => waitForJob(o, s, { timeoutMs: 5_000, pollMs: 1_000 }),
    InstallError,
  );
  assertMatch(e.message, /still running after 5 s/);
  const polls = g.seen.length - before;
  assert(polls >= 5 && polls <= 7, `${polls} polls`);
  const ac = new AbortController();
  ac.abort();
  await assertRejects(() => waitForJob({ ...o, signal: ac.signal }, s), InterruptedError);
});

Deno.test("modelOutcomes() reads both artifact shapes", () => {
  const flat = modelOutcomes({
    status: "completed",
    artifacts: [
      { type: "image", name: "vllm/vllm-openai:v0.28.0", status: "present" },
      {
        type: "model",
        served_model_name: "q-2",
        source_served_model_name: "q",
        status: "created",
        model_id: 7,
      },
    ],
  });
  assertEquals(flat, [{ servedModelName: "q-2", source: "q", status: "created", modelId: 7 }]);
  assertEquals(modelOutcomes({ status: "completed", artifacts: null }), []);
});

const VIEW = gatewayViewFromInspect([{
  Mounts: [
    { Type: "bind", Source: "/var/cortex/models", Destination: "/var/cortex/models" },
    { Type: "bind", Source: "/var/cortex/exports", Destination: "/var/cortex/exports" },
    { Type: "bind", Source: "/media", Destination: "/host/media" },
    { Type: "bind", Source: "/media/nas/cortex", Destination: "/srv/nas" },
    { Type: "bind", Source: "/mnt", Destination: "/host/mnt" },
    { Type: "bind", Source: "/run/media", Destination: "/host/run/media" },
  ],
  Config: {
    Env: [
      "PATH=/bin",
      "CORTEX_TRANSFER_DIRS=/var/cortex/exports,/host/media,/host/mnt,/host/run/media",
    ],
  },
}]);

Deno.test("bundleContainerPath() maps a host path through the gateway's mounts into a transfer dir", async (t) => {
  const ok: [string, string][] = [
    ["/media/usb/cortex-bundle-20260910", "/host/media/usb/cortex-bundle-20260910"],
    ["/media/usb/x/../bundle/", "/host/media/usb/bundle"],
    ["/mnt/usb", "/host/mnt/usb"],
    ["/run/media/op/USB/b", "/host/run/media/op/USB/b"],
    ["/var/cortex/exports/cortex-bundle-1", "/var/cortex/exports/cortex-bundle-1"],
    ["/media", "/host/media"],
  ];
  for (const [host, inside] of ok) {
    await t.step(host, () => assertEquals(bundleContainerPath(host, VIEW), inside));
  }
  const refused = [
    "/srv/bundles/b", // not mounted at all
    "/mediax/b", // a sibling, not inside /media
    "/var/cortex/models/b", // mounted, not a transfer dir
    "/media/nas/cortex/b", // the closest mount leads outside the transfer dirs
  ];
  for (const host of refused) {
    await t.step(`refuses ${host}`, () => {
      try {
        bundleContainerPath(host, VIEW);
      } catch (e) {
        assert(e instanceof InstallError);
        assertEquals(e.exitCode, 3);
        assertMatch(
          e.message,
          /is outside every transfer dir of the Cortex gateway \(\/var\/cortex\/exports, \/host\/media/,
        );
        assertMatch(
          e.message,
          /on this host: \/var\/cortex\/exports, \/media, \/mnt, \/run\/media/,
        );
        return;
      }
      throw new Error("not refused");
    });
  }
});

Deno.test("gatewayViewFromInspect() falls back to the exports dir without CORTEX_TRANSFER_DIRS", () => {
  assertEquals(gatewayViewFromInspect([{ Mounts: [], Config: { Env: [] } }]), {
    mounts: [],
    transferDirs: ["/var/cortex/exports"],
  });
  assertEquals(normalizePath("/a/./b/../../c//d/"), "/c/d");
});
