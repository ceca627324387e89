import { join } from "node:path";
import { assertEquals } from "../../test/support/assert.ts";
import { CORTEX_01_COMPOSE, CORTEX_01_ENV_FILES } from "./compose01.ts";

Deno.test("the embedded Cortex 0.1.1 compose files are the real ones", async () => {
  const dir = join(import.meta.dirname!, "../../test/testdata/cortex-v0.1.1");
  for (const [name, text] of Object.entries(CORTEX_01_COMPOSE)) {
    assertEquals(text, await Deno.readTextFile(join(dir, name)), name);
  }
  for (const [name, text] of Object.entries(CORTEX_01_ENV_FILES)) {
    assertEquals(text, await Deno.readTextFile(join(dir, name)), name);
  }
  assertEquals(Object.keys(CORTEX_01_COMPOSE).sort(), [
    "docker.compose.dev.yaml",
    "docker.compose.prod.yaml",
  ]);
});
