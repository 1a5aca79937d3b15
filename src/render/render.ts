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
 * that holds the sockets, the protocol it speaks with its workers, and how sockets are made
 * and passed. Their digest (with the generator version) is `supervisorFingerprint`.
 */
export const SUPERVISOR_TEMPLATES: readonly string[] = [
  "src/systemd/activation.zig",
  "src/cli.zig",
  "src/events.zig",
  "src/net/listener.zig",
  "src/systemd/notify.zig",
  "src/supervisor/pid_file.zig",
  "src/net/scm.zig",
  "src/worker/stats.zig",
  "src/upgrade/steering.zig",
  "src/supervisor/supervisor.zig",
  "src/upgrade/upgrade.zig",
  "src/supervisor/worker_link.zig",
  "src/supervisor/worker_process.zig",
];

/** 16 hex digits: the generator version and the supervisor templates' paths and text. */
export function supervisorFingerprint(model: ServiceModel, templates: Templates): string {
  const hash = createHash("sha256").update(`gen-reuseport ${model.generatorVersion}\n`);
  for (const file of SUPERVISOR_TEMPLATES) {
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
  files.set(MANIFEST_FILE, renderManifest(model, files));
  return files;
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

/** The first line of every generated file; `DO NOT EDIT.` ends it (the Go convention). */
export function header(file: string, model: ServiceModel): string {
  const text =
    `Code generated by gen-reuseport ${model.generatorVersion} from ${model.specFile}. ` +
    "DO NOT EDIT.";
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
