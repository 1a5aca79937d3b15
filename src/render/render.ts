/**
 * The render stage: `ServiceModel` + templates → the files of the generated project, including
 * the manifest. Pure and deterministic: same model and templates, same bytes.
 */
import { createHash } from "node:crypto";
import { InternalError } from "../errors.js";
import type { ServiceModel } from "../model/model.js";
import { MANIFEST_FILE, manifestText, sha256 } from "./manifest.js";
import { templateFor } from "./handlebars-env.js";

/** Template path (relative to `templates/`, with `.hbs`) → template text. */
export type Templates = ReadonlyMap<string, string>;

/** Output path (relative, `/`-separated) → file text. */
export type Rendered = ReadonlyMap<string, string>;

export const TEMPLATE_SUFFIX = ".hbs";
/** Sources that vary with nothing in the spec: copied byte for byte, only the header added. */
export const STATIC_SUFFIX = ".zig";

export function isTemplateFile(name: string): boolean {
  return name.endsWith(TEMPLATE_SUFFIX) || name.endsWith(STATIC_SUFFIX);
}

/**
 * Files that belong to the user once created: rendered only for a custom handler, without the
 * generated-code header, created once and never overwritten or removed.
 */
export const USER_OWNED_FILES: ReadonlySet<string> = new Set(["src/handler.zig"]);

/** An application module's file (section 8 of DESIGN.md), the user's from its creation on. */
const APP_MODULE_FILE = /^src\/app\/[a-z][a-z0-9_]{0,62}\.zig$/;

export function isUserOwned(file: string): boolean {
  return USER_OWNED_FILES.has(file) || APP_MODULE_FILE.test(file);
}

/**
 * The templates whose text makes up the supervisor side of a generated program: the process
 * that holds the sockets, the protocol it speaks with its workers, how sockets are made and
 * passed, and what that code imports. Their digest (with the generator version) is
 * `supervisorFingerprint`. Derived from the folders, so that a file added to one of them is
 * covered without editing a list; a unit test follows the supervisor's `@import`s and fails
 * when one of them leads outside.
 */
export const SUPERVISOR_FOLDERS: readonly string[] = [
  "src/supervisor/",
  "src/upgrade/",
  "src/systemd/",
  "src/net/",
  "src/admin/",
  "src/metrics/",
];

/** Files outside those folders that the supervisor's code imports. */
export const SUPERVISOR_FILES: readonly string[] = [
  "src/access_log.zig",
  "src/access_log/file.zig",
  "src/access_log/line.zig",
  "src/address.zig",
  "src/calendar.zig",
  "src/cli.zig",
  "src/compat.zig",
  "src/config.zig.hbs",
  "src/events.zig",
  "src/http/date.zig",
  "src/http/parser.zig",
  "src/http/status.zig",
  "src/log.zig",
  "src/output.zig",
  "src/worker/stats.zig",
  "src/worker/stop.zig",
];

/** The supervisor's templates present in `templates`, sorted. */
export function supervisorTemplates(templates: Templates): string[] {
  const inFolder = (file: string) => SUPERVISOR_FOLDERS.some((dir) => file.startsWith(dir));
  return [...templates.keys()]
    .filter((file) => SUPERVISOR_FILES.includes(file) || inFolder(file))
    .sort();
}

/** 16 hex digits: the generator version and the supervisor templates' paths and text. */
export function supervisorFingerprint(model: ServiceModel, templates: Templates): string {
  const hash = createHash("sha256").update(`gen-reuseport ${model.generatorVersion}\n`);
  for (const file of supervisorTemplates(templates)) {
    const text = templates.get(file) ?? "";
    hash.update(`${file}\n${text.length}\n${text}`);
  }
  return hash.digest("hex").slice(0, 16);
}

/** The runtime of application modules: only in projects that have some. */
function isAppRuntime(file: string): boolean {
  return /^src\/handlers\/app(_[a-z]+)?\.zig$/.test(file) || file.startsWith("src/handlers/app/");
}

/**
 * Templates rendered once per application module rather than once per project: the stub of
 * an HTTP module becomes `src/app/<module>.zig`.
 */
const MODULE_TEMPLATE_DIR = "modules/";
const MODULE_TEMPLATES = {
  http: "modules/http.zig.hbs",
  stream: "modules/stream.zig.hbs",
  datagram: "modules/datagram.zig.hbs",
} as const;


/** The proxy handler's files, rendered only for a spec with a proxy listener. */
function isProxyRuntime(output: string): boolean {
  return output === "src/handlers/proxy.zig" || output.startsWith("src/handlers/proxy/");
}

export function render(model: ServiceModel, templates: Templates): Rendered {
  const withIdentity = { ...model, supervisorFingerprint: supervisorFingerprint(model, templates) };
  const files = new Map<string, string>();
  for (const templatePath of [...templates.keys()].sort()) {
    if (templatePath.startsWith(MODULE_TEMPLATE_DIR)) continue;
    if (!isTemplateFile(templatePath)) continue;
    const isStatic = templatePath.endsWith(STATIC_SUFFIX);
    const output = isStatic ? templatePath : templatePath.slice(0, -TEMPLATE_SUFFIX.length);
    if (isUserOwned(output) && !model.hasCustomHandler) continue;
    if (isAppRuntime(output) && !model.hasApps) continue;
    if (output.startsWith("src/upstream/") && !model.hasUpstreams) continue;
    if (isProxyRuntime(output) && !model.hasProxy) continue;
    if (output === MANIFEST_FILE) {
      throw new InternalError(`template ${templatePath} would overwrite the manifest`);
    }
    const source = templates.get(templatePath) ?? "";
    for (const { file, context } of instances(output, withIdentity)) {
      const body = isStatic ? source : renderTemplate(templatePath, source, context);
      const text = isUserOwned(file) ? body : `${header(file, model)}\n${body}`;
      files.set(file, normalize(text));
    }
  }
  for (const app of model.apps) {
    const templatePath = MODULE_TEMPLATES[app.kind];
    const source = templates.get(templatePath);
    if (source === undefined) throw new InternalError(`template ${templatePath} is missing`);
    const context = { ...model, app };
    files.set(app.file, normalize(renderTemplate(templatePath, source, context)));
  }
  const tests = testRoot(files, model);
  if (tests !== undefined) files.set(TEST_ROOT, tests);
  files.set(MANIFEST_FILE, renderManifest(model, files));
  return files;
}

/** Imported by the test block of `src/main.zig`: what `zig build test` runs. */
export const TEST_ROOT = "src/tests.zig";

/** A Zig test declaration at the start of a line: `test {` or `test "name" {`. */
const TEST_DECL = /^test\b/m;

/**
 * The test root, derived from the files rendered: every generated Zig file under `src/` that
 * has tests (the user's files are reached through the code that calls them). Nobody keeps a
 * list, so no file's tests are left out. Undefined when no file has tests.
 */
function testRoot(files: ReadonlyMap<string, string>, model: ServiceModel): string | undefined {
  const withTests = [...files]
    .filter(([file]) => file.startsWith("src/") && file.endsWith(".zig") && !isUserOwned(file))
    .filter(([, text]) => TEST_DECL.test(text))
    .map(([file]) => file.slice("src/".length))
    .filter((file) => file !== "main.zig")
    .sort();
  if (withTests.length === 0) return undefined;
  const imports = withTests.map((file) => `    _ = @import("${file}");`).join("\n");
  const body =
    "//! Every generated file with tests, for `zig build test` (the test block of main.zig\n" +
    "//! imports this file). The generator writes it from the files it renders, so a new\n" +
    "//! file's tests run without anyone adding it to a list.\n" +
    `test {\n${imports}\n}\n`;
  return normalize(`${header(TEST_ROOT, model)}\n${body}`);
}

/** A file name placeholder for the service name: `systemd/[name].service.hbs`. */
const NAME_PLACEHOLDER = "[name]";
/** A file name placeholder that renders the template once per listener, `listener` in scope. */
const LISTENER_PLACEHOLDER = "[listener]";

/** The files one template renders to, each with what it is rendered with. */
function instances(
  output: string,
  model: ServiceModel & { supervisorFingerprint: string },
): { file: string; context: object }[] {
  const named = output.split(NAME_PLACEHOLDER).join(model.name);
  if (!named.includes(LISTENER_PLACEHOLDER)) return [{ file: named, context: model }];
  return model.listeners.map((listener) => ({
    file: named.split(LISTENER_PLACEHOLDER).join(listener.name),
    context: { ...model, listener },
  }));
}

function renderTemplate(templatePath: string, source: string, context: object): string {
  try {
    return templateFor(templatePath, source)(context);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new InternalError(`template ${templatePath} failed to render: ${reason}`, error);
  }
}

/**
 * Files that are the same in every project generated by one version: build.zig, whose every
 * byte is in the cache key of the build runner Zig compiles for it.
 */
const SAME_IN_EVERY_PROJECT: ReadonlySet<string> = new Set(["build.zig"]);

/** The first line of every generated file; `DO NOT EDIT.` ends it (the Go convention). */
export function header(file: string, model: ServiceModel): string {
  const from = SAME_IN_EVERY_PROJECT.has(file) ? "" : ` from ${model.specFile}`;
  const text = `Code generated by gen-reuseport ${model.generatorVersion}${from}. DO NOT EDIT.`;
  if (file.endsWith(".zig") || file.endsWith(".zon")) return `// ${text}`;
  if (file.endsWith(".md")) return `<!-- ${text} -->`;
  return `# ${text}`;
}

/** LF line endings and exactly one trailing newline. */
export function normalize(text: string): string {
  return `${text.replace(/\r\n?/g, "\n").replace(/\s+$/, "")}\n`;
}

function renderManifest(model: ServiceModel, files: ReadonlyMap<string, string>): string {
  const generated: Record<string, string> = {};
  const userFiles: string[] = [];
  for (const [file, text] of files) {
    if (isUserOwned(file)) userFiles.push(file);
    else generated[file] = sha256(text);
  }
  return manifestText({
    generator: "gen-reuseport",
    version: model.generatorVersion,
    spec: model.specFile,
    files: generated,
    userFiles: userFiles.sort(),
  });
}
