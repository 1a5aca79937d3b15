/**
 * gen-reuseport's programmatic API (re-exports only).
 */
export {
  applyGeneration,
  conflictLines,
  generate,
  hasDrift,
  prepareGeneration,
  type GenerateOptions,
  type PreparedGeneration,
} from "./generate.js";
export { runCli } from "./cli/run.js";
export type { CliContext } from "./cli/types.js";
export {
  asExitError,
  ConflictError,
  EXIT,
  ExitError,
  formatDiagnostic,
  formatPath,
  InternalError,
  OutputError,
  SpecError,
  ToolchainError,
  UsageError,
  type Diagnostic,
  type ToolchainProblem,
  type ZigDiagnostic,
  type ExitCode,
} from "./errors.js";
export { GENERATOR_VERSION, PACKAGE_ROOT, TEMPLATES_DIR } from "./package.js";
export { buildModel, type ListenerModel, type ServiceModel } from "./model/model.js";
export { zigFingerprint } from "./model/fingerprint.js";
export { plan, type Action, type Plan, type PlannedFile } from "./plan/plan.js";
export { loadTemplates } from "./render/load-templates.js";
export { MANIFEST_FILE, parseManifest, type Manifest } from "./render/manifest.js";
export {
  isUserOwned,
  render,
  USER_OWNED_FILES,
  type Rendered,
  type Templates,
} from "./render/render.js";
export { zigString } from "./render/zig-string.js";
export { loadSpecFile, parseSpecText } from "./spec/load.js";
export { specJsonSchemaText } from "./spec/json-schema.js";
export { SpecSchema, type ListenerSpec, type Spec, type SpecInput } from "./spec/schema.js";
export { validateSpec, type ValidationResult } from "./spec/validate.js";
export {
  buildProject,
  parseZigDiagnostics,
  ZIG_STEPS,
  type BuildProjectOptions,
  type BuildResult,
  type StepResult,
} from "./toolchain/build.js";
export {
  CACHE_ENV,
  CHECKOUT_TOOLCHAIN_DIR,
  checkoutToolchainDir,
  installedZigPath,
  installedZigs,
  toolchainCacheDir,
  toolchainDirs,
  zigGlobalCacheDir,
} from "./toolchain/cache.js";
export { findZig, type FindZigOptions, type FoundZig } from "./toolchain/find.js";
export { ensureZig, type EnsureZigOptions } from "./toolchain/provision.js";
export {
  DEFAULT_MINIMUM_ZIG,
  DEFAULT_PROVISIONED_ZIG,
  isSupportedZig,
  SUPPORTED_ZIG,
} from "./zig-facts.js";
