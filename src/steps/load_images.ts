/**
 * Step `load`: verify and load the bundle's image tars in one pass (src/images/load.ts); images
 * already present are skipped without reading their tar. Each loaded ref is recorded in the
 * journal with its image ID.
 */
import { loadImages } from "../images/load.ts";
import { recordLoaded } from "../state/journal.ts";
import type { InstallStep } from "./types.ts";

export const loadStep: InstallStep = {
  name: "load",
  changesHost: true,
  async run({ ctx, options: o, prepared: p, journal, verdicts }) {
    const images = await loadImages(ctx, p.bundle, {
      allowUnlisted: o.allowUnlisted,
      noVerify: o.noVerify,
      indexes: p.indexes,
      notNeeded: p.notNeeded,
    });
    for (const img of images.images) {
      verdicts.push({
        path: img.file,
        verdict: img.verdict === "present" || img.verdict === "not-needed"
          ? "skipped"
          : img.verdict === "loaded"
          ? "ok"
          : "failed",
        sha256: img.sha256,
        detail: img.message,
      });
      if (img.imageId) { for (const r of img.refs) recordLoaded(journal, r, img.imageId); }
    }
    return { report: { images } };
  },
};
