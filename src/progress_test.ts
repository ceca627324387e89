import assert from "node:assert/strict";
import { formatBytes, formatDuration, Progress } from "./progress.ts";

function sink(isTTY: boolean) {
  const out: string[] = [];
  return { out, sink: { write: (t: string) => void out.push(t), isTTY } };
}

Deno.test("Progress never shows a lower percentage when more work is added", () => {
  let now = 0;
  const s = sink(false);
  const p = new Progress(s.sink, () => now, 0);
  p.addTotal(100);
  now = 1000;
  p.advance(100);
  assert.match(p.line(), /\[100%\]/);
  p.addTotal(100); // the models step adds its bytes later
  now = 2000;
  p.advance(10);
  assert.match(p.line(), /\[100%\]/);
  const pcts = s.out.map((l) => Number(/\[\s*(\d+)%\]/.exec(l)?.[1]));
  for (let i = 1; i < pcts.length; i++) assert.ok(pcts[i] >= pcts[i - 1], `went back: ${pcts}`);
});

Deno.test("Progress clamps done at the total and prints plain lines off a TTY", () => {
  const s = sink(false);
  const p = new Progress(s.sink, () => 0, 0);
  p.addTotal(10);
  p.advance(50);
  assert.equal(p.done, 10);
  assert.ok(s.out.every((l) => !l.includes("\r") && l.endsWith("\n")));
});

Deno.test("Progress redraws one line on a TTY", () => {
  let now = 0;
  const s = sink(true);
  const p = new Progress(s.sink, () => now);
  p.addTotal(10);
  p.label("load a.tar");
  p.advance(5); // within 100 ms of the last draw: no redraw
  now = 200;
  p.advance(5);
  assert.equal(s.out.length, 2, `drawn: ${JSON.stringify(s.out)}`);
  assert.ok(s.out.every((l) => l.startsWith("\r\x1b[2K")));
  assert.ok(s.out.every((l) => !l.includes("\n")), "one line, redrawn in place");
  assert.match(s.out[0], /\[ {2}0%\].* {2}load a\.tar$/);
  assert.match(s.out[1], /\[100%\] 10 B\/10 B .* {2}load a\.tar$/);
});

Deno.test("formatBytes() and formatDuration()", () => {
  assert.equal(formatBytes(1536), "1.5 KiB");
  assert.equal(formatBytes(0), "0 B");
  assert.equal(formatDuration(65), "1m05s");
  assert.equal(formatDuration(NaN), "--");
});
