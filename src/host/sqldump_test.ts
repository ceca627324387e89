import { assert, assertEquals } from "../../test/support/assert.ts";
import { DumpFilter, tailShowsComplete } from "./sqldump.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A dump as Debian's pg_dump 15.20 writes it (\restrict lines, COPY data, closing line). */
const DUMP = `--
-- PostgreSQL database dump
--

\\restrict bSHBMqkgLqsOusbvzorI0dEKe79zKeaG1xZGhLdTj8IbQsLmery1c9WoaaMjSmA

SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);

CREATE TABLE public.t (
    x integer,
    s text
);


ALTER TABLE public.t OWNER TO cortex;

COPY public.t (x, s) FROM stdin;
1	\\\\restrict not a command
2	ALTER TABLE public.t OWNER TO cortex;
3	-- PostgreSQL database dump complete
\\.


--
-- PostgreSQL database dump complete
--

\\unrestrict bSHBMqkgLqsOusbvzorI0dEKe79zKeaG1xZGhLdTj8IbQsLmery1c9WoaaMjSmA

`;

/** Runs the filter over `text` cut into pieces of `size` bytes; returns output and filter. */
function filterIn(text: string, size: number, keepOwners = false) {
  const f = new DumpFilter({ keepOwners });
  const bytes = enc.encode(text);
  const parts: Uint8Array[] = [];
  for (let i = 0; i < bytes.length && !f.refusal; i += size) {
    // Copy: the filter may hand back views into the chunk, as a reused read buffer would break.
    parts.push(...f.push(bytes.slice(i, i + size)).map((b) => b.slice()));
  }
  parts.push(...f.end());
  return { out: parts.map((p) => dec.decode(p)).join(""), f };
}

Deno.test("DumpFilter blanks \\restrict lines, keeps COPY data and line numbers, whatever the chunking", async (t) => {
  for (const size of [1, 2, 3, 7, 64, 1 << 20]) {
    await t.step(`chunks of ${size} bytes`, () => {
      const { out, f } = filterIn(DUMP, size);
      const inLines = DUMP.split("\n");
      const outLines = out.split("\n");
      assertEquals(outLines.length, inLines.length);
      assert(!out.includes("\\restrict b"), "restrict line passed");
      assert(!out.includes("\\unrestrict"), "unrestrict line passed");
      assert(out.includes("1\t\\\\restrict not a command\n"), "COPY data changed");
      assert(out.includes("2\tALTER TABLE public.t OWNER TO cortex;\n"), "COPY data changed");
      assertEquals(outLines[inLines.indexOf("ALTER TABLE public.t OWNER TO cortex;")], "");
      assertEquals(f.stats.restrictLines, 2);
      assertEquals(f.stats.ownerLines, 1);
      assertEquals(f.stats.copyRows, 3);
      assert(f.complete);
      assertEquals(f.refusal, undefined);
    });
  }
});

Deno.test("DumpFilter keeps OWNER TO lines when asked", () => {
  const { out, f } = filterIn(DUMP, 10, true);
  assert(out.includes("\nALTER TABLE public.t OWNER TO cortex;\n"));
  assertEquals(f.stats.ownerLines, 0);
});

Deno.test("DumpFilter: a dump cut anywhere is never complete", () => {
  const bytes = enc.encode(DUMP);
  const closing = DUMP.indexOf("-- PostgreSQL database dump complete\n--");
  for (let cut = 0; cut < closing + 20; cut++) {
    const { f } = filterIn(dec.decode(bytes.subarray(0, cut)), 5);
    assert(!f.complete, `complete after a cut at ${cut}`);
  }
  // The closing line inside COPY data does not count.
  const inCopy = DUMP.indexOf("3\t-- PostgreSQL");
  const cutInCopy = filterIn(DUMP.slice(0, inCopy + 20), 4).f;
  assert(!cutInCopy.complete);
  assert(cutInCopy.stats.endedInCopy);
});

Deno.test("DumpFilter refuses psql meta-commands outside COPY data, naming the line", async (t) => {
  const cases: [string, string][] = [
    ["\\! rm -rf /", "\\!"],
    ["\\connect other", "\\connect"],
    ["\\i /etc/passwd", "\\i"],
    ["\\o /tmp/x", "\\o"],
    ["\\copy t from '/x'", "\\copy"],
  ];
  for (const [line, cmd] of cases) {
    await t.step(line, () => {
      const text = DUMP.replace("SET statement_timeout = 0;", line);
      const { out, f } = filterIn(text, 3);
      assert(f.refusal, "not refused");
      assertEquals(f.refusal.line, 7);
      assert(f.refusal.reason.includes(JSON.stringify(cmd)), f.refusal.reason);
      assert(!out.includes(line), "the refused line reached psql");
      assert(!out.includes("CREATE TABLE"), "lines after the refusal reached psql");
      assert(!f.complete);
    });
  }
});

Deno.test("DumpFilter blanks pg_dump messages and refuses a recorded pg_dump error", () => {
  const noisy = "pg_dump: warning: there are circular foreign-key constraints\n" + DUMP;
  const a = filterIn(noisy, 9);
  assert(a.f.complete);
  assertEquals(a.f.stats.pgDumpMessages, 1);
  assert(a.out.startsWith("\n--\n"));
  const failed = DUMP.replace("SET statement_timeout = 0;", "pg_dump: error: query failed");
  const b = filterIn(failed, 9);
  assert(b.f.refusal);
  assert(b.f.refusal.reason.includes("pg_dump: error: query failed"));
});

Deno.test("DumpFilter passes CRLF COPY ends and a last line without a newline", () => {
  const text = "COPY public.t (x) FROM stdin;\r\n1\r\n\\.\r\n-- PostgreSQL database dump complete";
  const { out, f } = filterIn(text, 4);
  assertEquals(out, text + "\n");
  assert(f.complete);
  assertEquals(f.stats.copyRows, 1);
});

Deno.test("DumpFilter hands back views of the chunk for unchanged runs (no copy of COPY data)", () => {
  const f = new DumpFilter();
  const head = enc.encode("COPY public.t (x) FROM stdin;\n");
  f.push(head);
  const rows = enc.encode("1\n2\n3\n4\n");
  const out = f.push(rows);
  assertEquals(out.length, 1);
  assert(out[0].buffer === rows.buffer, "rows were copied");
});

Deno.test("tailShowsComplete() finds pg_dump's closing line before the \\unrestrict line", () => {
  assert(tailShowsComplete(enc.encode(DUMP.slice(-300))));
  assert(!tailShowsComplete(enc.encode(DUMP.slice(0, 200))));
  assert(!tailShowsComplete(enc.encode("")));
});
