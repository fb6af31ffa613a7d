/** One file of an emitted bundle: a relative POSIX path inside the bundle and its bytes. */
export interface EmittedFile {
  /** relative path inside the bundle, `/`-separated (e.g. `data/dataset_info.json`) */
  readonly path: string;
  /** text (written as UTF-8) or raw bytes (the demo images) */
  readonly contents: string | Uint8Array;
  /** written with mode 0755 (the launch scripts) */
  readonly executable?: boolean;
}
