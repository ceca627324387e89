/** The version of cortex-install, kept equal to deno.json's by a unit test. */
export const VERSION = "0.1.0";
