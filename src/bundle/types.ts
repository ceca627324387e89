/** Shared shapes of a read bundle. Produced by `readBundle()` (src/bundle/read.ts). */

export type BundleFormat = "script" | "admin-ui" | "folder";

/** One image inside a `docker save` tar, read from the tar's own index without loading it. */
export interface TarImage {
  /** RepoTags from the tar's manifest.json (may be empty for an untagged save). */
  repoTags: string[];
  /** The image ID: `sha256:<hex of the config blob>`. */
  imageId: string;
  /** Layer diff IDs (`sha256:...`) from the image config's rootfs, in order. */
  diffIds: string[];
  /** Paths of the layer entries inside the tar, in order (same length as diffIds). */
  layerPaths: string[];
  /** The config's Env, e.g. `NVIDIA_REQUIRE_CUDA=cuda>=12.4 ...`. */
  env: string[];
}

/** The index of one image tar. */
export interface TarIndex {
  layout: "legacy" | "oci";
  compressed: boolean;
  images: TarImage[];
  /** Sizes of tar entries by path (layer sizes, for disk estimates). */
  entrySizes: Record<string, number>;
}

export type ExpectedSource = "pin" | "checksums";

/** A file of the bundle that has (or should have) a checksum. */
export interface BundleFile {
  /** Path relative to the bundle dir, with forward slashes. */
  path: string;
  /** Absolute path. */
  abs: string;
  /** Size in bytes, or undefined when the file is missing. */
  size?: number;
  kind: "image" | "model" | "archive" | "db" | "manifest" | "other";
  /** Lower-case hex SHA-256 the file must have, and who said so (a pin beats checksums). */
  expected?: { sha256: string; source: ExpectedSource };
}

/** An image tar of the bundle and what the release policy says of it. */
export interface BundleImage {
  /** Relative path of the tar in the bundle. */
  file: string;
  /** Refs the bundle's manifest declares for it (empty when only the tar knows, e.g. dcgm). */
  declaredRefs: string[];
  critical: boolean;
  purpose?: string;
  /** Role in the release manifest (e.g. "vllm", "llamacpp", "gateway"), when it matches one. */
  role?: string;
}

/** A source of model files in the bundle. */
export type ModelSource =
  | { kind: "folder"; name: string; path: string }
  | { kind: "models-archive"; path: string }
  | { kind: "model-archive"; id: string; path: string }
  | { kind: "hf-cache-archive"; path: string };

export interface Bundle {
  dir: string;
  format: BundleFormat;
  cortexVersion?: string;
  /** Every file that is listed (checksums or pins) or is an image tar, sorted by path. */
  files: BundleFile[];
  images: BundleImage[];
  models: ModelSource[];
  /** Admin-UI manifest settings (VLLM_IMAGE, ...), when present. */
  settings?: Record<string, string>;
  /** Whether a checksums.sha256 was found. */
  hasChecksums: boolean;
  /** Image tars (and model files) on disk that no checksum or pin covers. */
  unlisted: string[];
  /** Files listed in checksums.sha256 that are missing on disk. */
  missing: string[];
  /** Non-fatal remarks found while reading (e.g. an optional image absent). */
  warnings: string[];
}
