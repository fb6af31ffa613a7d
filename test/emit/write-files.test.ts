import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { EmittedFile } from "../../src/emit/files.ts";
import { type WriteFilesFs, type WriteFilesOptions, writeFiles } from "../../src/emit/write-files.ts";
import { TunefitError } from "../../src/errors.ts";

const posix = process.platform !== "win32";
/** Permission bits in octal; Windows has none to speak of. */
const modeText = (mode: number) => (posix ? (mode & 0o777).toString(8) : "-");

const bundle: readonly EmittedFile[] = [
  { path: "train.yaml", contents: "model_name_or_path: demo\n" },
  {
    path: "scripts/run.sh",
    contents: "#!/bin/sh\nexec llamafactory-cli train train.yaml\n",
    executable: true,
  },
  { path: "data/dataset_info.json", contents: '{"demo": {}}\n' },
  { path: "data/images/demo.png", contents: new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0, 255]) },
  { path: "README.md", contents: "# demo\n" },
];

const otherBundle: readonly EmittedFile[] = [{ path: "only.txt", contents: "second run\n" }];

let root: string;
const startCwd = process.cwd();

beforeEach(() => {
  root = fs.mkdtempSync(join(tmpdir(), "tunefit-write-"));
});
afterEach(() => {
  process.chdir(startCwd);
  fs.rmSync(root, { recursive: true, force: true });
});

/** Every entry under `dir`: kind, inode, mode and contents, keyed by relative path. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const name of fs.readdirSync(join(dir, rel)).sort()) {
      const r = rel === "" ? name : `${rel}/${name}`;
      const p = join(dir, r);
      const st = fs.lstatSync(p);
      const id = `ino=${st.ino} mode=${modeText(st.mode)}`;
      if (st.isSymbolicLink()) out[r] = `link ${fs.readlinkSync(p)}`;
      else if (st.isDirectory()) {
        out[r] = `dir ${id}`;
        walk(r);
      } else out[r] = `file ${id} ${fs.readFileSync(p).toString("base64")}`;
    }
  };
  walk("");
  return out;
}

/** The files under `dir` with their contents (base64) and modes, without inodes: what a bundle looks like. */
function contentsOf(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [p, entry] of Object.entries(snapshot(dir))) out[p] = entry.replace(/ino=\d+ /, "");
  return out;
}

const b64 = (c: string | Uint8Array) => Buffer.from(c).toString("base64");

/** What `contentsOf` gives for a freshly written `files`. */
function expectedContents(files: readonly EmittedFile[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of files) {
    const parts = f.path.split("/");
    for (let i = 1; i < parts.length; i++) out[parts.slice(0, i).join("/")] = expect.stringMatching(/^dir /);
    out[f.path] = `file mode=${modeText(f.executable ? 0o755 : 0o644)} ${b64(f.contents)}`;
  }
  return out;
}

/** tunefit's staging and backup folders beside `dir`. */
const leftoversBeside = (dir: string) =>
  fs.readdirSync(dirname(dir)).filter((n) => n.startsWith(`.${basename(dir)}.tunefit-`));

/** A folder holding an earlier bundle: a file, a nested private script, folder mode 0750. */
function makeOld(dir: string): void {
  fs.mkdirSync(join(dir, "nested"), { recursive: true });
  fs.writeFileSync(join(dir, "old.txt"), "old\n");
  fs.writeFileSync(join(dir, "nested/keep.sh"), "#!/bin/sh\n");
  fs.chmodSync(join(dir, "nested/keep.sh"), 0o700);
  fs.chmodSync(dir, 0o750);
}

type Op = keyof WriteFilesFs;
interface Call {
  readonly index: number;
  readonly op: Op;
  readonly path: string;
  result?: unknown;
}
const OPS: readonly Op[] = [
  "lstatSync",
  "readdirSync",
  "mkdirSync",
  "mkdtempSync",
  "writeFileSync",
  "chmodSync",
  "renameSync",
  "rmSync",
];

const osError = (code: string, op: string) =>
  Object.assign(new Error(`${code}: injected failure, ${op}`), { code });

/** node:fs with every call recorded; a call for which `failWhen` holds throws an `EIO` error instead. */
function instrumented(failWhen: (call: Call) => boolean = () => false, code = "EIO") {
  const calls: Call[] = [];
  const real: WriteFilesFs = fs;
  const wrapped: Partial<Record<Op, unknown>> = {};
  for (const op of OPS) {
    wrapped[op] = (...args: unknown[]) => {
      const call: Call = { index: calls.length + 1, op, path: String(args[0]) };
      calls.push(call);
      if (failWhen(call)) throw osError(code, op);
      call.result = (real[op] as (...a: unknown[]) => unknown)(...args);
      return call.result;
    };
  }
  return { fs: wrapped as WriteFilesFs, calls };
}

/** Runs `fn`, expecting a usage TunefitError; returns it. */
function usageFailure(fn: () => unknown): TunefitError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(TunefitError);
  const error = caught as TunefitError;
  expect(error.kind).toBe("usage");
  for (const issue of error.issues) expect(issue.path).toBe("out");
  return error;
}

const codes = (e: TunefitError) => e.issues.map((i) => i.code);

describe("writeFiles writes a bundle", () => {
  it("writes nested files with their contents and modes, in order, and returns their paths in order", () => {
    const dir = join(root, "out");
    const { fs: counting, calls } = instrumented();
    const result = writeFiles(bundle, dir, { fs: counting });

    expect(result).toEqual({ dir, files: bundle.map((f) => f.path) });
    expect(contentsOf(dir)).toEqual(expectedContents(bundle));
    expect(fs.readFileSync(join(dir, "data/images/demo.png"))).toEqual(
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 255]),
    );
    if (posix) {
      expect(fs.statSync(join(dir, "scripts/run.sh")).mode & 0o777).toBe(0o755);
      expect(fs.statSync(join(dir, "train.yaml")).mode & 0o777).toBe(0o644);
      expect(fs.statSync(dir).mode & 0o777).toBe(0o755);
    }
    const staging = String(calls.find((c) => c.op === "mkdtempSync")?.result);
    expect(basename(staging)).toMatch(/^\.out\.tunefit-staging-[A-Za-z0-9]{6}$/);
    expect(dirname(staging)).toBe(root);
    const written = calls.filter((c) => c.op === "writeFileSync").map((c) => c.path);
    expect(written).toEqual(bundle.map((f) => join(staging, f.path)));
    expect(leftoversBeside(dir)).toEqual([]);
  });

  it("creates missing parent folders and resolves a relative folder against the current folder", () => {
    process.chdir(root);
    const result = writeFiles(otherBundle, join("a", "b", "out"));
    expect(result.dir).toBe(resolve(root, "a", "b", "out"));
    expect(fs.readFileSync(join(root, "a/b/out/only.txt"), "utf8")).toBe("second run\n");
  });

  it("writes an empty bundle as an empty folder", () => {
    const dir = join(root, "out");
    expect(writeFiles([], dir)).toEqual({ dir, files: [] });
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it("accepts unusual but safe names", () => {
    const files = [".env", "..hidden", "a..b/c", "x/.y", "spaces in name.txt", "ünï/cödé.md"].map((p) => ({
      path: p,
      contents: p,
    }));
    const dir = join(root, "out");
    writeFiles(files, dir);
    for (const f of files) expect(fs.readFileSync(join(dir, f.path), "utf8")).toBe(f.path);
  });
});

describe("writeFiles and an existing folder", () => {
  it("refuses a non-empty folder without force and leaves it untouched", () => {
    const dir = join(root, "out");
    makeOld(dir);
    const before = snapshot(root);
    const error = usageFailure(() => writeFiles(bundle, dir));
    expect(codes(error)).toEqual(["OUTPUT_NOT_EMPTY"]);
    expect(error.issues[0]?.message).toContain(dir);
    expect(error.issues[0]?.message).toContain("2 entries");
    expect(error.issues[0]?.hint).toContain("--force");
    expect(error.issues[0]?.hint).toContain("another folder");
    expect(snapshot(root)).toEqual(before);
  });

  it("replaces a non-empty folder with force: old files gone, new ones present, folder mode kept", () => {
    const dir = join(root, "out");
    makeOld(dir);
    writeFiles(bundle, dir, { force: true });
    expect(contentsOf(dir)).toEqual(expectedContents(bundle));
    expect(fs.existsSync(join(dir, "old.txt"))).toBe(false);
    if (posix) expect(fs.statSync(dir).mode & 0o777).toBe(0o750);
    expect(leftoversBeside(dir)).toEqual([]);
  });

  it("writes into an existing empty folder without force", () => {
    const dir = join(root, "out");
    fs.mkdirSync(dir);
    writeFiles(bundle, dir);
    expect(contentsOf(dir)).toEqual(expectedContents(bundle));
    expect(leftoversBeside(dir)).toEqual([]);
  });

  it.skipIf(!posix)("refuses a symbolic link, also with force, and never writes through it", () => {
    const target = join(root, "elsewhere");
    fs.mkdirSync(target);
    fs.symlinkSync(target, join(root, "out"));
    fs.symlinkSync(join(root, "missing"), join(root, "dangling"));
    const before = snapshot(root);
    for (const [name, force] of [
      ["out", false],
      ["out", true],
      ["dangling", true],
    ] as const) {
      const error = usageFailure(() => writeFiles(bundle, join(root, name), { force }));
      expect(codes(error)).toEqual(["OUTPUT_IS_SYMLINK"]);
      expect(error.issues[0]?.message).toContain(join(root, name));
    }
    expect(snapshot(root)).toEqual(before);
  });

  it("refuses a regular file, also with force", () => {
    const dir = join(root, "out");
    fs.writeFileSync(dir, "not a folder\n");
    const before = snapshot(root);
    for (const force of [false, true]) {
      const error = usageFailure(() => writeFiles(bundle, dir, { force }));
      expect(codes(error)).toEqual(["OUTPUT_NOT_A_FOLDER"]);
      expect(error.issues[0]?.message).toContain(dir);
    }
    expect(snapshot(root)).toEqual(before);
  });

  it("refuses the current folder and folders holding it, also with force", () => {
    const dir = join(root, "out");
    makeOld(dir);
    fs.mkdirSync(join(dir, "sub"));
    process.chdir(join(dir, "sub"));
    const before = snapshot(root);
    for (const target of [".", "..", root]) {
      const error = usageFailure(() => writeFiles(bundle, target, { force: true }));
      expect(codes(error)).toEqual(["OUTPUT_CONTAINS_CWD"]);
    }
    expect(snapshot(root)).toEqual(before);
  });

  it("refuses an empty folder name and the file-system root before touching the disk", () => {
    // Every operation fails, so even a wrong answer here cannot change anything on disk.
    const { fs: failing, calls } = instrumented(() => true);
    expect(codes(usageFailure(() => writeFiles(bundle, "", { fs: failing })))).toEqual([
      "OUTPUT_DIR_INVALID",
    ]);
    expect(codes(usageFailure(() => writeFiles(bundle, "/", { force: true, fs: failing })))).toEqual([
      "OUTPUT_DIR_INVALID",
    ]);
    expect(calls).toEqual([]);
  });

  it("reports an output path below a file as a write failure naming the OS error", () => {
    fs.writeFileSync(join(root, "file.txt"), "x");
    const before = snapshot(root);
    const error = usageFailure(() => writeFiles(bundle, join(root, "file.txt", "out")));
    expect(codes(error)).toEqual(["OUTPUT_WRITE_FAILED"]);
    expect(error.issues[0]?.message).toContain("ENOTDIR");
    expect(error.issues[0]?.hint).toContain("is a file");
    expect(snapshot(root)).toEqual(before);
  });
});

describe("writeFiles checks every path before touching the disk", () => {
  const cases: readonly (readonly [string, readonly string[], string])[] = [
    ["absolute", ["/etc/passwd"], "OUTPUT_PATH_UNSAFE"],
    ["a drive letter", ["C:/x.txt"], "OUTPUT_PATH_UNSAFE"],
    ["a leading ..", ["../escape.txt"], "OUTPUT_PATH_UNSAFE"],
    ["an inner ..", ["a/../../escape.txt"], "OUTPUT_PATH_UNSAFE"],
    ["a trailing ..", ["a/.."], "OUTPUT_PATH_UNSAFE"],
    ["a . segment", ["a/./b.txt"], "OUTPUT_PATH_UNSAFE"],
    ["a leading .", ["./b.txt"], "OUTPUT_PATH_UNSAFE"],
    ["an empty segment", ["a//b.txt"], "OUTPUT_PATH_UNSAFE"],
    ["a trailing /", ["a/"], "OUTPUT_PATH_UNSAFE"],
    ["an empty path", [""], "OUTPUT_PATH_UNSAFE"],
    ["a backslash", ["a\\b.txt"], "OUTPUT_PATH_UNSAFE"],
    ["a backslash ..", ["..\\escape.txt"], "OUTPUT_PATH_UNSAFE"],
    ["a NUL", ["a\u0000b.txt"], "OUTPUT_PATH_UNSAFE"],
    ["a newline", ["a\nb.txt"], "OUTPUT_PATH_UNSAFE"],
    ["a DEL", ["a\u007f.txt"], "OUTPUT_PATH_UNSAFE"],
    ["a duplicate", ["x.txt", "x.txt"], "OUTPUT_PATH_DUPLICATE"],
    ["a duplicate by case", ["Readme.md", "README.md"], "OUTPUT_PATH_DUPLICATE"],
    ["a duplicate by folder case", ["Data/a.txt", "data/A.TXT"], "OUTPUT_PATH_DUPLICATE"],
    ["a duplicate by Unicode form", ["caf\u00e9.txt", "cafe\u0301.txt"], "OUTPUT_PATH_DUPLICATE"],
    ["a file that is a folder of a later one", ["a", "a/b.txt"], "OUTPUT_PATH_CONFLICT"],
    ["a file that is a folder of an earlier one", ["a/b/c.txt", "a/b"], "OUTPUT_PATH_CONFLICT"],
    ["a file that is a folder by case", ["A/b.txt", "a"], "OUTPUT_PATH_CONFLICT"],
  ];

  it.each(cases)("rejects %s", (_, paths, code) => {
    const dir = join(root, "out");
    makeOld(dir);
    const before = snapshot(root);
    const files = [{ path: "ok.txt", contents: "ok" }, ...paths.map((p) => ({ path: p, contents: "x" }))];
    const { fs: watched, calls } = instrumented();
    const error = usageFailure(() => writeFiles(files, dir, { force: true, fs: watched }));
    expect(codes(error)).toEqual([code]);
    expect(error.issues[0]?.message).toContain(JSON.stringify(paths[0]));
    expect(calls).toEqual([]);
    expect(snapshot(root)).toEqual(before);
  });

  it("reports every unsafe path at once", () => {
    const files = ["../a", "/b", "c", "c"].map((p) => ({ path: p, contents: "" }));
    const error = usageFailure(() => writeFiles(files, join(root, "out")));
    expect(codes(error)).toEqual(["OUTPUT_PATH_UNSAFE", "OUTPUT_PATH_UNSAFE", "OUTPUT_PATH_DUPLICATE"]);
    expect(fs.readdirSync(root)).toEqual([]);
  });
});

describe("writeFiles leaves the folder as it was when any operation fails", () => {
  const staged =
    "mkdtemp chmod writeFile chmod mkdir writeFile chmod mkdir writeFile chmod mkdir writeFile chmod writeFile chmod";

  interface Scenario {
    readonly name: string;
    /** Prepares the case folder; returns the output folder. */
    readonly setup: (caseRoot: string) => string;
    readonly force: boolean;
    /** The operations of a successful run, in order (without `Sync`): a failure is injected into each. */
    readonly ops: string;
  }
  const scenarios: readonly Scenario[] = [
    {
      name: "an absent folder",
      setup: (r) => join(r, "out"),
      force: false,
      ops: `lstat mkdir readdir ${staged} rename`,
    },
    {
      name: "an absent folder with missing parents",
      setup: (r) => join(r, "a", "b", "out"),
      force: false,
      ops: `lstat mkdir readdir ${staged} rename`,
    },
    {
      name: "an existing empty folder",
      setup: (r) => {
        fs.mkdirSync(join(r, "out"));
        return join(r, "out");
      },
      force: false,
      ops: `lstat readdir mkdir readdir ${staged} rename rename rm`,
    },
    {
      name: "an existing folder with old contents, replaced with force",
      setup: (r) => {
        makeOld(join(r, "out"));
        return join(r, "out");
      },
      force: true,
      ops: `lstat mkdir readdir ${staged} rename rename rm`,
    },
  ];

  /** The removal of the previous folder after a successful swap. */
  const isBackupRemoval = (call: Call | undefined) =>
    call?.op === "rmSync" && basename(call.path).startsWith(".out.tunefit-old-");

  it.each(scenarios)("for $name, at every operation", ({ setup, force, ops }) => {
    // Count (and record) the operations of a successful run.
    const dry = join(root, "dry");
    fs.mkdirSync(dry);
    const { fs: counting, calls: plan } = instrumented();
    writeFiles(bundle, setup(dry), { force, fs: counting });
    expect(plan.map((c) => c.op.replace(/Sync$/, "")).join(" ")).toBe(ops);

    for (let k = 1; k <= plan.length; k++) {
      const caseRoot = join(root, `case-${k}`);
      fs.mkdirSync(caseRoot);
      const dir = setup(caseRoot);
      const before = snapshot(caseRoot);
      const options: WriteFilesOptions = { force, fs: instrumented((c) => c.index === k).fs };
      const step = `operation ${k} (${plan[k - 1]?.op})`;

      if (isBackupRemoval(plan[k - 1])) {
        // Decision: the new bundle is in place, so the call succeeds; the backup stays beside the folder, does not
        // block the next run, and that run removes it.
        expect(writeFiles(bundle, dir, options), step).toEqual({ dir, files: bundle.map((f) => f.path) });
        expect(contentsOf(dir), step).toEqual(expectedContents(bundle));
        expect(leftoversBeside(dir), step).toEqual([
          expect.stringMatching(/^\.out\.tunefit-old-[A-Za-z0-9]{6}$/),
        ]);
        writeFiles(otherBundle, dir, { force: true });
        expect(contentsOf(dir), step).toEqual(expectedContents(otherBundle));
        expect(leftoversBeside(dir), step).toEqual([]);
        continue;
      }

      const error = usageFailure(() => writeFiles(bundle, dir, options));
      expect(codes(error), step).toEqual(["OUTPUT_WRITE_FAILED"]);
      expect(error.issues[0]?.message, step).toMatch(/^could not .*: EIO \(injected failure\); /);
      expect(error.issues[0]?.message, step).toContain(dir);
      // The folder (same inodes, modes, contents) and everything beside it are as before: no leftovers, no parents.
      expect(snapshot(caseRoot), step).toEqual(before);
    }
  });

  it("names the step, the file and the OS error code, with a hint", () => {
    const dir = join(root, "out");
    const { fs: full } = instrumented(
      (c) => c.op === "writeFileSync" && c.path.endsWith("dataset_info.json"),
      "ENOSPC",
    );
    const error = usageFailure(() => writeFiles(bundle, dir, { fs: full }));
    expect(error.issues[0]?.message).toContain("could not write data/dataset_info.json");
    expect(error.issues[0]?.message).toContain("ENOSPC");
    expect(error.issues[0]?.message).toContain(`${dir} was not created`);
    expect(error.issues[0]?.hint).toContain("disk space");
    expect(fs.readdirSync(root)).toEqual([]);

    makeOld(dir);
    const { fs: denied } = instrumented((c) => c.op === "renameSync", "EACCES");
    const again = usageFailure(() => writeFiles(bundle, dir, { force: true, fs: denied }));
    expect(again.issues[0]?.message).toContain(`could not move the previous ${dir} aside`);
    expect(again.issues[0]?.message).toContain("EACCES");
    expect(again.issues[0]?.message).toContain(`${dir} is unchanged`);
    expect(again.issues[0]?.hint).toContain(root);
  });

  it("says where the previous contents are when moving them back fails too", () => {
    const dir = join(root, "out");
    makeOld(dir);
    const old = contentsOf(dir);
    // The first rename (the folder aside) works; the swap and the move back fail.
    const { fs: failing } = instrumented((c) => c.op === "renameSync" && c.path !== dir);
    const error = usageFailure(() => writeFiles(bundle, dir, { force: true, fs: failing }));
    expect(codes(error)).toEqual(["OUTPUT_WRITE_FAILED", "OUTPUT_RESTORE_FAILED"]);
    // Beside the folder: only the backup, the staging folder is gone.
    expect(leftoversBeside(dir)).toEqual([expect.stringMatching(/^\.out\.tunefit-old-[A-Za-z0-9]{6}$/)]);
    const backup = join(root, leftoversBeside(dir)[0] ?? "");
    expect(error.issues[0]?.message).toContain(`previous contents of ${dir} are in ${backup}`);
    expect(error.issues[1]?.hint).toContain(`rename ${backup} to ${dir}`);
    expect(fs.existsSync(dir)).toBe(false);
    expect(contentsOf(backup)).toEqual(old);

    // The next run writes the folder and keeps the backup, the only copy of the previous contents.
    writeFiles(otherBundle, dir);
    expect(contentsOf(dir)).toEqual(expectedContents(otherBundle));
    expect(contentsOf(backup)).toEqual(old);
  });
});

describe("writeFiles after a crashed run", () => {
  it("is not blocked by a leftover staging folder, and removes it", () => {
    const dir = join(root, "out");
    const leftover = join(root, ".out.tunefit-staging-Crash1");
    fs.mkdirSync(join(leftover, "scripts"), { recursive: true });
    fs.writeFileSync(join(leftover, "scripts/run.sh"), "half");
    // Not ours to remove: another folder's leftover, and names that only look alike.
    for (const name of [
      ".other.tunefit-staging-Crash1",
      ".out.tunefit-staging-notours",
      "out.tunefit-staging-Crash1",
    ]) {
      fs.mkdirSync(join(root, name));
    }
    writeFiles(bundle, dir);
    expect(contentsOf(dir)).toEqual(expectedContents(bundle));
    expect(fs.readdirSync(root).sort()).toEqual(
      [
        ".other.tunefit-staging-Crash1",
        ".out.tunefit-staging-notours",
        "out",
        "out.tunefit-staging-Crash1",
      ].sort(),
    );
  });

  it("is not blocked by a leftover staging folder it cannot remove", () => {
    const dir = join(root, "out");
    fs.mkdirSync(join(root, ".out.tunefit-staging-Crash1"));
    const { fs: failing } = instrumented((c) => c.op === "rmSync" && c.path.endsWith("Crash1"));
    writeFiles(bundle, dir, { fs: failing });
    expect(contentsOf(dir)).toEqual(expectedContents(bundle));
    expect(leftoversBeside(dir)).toEqual([".out.tunefit-staging-Crash1"]);
    writeFiles(otherBundle, dir, { force: true });
    expect(leftoversBeside(dir)).toEqual([]);
  });

  it("keeps a backup beside an absent folder (a run stopped between its renames) and writes the folder", () => {
    const dir = join(root, "out");
    const backup = join(root, ".out.tunefit-old-Crash1");
    makeOld(backup);
    const old = snapshot(backup);
    writeFiles(bundle, dir);
    expect(contentsOf(dir)).toEqual(expectedContents(bundle));
    expect(snapshot(backup)).toEqual(old);
  });

  it("removes a leftover backup beside an existing folder", () => {
    const dir = join(root, "out");
    makeOld(dir);
    makeOld(join(root, ".out.tunefit-old-Crash1"));
    writeFiles(bundle, dir, { force: true });
    expect(contentsOf(dir)).toEqual(expectedContents(bundle));
    expect(leftoversBeside(dir)).toEqual([]);
  });
});
