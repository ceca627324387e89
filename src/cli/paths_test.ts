import { assertEquals, assertRejects } from "../../test/support/assert.ts";
import { createContext } from "../context.ts";
import { UsageError } from "../errors.ts";
import { locateBundle } from "./paths.ts";

Deno.test("locateBundle(): 0.2 script bundle, newest Admin-UI export, then 0.1; beside the executable first", async () => {
  const exe = await Deno.makeTempDir({ prefix: "cit-paths-exe-" });
  const cwd = await Deno.makeTempDir({ prefix: "cit-paths-cwd-" });
  const lines: string[] = [];
  const ctx = createContext({
    sink: { write: (t) => void lines.push(t), isTTY: false },
    execDir: exe,
    cwd,
    interactive: false,
  });
  try {
    await assertRejects(() => locateBundle(ctx, undefined), UsageError, "cortex-offline-bundle/");
    await Deno.mkdir(`${cwd}/cortex-offline-images`);
    assertEquals(await locateBundle(ctx, undefined), `${cwd}/cortex-offline-images`);
    await Deno.mkdir(`${cwd}/cortex-bundle-20260101-000000`);
    await Deno.mkdir(`${cwd}/cortex-bundle-20260910-081502`);
    await Deno.writeTextFile(`${cwd}/cortex-bundle-20270101-000000`, "a file, not a bundle");
    assertEquals(await locateBundle(ctx, undefined), `${cwd}/cortex-bundle-20260910-081502`);
    assertEquals(lines.join("").includes("also there: cortex-bundle-20260101-000000"), true);
    await Deno.mkdir(`${cwd}/cortex-offline-bundle`);
    assertEquals(await locateBundle(ctx, undefined), `${cwd}/cortex-offline-bundle`);
    // Beside the executable wins over the working directory, whatever its name there.
    await Deno.mkdir(`${exe}/cortex-offline-images`);
    assertEquals(await locateBundle(ctx, undefined), `${exe}/cortex-offline-images`);
    // --bundle wins over everything.
    assertEquals(
      await locateBundle(ctx, `${cwd}/cortex-bundle-20260101-000000`),
      `${cwd}/cortex-bundle-20260101-000000`,
    );
  } finally {
    await Deno.remove(exe, { recursive: true });
    await Deno.remove(cwd, { recursive: true });
  }
});
