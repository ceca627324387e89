/**
 * Step `settings`: write `backend/.env`, the root `.env` and the compose override as the
 * preflight planned them (src/host/settings.ts): only what changed, atomically, with a backup.
 */
import { applySettings } from "../host/settings.ts";
import type { InstallStep } from "./types.ts";

export const settingsStep: InstallStep = {
  name: "settings",
  changesHost: true,
  async run({ prepared: p }) {
    return { report: { settings: await applySettings(p.settingsPlan) } };
  },
};
