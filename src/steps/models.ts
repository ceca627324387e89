/**
 * Step `models`: seed the planned model folders and archives (src/host/models/), after removing
 * the staging leftovers of an interrupted run. Files hashed here are recorded in the journal so
 * that a re-run plans them `unchanged` without reading them; each model folder in place is
 * recorded for `status` and the re-run check. Skipped with --skip-models.
 */
import { seedModels } from "../host/models/copy.ts";
import { cleanStaging } from "../host/models/staging.ts";
import { treeDigest } from "../host/models/tree.ts";
import { markVerified, recordModel } from "../state/journal.ts";
import type { InstallStep } from "./types.ts";

export const modelsStep: InstallStep = {
  name: "models",
  changesHost: true,
  when: ({ prepared }) => prepared.modelPlan !== undefined,
  async run({ ctx, options: o, prepared: p, journal }) {
    const plan = p.modelPlan!;
    for (const c of await cleanStaging(o.modelsDir, o.hfCacheDir)) {
      ctx.log.info(`Removed the staging leftover of an interrupted run: ${c}`);
    }
    const models = await seedModels(ctx, plan, {
      link: o.link,
      onVerified: (m) => {
        for (const f of m.files) markVerified(journal, f.path, f.stat, f.sha256, f.verifiedAt);
      },
    });
    for (const m of models.models) {
      if (m.verdict !== "copied" && m.verdict !== "linked" && m.verdict !== "skipped") continue;
      const item = plan.items.find((i) => i.target === m.target && i.name === m.name);
      recordModel(journal, m.target, {
        files: m.files,
        bytes: m.bytes,
        sha256Tree: treeDigest(
          (item?.files ?? []).map((f) => ({
            rel: f.rel,
            sha256: f.expected ?? f.manifestSha256 ?? "",
          })),
        ),
      });
    }
    return { report: { models } };
  },
};
