/**
 * The defects the hostile-input work found (issue 10 and the fuzz suite), each with the test that
 * failed before its fix. docs/RELIABILITY.md lists them; the report checks every test exists.
 */
export interface Defect {
  /** Where it was found: "issue 10 item N" or "fuzz (<target>)". */
  found: string;
  defect: string;
  fix: string;
  /** `file` relative to the repo and the Deno.test name (or step) that covers it. */
  test: { file: string; name: string };
}

export const DEFECTS: Defect[] = [
  {
    found: "issue 10 item 1",
    defect: "nested OCI indexes listing k copies of each child cost k^depth visits",
    fix: "each blob parsed once, each (blob, ref) applied once, at most 10,000 descriptors in all",
    test: {
      file: "src/bundle/tarindex_hostile_test.ts",
      name: "a nested OCI index listing k copies of each child reads each blob once",
    },
  },
  {
    found: "issue 10 item 1",
    defect:
      "a legacy manifest.json with many entries sharing one config re-read and re-hashed it each time",
    fix: "image configs memoized by resolved entry",
    test: {
      file: "src/bundle/tarindex_hostile_test.ts",
      name: "a legacy manifest.json with many entries sharing one config reads it once",
    },
  },
  {
    found: "issue 10 item 1",
    defect:
      "PAX length field with unlimited leading zeros, not checked against the record end: quadratic",
    fix: "at most 9 digits, space and closing newline inside the record: one linear pass",
    test: {
      file: "src/bundle/tarindex_hostile_test.ts",
      name: "PAX length fields are parsed strictly",
    },
  },
  {
    found: "issue 10 item 1",
    defect:
      'the tar reader never looked at the abort signal (Ctrl-C printed "interrupted", reading went on)',
    fix:
      "readTarIndex/tarEntries take the run's signal and check it between entries and JSON reads",
    test: {
      file: "src/bundle/tarindex_hostile_test.ts",
      name: "the tar reader stops when the run is interrupted",
    },
  },
  {
    found: "issue 10 items 2, 8",
    defect:
      "null OCI blobs, non-string annotations, whitespace in refs, layer count != diff_ids accepted or crashed",
    fix: "typed checks raising the tar reader's integrity error",
    test: {
      file: "src/bundle/tarindex_hostile_test.ts",
      name: "hostile OCI documents fail with our integrity error",
    },
  },
  {
    found: "issue 10 item 2",
    defect:
      "a YAML error or unset ${VAR:?} in ports: crashed doctor/plan/install (the doctor's own reader)",
    fix:
      "one compose reading (composeDocument) with preflight errors, used by the doctor's port reader",
    test: {
      file: "src/host/compose_hostile_test.ts",
      name: "an unset ${VAR:?} in ports: is a preflight error naming the variable",
    },
  },
  {
    found: "issue 10 item 2",
    defect: 'a journal with "current": 99 passed validation and crashed status and rollback',
    fix: "the schema requires current to index a release",
    test: {
      file: "src/state/journal_test.ts",
      name: "a journal whose current is out of range is a validation error",
    },
  },
  {
    found: "issue 10 item 3",
    defect:
      "a bundle file named constructor/toString looked up in the pins reached Object.prototype",
    fix:
      "pinOf() with Object.hasOwn; null-prototype maps for .env, PAX, versions.env, settings, YAML",
    test: {
      file: "src/bundle/bundle_names_test.ts",
      name: "a bundle file named like an Object.prototype key has no pin",
    },
  },
  {
    found: "issue 10 item 3",
    defect: "${toString} in a compose file or .env interpolated to JavaScript source",
    fix: "lookups by Object.hasOwn over null-prototype maps",
    test: {
      file: "src/host/compose_hostile_test.ts",
      name: "${toString} and a __proto__ key read as plain names",
    },
  },
  {
    found: "issue 10 item 4",
    defect: "port ranges expanded with no total cap (131 million numbers, RangeError)",
    fix: "at most 4096 host ports per compose file, the cap named in the error",
    test: {
      file: "src/host/compose_hostile_test.ts",
      name: "port ranges are capped in total, naming the cap",
    },
  },
  {
    found: "issue 10 item 4",
    defect: "/\\s+#/ and /\\s+$/ quadratic on long whitespace (.env line of 200k spaces: 32 s)",
    fix: "linear scans for the inline comment and trailing blanks",
    test: {
      file: "src/host/dotenv_hostile_test.ts",
      name: "a line of 200k spaces is parsed in one pass and kept",
    },
  },
  {
    found: "issue 10 item 4",
    defect: "--manifest read with no size limit",
    fix: "1 MiB cap, named in the error",
    test: {
      file: "src/bundle/manifest_keys_test.ts",
      name: "a --manifest over the size cap is refused naming the cap",
    },
  },
  {
    found: "issue 10 item 5",
    defect: "inner lines of a multi-line quoted value were rewritten as keys",
    fix: "a multi-line quoted value is one opaque line",
    test: {
      file: "src/host/dotenv_hostile_test.ts",
      name: "a multi-line quoted value is opaque: its inner lines are never rewritten",
    },
  },
  {
    found: "issue 10 item 5",
    defect:
      'an empty value set on `K=x # note` wrote `K= # note` (reads "# note" in Compose, rewritten every run)',
    fix: "an empty value before a comment is written `''`",
    test: {
      file: "src/host/dotenv_hostile_test.ts",
      name: "an empty value before a comment is written so that it reads back empty",
    },
  },
  {
    found: "issue 10 item 5",
    defect: "U+2028/U+2029 or lone CR values never read back and were appended each run",
    fix:
      "the reader takes U+2028/U+2029 inside values; control characters are refused naming the key",
    test: {
      file: "src/host/dotenv_hostile_test.ts",
      name: "a U+2028/U+2029 value is quoted and reads back; a lone CR is refused",
    },
  },
  {
    found: "issue 10 item 5",
    defect: 'env keys of --manifest and Admin-UI settings unchecked ("X\\nEVIL" injected a line)',
    fix: "[A-Za-z_][A-Za-z0-9_]* enforced in the manifest schemas and by the .env writers",
    test: {
      file: "src/bundle/manifest_keys_test.ts",
      name: "--manifest env keys outside [A-Za-z_][A-Za-z0-9_]* are refused",
    },
  },
  {
    found: "issue 10 item 6",
    defect: "archive links could point at the archive root or a sibling model",
    fix: "every link (symbolic and hard) must resolve inside its own top folder",
    test: {
      file: "src/host/models/models_test.ts",
      name: "issue 10: symlink into a sibling model",
    },
  },
  {
    found: "issue 10 item 8",
    defect: 'an unreadable file was reported "missing"',
    fix: 'verdict "unreadable" with the OS reason',
    test: {
      file: "src/bundle/bundle_names_test.ts",
      name: "an unreadable file is reported 'unreadable', not 'missing'",
    },
  },
  {
    found: "issue 10 item 8",
    defect: "newlines and escapes in file names printed raw",
    fix: "printable() in verify messages, the error printer and the log",
    test: {
      file: "src/bundle/bundle_names_test.ts",
      name: "names with newlines and escapes are printed escaped",
    },
  },
  {
    found: "issue 10 item 8",
    defect: 'a checksums.sha256 that is a directory read as "no checksums"',
    fix: "an index file that is not a regular file is a preflight error",
    test: {
      file: "src/bundle/bundle_names_test.ts",
      name: "a checksums.sha256 that is a directory is an error, not 'no checksums'",
    },
  },
  {
    found: "issue 10 item 8",
    defect: "refs with whitespace accepted (tar RepoTags, annotations, manifest.json, images.json)",
    fix: "refused with the field named",
    test: {
      file: "src/bundle/manifest_keys_test.ts",
      name: "refs with whitespace are refused in manifest.json and images.json",
    },
  },
  {
    found: "fuzz (dotenv-editor)",
    defect:
      "a key appended after a quote that never closes was swallowed by it (the key never set)",
    fix: "the editor re-reads what it wrote and refuses naming the unclosed line",
    test: {
      file: "src/host/dotenv_hostile_test.ts",
      name:
        "fuzz finding: a key appended after a quote that never closes is refused, not swallowed",
    },
  },
  {
    found: "fuzz (dotenv-editor)",
    defect: "`K = v` / `K=   # c` lines rewritten in place stayed unreadable for `bash .`",
    fix: "a line the editor sets is written `K=v` (indent and export kept)",
    test: {
      file: "src/host/dotenv_hostile_test.ts",
      name: "fuzz finding: `K = v` and `K=   # c` lines are rewritten so that bash reads them too",
    },
  },
  {
    found: "fuzz (compose-read)",
    defect: "200k `{` made the YAML parser recurse to a stack overflow over seconds",
    fix: "1 MiB compose size cap and a 64-level [ / { nesting cap, checked in one pass first",
    test: {
      file: "src/host/compose_hostile_test.ts",
      name: "fuzz finding: deep [ / { nesting is refused before the YAML parser recurses",
    },
  },
  {
    found: "fuzz (model-archives)",
    defect:
      "a directory entry carrying data made extraction wait forever (tar-stream never ends it)",
    fix: "non-file entries with a non-zero size are refused before they are read",
    test: {
      file: "src/host/models/models_test.ts",
      name: "fuzz finding: a directory entry that carries data",
    },
  },
];
