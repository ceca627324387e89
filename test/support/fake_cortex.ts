/**
 * A fake of Cortex 0.2's auth and bundles API (facts §6) as a `fetch` function, for unit tests of
 * the `register` step: `POST /auth/login` checks the admin's password and sets `cortex_session`;
 * `/admin/...` needs that cookie; `GET /admin/bundles/scan` lists the model records it was given
 * for a path; `POST /admin/bundles/import` starts a job that applies the conflict policy to the
 * registered served names (skip, rename `-2`, replace, error) and completes after one status read.
 * Every request is recorded. The journeys use the gateway stand-in instead (test/support/standin).
 */

export interface FakeCortexRequest {
  method: string;
  path: string;
  cookie: string | null;
  // deno-lint-ignore no-explicit-any
  body?: any;
}

export interface FakeCortex {
  fetch: typeof fetch;
  seen: FakeCortexRequest[];
  /** Registered served model names. */
  registered: Set<string>;
}

/** A fake Cortex whose admin is `user`/`password` and whose bundle at `path` has `models`. */
export function fakeCortex(o: {
  user: string;
  password: string;
  path: string;
  models: string[];
  registered?: string[];
}): FakeCortex {
  const seen: FakeCortexRequest[] = [];
  const registered = new Set(o.registered ?? []);
  const cookie = `cortex_session=${crypto.randomUUID()}`;
  let job: Record<string, unknown> | null = null;
  let reads = 0;
  const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
    new Response(JSON.stringify(body), {
      status,
      headers: { "content-type": "application/json", ...headers },
    });
  const error = (status: number, code: string, message: string) =>
    json(status, { error: { code, message } });
  const f = (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const url = new URL(String(input));
    const headers = new Headers(init?.headers);
    const body = init?.body ? JSON.parse(String(init.body)) : undefined;
    const req = {
      method: init?.method ?? "GET",
      path: url.pathname + url.search,
      cookie: headers.get("cookie"),
      body,
    };
    seen.push(req);
    if (url.pathname === "/auth/login") {
      if (body?.username !== o.user || body?.password !== o.password) {
        return Promise.resolve(error(401, "invalid_credentials", "Invalid username or password"));
      }
      return Promise.resolve(
        json(200, { status: "ok", user: { username: o.user, role: "Admin" } }, {
          "set-cookie": `${cookie}; HttpOnly; Path=/; SameSite=Lax`,
        }),
      );
    }
    if (url.pathname.startsWith("/admin/") && req.cookie !== cookie) {
      return Promise.resolve(error(401, "unauthorized", "Not authenticated"));
    }
    if (url.pathname === "/admin/bundles/scan") {
      if (url.searchParams.get("path") !== o.path) {
        return Promise.resolve(error(400, "invalid_path", "Path not found"));
      }
      return Promise.resolve(json(200, {
        path: o.path,
        images: [],
        models: o.models.map((m) => ({
          served_model_name: m,
          name: m,
          files_present_on_host: true,
          already_registered: registered.has(m),
        })),
        checksums: { verified: false },
      }));
    }
    if (url.pathname === "/admin/bundles/import") {
      const models = [];
      let failed: string | undefined;
      for (const m of o.models) {
        if (!registered.has(m)) {
          registered.add(m);
          models.push({ served_model_name: m, status: "created", model_id: registered.size });
        } else if (body.conflict === "skip") {
          models.push({ served_model_name: m, status: "skipped" });
        } else if (body.conflict === "replace") {
          models.push({ served_model_name: m, status: "replaced", model_id: 1 });
        } else if (body.conflict === "rename") {
          let n = 2;
          while (registered.has(`${m}-${n}`)) n++;
          registered.add(`${m}-${n}`);
          models.push({
            served_model_name: `${m}-${n}`,
            source_served_model_name: m,
            status: "created",
            model_id: registered.size,
          });
        } else {
          failed = `Model '${m}' already exists`;
        }
      }
      job = {
        id: "job-1",
        status: failed ? "failed" : "completed",
        ...(failed ? { error: failed } : {}),
        artifacts: { models },
      };
      reads = 0;
      return Promise.resolve(json(200, { job: { id: "job-1", status: "pending" } }));
    }
    if (url.pathname === "/admin/bundles/status") {
      reads++;
      if (!job) return Promise.resolve(json(200, { job: null }));
      return Promise.resolve(json(200, { job: reads < 2 ? { ...job, status: "running" } : job }));
    }
    return Promise.resolve(error(404, "not_found", "Not Found"));
  };
  return { fetch: f as typeof fetch, seen, registered };
}
