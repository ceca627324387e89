import { assert, assertEquals, assertMatch } from "../../test/support/assert.ts";
import { InstallError } from "../errors.ts";
import { acquireLock, lockPath } from "./lock.ts";

const MOD = new URL("./lock.ts", import.meta.url).href;

async function refusal(dir: string): Promise<InstallError> {
  const err = await acquireLock(dir).then((l) => {
    l.release();
    return undefined;
  }, (e) => e);
  assert(err instanceof InstallError, `expected a refusal, got ${err}`);
  return err;
}

Deno.test("acquireLock() in one process", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "cit-state-lock-" });
  try {
    const state = `${dir}/state`;
    const lock = await acquireLock(state);
    await t.step("the PID is written into the lock file", async () => {
      assertEquals((await Deno.readTextFile(lockPath(state))).trim(), String(Deno.pid));
    });
    await t.step("a second acquire is refused, naming the PID", async () => {
      const err = await refusal(state);
      assertEquals(err.exitCode, 3);
      assertEquals(err.step, "state");
      assertMatch(err.message, new RegExp(`another cortex-install run \\(PID ${Deno.pid}\\)`));
      assertMatch(err.hint ?? "", new RegExp(`kill ${Deno.pid}`));
    });
    await t.step("after release it can be taken again", async () => {
      lock.release();
      lock.release(); // idempotent
      assertEquals(await Deno.readTextFile(lockPath(state)), "");
      using again = await acquireLock(state);
      assertEquals(again.pid, Deno.pid);
    });
    await t.step("the lock `using` held was released at the end of its scope", async () => {
      const l = await acquireLock(state);
      l.release();
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("acquireLock() across processes, and after SIGKILL", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cit-state-lock-" });
  let sleeper: number | undefined;
  try {
    // The holder also starts a child process: the lock must not be inherited by it.
    const holderCode = `
      import { acquireLock } from "${MOD}";
      await acquireLock(Deno.args[0]);
      const child = new Deno.Command("sleep", { args: ["60"] }).spawn();
      console.log("locked " + child.pid);
      await new Promise(() => {});`;
    const holder = new Deno.Command(Deno.execPath(), {
      args: ["eval", "--quiet", holderCode, dir],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = holder.stdout.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    const m = /^locked (\d+)/.exec(first);
    assert(m, first);
    sleeper = Number(m[1]);

    // A second process is refused at once, with the holder's PID: it ends while the holder still
    // holds the lock (a waiting acquire could only end after the holder is killed, below).
    const otherCode = `
      import { acquireLock } from "${MOD}";
      try { await acquireLock(Deno.args[0]); console.log("GOT IT"); }
      catch (e) { console.log(e.message); Deno.exit(3); }`;
    let holderEnded = false;
    holder.status.then(() => (holderEnded = true));
    const other = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--quiet", otherCode, dir],
      stdout: "piped",
    }).output();
    const said = new TextDecoder().decode(other.stdout);
    assertEquals(other.code, 3, said);
    assertMatch(said, new RegExp(`another cortex-install run \\(PID ${holder.pid}\\)`));
    assertEquals(holderEnded, false, "refused while the lock was held, not after");

    holder.kill("SIGKILL");
    reader.releaseLock();
    await holder.stdout.cancel();
    await holder.status;
    // Its child still runs (kill throws for a gone PID), and yet the lock is free.
    Deno.kill(sleeper, "SIGCONT");
    const lock = await acquireLock(dir);
    assertEquals((await Deno.readTextFile(lockPath(dir))).trim(), String(Deno.pid));
    lock.release();
  } finally {
    if (sleeper) {
      try {
        Deno.kill(sleeper, "SIGKILL");
      } catch { /* already gone */ }
    }
    await Deno.remove(dir, { recursive: true });
  }
});
