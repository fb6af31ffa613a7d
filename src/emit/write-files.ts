// Writes a bundle of files to disk: the one place the library touches the file system for writing.
//
// The bundle is written into a fresh staging folder beside the output folder and swapped in with renames, so the
// output folder either holds the whole new bundle or is exactly as it was (absent stays absent, old contents stay).

import * as nodeFs from "node:fs";
import path from "node:path";
import { type Issue, TunefitError, usageError } from "../errors.ts";
import type { EmittedFile } from "./files.ts";

/** What `writeFiles` needs to know about an existing path. */
export interface WriteFilesStat {
  isDirectory(): boolean;
  isSymbolicLink(): boolean;
  readonly mode: number;
}

/** The file-system operations `writeFiles` uses; `node:fs` satisfies it. Tests inject failures through it. */
export interface WriteFilesFs {
  lstatSync(path: string, options: { throwIfNoEntry: false }): WriteFilesStat | undefined;
  readdirSync(path: string): string[];
  mkdirSync(path: string, options: { recursive: true }): string | undefined;
  mkdtempSync(prefix: string): string;
  writeFileSync(path: string, data: string | Uint8Array, options: { flag: "wx" }): void;
  chmodSync(path: string, mode: number): void;
  renameSync(oldPath: string, newPath: string): void;
  rmSync(path: string, options: { recursive: true; force: true }): void;
}

export interface WriteFilesOptions {
  /** Replace the output folder when it exists and is not empty. */
  readonly force?: boolean;
  /** The file-system operations to use; `node:fs` by default. */
  readonly fs?: WriteFilesFs;
}

export interface WriteFilesResult {
  /** The output folder, absolute. */
  readonly dir: string;
  /** The written files, relative to `dir`, in the order given. */
  readonly files: readonly string[];
}

const defaultFs: WriteFilesFs = nodeFs;

/** Mode of executable files and of a new output folder. */
const EXECUTABLE_MODE = 0o755;
const FILE_MODE = 0o644;

/** `mkdtemp` appends six letters and digits to the prefix. */
const TEMP_SUFFIX = /^[A-Za-z0-9]{6}$/;

const stagingPrefix = (base: string) => `.${base}.tunefit-staging-`;
const backupPrefix = (base: string) => `.${base}.tunefit-old-`;

/**
 * Writes `files` into the folder `dir` (relative to the current folder), all or nothing.
 *
 * - Every path is checked before the disk is touched: relative POSIX paths of plain names, no two that collide
 *   (also when they differ only in letter case), no file that is also a folder of another.
 * - An existing non-empty `dir` is replaced only with `force`; a symbolic link or a file at `dir` is refused, and so
 *   is a `dir` that is or contains the current folder.
 * - The files go into a staging folder beside `dir` (`.NAME.tunefit-staging-XXXXXX`); then an existing `dir` is
 *   renamed aside (`.NAME.tunefit-old-XXXXXX`), the staging folder renamed to `dir`, and the old one removed. On a
 *   failure before the swap completes, everything is undone and `dir` is as it was.
 *
 * @throws TunefitError (usage) for unsafe paths, a refused `dir`, or an operating-system failure
 *   (`OUTPUT_WRITE_FAILED`, with the step and the error code).
 */
export function writeFiles(
  files: readonly EmittedFile[],
  dir: string,
  options: WriteFilesOptions = {},
): WriteFilesResult {
  const pathIssues = checkPaths(files);
  if (pathIssues.length > 0) throw new TunefitError("usage", pathIssues);

  const fs = options.fs ?? defaultFs;
  const state: WriteState = { target: "", parent: "" };
  let doing = "resolve the output folder";
  try {
    const target = resolveTarget(dir);
    const parent = path.dirname(target);
    const base = path.basename(target);
    state.target = target;
    state.parent = parent;

    doing = `inspect ${target}`;
    const existing = fs.lstatSync(target, { throwIfNoEntry: false });
    state.existed = existing !== undefined;
    if (existing) checkExisting(fs, target, existing, options.force === true);

    doing = `create the folder ${parent}`;
    state.createdParent = fs.mkdirSync(parent, { recursive: true });

    doing = `list ${parent}`;
    removeLeftovers(fs, parent, base, fs.readdirSync(parent), existing !== undefined);

    doing = `create a staging folder in ${parent}`;
    const prefix = path.join(parent, stagingPrefix(base));
    const staging = fs.mkdtempSync(prefix);
    state.staging = staging;

    doing = "set the permissions of the staging folder";
    fs.chmodSync(staging, existing ? existing.mode & 0o777 : EXECUTABLE_MODE);

    const made = new Set<string>();
    for (const file of files) {
      const folder = path.posix.dirname(file.path);
      if (folder !== "." && !made.has(folder)) {
        doing = `create the folder ${folder}`;
        fs.mkdirSync(path.join(staging, folder), { recursive: true });
        for (let f = folder; !made.has(f) && f !== path.posix.dirname(f); f = path.posix.dirname(f)) {
          made.add(f);
        }
      }
      doing = `write ${file.path}`;
      fs.writeFileSync(path.join(staging, file.path), file.contents, { flag: "wx" });
      doing = `set the permissions of ${file.path}`;
      fs.chmodSync(path.join(staging, file.path), file.executable ? EXECUTABLE_MODE : FILE_MODE);
    }

    if (existing) {
      // The staging suffix is unique among staging folders; backups of earlier runs were removed above.
      const backup = path.join(parent, backupPrefix(base) + staging.slice(prefix.length));
      doing = `move the previous ${target} aside`;
      fs.renameSync(target, backup);
      state.backup = backup;
    }
    doing = `move the new files into ${target}`;
    fs.renameSync(staging, target);
  } catch (error) {
    throw rollBack(fs, state, error, doing, files.length);
  }

  // The new bundle is in place, so the call succeeds even if removing the old one fails: a leftover backup never
  // blocks a later run (names are unique), and the next run for this folder removes it.
  if (state.backup !== undefined) {
    try {
      fs.rmSync(state.backup, { recursive: true, force: true });
    } catch {
      // left for the next run
    }
  }
  return { dir: state.target, files: files.map((f) => f.path) };
}

interface WriteState {
  target: string;
  parent: string;
  existed?: boolean;
  /** The first folder `mkdir -p` created for the parent of the target, if any. */
  createdParent?: string | undefined;
  staging?: string;
  /** Where the previous target was moved, once it was. */
  backup?: string;
}

function resolveTarget(dir: string): string {
  if (typeof dir !== "string" || dir.trim() === "") {
    throw usageError(
      "OUTPUT_DIR_INVALID",
      "out",
      "the output folder is empty",
      "name the folder to write into",
    );
  }
  const target = path.resolve(dir);
  if (path.dirname(target) === target) {
    throw usageError(
      "OUTPUT_DIR_INVALID",
      "out",
      `the output folder ${target} is the root of the file system`,
      "choose a new folder to write into",
    );
  }
  // Replacing the current folder (or one holding it) would delete it from under the running process and the shell.
  const rel = path.relative(target, process.cwd());
  if (rel === "" || (rel.split(path.sep)[0] !== ".." && !path.isAbsolute(rel))) {
    throw usageError(
      "OUTPUT_CONTAINS_CWD",
      "out",
      `the output folder ${target} ${rel === "" ? "is" : "contains"} the current folder`,
      "choose a new folder to write into, e.g. a subfolder of the current one",
    );
  }
  return target;
}

function checkExisting(fs: WriteFilesFs, target: string, stat: WriteFilesStat, force: boolean): void {
  if (stat.isSymbolicLink()) {
    throw usageError(
      "OUTPUT_IS_SYMLINK",
      "out",
      `the output folder ${target} is a symbolic link; tunefit does not write through links`,
      "pass the folder the link points to, or choose another folder",
    );
  }
  if (!stat.isDirectory()) {
    throw usageError(
      "OUTPUT_NOT_A_FOLDER",
      "out",
      `the output folder ${target} exists and is a file, not a folder`,
      "choose another folder, or remove the file",
    );
  }
  if (force) return;
  const entries = fs.readdirSync(target);
  if (entries.length > 0) {
    throw usageError(
      "OUTPUT_NOT_EMPTY",
      "out",
      `the output folder ${target} already exists and is not empty (${entries.length} ${entries.length === 1 ? "entry" : "entries"})`,
      "pass --force to replace it, or choose another folder",
    );
  }
}

/**
 * Removes what earlier runs for the same output folder left beside it: staging folders always (they only ever hold
 * generated files), backups only when the output folder exists. A backup next to an absent output folder is the
 * previous contents of a run that stopped between its two renames; it is left for the user to recover. Best effort:
 * names are unique, so a leftover that cannot be removed does not block this run.
 */
function removeLeftovers(
  fs: WriteFilesFs,
  parent: string,
  base: string,
  names: readonly string[],
  targetExists: boolean,
): void {
  const prefixes = targetExists ? [stagingPrefix(base), backupPrefix(base)] : [stagingPrefix(base)];
  for (const name of names) {
    const prefix = prefixes.find((p) => name.startsWith(p));
    if (prefix === undefined || !TEMP_SUFFIX.test(name.slice(prefix.length))) continue;
    try {
      fs.rmSync(path.join(parent, name), { recursive: true, force: true });
    } catch {
      // best effort
    }
  }
}

/** Undoes a failed write and returns the error to throw. */
function rollBack(
  fs: WriteFilesFs,
  state: WriteState,
  error: unknown,
  doing: string,
  fileCount: number,
): TunefitError {
  let restoreError: unknown;
  if (state.backup !== undefined) {
    try {
      fs.renameSync(state.backup, state.target);
    } catch (e) {
      restoreError = e;
    }
  }
  if (state.staging !== undefined) {
    try {
      fs.rmSync(state.staging, { recursive: true, force: true });
    } catch {
      // a leftover staging folder is removed by the next run
    }
  }
  if (state.createdParent !== undefined) removeCreatedFolders(fs, state.parent, state.createdParent);

  const issues: Issue[] = [];
  if (error instanceof TunefitError) {
    issues.push(...error.issues);
  } else {
    const target = state.target || "the output folder";
    const outcome =
      restoreError !== undefined
        ? `the previous contents of ${target} are in ${state.backup}`
        : state.existed
          ? `${target} is unchanged`
          : `${target} was not created`;
    issues.push({
      code: "OUTPUT_WRITE_FAILED",
      severity: "error",
      path: "out",
      message: `could not ${doing} while writing ${fileCount} ${fileCount === 1 ? "file" : "files"} to ${target}: ${describeOsError(error)}; ${outcome}`,
      hint: hintFor(error, state.parent || "the parent folder"),
    });
  }
  if (restoreError !== undefined) {
    issues.push({
      code: "OUTPUT_RESTORE_FAILED",
      severity: "error",
      path: "out",
      message: `could not move the previous ${state.target} back from ${state.backup}: ${describeOsError(restoreError)}`,
      hint: `rename ${state.backup} to ${state.target} to recover it`,
    });
  }
  return new TunefitError("usage", issues);
}

/** Removes the folders `mkdir -p` made for the parent (from `parent` up to `created`), as long as they are empty. */
function removeCreatedFolders(fs: WriteFilesFs, parent: string, created: string): void {
  for (let d = parent; d.startsWith(created); d = path.dirname(d)) {
    try {
      if (fs.readdirSync(d).length > 0) return;
      fs.rmSync(d, { recursive: true, force: true });
    } catch {
      return;
    }
    if (d === created) return;
  }
}

function errorCode(error: unknown): string | undefined {
  if (typeof error === "object" && error !== null && "code" in error && typeof error.code === "string") {
    return error.code;
  }
  return undefined;
}

/** `ENOSPC (no space left on device)` from a Node system error; the message of anything else. */
function describeOsError(error: unknown): string {
  const code = errorCode(error);
  const message = error instanceof Error ? error.message : String(error);
  if (code === undefined) return message;
  const detail = new RegExp(`^${code}: ([^,]+)`).exec(message)?.[1];
  return detail === undefined ? code : `${code} (${detail})`;
}

function hintFor(error: unknown, parent: string): string {
  switch (errorCode(error)) {
    case "EACCES":
    case "EPERM":
      return `check that you may create and rename folders in ${parent}, or choose another folder`;
    case "ENOSPC":
    case "EDQUOT":
      return "free some disk space, or choose a folder on another disk";
    case "EROFS":
      return "the file system is read-only; choose a folder on a writable one";
    case "ENOTDIR":
    case "EEXIST":
      return "a part of the output path is a file, not a folder; choose another folder";
    case "ENAMETOOLONG":
      return "choose a shorter output folder path";
    case "EBUSY":
      return "the output folder is in use (or is a mount point); choose a new folder, e.g. one inside it";
    case "EXDEV":
      return "the output folder is a mount point; choose a new folder inside it";
    default:
      return "check the output folder and its parent, then run again";
  }
}

const isControl = (text: string) => [...text].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f);

/** What is unsafe about a bundle path, or undefined when it is a relative POSIX path of plain names. */
function pathProblem(p: unknown): string | undefined {
  if (typeof p !== "string" || p === "") return "is empty";
  if (isControl(p)) return "contains a control character";
  if (p.includes("\\")) return "contains a backslash";
  if (p.startsWith("/") || /^[A-Za-z]:/.test(p)) return "is absolute";
  for (const segment of p.split("/")) {
    if (segment === "") return "has an empty segment (a doubled, leading or trailing /)";
    if (segment === "." || segment === "..") return `has a "${segment}" segment`;
  }
  return undefined;
}

/** Paths that name the same file on a case-insensitive, normalization-insensitive file system share a key. */
const collisionKey = (p: string) => p.normalize("NFC").toLowerCase();

function checkPaths(files: readonly EmittedFile[]): Issue[] {
  const issues: Issue[] = [];
  const issue = (code: string, message: string, hint: string) =>
    issues.push({ code, severity: "error", path: "out", message, hint });
  const shapeHint = "bundle paths are relative, with plain folder and file names separated by /";

  const seen = new Map<string, string>();
  const folders = new Map<string, string>();
  const safe: string[] = [];
  for (const file of files) {
    const problem = pathProblem(file.path);
    if (problem !== undefined) {
      issue("OUTPUT_PATH_UNSAFE", `bundle file path ${JSON.stringify(file.path)} ${problem}`, shapeHint);
      continue;
    }
    const key = collisionKey(file.path);
    const first = seen.get(key);
    if (first !== undefined) {
      issue(
        "OUTPUT_PATH_DUPLICATE",
        first === file.path
          ? `bundle file path ${JSON.stringify(file.path)} is listed twice`
          : `bundle file paths ${JSON.stringify(first)} and ${JSON.stringify(file.path)} differ only in letter case and would be one file on macOS and Windows`,
        "give every file of the bundle its own name",
      );
      continue;
    }
    seen.set(key, file.path);
    safe.push(file.path);
    const segments = file.path.split("/");
    for (let i = 1; i < segments.length; i++) {
      const folder = segments.slice(0, i).join("/");
      if (!folders.has(collisionKey(folder))) folders.set(collisionKey(folder), file.path);
    }
  }
  for (const p of safe) {
    const user = folders.get(collisionKey(p));
    if (user !== undefined) {
      issue(
        "OUTPUT_PATH_CONFLICT",
        `bundle file path ${JSON.stringify(p)} is a file, but ${JSON.stringify(user)} needs it to be a folder`,
        "rename the file or the folder",
      );
    }
  }
  return issues;
}
