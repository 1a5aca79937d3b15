/**
 * The render stage: `ServiceModel` + templates → the files of the generated project, including
 * the manifest. Pure and deterministic: same model and templates, same bytes.
 */
import Handlebars from "handlebars";
import { InternalError } from "../errors.js";
import type { ServiceModel } from "../model/model.js";
import { MANIFEST_FILE, manifestText, sha256 } from "./manifest.js";
import { zigString } from "./zig-string.js";

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

/** The runtime of application modules: only in projects that have some. */
function isAppRuntime(file: string): boolean {
  return /^src\/handlers\/app(_[a-z]+)?\.zig$/.test(file);
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

/** Compile options spelled out so that a new Handlebars default cannot change the output. */
const COMPILE_OPTIONS = {
  noEscape: true,
  strict: true,
  knownHelpersOnly: true,
  knownHelpers: { zigString: true, eq: true },
  preventIndent: false,
  assumeObjects: false,
} as const;

export function render(model: ServiceModel, templates: Templates): Rendered {
  const handlebars = createEnvironment();
  const files = new Map<string, string>();
  for (const templatePath of [...templates.keys()].sort()) {
    if (templatePath.startsWith(MODULE_TEMPLATE_DIR)) continue;
    const isStatic = templatePath.endsWith(STATIC_SUFFIX);
    if (!isStatic && !templatePath.endsWith(TEMPLATE_SUFFIX)) continue;
    const output = isStatic ? templatePath : templatePath.slice(0, -TEMPLATE_SUFFIX.length);
    if (isUserOwned(output) && !model.hasCustomHandler) continue;
    if (isAppRuntime(output) && !model.hasApps) continue;
    if (output === MANIFEST_FILE) {
      throw new InternalError(`template ${templatePath} would overwrite the manifest`);
    }
    const source = templates.get(templatePath) ?? "";
    const body = isStatic ? source : renderTemplate(handlebars, templatePath, source, model);
    const text = isUserOwned(output) ? body : `${header(output, model)}\n${body}`;
    files.set(output, normalize(text));
  }
  for (const app of model.apps) {
    const templatePath = MODULE_TEMPLATES[app.kind];
    const source = templates.get(templatePath);
    if (source === undefined) throw new InternalError(`template ${templatePath} is missing`);
    const context = { ...model, app };
    files.set(app.file, normalize(renderTemplate(handlebars, templatePath, source, context)));
  }
  files.set(MANIFEST_FILE, renderManifest(model, files));
  return files;
}

function renderTemplate(
  handlebars: typeof Handlebars,
  templatePath: string,
  source: string,
  model: ServiceModel | (ServiceModel & { readonly app: unknown }),
): string {
  try {
    return handlebars.compile(source, COMPILE_OPTIONS)(model);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new InternalError(`template ${templatePath} failed to render: ${reason}`, error);
  }
}

/** An isolated Handlebars with only our two helpers (nothing registered globally). */
function createEnvironment(): typeof Handlebars {
  const handlebars = Handlebars.create();
  handlebars.registerHelper("zigString", (value: unknown) => {
    if (typeof value !== "string") {
      throw new Error(`zigString expects a string, got ${typeof value}`);
    }
    return zigString(value);
  });
  // `eq` works as a subexpression, `{{#if (eq protocol "tcp")}}`, and as a block,
  // `{{#eq protocol "tcp"}}…{{else}}…{{/eq}}`.
  handlebars.registerHelper(
    "eq",
    function (this: unknown, a: unknown, b: unknown, options: Handlebars.HelperOptions) {
      const equal = a === b;
      if (typeof options?.fn !== "function") return equal;
      return equal ? options.fn(this) : options.inverse(this);
    },
  );
  return handlebars;
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
