/** Shared shapes of a read bundle. Produced by `readBundle()` (src/bundle/read.ts). */

/**
 * Cortex 0.1 formats (`script`: `make prepare-offline`'s flat package; `admin-ui`: the Admin UI's
 * migration export; `folder`: plain `docker save` tars) and the Cortex 0.2 bundle (`bundle.json`),
 * written by its script (`bundle-script`) or by the Admin UI (`bundle-admin-ui`).
 */
export type BundleFormat = "script" | "admin-ui" | "folder" | "bundle-script" | "bundle-admin-ui";

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

/**
 * Who vouches for a file's digest: a release pin, checksums.sha256, or images.json (0.2; trusted
 * only because checksums.sha256 covers images.json itself and it matched).
 */
export type ExpectedSource = "pin" | "checksums" | "images.json";

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
  /**
   * 0.2 model files: the SHA-256 the model's manifest.json lists. The manifest is not covered by
   * any checksum, so this never makes a file trusted; it is still checked when the file is read.
   */
  manifestSha256?: string;
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
  /** 0.2: the role images.json gives it (`engine`, `program`, `deps`, `infra`). */
  bundleRole?: string;
  /**
   * 0.2: the image ID images.json records (the writer's `docker image inspect .Id`). When the
   * engine's `declaredRefs[0]` already has this ID, the tar need not be opened at all.
   */
  imageId?: string;
  /**
   * 0.2: after loading, every declared ref must point at the loaded image even when the tar's own
   * RepoTags name it differently (`docker tag <id> <ref>`, as Cortex's loader does).
   */
  tagDeclared?: boolean;
}

/** One file of a Cortex 0.2 bundle model (models/<served>/manifest.json + files/). */
export interface BundleModelFile {
  /** Path relative to the models dir, as the manifest gives it (starts with the top folder). */
  path: string;
  /** Bundle-relative source: `models/<served>/files/<path>`. */
  src: string;
  /** Bytes the manifest lists (`bytes`, not `size`), or the size on disk for an unlisted file. */
  bytes: number;
  /** The manifest's SHA-256 (not trusted on its own: the manifest is not covered). */
  manifestSha256?: string;
}

/** A source of model files in the bundle. */
export type ModelSource =
  | { kind: "folder"; name: string; path: string }
  | { kind: "models-archive"; path: string }
  | { kind: "model-archive"; id: string; path: string }
  | { kind: "hf-cache-archive"; path: string }
  | {
    /** A Cortex 0.2 bundle model: `models/<served>/manifest.json` and `files/`. */
    kind: "bundle-model";
    /** The served model name (the folder under `models/`). */
    name: string;
    /** `models/<served>` (bundle-relative). */
    path: string;
    /** `models/<served>/manifest.json` (bundle-relative). */
    manifest: string;
    /** Top-level folders (or files) this model creates under the models dir, sorted. */
    targets: string[];
    files: BundleModelFile[];
    engineType?: string;
    engineImage?: string;
  };

/** An integrity problem found while reading the bundle (any one fails verify and load). */
export interface BundleProblem {
  /** The bundle-relative file it concerns. */
  path: string;
  /** What it breaks: the images (load refuses), a model, or the bundle as a whole. */
  scope: "images" | "models" | "bundle";
  verdict: "mismatch" | "missing" | "unsafe" | "conflict";
  message: string;
  hint?: string;
}

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
  /** The Cortex release line whose policy read it ("0.1", "0.2"), when known. */
  line?: string;
  /** Integrity problems found while reading (0.2: images.json vs checksums, unsafe paths). */
  problems?: BundleProblem[];
  /**
   * Files that exist but that no checksum covers by design (0.2: bundle.json, model manifests,
   * versions.env, wheels/): they decide nothing that is trusted. Bundle-relative, sorted.
   */
  uncovered?: string[];
  /** 0.2 script bundles: files under wheels/ (bundle-relative), for backend/wheels/. */
  wheels?: string[];
  /**
   * The database dump a fresh install restores (bundle-relative): an Admin-UI export's
   * `db/cortex.sql` (0.1), or a 0.2 bundle's when bundle.json says `contents.db_dump`. It is
   * trusted only through its checksum, like every file.
   */
  dbDump?: string;
}
