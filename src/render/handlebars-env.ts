/**
 * The Handlebars behind the render stage: an isolated environment with our two helpers, and the
 * templates compiled either at build time or on first use.
 *
 * Why both: compiling templates needs Handlebars' whole compiler, the largest part of a cold
 * start (`npm run bench:cli`). `npm run build` therefore precompiles the package's templates into
 * `dist/render/precompiled-templates.cjs` (see `precompileTemplates`), and a run only loads
 * Handlebars' small runtime to execute them. A template whose text differs from the one
 * precompiled (a checkout whose templates changed since the build, the tests' own template sets)
 * is compiled with the full compiler, loaded only then. Both paths use the same Handlebars
 * version and options, so they render the same bytes.
 */
import { createRequire } from "node:module";
import type Handlebars from "handlebars";
import { sha256 } from "./manifest.js";
import { zigString } from "./zig-string.js";

type HandlebarsEnv = typeof Handlebars;
type Runtime = Pick<HandlebarsEnv, "template" | "create" | "registerHelper">;

export type Template = (context: unknown) => string;

/** Compile options spelled out so that a new Handlebars default cannot change the output. */
export const COMPILE_OPTIONS = {
  noEscape: true,
  strict: true,
  knownHelpersOnly: true,
  knownHelpers: { zigString: true, eq: true },
  preventIndent: false,
  assumeObjects: false,
} as const;

/** A precompiled template: the sha256 of its source, and Handlebars' template spec. */
export interface PrecompiledTemplate {
  readonly hash: string;
  readonly spec: unknown;
}

const require = createRequire(import.meta.url);

let compiler: HandlebarsEnv | undefined;
let runtime: Runtime | undefined;
let precompiled: Readonly<Record<string, PrecompiledTemplate>> | undefined;

/** The template at `templatePath` (relative to `templates/`) with text `source`, executable. */
export function templateFor(templatePath: string, source: string): Template {
  const entry = precompiledTemplates()[templatePath];
  if (entry !== undefined && entry.hash === sha256(source)) return runtimeTemplate(entry.spec);
  return compiledTemplate(source);
}

/** A template precompiled by `precompileTemplates`, run by Handlebars' runtime. */
export function runtimeTemplate(spec: unknown): Template {
  return runtimeEnv().template(spec as TemplateSpecification);
}

/** A template compiled now, by Handlebars' full compiler. */
export function compiledTemplate(source: string): Template {
  return compilerEnv().compile(source, COMPILE_OPTIONS);
}

type TemplateSpecification = Parameters<HandlebarsEnv["template"]>[0];

/**
 * Handlebars' template specs (JavaScript source of object literals) for `templates`, keyed by
 * path: what `npm run build` writes into `dist/render/precompiled-templates.cjs`.
 */
export function precompileTemplates(
  templates: ReadonlyMap<string, string>,
): Record<string, { hash: string; spec: string }> {
  const full = loadCompiler();
  const out: Record<string, { hash: string; spec: string }> = {};
  for (const [templatePath, source] of templates) {
    if (!templatePath.endsWith(".hbs")) continue;
    out[templatePath] = {
      hash: sha256(source),
      spec: String(full.precompile(source, COMPILE_OPTIONS)),
    };
  }
  return out;
}

function precompiledTemplates(): Readonly<Record<string, PrecompiledTemplate>> {
  if (precompiled === undefined) {
    try {
      precompiled = require("./precompiled-templates.cjs") as Record<string, PrecompiledTemplate>;
    } catch {
      // Running from the TypeScript sources, or a build without them: compile on use.
      precompiled = {};
    }
  }
  return precompiled;
}

function loadCompiler(): HandlebarsEnv {
  return require("handlebars") as HandlebarsEnv;
}

function compilerEnv(): HandlebarsEnv {
  compiler ??= withHelpers(loadCompiler().create()) as HandlebarsEnv;
  return compiler;
}

function runtimeEnv(): Runtime {
  runtime ??= withHelpers((require("handlebars/runtime.js") as Runtime).create());
  return runtime;
}

/** Our two helpers, on an isolated environment (nothing registered globally). */
function withHelpers<T extends Pick<Runtime, "registerHelper">>(env: T): T {
  env.registerHelper("zigString", (value: unknown) => {
    if (typeof value !== "string") {
      throw new Error(`zigString expects a string, got ${typeof value}`);
    }
    return zigString(value);
  });
  // `eq` works as a subexpression, `{{#if (eq protocol "tcp")}}`, and as a block,
  // `{{#eq protocol "tcp"}}…{{else}}…{{/eq}}`.
  env.registerHelper(
    "eq",
    function (this: unknown, a: unknown, b: unknown, options: Handlebars.HelperOptions) {
      const equal = a === b;
      if (typeof options?.fn !== "function") return equal;
      return equal ? options.fn(this) : options.inverse(this);
    },
  );
  return env;
}
